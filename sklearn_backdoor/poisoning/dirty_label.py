"""Dirty-label attacks: triggered samples get a wrong label.

The one-to-one, all-to-one and all-to-all backdoors of paper 001 (App. B,
after Gu et al. 2017) and the systematic label flip of paper 002.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import StrOptions, validate_params

from sklearn_backdoor.constraints import StrictInterval
from sklearn_backdoor.poisoning.checks import (
    check_attack_data,
    check_class,
    check_classes,
    check_labels,
    image_batch,
)
from sklearn_backdoor.poisoning.dataset import poison_rows, poisoned_in_layout
from sklearn_backdoor.poisoning.sampling import (
    choose_from_class,
    rounded_count,
    split_total,
)
from sklearn_backdoor.poisoning.triggers import Trigger

ATTACK_MODES = ("one-to-one", "all-to-one", "all-to-all")
FRACTION = StrictInterval(Real, 0, 1, closed="right")


def _one_to_one(X, y, trigger, target, source, poison_fraction, rng, classes):
    if source is None:
        raise ValueError("source must be given for mode='one-to-one', got None")
    source = check_class(source, classes, "source")
    if source == target:
        raise ValueError(f"source must differ from target, got {source}")
    count = rounded_count(poison_fraction, np.sum(y == source))
    indices = choose_from_class(y, source, count, rng)
    return poison_rows(
        X, y, trigger, indices, np.full(count, target), source=source, target=target
    )


def _all_to_one(X, y, trigger, target, source, poison_fraction, rng, classes):
    if source is not None:
        raise ValueError(f"source must be None for mode='all-to-one', got {source}")
    sources = np.array([c for c in classes if c != target])
    sizes = np.array([np.sum(y == c) for c in sources])
    total = rounded_count(poison_fraction, y.shape[0] / len(classes))
    counts = split_total(total, sizes)
    indices = np.concatenate(
        [choose_from_class(y, c, k, rng) for c, k in zip(sources, counts, strict=True)]
    )
    return poison_rows(
        X,
        y,
        trigger,
        indices,
        np.full(indices.size, target),
        source=sources,
        target=target,
    )


def _cyclic_flip_indices(y, classes, poison_fraction, rng):
    """Choose ``poison_fraction`` of each class; map classes[i] -> classes[i+1]."""
    indices, labels = [], []
    for position, label in enumerate(classes):
        count = rounded_count(poison_fraction, np.sum(y == label))
        indices.append(choose_from_class(y, label, count, rng, name="label"))
        labels.append(np.full(count, classes[(position + 1) % len(classes)]))
    return np.concatenate(indices), np.concatenate(labels)


def _all_to_all(X, y, trigger, target, source, poison_fraction, rng, classes):
    for name, value in (("target", target), ("source", source)):
        if value is not None:
            raise ValueError(f"{name} must be None for mode='all-to-all', got {value}")
    indices, labels = _cyclic_flip_indices(y, classes, poison_fraction, rng)
    return poison_rows(
        X, y, trigger, indices, labels, source=np.array(classes), target=None
    )


_ATTACKS = {
    "one-to-one": _one_to_one,
    "all-to-one": _all_to_one,
    "all-to-all": _all_to_all,
}


@validate_params(
    {
        "X": ["array-like"],
        "y": ["array-like"],
        "trigger": [Trigger],
        "target": [Integral, None],
        "source": [Integral, None],
        "poison_fraction": [FRACTION],
        "mode": [StrOptions(set(ATTACK_MODES))],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def dirty_label_backdoor(
    X,
    y,
    trigger,
    *,
    target,
    source=None,
    poison_fraction=0.1,
    mode="one-to-one",
    random_state=None,
):
    """Poison a data set with a dirty-label backdoor.

    Poisoned samples get the trigger and a wrong label (Gu et al. 2017,
    Tran et al. 2018). Counts are ``int(round(fraction * size))``, at least 1.

    - ``"one-to-one"``: ``poison_fraction`` of class ``source`` (chosen
      uniformly without replacement) is relabelled to ``target``.
    - ``"all-to-one"``: ``round(poison_fraction * n_samples / n_classes)``
      samples in total, i.e. the fraction of the mean class size, split over
      the non-target classes in proportion to their sizes (an equal share of
      each when the classes are balanced), all relabelled to ``target``.
      ``source`` must be None.
    - ``"all-to-all"``: ``poison_fraction`` of every class is relabelled by
      the cyclic permutation of the sorted labels, ``c -> (c + 1) mod K`` for
      labels ``0..K-1``. ``source`` and ``target`` must be None.

    Parameters
    ----------
    X : ndarray of shape (n_samples, height, width, channels) or \
