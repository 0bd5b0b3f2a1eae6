"""Parameter constraints for scikit-learn's ``validate_params``.

The public functions of this package check their arguments with
:func:`sklearn.utils._param_validation.validate_params`, as imbalanced-learn's
``make_imbalance`` does: the error names the parameter, the function and the
value. This module adds the one constraint it lacks.
"""

from sklearn.utils._param_validation import Interval


class StrictInterval(Interval):
    """An ``Interval`` that refuses bools.

    scikit-learn reads ``True`` as the number 1; a count or a fraction given
    as a bool is a mistake, so it is refused with the other bad values.

    Examples
    --------
    >>> from numbers import Real
    >>> from sklearn_backdoor.constraints import StrictInterval
    >>> fraction = StrictInterval(Real, 0, 1, closed="right")
    >>> fraction.is_satisfied_by(1), fraction.is_satisfied_by(True)
    (True, False)
    """

    def is_satisfied_by(self, val):
        return not isinstance(val, bool) and super().is_satisfied_by(val)
