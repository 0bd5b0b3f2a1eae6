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

Which core set is poison-rich is not known in advance: on the two-class
CIFAR-10 tier ISPL put the X trigger of 3-to-7 in a bag's first core set
and the pixel triggers of 7-to-4 and 2-to-5 in the second, with the images
near the class boundary, so neither the order nor the other learners'
errors tell it. So every weak learner's representations are clustered
(:func:`flag_poison_clusters`: each class split by 2-means, as
:class:`ActivationClusteringFilter` does, a cluster under
``size_threshold`` of its class flagged in a class whose silhouette score
exceeds ``silhouette_threshold``), and in each bag the learner whose flagged
cluster is the most cohesive (:func:`most_cohesive`) decides. (On 3-to-7
X, the clean core set's learner split the two classes 45/55 and 48/52 and
flagged nothing.)
"""

import numpy as np

from sklearn_backdoor.activation_clustering import (
    cluster_each_class,
    flag_clusters,
    kept_by_clusters,
)

N_DIMS = 10
SIZE_THRESHOLD = 0.35
SILHOUETTE_THRESHOLD = 0.1


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
    cohesion : float
        The highest silhouette score of a class with a flagged cluster;
        -inf when no cluster is flagged.
    """
    representations = np.asarray(representations, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    finite = np.isfinite(representations).all(axis=1)
    flagged = ~finite
    rows = np.flatnonzero(finite)
    class_seeds = [(label, random_state) for label in np.unique(labels[rows])]
    clusters, reduced = cluster_each_class(
        representations[rows], labels[rows], class_seeds, n_dims, "pca"
    )
    poison, silhouettes = flag_clusters(
        clusters,
        labels[rows],
        "silhouette-scores",
        size_threshold=size_threshold,
        silhouette_threshold=silhouette_threshold,
        reduced=reduced,
        random_state=random_state,
    )
    flagged[rows] = ~kept_by_clusters(poison, labels[rows], clusters)
    with_flags = poison.any(axis=1)
    cohesion = float(silhouettes[with_flags].max()) if with_flags.any() else -np.inf
    return flagged, cohesion


def most_cohesive(candidates):
    """The flags of the candidate whose flagged cluster is the most cohesive.

    Parameters
    ----------
    candidates : list of (flagged, cohesion)
        What :func:`flag_poison_clusters` returned for each weak learner of
        one bag.

    Returns
    -------
    index : int
        The chosen candidate; -1 when none flagged a cluster.
    flagged : ndarray of bool
        Its flags; none when no candidate flagged a cluster (samples whose
        representation is not finite stay flagged).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.cluster_vote import most_cohesive
    >>> a = (np.array([True, False, False]), 0.2)
    >>> b = (np.array([False, True, True]), 0.6)
    >>> index, flagged = most_cohesive([a, b])
    >>> index, flagged.tolist()
    (1, [False, True, True])
    """
    cohesions = [cohesion for _, cohesion in candidates]
    index = int(np.argmax(cohesions))
    if cohesions[index] == -np.inf:
        unflagged = np.logical_and.reduce([flagged for flagged, _ in candidates])
        return -1, unflagged
    return index, candidates[index][0]
