"""Self-expansion error and the compatibility of data subsets.

Paper 001, sec. 2.2: the alpha-expansion error of a set ``S`` given a set
``T`` is the expected error on ``S`` of a network trained on a random
``alpha`` fraction (per class, rounded up) of ``S | T``:

    eps(S | T; alpha) = E_{S' ~ S | T} [ R_emp(A(S'); S) ]      (Definition 2.1)

``T`` is compatible with ``S`` when adding it does not hurt, i.e.
``eps(S | T) <= eps(S)``, and incompatible when ``eps(S) <= eps(S | T)``
(Definition 2.2). Sec. 4.1 measures this gap between clean data ``C`` and
poison ``P``: poison is incompatible with clean data, so ``eps(C | P)``
exceeds ``eps(C)``. :func:`compatibility_gap` lets a user run the same check
on a subset they suspect.
"""

from dataclasses import dataclass
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params
from sklearn.utils.validation import check_consistent_length, column_or_1d

from sklearn_backdoor.base import NetworkEstimatorMixin
from sklearn_backdoor.classifier import NetworkClassifier
from sklearn_backdoor.inputs import check_sample_array

__all__ = [
    "CompatibilityGap",
    "SelfExpansion",
    "compatibility_gap",
    "sample_per_class",
    "self_expansion_error",
]

_TRAINING_CONSTRAINTS = {
    "expansion": [Interval(Real, 0, 1, closed="right")],
    "n_repeats": [Interval(Integral, 1, None, closed="left")],
    "net": NetworkEstimatorMixin._parameter_constraints["net"],
    "epochs": [Interval(Integral, 1, None, closed="left")],
    "device": [str],
    "random_state": ["random_state"],
}


@dataclass(frozen=True, eq=False)
class SelfExpansion:
    """An estimate of the expansion error ``eps(S | T; alpha)``.

    Parameters
    ----------
    error : float
        Mean over the repeats of the 0-1 error on ``S``.
    repeat_errors : ndarray of shape (n_repeats,)
        The error on ``S`` of each repeat's network.
    group_errors : dict of str to float
        Mean error of the same networks on each named group of samples.
    """

    error: float
    repeat_errors: np.ndarray
    group_errors: dict


class CompatibilityGap(NamedTuple):
    """``eps(S | T) - eps(S)`` with both estimates.

    Attributes
    ----------
    gap : float
        Positive when adding ``T`` raises the error on ``S``: ``T`` is
        incompatible with ``S``.
    alone : SelfExpansion
        ``eps(S; alpha)``.
    given : SelfExpansion
        ``eps(S | T; alpha)``.
    """

    gap: float
    alone: SelfExpansion
    given: SelfExpansion


def sample_per_class(indices, y, fraction, random_state=None):
    """SAMPLE of paper 001: a random ``fraction`` of each class, rounded up.

    Parameters
    ----------
    indices : ndarray of int
        The samples to draw from.
    y : ndarray of shape (n_samples,)
        Labels of all samples.
    fraction : float
        In (0, 1]; class ``c`` contributes ``ceil(fraction * n_c)`` of its
        ``n_c`` members of ``indices``, drawn uniformly without replacement.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    sample : ndarray of int64
        Sorted indices.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.compatibility import sample_per_class
    >>> y = np.array([0, 0, 0, 1, 1, 1, 1])
    >>> len(sample_per_class(np.arange(7), y, 0.5, random_state=0))
    4
    """
    rng = check_random_state(random_state)
    indices = np.asarray(indices, dtype=np.int64)
    labels = y[indices]
    drawn = [
        rng.choice(members, size=int(np.ceil(fraction * len(members))), replace=False)
        for members in (indices[labels == label] for label in np.unique(labels))
    ]
    return np.sort(np.concatenate(drawn)) if drawn else indices[:0]


