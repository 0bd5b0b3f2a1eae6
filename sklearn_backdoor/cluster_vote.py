"""ISPL+B's cluster vote: the poison found in the poison-rich learner's features.

Not in the papers. ISPL (paper 001, Algorithm 1) gathers the poison of a bag
into one core set, whose weak learner therefore learns the trigger; paper
001's vote then asks the *other* learners whether a sample's label is right,
and on classes a small network tells apart badly it removes the clean images
near the class boundary along with the poison (docs/benchmarks.md). The
cluster vote asks the poison-rich learner instead: in its representations,
the samples that carry the trigger form a small, cohesive cluster of the
target class (Chen et al.'s activation clustering, applied to the network of
the core set where the poison is concentrated rather than to one trained on
all the data).

- :func:`poison_rich_components` picks, in each bag, the core set whose
  samples the bag's other weak learners misread most often: the poison is
  incompatible with the clean core sets, the clean samples are not
  incompatible with the poison-rich one.
- :func:`flag_poison_clusters` splits each class of that learner's
  representations by 2-means, as :class:`ActivationClusteringFilter` does,
  and flags a cluster under ``size_threshold`` of its class in a class whose
  silhouette score exceeds ``silhouette_threshold``.
"""

import numpy as np

from sklearn_backdoor.activation_clustering import (
    flag_clusters,
    kept_by_clusters,
    reduce_representations,
    two_means,
)

N_DIMS = 10
SIZE_THRESHOLD = 0.35
SILHOUETTE_THRESHOLD = 0.1


def poison_rich_components(votes, labels, components, component_bags):
    """In each bag, the core set its other weak learners misread most.

    Parameters
    ----------
    votes : ndarray of int, shape (n_learners, n_samples)
        Encoded class each weak learner predicts for each sample; learner
        ``i`` is the learner of core set ``components[i]``.
    labels : ndarray of int, shape (n_samples,)
        Encoded labels.
    components : list of ndarray of int
        The core sets' sample indices.
    component_bags : ndarray of int, shape (n_learners,)
        The bag of each core set.

    Returns
    -------
    rich : ndarray of int, shape (n_bags,)
        For each bag (in increasing order of bag number), the index into
        ``components`` of its poison-rich core set.
    errors : ndarray of float, shape (n_learners,)
        Share of each core set's samples that the other learners of its bag
        misread (-inf for an empty core set, which is never picked).

    Raises
    ------
    ValueError
        If a bag has fewer than two core sets: nothing else can judge them.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.cluster_vote import poison_rich_components
    >>> labels = np.array([0, 1, 0, 1])
    >>> votes = np.array([[0, 1, 1, 0], [0, 1, 0, 1]])
    >>> rich, errors = poison_rich_components(
    ...     votes, labels, [np.array([0, 1]), np.array([2, 3])], np.array([0, 0])
    ... )
    >>> rich.tolist(), errors.tolist()
    ([1], [0.0, 1.0])
    """
    component_bags = np.asarray(component_bags)
    learners = np.arange(len(components))
    errors = np.full(len(components), -np.inf)
    for index, (core, bag) in enumerate(zip(components, component_bags, strict=True)):
        others = learners[(component_bags == bag) & (learners != index)]
        if len(others) == 0:
            raise ValueError(
                f"the cluster vote needs at least two core sets per bag; bag "
                f"{int(bag)} has one (raise n_components or lower "
                "component_fraction)"
            )
        if len(core):
            errors[index] = float(np.mean(votes[others][:, core] != labels[core]))
    rich = [
        learners[component_bags == bag][np.argmax(errors[component_bags == bag])]
        for bag in np.unique(component_bags)
    ]
    return np.array(rich, dtype=np.int64), errors


def flag_poison_clusters(
    representations,
    labels,
    random_state,
    *,
    n_dims=N_DIMS,
    size_threshold=SIZE_THRESHOLD,
    silhouette_threshold=SILHOUETTE_THRESHOLD,
):
    """Samples in a small, cohesive 2-means cluster of their class.

    Parameters
    ----------
    representations : ndarray of shape (n_samples, n_features)
        One network's representations of every sample.
    labels : ndarray of int, shape (n_samples,)
        Encoded labels (0..K-1).
    random_state : int
        Seeds the reduction, the 2-means and the silhouette sample.
    n_dims : int, default=10
        PCA dimensions per class before 2-means (Chen et al.'s 10).
    size_threshold : float, default=0.35
        A cluster holding less than this share of its class may be poison.
    silhouette_threshold : float, default=0.1
        ...if its class's silhouette score exceeds this (a real split).

    Returns
    -------
    flagged : ndarray of bool, shape (n_samples,)
        True for the samples of flagged clusters and for samples whose
        representation is not finite (judged the most suspicious, as
        :class:`ActivationClusteringFilter` judges them).
    """
    representations = np.asarray(representations, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    finite = np.isfinite(representations).all(axis=1)
    flagged = ~finite
    rows = np.flatnonzero(finite)
    clusters = np.zeros(len(rows), dtype=np.int64)
    reduced = np.zeros((len(rows), n_dims))
    for label in np.unique(labels[rows]):
        members = np.flatnonzero(labels[rows] == label)
        part = reduce_representations(
            representations[rows[members]], n_dims, "pca", random_state
        )
        clusters[members] = two_means(part, random_state)
        reduced[members, : part.shape[1]] = part
    poison, _ = flag_clusters(
        clusters,
        labels[rows],
        "silhouette-scores",
        size_threshold=size_threshold,
        silhouette_threshold=silhouette_threshold,
        reduced=reduced,
        random_state=random_state,
    )
    flagged[rows] = ~kept_by_clusters(poison, labels[rows], clusters)
    return flagged
