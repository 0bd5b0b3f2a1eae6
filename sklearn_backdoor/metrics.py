"""Metrics for backdoor attacks and for defences that remove poisoned samples.

Labels and predictions are compared with ``==``, so they must be of one
kind: numbers (ints, floats, bools) or strings. Labels of different kinds,
which could never be equal (``"1"`` and ``1``), mixed kinds, NaN and
infinity are refused with an error naming the argument rather than counted
as wrong.
"""

import numbers
from typing import NamedTuple

import numpy as np
from sklearn.utils._param_validation import validate_params

from sklearn_backdoor.constraints import StrictInterval

__all__ = [
    "RemovalCounts",
    "attack_success_rate",
    "clean_accuracy",
    "mean_of_last_epochs",
    "poison_accuracy",
    "removal_counts",
    "targeted_misclassification_rate",
]


def _check_1d(values, name):
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"{name} must be a 1-d array, got shape {values.shape}")
    return values


def _check_same_length(reference_name, reference, **others):
    for name, values in others.items():
        if values.shape[0] != reference.shape[0]:
            raise ValueError(
                f"{name} must have the same length as {reference_name} "
                f"({reference.shape[0]}), got {values.shape[0]}"
            )


def _label_kind(values, name):
    """``"number"`` or ``"string"``: the kind of the labels in ``values``.

    Raises ``ValueError`` for NaN or infinity and ``TypeError`` for labels
    of mixed or other kinds (complex numbers, None, objects).
    """
    if values.dtype.kind in "biu":
        return "number"
    if values.dtype.kind in "US":
        return "string"
    if values.dtype.kind == "O":
        kinds = {_scalar_kind(value, name) for value in values.tolist()}
        if len(kinds) > 1:
            raise TypeError(f"{name} mixes numbers and strings")
        kind = kinds.pop() if kinds else "number"
        if kind == "string":
            return kind
        values = values.astype(np.float64)
    elif values.dtype.kind != "f":
        raise TypeError(f"{name} must hold int or str labels, got dtype {values.dtype}")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} must not contain NaN or infinity")
    return "number"


def _scalar_kind(value, name):
    if isinstance(value, str):
        return "string"
    if isinstance(value, numbers.Real):
        return "number"
    raise TypeError(f"{name} must hold int or str labels, got {value!r}")


def _check_same_kind(**labels):
    """Refuse labels of different kinds, which could never compare equal."""
    kinds = {name: _label_kind(values, name) for name, values in labels.items()}
    (first, first_kind), *others = kinds.items()
    for name, kind in others:
        if kind != first_kind:
            raise TypeError(
                f"{first} holds {first_kind} labels but {name} holds {kind} "
                "labels, which never compare equal; convert one of them"
            )


def _check_not_empty(values, name):
    if values.shape[0] == 0:
        raise ValueError(f"{name} must not be empty")


@validate_params(
    {
        "y_true": ["array-like"],
        "y_pred_clean": ["array-like"],
        "y_pred_triggered": ["array-like"],
        "target": "no_validation",
    },
    prefer_skip_nested_validation=True,
)
def targeted_misclassification_rate(
    y_true, y_pred_clean, y_pred_triggered, target=None
):
    """Fraction of samples classified right when clean and wrong when triggered.

    Equation 7 of the compatibility-clustering paper:
    ``TMR = (1/m) sum_i 1[f(x_i) = y_i] * 1[f(tau(x_i)) != y_i]`` over the
    ``m`` samples given. For a one-to-one attack pass the test images of the
    source class only, so ``m`` is their number. With ``target`` given, a
    triggered prediction counts only when it equals ``target``, which is what
    the authors' evaluation code does (evaluation/train.py and
    evaluation/run_defense.py: clean prediction == source and triggered
    prediction == target, averaged over the source-class test images).

    Parameters
    ----------
    y_true : array-like of shape (m,)
        True labels.
    y_pred_clean : array-like of shape (m,)
        Predictions on the clean images.
    y_pred_triggered : array-like of shape (m,)
        Predictions on the same images with the trigger.
    target : int, default=None
        ``None`` counts any wrong class (eq. 7); an int counts only
        predictions of that class (the reference code).

    Returns
    -------
    tmr : float
        In [0, 1].

    Examples
    --------
    >>> from sklearn_backdoor.metrics import targeted_misclassification_rate
    >>> y_true = [0, 0, 0, 0]
    >>> clean = [0, 0, 0, 1]
    >>> triggered = [2, 1, 0, 2]
    >>> targeted_misclassification_rate(y_true, clean, triggered)
    0.5
    >>> targeted_misclassification_rate(y_true, clean, triggered, target=2)
    0.25
    """
    y_true = _check_1d(y_true, "y_true")
    y_pred_clean = _check_1d(y_pred_clean, "y_pred_clean")
    y_pred_triggered = _check_1d(y_pred_triggered, "y_pred_triggered")
    _check_same_length(
        "y_true", y_true, y_pred_clean=y_pred_clean, y_pred_triggered=y_pred_triggered
    )
    _check_not_empty(y_true, "y_true")
    _check_same_kind(
        y_true=y_true, y_pred_clean=y_pred_clean, y_pred_triggered=y_pred_triggered
    )
    if target is not None:
        _check_same_kind(y_true=y_true, target=np.asarray([target]))
    if target is None:
        fooled = y_pred_triggered != y_true
    else:
        fooled = y_pred_triggered == target
    return float(np.mean((y_pred_clean == y_true) & fooled))


