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
all the data). Where a trigger makes no cluster in the representations,
the learner's saliency maps can be clustered the same way
(``IncompatibilityClustering(cluster_features=...)``,
:mod:`sklearn_backdoor.saliency`).

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

A small cohesive cluster is not always poison: a sub-style of a class
(dark cats, say) is one too. Chen et al. confirm a flagged cluster by
exclusionary reclassification: a network trained without it reads the
cluster as its own label if it is legitimate. The other weak learners of
the bag are such networks for free: their core sets hold little of the
poison, so they read most poisoned images as their source class, and most
images of a clean sub-style as their label. So a flagged cluster stands
only if the other learners misread at least ``min_misread`` of its members
(Chen et al.'s threshold of 1 on the ratio of own-label to other-label
readings, for two classes). On the two-class CIFAR-10 tier the clean
core set's learner misread 56-86% of the poisoned images, and 4.7-8.9%
of the clusters the poison-rich learner flagged on 3-to-7 X and 3-to-5
ell, which were 1,152-1,501 clean cats and no poison. Where every learner
of a bag has learned the trigger, none misreads the poison, and a network
trained without every candidate can judge instead
(:func:`confirm_candidates` with its readings,
``IncompatibilityClustering(exclusionary_retraining=True)``).

With more than two classes, a clean sub-style the other learners find hard
is misread too, but spread over several classes, while a poisoned cluster
is read as its one source class. ``min_other_class_ratio`` asks for that:
the single most-read other class must be read more than that many times as
often as the label (:func:`other_class_ratios`; Chen et al.'s ratio of
other-class to own-label readings, whose threshold is 1).
"""

from typing import NamedTuple

import numpy as np
import torch

from sklearn_backdoor.activation_clustering import (
    NO_CLUSTER,
    cluster_each_class,
    flag_clusters,
    kept_by_clusters,
)
from sklearn_backdoor.device_clustering import take_rows
from sklearn_backdoor.docstrings import fill_doc

N_DIMS = 10
SIZE_THRESHOLD = 0.35
SILHOUETTE_THRESHOLD = 0.1
MIN_MISREAD = 0.5


class ClusterFindings(NamedTuple):
    """What :func:`flag_poison_clusters` found in one network's representations.

    Attributes
    ----------
    clusters : ndarray of int, shape (n_samples,)
        Each sample's 2-means cluster (0 or 1) within its class; -1 for
        samples whose representation is not finite.
    candidates : ndarray of bool, shape (n_classes, 2)
        The clusters small and cohesive enough to be poison, before the
        other networks confirm them.
    silhouettes : ndarray of float, shape (n_classes,)
        Each class's silhouette score.
    misread : ndarray of float, shape (n_classes, 2)
        :func:`misread_shares` of the other networks; NaN without them.
    confirmed : ndarray of bool, shape (n_classes, 2)
        The candidates that stood: the clusters flagged.
    """

    clusters: np.ndarray
    candidates: np.ndarray
    silhouettes: np.ndarray
    misread: np.ndarray
    confirmed: np.ndarray


def flag_poison_clusters(
    representations,
    labels,
    random_state,
    *,
    n_dims=N_DIMS,
    size_threshold=SIZE_THRESHOLD,
    silhouette_threshold=SILHOUETTE_THRESHOLD,
    other_predictions=None,
    min_misread=MIN_MISREAD,
    min_other_class_ratio=None,
    other_eligible=None,
    return_findings=False,
):
    """Samples in a small, cohesive 2-means cluster of their class.

    Parameters
    ----------
    representations : ndarray or torch.Tensor of shape (n_samples, n_features)
        One network's representations of every sample, or any other
        per-sample features of it (its saliency maps,
        :func:`~sklearn_backdoor.saliency.input_saliency`). A tensor is
        reduced and scored on its device
        (:mod:`sklearn_backdoor.device_clustering`).
    labels : ndarray of int, shape (n_samples,)
        Encoded labels (0..K-1).
    random_state : int
        Seeds the reduction, the 2-means and the silhouette sample.
    n_dims : int, default=10
        PCA dimensions per class before 2-means (Chen et al.'s 10).
    size_threshold : float, default=0.35
        A cluster holding less than this share of its class may be poison.
    silhouette_threshold : float, default=0.1
        ...if its class's silhouette score exceeds this (a real split)...
    other_predictions : ndarray of int, shape (n_others, n_samples), default=None
        The encoded predictions of other networks (the other weak learners
        of the bag). When given, a cluster is flagged only if...
    min_misread : float, default=0.5
        ...these networks misread at least this share of its members'
        labels (:func:`misread_shares`). Ignored without
        ``other_predictions`` or when 0.
    min_other_class_ratio : float or None, default=None
        ...and, unless None, read their single most-read other class more
        than this many times as often as their label
        (:func:`other_class_ratios`). Ignored without ``other_predictions``.
    other_eligible : ndarray of bool, shape (n_others, n_samples), default=None
        Which of ``other_predictions`` count (those of networks that did not
        train on the sample, say); None counts every one.
    return_findings : bool, default=False
        Whether to return the clusters and their scores as well.

    Returns
    -------
    flagged : ndarray of bool, shape (n_samples,)
        True for the samples of flagged clusters and for samples whose
        representation is not finite (judged the most suspicious, as
        :class:`ActivationClusteringFilter` judges them).
    cohesion : float
        The highest silhouette score of a class with a flagged cluster;
        -inf when no cluster is flagged.
    findings : ClusterFindings
        Only with ``return_findings=True``.
    """
    representations = _as_float64(representations)
    labels = np.asarray(labels, dtype=np.int64)
    finite = _finite_rows(representations)
    flagged = ~finite
    rows = np.flatnonzero(finite)
    class_seeds = [(label, random_state) for label in np.unique(labels[rows])]
    clusters, reduced = cluster_each_class(
        take_rows(representations, rows), labels[rows], class_seeds, n_dims, "pca"
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
    all_clusters = np.full(len(labels), NO_CLUSTER, dtype=np.int64)
    all_clusters[rows] = clusters
    findings = ClusterFindings(
        all_clusters, poison, silhouettes, np.full(poison.shape, np.nan), poison.copy()
    )
    if other_predictions is not None:
        findings = confirm_candidates(
            findings,
            labels,
            other_predictions,
            min_misread,
            min_other_class_ratio,
            eligible=other_eligible,
        )
    flagged, cohesion = flags_of(findings, labels)
    flagged |= ~finite
    if not return_findings:
        return flagged, cohesion
    return flagged, cohesion, findings


def confirm_candidates(
    findings,
    labels,
    predictions,
    min_misread=MIN_MISREAD,
    min_other_class_ratio=None,
    *,
    eligible=None,
):
    """Judge the candidate clusters of ``findings`` by other networks' readings.

    Parameters
    ----------
    findings : ClusterFindings
        What :func:`flag_poison_clusters` found in one network.
    labels : ndarray of int, shape (n_samples,)
        Encoded labels (0..K-1).
    predictions : ndarray of int, shape (n_networks, n_samples)
        The encoded predictions of the networks that judge.
    min_misread : float, default=0.5
        A candidate stands if these networks misread at least this share
        of its members' labels; 0 confirms every candidate.
    min_other_class_ratio : float or None, default=None
        Unless None, a candidate also needs the single other class these
        networks read most among its members to be read more than this many
        times as often as its label (:func:`other_class_ratios`).
    eligible : ndarray of bool, shape (n_networks, n_samples), default=None
        Which readings count: ``eligible[k, i]`` says whether network ``k``
        may judge sample ``i`` (it did not train on it, say); None counts
        every reading. A cluster with no reading that counts stands by
        neither rule.

    Returns
    -------
    findings : ClusterFindings
        ``findings`` with ``misread`` and ``confirmed`` replaced.
    """
    labels = np.asarray(labels, dtype=np.int64)
    rows = findings.clusters != NO_CLUSTER
    clusters = findings.clusters[rows]
    readings = np.asarray(predictions)[:, rows]
    counted = None if eligible is None else np.asarray(eligible, dtype=bool)[:, rows]
    shares = misread_shares(clusters, labels[rows], readings, eligible=counted)
    confirmed = findings.candidates.copy()
    if min_misread > 0:
        confirmed &= shares >= min_misread
    if min_other_class_ratio is not None:
        ratios = other_class_ratios(clusters, labels[rows], readings, eligible=counted)
        confirmed &= ratios > min_other_class_ratio
    return findings._replace(misread=shares, confirmed=confirmed)


def flags_of(findings, labels):
    """The samples of the confirmed clusters of ``findings``, and how cohesive.

    Returns
    -------
    flagged : ndarray of bool, shape (n_samples,)
        Members of a confirmed cluster (samples in no cluster are not).
    cohesion : float
        The highest silhouette score of a class with a confirmed cluster;
        -inf when none is confirmed.
    """
    labels = np.asarray(labels, dtype=np.int64)
    rows = findings.clusters != NO_CLUSTER
    flagged = np.zeros(len(labels), dtype=bool)
    flagged[rows] = ~kept_by_clusters(
        findings.confirmed, labels[rows], findings.clusters[rows]
    )
    with_flags = findings.confirmed.any(axis=1)
    if not with_flags.any():
        return flagged, -np.inf
    return flagged, float(findings.silhouettes[with_flags].max())


def candidate_members(findings, labels):
    """Bool, shape (n_samples,): the samples in a candidate cluster of any of
    ``findings`` (a list of :class:`ClusterFindings` of the same samples),
    confirmed or not."""
    labels = np.asarray(labels, dtype=np.int64)
    members = np.zeros(len(labels), dtype=bool)
    for found in findings:
        rows = found.clusters != NO_CLUSTER
        members[rows] |= found.candidates[labels[rows], found.clusters[rows]]
    return members


def _as_float64(representations):
    if torch.is_tensor(representations):
        return representations.double()
    return np.asarray(representations, dtype=np.float64)


def _finite_rows(representations):
    """Bool array: which rows are finite (an array wherever they are)."""
    if torch.is_tensor(representations):
        return torch.isfinite(representations).all(dim=1).cpu().numpy()
    return np.isfinite(representations).all(axis=1)


@fill_doc
def misread_shares(clusters, labels, predictions, eligible=None):
    """The share of each cluster's readings that miss its members' label.

    Parameters
    ----------
    {{cluster_readings}}

    Returns
    -------
    shares : ndarray of float, shape (n_classes, 2)
        ``shares[c, j]``: among the readings of cluster ``j`` of class
        ``c`` by every network, the share that is not ``c``; NaN for an
        empty cluster, without networks or with no reading that counts.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.cluster_vote import misread_shares
    >>> clusters = np.array([0, 0, 1, 1, 0])
    >>> labels = np.array([0, 0, 0, 0, 1])
    >>> predictions = np.array([[0, 1, 1, 1, 1], [0, 0, 1, 0, 1]])
    >>> misread_shares(clusters, labels, predictions).round(2).tolist()
    [[0.25, 0.75], [0.0, nan]]
    """
    counts, own = _readings_per_cell(clusters, labels, predictions, eligible)
    total = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = (total - own) / total
    return shares.reshape(-1, 2)


@fill_doc
def other_class_ratios(clusters, labels, predictions, eligible=None):
    """How many times more often each cluster is read as one other class
    than as its label.

    Parameters
    ----------
    {{cluster_readings}}

    Returns
    -------
    ratios : ndarray of float, shape (n_classes, 2)
        ``ratios[c, j]``: among the readings of cluster ``j`` of class ``c``
        by every network, the count of the most-read class other than ``c``
        divided by the count of ``c``; ``inf`` when ``c`` is never read and
        another class is, NaN for an empty cluster, without networks or with
        no reading that counts.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.cluster_vote import other_class_ratios
    >>> clusters = np.array([0, 0, 0, 0, 1, 1])
    >>> labels = np.array([0, 0, 0, 0, 0, 0])
    >>> predictions = np.array([[0, 1, 1, 2, 0, 0], [0, 1, 2, 1, 1, 1]])
    >>> other_class_ratios(clusters, labels, predictions).round(2).tolist()
    [[2.0, 1.0]]
    """
    counts, own = _readings_per_cell(clusters, labels, predictions, eligible)
    others = counts.copy()
    cells = np.arange(len(counts))
    others[cells, cells // 2] = 0
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = others.max(axis=1, initial=0) / own
    ratios[counts.sum(axis=1) == 0] = np.nan
    return ratios.reshape(-1, 2)


def _readings_per_cell(clusters, labels, predictions, eligible=None):
    """How often the members of each (class, cluster) cell are read as each
    class, by every network (only where ``eligible``, unless None).

    Returns ``counts`` of shape ``(2 * n_classes, n_read_classes)``, row
    ``2 * c + j`` for cluster ``j`` of class ``c``, and ``own``, each row's
    count of its own class ``c``.
    """
    clusters = np.asarray(clusters, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    n_cells = 2 * (int(labels.max()) + 1) if len(labels) else 0
    n_read = int(max(labels.max(initial=-1), predictions.max(initial=-1))) + 1
    cell = np.broadcast_to(labels * 2 + clusters, predictions.shape).ravel()
    weight = 1 if eligible is None else np.asarray(eligible, dtype=float).ravel()
    counts = np.zeros((n_cells, n_read))
    np.add.at(counts, (cell, predictions.ravel()), weight)
    cells = np.arange(n_cells)
    return counts, counts[cells, cells // 2]


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
