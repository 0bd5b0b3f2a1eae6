"""The result of an attack, and how an attack builds it from chosen rows."""

import dataclasses
from dataclasses import dataclass

import numpy as np

from sklearn_backdoor.poisoning.checks import in_layout
from sklearn_backdoor.poisoning.triggers import Trigger


@dataclass(frozen=True, eq=False)
class PoisonedDataset:
    """The result of a poisoning attack.

    Parameters
    ----------
    X : ndarray of shape (n_samples, height, width, channels) or \
(n_samples, height, width)
        Training images with the poisoned rows triggered (a new array), in
        the layout of the attacked images.
    y : ndarray of shape (n_samples,)
        Training labels after poisoning (a new array).
    poison_indices : ndarray of shape (n_poisoned,), dtype int64
        Sorted, unique indices of the poisoned rows.
    trigger : Trigger
        The trigger; ``trigger.apply(X_test)`` poisons test images.
    source : int, ndarray or None
        The attacked class, the attacked classes, or ``None``.
    target : int or None
        The class poisoned samples are relabelled to, ``None`` when it
        depends on the class (all-to-all).
    y_true : ndarray of shape (n_samples,)
        A copy of the original labels.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.poisoning import dirty_label_backdoor, pixel_trigger
    >>> X = np.zeros((4, 3, 3, 1), dtype=np.uint8)
    >>> y = np.array([0, 0, 1, 1])
    >>> data = dirty_label_backdoor(
    ...     X, y, pixel_trigger((0, 0), 255), target=1, source=0,
    ...     poison_fraction=0.5, random_state=0,
    ... )
    >>> int(data.is_poison.sum()), int(data.y[data.poison_indices][0])
    (1, 1)
    """

    X: np.ndarray
    y: np.ndarray
    poison_indices: np.ndarray
    trigger: Trigger
    source: object
    target: int | None
    y_true: np.ndarray

    @property
    def is_poison(self):
        """Boolean mask of shape (n_samples,), True on poisoned rows."""
        mask = np.zeros(self.y.shape[0], dtype=bool)
        mask[self.poison_indices] = True
        return mask


def poison_rows(X, y, trigger, indices, new_labels, *, source, target):
    """Trigger and relabel ``indices``; return a PoisonedDataset of new arrays."""
    order = np.argsort(indices, kind="stable")
    indices = np.asarray(indices, dtype=np.int64)[order]
    new_labels = np.asarray(new_labels)[order]
    X_new = X.copy()
    y_new = y.copy()
    if indices.size:
        X_new[indices] = trigger.apply(X[indices])
        y_new[indices] = new_labels
    return PoisonedDataset(
        X=X_new,
        y=y_new,
        poison_indices=indices,
        trigger=trigger,
        source=source,
        target=target,
        y_true=y.copy(),
    )


def poisoned_in_layout(poisoned, grey):
    """A :class:`PoisonedDataset` whose images are in the input's layout."""
    if not grey:
        return poisoned
    return dataclasses.replace(poisoned, X=in_layout(poisoned.X, grey))