@validate_params(
    {
        "X": ["array-like"],
        "y": ["array-like"],
        "subset": ["array-like"],
        "given": [None, "array-like"],
        "groups": [None, dict],
        **_TRAINING_CONSTRAINTS,
    },
    prefer_skip_nested_validation=True,
)
def self_expansion_error(
    X,
    y,
    subset,
    *,
    given=None,
    groups=None,
    expansion=0.5,
    n_repeats=1,
    net=None,
    epochs=40,
    device="auto",
    random_state=None,
):
    """Estimate the expansion error of ``subset`` given ``given``.

    Each repeat trains a fresh network (a
    :class:`~sklearn_backdoor.NetworkClassifier`) on
    :func:`sample_per_class` of ``subset | given`` with ``fraction =
    expansion`` and measures its 0-1 error on ``subset`` against the labels
    ``y`` (Definition 2.1 of paper 001); the mean over repeats estimates the
    expectation. The same networks are scored on every named group too, which
    gives the other quantities of paper 001's Fig. 2 (the source and
    non-source classes of ``subset``, the poison).

    Parameters
    ----------
    X : array-like of shape (n_samples, height, width, channels) or \
(n_samples, n_features)
        All samples that the index sets refer to.
    y : array-like of shape (n_samples,)
        Their labels (for poison: the poisoned labels).
    subset : array-like of int or bool mask
        ``S``: the samples the error is measured on.
    given : array-like of int or bool mask, default=None
        ``T``: samples added to the pool that is subsampled for training.
        None means ``eps(S; alpha)``.
    groups : dict of str to array-like of int or bool mask, default=None
        Further samples to measure each network's error on.
    expansion : float, default=0.5
        ``alpha`` in (0, 1]; sec. 4.1 uses 1/2.
    n_repeats : int, default=1
        Networks trained, each on a fresh draw.
    net : None, str or skorch.NeuralNetClassifier, default=None
        The network (see :class:`~sklearn_backdoor.NetworkClassifier`).
    epochs : int, default=40
        Training epochs of each network.
    device : str, default="auto"
    random_state : int, RandomState instance or None, default=None
        Seeds the draws and the networks.

    Returns
    -------
    result : SelfExpansion

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.compatibility import self_expansion_error
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randn(100, 4).astype(np.float32)
    >>> y = (X[:, 0] > 0).astype(int)
    >>> result = self_expansion_error(X, y, np.arange(50), given=np.arange(50, 100),
    ...     groups={"rest": np.arange(50, 100)}, epochs=20, random_state=0)
    >>> result.error < 0.2, sorted(result.group_errors)
    (True, ['rest'])
    """
    X = check_sample_array(X)
    y = column_or_1d(y)
    check_consistent_length(X, y)
    n_samples = len(y)
    subset = _check_indices(subset, n_samples, "subset")
    given = _check_indices(
        [] if given is None else given, n_samples, "given", allow_empty=True
    )
    groups = {
        name: _check_indices(members, n_samples, f"groups[{name!r}]")
        for name, members in (groups or {}).items()
    }
    rng = check_random_state(random_state)
    pool = np.union1d(subset, given)
    scored = np.unique(np.concatenate([subset, *groups.values()]))
    errors = {name: [] for name in ["subset", *groups]}
    for _ in range(n_repeats):
        train = sample_per_class(pool, y, expansion, rng)
        model = NetworkClassifier(
            net=net,
            epochs=epochs,
            random_state=int(rng.randint(np.iinfo(np.int32).max)),
            device=device,
        ).fit(X[train], y[train])
        wrong = model.predict(X[scored]) != y[scored]
        for name, members in [("subset", subset), *groups.items()]:
            errors[name].append(wrong[np.searchsorted(scored, members)].mean())
    repeat_errors = np.array(errors.pop("subset"))
    return SelfExpansion(
        error=float(repeat_errors.mean()),
        repeat_errors=repeat_errors,
        group_errors={name: float(np.mean(values)) for name, values in errors.items()},
    )


def _check_indices(indices, n_samples, name, allow_empty=False):
    """Sorted unique int64 indices from an index array or a boolean mask."""
    values = np.asarray(indices)
    if values.dtype == bool:
        if values.shape != (n_samples,):
            raise ValueError(
                f"{name} as a boolean mask must have shape ({n_samples},), got "
                f"{values.shape}"
            )
        values = np.flatnonzero(values)
    if values.ndim != 1 or (
        values.size and not np.issubdtype(values.dtype, np.integer)
    ):
        raise ValueError(
            f"{name} must be a 1-d array of sample indices or a boolean mask, got "
            f"an array of shape {values.shape} and dtype {values.dtype}"
        )
    if not values.size and not allow_empty:
        raise ValueError(f"{name} must hold at least one sample")
    if values.size and (values.min() < 0 or values.max() >= n_samples):
        raise ValueError(
            f"{name} must hold indices in [0, {n_samples}), got values in "
            f"[{values.min()}, {values.max()}]"
        )
    unique = np.unique(values).astype(np.int64)
    if unique.size != values.size:
        raise ValueError(f"{name} must not repeat an index")
    return unique


@validate_params(
    {
        "X": ["array-like"],
        "y": ["array-like"],
        "subset": ["array-like"],
        "other": ["array-like"],
        **_TRAINING_CONSTRAINTS,
    },
    prefer_skip_nested_validation=True,
)
def compatibility_gap(
    X,
    y,
    subset,
    other,
    *,
    expansion=0.5,
    n_repeats=1,
    net=None,
    epochs=40,
    device="auto",
    random_state=None,
):
    """How much adding ``other`` raises the expansion error of ``subset``.

    Returns ``eps(subset | other; alpha) - eps(subset; alpha)`` (Definition
    2.2 of paper 001). A positive gap says ``other`` is incompatible with
    ``subset``: training on it makes the network worse on ``subset``. To check
    a suspected subset ``P`` against the rest ``C`` of a data set, pass
    ``subset=C, other=P``; sec. 4.1 of the paper finds this gap positive for
    backdoor poison, growing with the amount of poison. Estimates are noisy:
    raise ``n_repeats`` before reading much into a small gap.

    Parameters
    ----------
    X : array-like of shape (n_samples, height, width, channels) or \
(n_samples, n_features)
        All samples that the index sets refer to.
    y : array-like of shape (n_samples,)
        Their labels.
    subset : array-like of int or bool mask
        ``S``, where the error is measured.
    other : array-like of int or bool mask
        ``T``, the samples whose compatibility with ``S`` is tested.
    expansion, n_repeats, net, epochs, device, random_state
        As for :func:`self_expansion_error`; both estimates use
        ``n_repeats`` networks, with draws from one ``random_state``.

    Returns
    -------
    result : CompatibilityGap

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.compatibility import compatibility_gap
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randn(200, 4).astype(np.float32)
    >>> y = (X[:, 0] > 0).astype(int)
    >>> y_flipped = y.copy()
    >>> y_flipped[100:] = 1 - y[100:]
    >>> result = compatibility_gap(X, y_flipped, np.arange(100),
    ...     np.arange(100, 200), epochs=20, random_state=0)
    >>> result.gap > 0.1
    True
    """
    rng = check_random_state(random_state)
    training = {
        "expansion": expansion,
        "n_repeats": n_repeats,
        "net": net,
        "epochs": epochs,
        "device": device,
        "random_state": rng,
    }
    alone = self_expansion_error(X, y, subset, **training)
    given = self_expansion_error(X, y, subset, given=other, **training)
    return CompatibilityGap(gap=given.error - alone.error, alone=alone, given=given)