@validate_params(
    {
        "y_pred_triggered": ["array-like"],
        "target": "no_validation",
        "y_true": ["array-like", None],
    },
    prefer_skip_nested_validation=True,
)
def attack_success_rate(y_pred_triggered, target, y_true=None):
    """Fraction of triggered predictions equal to ``target``.

    Parameters
    ----------
    y_pred_triggered : array-like of shape (n_samples,)
        Predictions on triggered images.
    target : int
        The attack's target label.
    y_true : array-like of shape (n_samples,), default=None
        True labels; when given, samples whose true label is ``target`` are
        left out.

    Returns
    -------
    asr : float
        In [0, 1].

    Examples
    --------
    >>> from sklearn_backdoor.metrics import attack_success_rate
    >>> attack_success_rate([2, 2, 1, 2], target=2)
    0.75
    >>> attack_success_rate([2, 2, 1, 2], target=2, y_true=[0, 1, 1, 2])
    0.6666666666666666
    """
    y_pred_triggered = _check_1d(y_pred_triggered, "y_pred_triggered")
    _check_same_kind(y_pred_triggered=y_pred_triggered, target=np.asarray([target]))
    if y_true is not None:
        y_true = _check_1d(y_true, "y_true")
        _check_same_length("y_pred_triggered", y_pred_triggered, y_true=y_true)
        _check_same_kind(y_pred_triggered=y_pred_triggered, y_true=y_true)
        y_pred_triggered = y_pred_triggered[y_true != target]
        if y_pred_triggered.shape[0] == 0:
            raise ValueError(
                f"y_true has no sample whose label differs from target={target}"
            )
    _check_not_empty(y_pred_triggered, "y_pred_triggered")
    return float(np.mean(y_pred_triggered == target))


def _accuracy(y_true, y_pred, pred_name):
    y_true = _check_1d(y_true, "y_true")
    y_pred = _check_1d(y_pred, pred_name)
    _check_same_length("y_true", y_true, **{pred_name: y_pred})
    _check_not_empty(y_true, "y_true")
    _check_same_kind(y_true=y_true, **{pred_name: y_pred})
    return float(np.mean(y_true == y_pred))


@validate_params(
    {"y_true": ["array-like"], "y_pred": ["array-like"]},
    prefer_skip_nested_validation=True,
)
def clean_accuracy(y_true, y_pred):
    """Accuracy on clean images.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_pred : array-like of shape (n_samples,)
        Predictions.

    Returns
    -------
    accuracy : float

    Examples
    --------
    >>> from sklearn_backdoor.metrics import clean_accuracy
    >>> clean_accuracy([0, 1, 2, 2], [0, 1, 1, 2])
    0.75
    """
    return _accuracy(y_true, y_pred, "y_pred")


@validate_params(
    {"y_true": ["array-like"], "y_pred_triggered": ["array-like"]},
    prefer_skip_nested_validation=True,
)
def poison_accuracy(y_true, y_pred_triggered):
    """Accuracy on triggered images against their true labels.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True (pre-poisoning) labels of the test images.
    y_pred_triggered : array-like of shape (n_samples,)
        Predictions on the triggered test images.

    Returns
    -------
    accuracy : float
        High when the backdoor failed.

    Examples
    --------
    >>> from sklearn_backdoor.metrics import poison_accuracy
    >>> poison_accuracy([0, 1, 2, 3], [1, 1, 2, 0])
    0.5
    """
    return _accuracy(y_true, y_pred_triggered, "y_pred_triggered")


