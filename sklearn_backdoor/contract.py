"""What makes an estimator a sanitizer, without the torch engine.

Code that only needs to recognise sanitizers, such as
:class:`sklearn_backdoor.Pipeline`, imports this module rather than
:mod:`sklearn_backdoor.base`. :class:`sklearn_backdoor.SanitizerMixin` sets the
marker that :func:`is_sanitizer` reads.
"""


def is_sanitizer(estimator):
    """True when ``estimator`` follows the sanitizer contract."""
    return bool(getattr(estimator, "_is_sanitizer", False))