(n_samples, height, width)
        Training images; left unchanged.
    y : ndarray of shape (n_samples,)
        Integer labels of at least two classes; left unchanged.
    trigger : Trigger
        Trigger stamped on the poisoned images.
    target : int or None
        Label given to the poisoned samples (None for ``"all-to-all"``).
    source : int, default=None
        The attacked class for ``"one-to-one"``.
    poison_fraction : float, default=0.1
        Fraction in (0, 1], see above.
    mode : {"one-to-one", "all-to-one", "all-to-all"}, default="one-to-one"
        The attack.
    random_state : int, RandomState instance or None, default=None
        Controls which samples are poisoned.

    Returns
    -------
    poisoned : PoisonedDataset

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.poisoning import dirty_label_backdoor, pixel_trigger
    >>> X = np.zeros((20, 4, 4, 1), dtype=np.uint8)
    >>> y = np.repeat([0, 1], 10)
    >>> data = dirty_label_backdoor(
    ...     X, y, pixel_trigger((0, 0), 255), target=1, source=0,
    ...     poison_fraction=0.3, random_state=0,
    ... )
    >>> len(data.poison_indices), set(data.y_true[data.poison_indices].tolist())
    (3, {0})
    """
    X, grey = image_batch(X)
    X, y = check_attack_data(X, y)
    classes = [int(c) for c in np.unique(y)]
    check_classes(classes)
    if mode != "all-to-all":
        target = check_class(target, classes, "target")
    rng = check_random_state(random_state)
    poisoned = _ATTACKS[mode](
        X, y, trigger, target, source, float(poison_fraction), rng, classes
    )
    return poisoned_in_layout(poisoned, grey)


@validate_params(
    {
        "y": ["array-like"],
        "poison_fraction": [FRACTION],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def systematic_label_flip(y, poison_fraction, random_state=None):
    """Relabel a fraction of every class to the next class.

    For each class ``c`` (sorted labels, ``K`` classes),
    ``max(1, round(poison_fraction * n_c))`` samples chosen uniformly without
    replacement get the label ``(c + 1) mod K`` (the next label in sorted
    order for labels other than ``0..K-1``).

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Integer labels of at least two classes; left unchanged.
    poison_fraction : float
        Fraction in (0, 1] of each class to flip.
    random_state : int, RandomState instance or None, default=None
        Controls which samples are flipped.

    Returns
    -------
    y_new : ndarray of shape (n_samples,)
        The flipped labels (a new array).
    flipped_indices : ndarray of shape (n_flipped,), dtype int64
        Sorted indices of the flipped samples.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.poisoning import systematic_label_flip
    >>> y_new, flipped = systematic_label_flip(np.array([0, 1, 2]), 1.0)
    >>> y_new, flipped
    (array([1, 2, 0]), array([0, 1, 2]))
    """
    y = check_labels(y)
    poison_fraction = float(poison_fraction)
    classes = [int(c) for c in np.unique(y)]
    check_classes(classes)
    rng = check_random_state(random_state)
    indices, labels = _cyclic_flip_indices(y, classes, poison_fraction, rng)
    order = np.argsort(indices)
    y_new = y.copy()
    y_new[indices] = labels
    return y_new, indices[order].astype(np.int64)


@validate_params(
    {
        "X": ["array-like"],
        "y": ["array-like"],
        "trigger": [Trigger],
        "poison_fraction": [FRACTION],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def label_flip_backdoor(X, y, trigger, *, poison_fraction, random_state=None):
    """Poison with a systematic label flip plus a trigger.

    For every class ``c`` a ``poison_fraction`` of its samples gets the
    trigger (e.g. :func:`checkerboard_trigger` or :func:`noise_blend_trigger`)
    and the label ``(c + 1) mod K``, see :func:`systematic_label_flip`. This
    is the all-to-all attack of :func:`dirty_label_backdoor`.

    Parameters
    ----------
    X : ndarray of shape (n_samples, height, width, channels) or \
(n_samples, height, width)
        Training images; left unchanged.
    y : ndarray of shape (n_samples,)
        Integer labels of at least two classes; left unchanged.
    trigger : Trigger
        Trigger stamped on the flipped images.
    poison_fraction : float
        Fraction in (0, 1] of each class to poison.
    random_state : int, RandomState instance or None, default=None
        Controls which samples are poisoned.

    Returns
    -------
    poisoned : PoisonedDataset
        ``source`` holds the classes and ``target`` is None.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.poisoning import checkerboard_trigger
    >>> from sklearn_backdoor.poisoning import label_flip_backdoor
    >>> X = np.zeros((6, 4, 4, 1), dtype=np.uint8)
    >>> data = label_flip_backdoor(
    ...     X, np.array([0, 0, 1, 1, 2, 2]), checkerboard_trigger((4, 4)),
    ...     poison_fraction=0.5, random_state=0,
    ... )
    >>> len(data.poison_indices)
    3
    """
    return dirty_label_backdoor(
        X,
        y,
        trigger,
        target=None,
        poison_fraction=poison_fraction,
        mode="all-to-all",
        random_state=random_state,
    )