class RemovalCounts(NamedTuple):
    """Confusion counts of a defence's keep-mask against the poisoned rows.

    "Positive" means removed: a false positive is a clean sample removed and a
    false negative a poisoned sample kept.
    """

    false_positives: int
    false_negatives: int
    true_positives: int
    true_negatives: int
    n_removed: int
    n_kept: int


def _poison_mask(poison_indices, n_samples):
    """Turn int indices or a bool mask into a bool mask of length n_samples."""
    poison = np.asarray(poison_indices)
    if poison.ndim != 1:
        raise ValueError(
            f"poison_indices must be a 1-d array, got shape {poison.shape}"
        )
    if poison.dtype == bool:
        _check_same_length("mask", np.empty(n_samples), poison_indices=poison)
        return poison
    if poison.size == 0:
        return np.zeros(n_samples, dtype=bool)
    if not np.issubdtype(poison.dtype, np.integer):
        raise TypeError(
            f"poison_indices must be integer indices or a bool mask, got dtype "
            f"{poison.dtype}"
        )
    if poison.min() < 0 or poison.max() >= n_samples:
        bad = poison[(poison < 0) | (poison >= n_samples)][0]
        raise ValueError(f"poison_indices must be in [0, {n_samples}), got {bad}")
    if np.unique(poison).size != poison.size:
        raise ValueError("poison_indices must be unique")
    mask = np.zeros(n_samples, dtype=bool)
    mask[poison] = True
    return mask


@validate_params(
    {"mask": ["array-like"], "poison_indices": ["array-like"]},
    prefer_skip_nested_validation=True,
)
def removal_counts(mask, poison_indices):
    """Count the clean and poisoned samples a defence kept and removed.

    Parameters
    ----------
    mask : array-like of bool, shape (n_samples,)
        Keep-mask of the defence, True means kept.
    poison_indices : array-like of int or bool
        Indices of the poisoned samples, or a bool mask of shape (n_samples,)
        that is True on them.

    Returns
    -------
    counts : RemovalCounts
        ``false_positives`` (clean removed), ``false_negatives`` (poison
        kept), ``true_positives`` (poison removed), ``true_negatives`` (clean
        kept), ``n_removed`` and ``n_kept``.

    Examples
    --------
    >>> from sklearn_backdoor.metrics import removal_counts
    >>> removal_counts([True, False, False, True], [1, 3])
    RemovalCounts(false_positives=1, false_negatives=1, true_positives=1, \
true_negatives=1, n_removed=2, n_kept=2)
    """
    mask = _check_1d(mask, "mask")
    if mask.dtype != bool:
        raise TypeError(f"mask must be a bool array, got dtype {mask.dtype}")
    poison = _poison_mask(poison_indices, mask.shape[0])
    removed = ~mask
    return RemovalCounts(
        false_positives=int(np.sum(removed & ~poison)),
        false_negatives=int(np.sum(mask & poison)),
        true_positives=int(np.sum(removed & poison)),
        true_negatives=int(np.sum(mask & ~poison)),
        n_removed=int(np.sum(removed)),
        n_kept=int(np.sum(mask)),
    )


@validate_params(
    {
        "values": ["array-like"],
        "n_last": [StrictInterval(numbers.Integral, 1, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def mean_of_last_epochs(values, n_last=10):
    """Mean of the last ``n_last`` per-epoch values.

    Parameters
    ----------
    values : array-like of shape (n_epochs,) or (n_epochs, n_metrics)
        One value (or row of values) per epoch, in order.
    n_last : int, default=10
        How many final epochs to average.

    Returns
    -------
    mean : float or ndarray of shape (n_metrics,)

    Examples
    --------
    >>> from sklearn_backdoor.metrics import mean_of_last_epochs
    >>> mean_of_last_epochs([0.0, 0.25, 0.5, 0.75], n_last=2)
    0.625
    """
    values = np.asarray(values, dtype=float)
    if values.ndim not in (1, 2):
        raise ValueError(f"values must be a 1-d or 2-d array, got shape {values.shape}")
    if values.shape[0] < n_last:
        raise ValueError(
            f"values has {values.shape[0]} epochs, fewer than n_last={n_last}"
        )
    mean = values[-n_last:].mean(axis=0)
    return float(mean) if values.ndim == 1 else mean
