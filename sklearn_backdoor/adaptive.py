"""The adaptive attacker of paper 001 (App. D.2.3).

ISPL+B works when ISPL puts the poison into few of its core sets. An attacker
who knows the defense can run ISPL, with the defender's parameters, on the
clean data first and then poison an equal share of the source class inside
every part of the partition it found, hoping that ISPL finds a similar
partition on the poisoned data and so spreads the poison over many core sets.

Nothing in this module modifies its inputs.
"""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params

from sklearn_backdoor.contract import BackdoorWarning
from sklearn_backdoor.incompatibility import IncompatibilityClustering
from sklearn_backdoor.poisoning.checks import check_attack_data, check_class
from sklearn_backdoor.poisoning.dataset import poison_rows
from sklearn_backdoor.poisoning.sampling import rounded_count, split_total
from sklearn_backdoor.poisoning.triggers import Trigger

__all__ = ["adaptive_backdoor", "ispl_partition", "poison_partition"]

_ATTACK_CONSTRAINTS = {
    "X": ["array-like"],
    "y": ["array-like"],
    "trigger": [Trigger],
    "target": [Integral],
    "source": [Integral],
    "poison_fraction": [Interval(Real, 0, 1, closed="right")],
    "random_state": ["random_state"],
}


@validate_params(
    {
        "clustering": [IncompatibilityClustering],
        "X": ["array-like"],
        "y": ["array-like"],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=False,
)
def ispl_partition(clustering, X, y, *, random_state=None):
    """Partition a data set as one ISPL run of the defender would.

    A clone of ``clustering`` with ``n_bags=1`` (one ISPL run) is fitted on
    ``(X, y)``. Its core sets are disjoint; the samples left in none of them
    form the last part. Self-training is switched off and the weak learners
    get one epoch each: neither changes the core sets, which are found before
    the weak learner of each is trained and from random draws the weak
    learners do not consume.

    Parameters
    ----------
    clustering : IncompatibilityClustering
        The defender's estimator (fitted or not; it is left unchanged).
    X : array-like of shape (n_samples, ...)
        Clean training data.
    y : array-like of shape (n_samples,)
        Clean labels.
    random_state : int, RandomState instance or None, default=None
        Seeds the ISPL run when ``clustering.random_state`` is None; a set
        ``clustering.random_state`` is kept.

    Returns
    -------
    partition : list of ndarray of int64
        The core sets in the order found, then the leftover (possibly empty):
        disjoint, sorted indices that together cover ``range(n_samples)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor import IncompatibilityClustering
    >>> from sklearn_backdoor.adaptive import ispl_partition
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(100, 6).astype(np.float32)
    >>> y = (X[:, 0] > 0.5).astype(int)
    >>> ic = IncompatibilityClustering(n_components=2, warmup_epochs=1,
    ...     epochs_per_iteration=1, random_state=0)
    >>> parts = ispl_partition(ic, X, y)
    >>> len(parts), sum(len(part) for part in parts)
    (3, 100)
    """
    ispl = clone(clustering).set_params(
        n_bags=1, self_training=False, weak_learner_epochs=1
    )
    if ispl.random_state is None:
        rng = check_random_state(random_state)
        ispl.set_params(random_state=int(rng.randint(np.iinfo(np.int32).max)))
    with warnings.catch_warnings():
        # The vote of one-epoch weak learners is not used, nor is its verdict.
        warnings.filterwarnings(
            "ignore", message=".* kept none of the", category=BackdoorWarning
        )
        components = ispl.fit(X, y).components_
    n_samples = len(ispl.mask_)
    leftover = np.ones(n_samples, dtype=bool)
    for core in components:
        leftover[core] = False
    return [np.sort(core).astype(np.int64) for core in components] + [
        np.flatnonzero(leftover).astype(np.int64)
    ]


@validate_params(
    {**_ATTACK_CONSTRAINTS, "partition": [list, tuple]},
    prefer_skip_nested_validation=True,
)
def poison_partition(
    X, y, trigger, partition, *, target, source, poison_fraction=0.1, random_state=None
):
    """Dirty-label poison an equal share of the source class in every part.

    ``max(1, round(poison_fraction * n_source))`` source-class samples in
    all are split over the parts in proportion to the number of source-class
    samples each holds (largest remainders first), so every part gets
    ``poison_fraction`` of its source-class samples up to rounding; each
    part's share is chosen uniformly without replacement, gets the trigger and
    the label ``target``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, height, width, channels)
        Training images; left unchanged.
    y : ndarray of shape (n_samples,)
        Integer labels; left unchanged.
    trigger : Trigger
        Trigger stamped on the poisoned images.
    partition : sequence of array-like of int
        Disjoint index sets that together cover ``range(n_samples)``, such as
        :func:`ispl_partition` returns.
    target : int
        Label given to the poisoned samples.
    source : int
        The attacked class.
    poison_fraction : float, default=0.1
        Fraction in (0, 1] of the source class to poison.
    random_state : int, RandomState instance or None, default=None
        Controls which samples are poisoned.

    Returns
    -------
    poisoned : PoisonedDataset

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.adaptive import poison_partition
    >>> from sklearn_backdoor.poisoning import pixel_trigger
    >>> X = np.zeros((40, 4, 4, 1), dtype=np.uint8)
    >>> y = np.repeat([0, 1], 20)
    >>> parts = [np.arange(0, 40, 2), np.arange(1, 40, 2)]
    >>> data = poison_partition(X, y, pixel_trigger((0, 0), 255), parts,
    ...     target=1, source=0, poison_fraction=0.4, random_state=0)
    >>> [int(np.isin(data.poison_indices, part).sum()) for part in parts]
    [4, 4]
    """
    X, y = check_attack_data(X, y)
    parts = _check_partition(partition, len(y))
    target, source = _check_target_and_source(y, target, source)
    rng = check_random_state(random_state)
    in_source = [part[y[part] == source] for part in parts]
    sizes = np.array([len(members) for members in in_source])
    counts = split_total(rounded_count(poison_fraction, sizes.sum()), sizes)
    indices = np.concatenate(
        [
            rng.choice(members, size=count, replace=False)
            for members, count in zip(in_source, counts, strict=True)
        ]
    )
    return poison_rows(
        X,
        y,
        trigger,
        indices,
        np.full(indices.size, target),
        source=source,
        target=target,
    )


def _check_target_and_source(y, target, source):
    classes = [int(c) for c in np.unique(y)]
    target = check_class(target, classes, "target")
    source = check_class(source, classes, "source")
    if source == target:
        raise ValueError(f"source must differ from target, got {source}")
    return target, source


def _check_partition(partition, n_samples):
    """Return the parts as int64 arrays; they must split ``range(n_samples)``."""
    parts = [np.asarray(part).reshape(-1) for part in partition]
    if not parts or any(
        part.size and not np.issubdtype(part.dtype, np.integer) for part in parts
    ):
        raise ValueError("partition must be a non-empty sequence of index arrays")
    parts = [part.astype(np.int64) for part in parts]
    covered = np.sort(np.concatenate(parts))
    if not np.array_equal(covered, np.arange(n_samples)):
        raise ValueError(
            f"partition must split the {n_samples} samples into disjoint parts "
            "that together hold every index once"
        )
    return parts


@validate_params(
    {**_ATTACK_CONSTRAINTS, "clustering": [IncompatibilityClustering]},
    prefer_skip_nested_validation=False,
)
def adaptive_backdoor(
    X,
    y,
    trigger,
    *,
    clustering,
    target,
    source,
    poison_fraction=0.1,
    random_state=None,
):
    """The adaptive dirty-label attack of paper 001 App. D.2.3.

    Runs ISPL with the defender's parameters on the clean data
    (:func:`ispl_partition`), then poisons ``poison_fraction`` of the source
    class inside each part of that partition (:func:`poison_partition`): the
    paper's "random select a eps fraction from each partition to poison".

    Parameters
    ----------
    X : ndarray of shape (n_samples, height, width, channels)
        Clean training images; left unchanged.
    y : ndarray of shape (n_samples,)
        Clean integer labels; left unchanged.
    trigger : Trigger
        Trigger stamped on the poisoned images.
    clustering : IncompatibilityClustering
        The defender's estimator, whose parameters the attacker copies; left
        unchanged.
    target : int
        Label given to the poisoned samples.
    source : int
        The attacked class.
    poison_fraction : float, default=0.1
        Fraction in (0, 1] of the source class to poison.
    random_state : int, RandomState instance or None, default=None
        Seeds the ISPL run (unless ``clustering.random_state`` is set) and
        chooses the poisoned samples.

    Returns
    -------
    poisoned : PoisonedDataset
    partition : list of ndarray of int64
        The attacker's partition: ISPL's core sets, then the leftover.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor import IncompatibilityClustering
    >>> from sklearn_backdoor.adaptive import adaptive_backdoor
    >>> from sklearn_backdoor.poisoning import pixel_trigger
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randint(0, 256, size=(120, 4, 4, 1)).astype(np.uint8)
    >>> y = np.repeat([0, 1, 2], 40)
    >>> ic = IncompatibilityClustering(n_components=2, warmup_epochs=1,
    ...     epochs_per_iteration=1)
    >>> data, parts = adaptive_backdoor(X, y, pixel_trigger((0, 0), 255),
    ...     clustering=ic, target=2, source=0, poison_fraction=0.25,
    ...     random_state=0)
    >>> len(parts), len(data.poison_indices)
    (3, 10)
    """
    X, y = check_attack_data(X, y)
    _check_target_and_source(y, target, source)
    rng = check_random_state(random_state)
    partition = ispl_partition(clustering, X, y, random_state=rng)
    poisoned = poison_partition(
        X,
        y,
        trigger,
        partition,
        target=target,
        source=source,
        poison_fraction=poison_fraction,
        random_state=rng,
    )
    return poisoned, partition
