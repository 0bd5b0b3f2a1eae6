"""Activation Clustering: split each class's representations in two and
remove the cluster that looks like poison.

Chen et al., *Detecting Backdoor Attacks on Deep Neural Networks by
Activation Clustering*, 2018 (arXiv:1811.03728). A network trained on
poisoned data represents the poisoned samples of the target class apart from
its clean samples, so 2-means on the (reduced) representations of that class
separates them; the analyses below decide which clusters are poison.
"""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA, FastICA
from sklearn.metrics import silhouette_score
from sklearn.utils._param_validation import Interval, StrOptions
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from sklearn_backdoor.base import BaseSanitizer, NetworkEstimatorMixin
from sklearn_backdoor.device_clustering import (
    clusters_on_device,
    pca_scores,
    silhouette,
    take_rows,
)
from sklearn_backdoor.docstrings import fill_doc
from sklearn_backdoor.representations import RepresentationFilterMixin
from sklearn_backdoor.training import predict_logits, train_net

ANALYSES = ("smaller", "relative-size", "distance", "silhouette-scores")
REDUCTIONS = ("pca", "fastica")
N_CLUSTERS = 2
# The cluster label of a sample whose representation is not finite.
NO_CLUSTER = -1
KMEANS_N_INIT = 10
# Silhouette scores cost O(n^2); larger classes are scored on a sample.
SILHOUETTE_MAX_SAMPLES = 10_000


@fill_doc
class ActivationClusteringFilter(RepresentationFilterMixin, BaseSanitizer):
    """Remove backdoor poison by activation clustering (Chen et al., 2018).

    Trains one network on all the data and reads every sample's
    representation at ``layer``. Within each class the representations are
    reduced to ``n_dims`` dimensions (``reduction``) and split by 2-means;
    ``analysis`` decides which clusters are poison, and their samples are
    removed. Optionally, exclusionary reclassification (``ex_re_threshold``)
    trains a second network without the flagged clusters and clears every
    flagged cluster that this network still assigns to its own class.

    Parameters
    ----------
    {{net}}
    n_dims : int, default=10
        Dimensions the representations of a class are reduced to (ART and
        Chen et al.: 10). Representations with at most ``n_dims`` values are
        clustered as they are; a class with fewer samples is reduced to as
        many dimensions as it has samples.
    reduction : {"pca", "fastica"}, default="pca"
        ``"pca"`` is the default of ART's ``ActivationDefence`` (v1.6.2, the
        version paper 001 ran); Chen et al. use ``"fastica"`` (ART's
        ``max_iter=1000, tol=0.005`` are used).
    analysis : {"relative-size", "smaller", "distance", "silhouette-scores"}, \
default="relative-size"
        How a cluster is judged poison, as in ART's ``ClusteringAnalyzer``:

        - ``"relative-size"``: a cluster holding less than ``size_threshold``
          of its class;
        - ``"smaller"``: the smaller cluster of *every* class (ART's default,
          which paper 001 used; cluster 0 on a tie). It always removes a good
          part of every clean class, hence not the default here;
        - ``"distance"``: a cluster whose median representation is closer to
          another class's median than to its own class's median while the
          other cluster is not;
        - ``"silhouette-scores"``: ``"relative-size"``, but only in classes
          whose clustering has a silhouette score above
          ``silhouette_threshold`` (a real split rather than noise).

        ``"relative-size"`` is the default because it is one of Chen et al.'s
        own criteria and, unlike ``"smaller"``, leaves a class alone unless
        one of its two clusters is small, as the poison of a backdoor is.
    size_threshold : float, default=0.35
        Relative size under which a cluster is poison (ART's 0.35).
    silhouette_threshold : float, default=0.1
        Silhouette score a class must exceed for ``"silhouette-scores"`` to
        flag it (ART's 0.1).
    ex_re_threshold : float or None, default=None
        None skips exclusionary reclassification. Otherwise a flagged
        cluster of class ``c`` is cleared (kept) when the network retrained
        without the flagged clusters predicts ``c`` for more than
        ``ex_re_threshold`` times as many of its samples as the most
        predicted other class, or predicts no other class at all.
    layer : str or None, default=None
        Dotted name of the submodule whose *input* is the representation.
        None uses the network's ``representation_layer``.
    epochs : int, default=40
        Epochs of the network (and of the retrained one). Paper 001 trains
        100 epochs; the clusters only need the backdoor to be learned, which
        happens much earlier, so the default is faster.
    random_state : int, RandomState instance or None, default=None
        Seeds the networks, the reductions and the k-means initialisations.
    {{device}}
    verbose : int, default=0
        Show tqdm progress bars when positive: over the training epochs of
        each network, and over the classes.

    Attributes
    ----------
    mask_ : ndarray of bool, shape (n_samples,)
        True for the samples to keep.
    sample_indices_ : ndarray of int
        Indices of the kept samples.
    scores_ : ndarray of float, shape (n_samples,)
        ``1 - |own cluster| / |own class|``: the share of its class outside
        the sample's cluster. Samples of small clusters score near 1, so the
        score ranks by the relative-size criterion whatever ``analysis``
        decided; the decision itself is ``mask_``. A sample whose
        representation is not finite scores 1, the most suspicious.
    cluster_labels_ : ndarray of int, shape (n_samples,)
        The cluster (0 or 1) of each sample within its class; -1 for a
        sample whose representation is not finite, which is clustered with
        no other and removed.
    cluster_sizes_ : ndarray of int, shape (n_classes, 2)
        Samples in each cluster of each class of ``classes_``.
    poison_clusters_ : ndarray of bool, shape (n_classes, 2)
        The clusters judged poison (after exclusionary reclassification).
    silhouette_scores_ : ndarray of float, shape (n_classes,)
        Silhouette score of each class's clustering; NaN unless ``analysis``
        is ``"silhouette-scores"`` or the score is undefined.
    ex_re_scores_ : ndarray of float, shape (n_classes, 2)
        Own-class over most-predicted-other-class counts of each flagged
        cluster (inf when no other class was predicted); NaN for clusters
        not re-examined. Only set with ``ex_re_threshold``.
    net_ : skorch.NeuralNetClassifier
        The network whose representations were clustered.
    reclassification_net_ : skorch.NeuralNetClassifier or None
        The network retrained for exclusionary reclassification.
    layer_ : str
        The layer whose input was read.
    phase_seconds_ : dict
        Wall-clock seconds of ``"training"``, ``"representations"``,
        ``"clustering"`` and, when it runs, ``"reclassification"``, device
        work included.
    {{network_attributes}}

    Notes
    -----
    ART's ``"distance"`` compares medians of per-class reductions, which live
    in different coordinate systems; here the medians are taken of the
    representations themselves, a space shared by all classes. ART rounds
    relative sizes to two decimals before comparing; here they are compared
    exactly. A class with fewer than two distinct representations is one
    cluster and is never flagged. Samples whose representation is not finite
    are left out of the reduction and the clustering and removed; a class
    without a single finite representation raises ``ValueError`` (the
    network diverged).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.activation_clustering import (
    ...     ActivationClusteringFilter)
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(200, 6).astype(np.float32)
    >>> y = (X[:, 0] > 0.5).astype(int)
    >>> ac = ActivationClusteringFilter(epochs=2, random_state=0).fit(X, y)
    >>> ac.cluster_sizes_.tolist(), int(ac.mask_.sum())
    ([[57, 52], [49, 42]], 200)
    """

    _parameter_constraints: dict = {
        **NetworkEstimatorMixin._parameter_constraints,
        "n_dims": [Interval(Integral, 1, None, closed="left")],
        "reduction": [StrOptions(set(REDUCTIONS))],
        "analysis": [StrOptions(set(ANALYSES))],
        "size_threshold": [Interval(Real, 0, 1, closed="both")],
        "silhouette_threshold": [Interval(Real, -1, 1, closed="both")],
        "ex_re_threshold": [None, Interval(Real, 0, None, closed="neither")],
        "layer": [None, str],
        "epochs": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        net=None,
        *,
        n_dims=10,
        reduction="pca",
        analysis="relative-size",
        size_threshold=0.35,
        silhouette_threshold=0.1,
        ex_re_threshold=None,
        layer=None,
        epochs=40,
        random_state=None,
        device="auto",
        verbose=0,
    ):
        self.net = net
        self.n_dims = n_dims
        self.reduction = reduction
        self.analysis = analysis
        self.size_threshold = size_threshold
        self.silhouette_threshold = silhouette_threshold
        self.ex_re_threshold = ex_re_threshold
        self.layer = layer
        self.epochs = epochs
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def _fit_mask(self, X_t, y_t, rng):
        representations = self._fit_representations(X_t, y_t, rng)
        y = y_t.cpu().numpy()
        finite = self._finite_rows(representations, y)
        representations = representations[torch.as_tensor(finite, device=y_t.device)]
        if not clusters_on_device(X_t):
            representations = representations.numpy()
        clusters = np.full(len(y), NO_CLUSTER, dtype=np.int64)
        with self._phase("clustering"):
            clusters[finite], reduced = self._cluster_classes(
                representations, y[finite], rng
            )
            flagged, self.silhouette_scores_ = flag_clusters(
                clusters[finite],
                y[finite],
                self.analysis,
                size_threshold=self.size_threshold,
                silhouette_threshold=self.silhouette_threshold,
                reduced=reduced,
                representations=representations,
                random_state=rng.randint(np.iinfo(np.int32).max),
            )
        self.reclassification_net_ = None
        if self.ex_re_threshold is not None:
            self.ex_re_scores_ = np.full(flagged.shape, np.nan)
            if flagged.any():
                with self._phase("reclassification"):
                    flagged = self._reclassify(X_t, y_t, y, clusters, flagged, rng)
        self.cluster_labels_ = clusters
        self.cluster_sizes_ = cluster_sizes(clusters, y, len(self.classes_))
        self.poison_clusters_ = flagged
        relative = relative_cluster_sizes(clusters, y, len(self.classes_))
        scores = np.ones(len(y))
        scores[finite] = 1.0 - relative[y[finite], clusters[finite]]
        return kept_by_clusters(flagged, y, clusters), scores

    def _cluster_classes(self, representations, y, rng):
        """2-means of each class's reduced representations, one seed each."""
        class_seeds = [
            (label, rng.randint(np.iinfo(np.int32).max))
            for label in range(len(self.classes_))
        ]
        classes = tqdm(
            class_seeds,
            desc="activation clustering",
            disable=not self.verbose,
            leave=False,
        )
        return cluster_each_class(
            representations, y, classes, self.n_dims, self.reduction
        )

    def _reclassify(self, X_t, y_t, y, clusters, flagged, rng):
        """Exclusionary reclassification; returns the updated flags."""
        keep = kept_by_clusters(flagged, y, clusters)
        index = torch.as_tensor(np.flatnonzero(keep), device=X_t.device)
        net = self._new_net(rng)
        self.reclassification_net_ = train_net(
            net,
            X_t[index],
            y_t[index],
            epochs=self.epochs,
            progress=self._progress("reclassification training"),
        )
        predictions = predict_logits(net, X_t).argmax(dim=1).cpu().numpy()
        flagged, self.ex_re_scores_ = exclusionary_reclassification(
            predictions, y, clusters, flagged, self.ex_re_threshold
        )
        return flagged


def reduce_representations(representations, n_dims, reduction, random_state):
    """Reduce one class's representations to at most ``n_dims`` dimensions.

    Representations with at most ``n_dims`` values are returned as float64
    copies; otherwise ``PCA`` or ``FastICA`` keeps ``min(n_dims, n_samples)``
    components. A torch tensor is reduced by PCA on its device
    (:func:`~sklearn_backdoor.device_clustering.pca_scores`); the result is
    an array either way.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if torch.is_tensor(representations):
        n_samples, n_features = representations.shape
        if reduction == "pca" and n_features > n_dims and n_samples >= 2:
            return pca_scores(representations, min(n_dims, n_samples))
        representations = representations.cpu().numpy()
    representations = np.asarray(representations, dtype=np.float64)
    n_samples, n_features = representations.shape
    if n_features <= n_dims or n_samples < 2:
        return representations.copy()
    n_components = min(n_dims, n_samples)
    if reduction == "pca":
        projector = PCA(n_components=n_components, random_state=random_state)
    else:
        projector = FastICA(
            n_components=n_components,
            whiten="unit-variance",
            max_iter=1000,
            tol=0.005,
            random_state=random_state,
        )
    return projector.fit_transform(representations)


def cluster_each_class(representations, labels, class_seeds, n_dims, reduction):
    """Split each class in two by 2-means of its reduced representations.

    Parameters
    ----------
    representations : ndarray or torch.Tensor of shape (n_samples, n_features)
        Finite representations of the samples; a tensor is reduced on its
        device (see :func:`reduce_representations`).
    labels : ndarray of int, shape (n_samples,)
        Encoded labels.
    class_seeds : iterable of (label, seed)
        The classes to split, each with the seed of its reduction and its
        2-means.
    n_dims : int
        Dimensions kept per class (see :func:`reduce_representations`).
    reduction : {"pca", "fastica"}
        How each class is reduced.

    Returns
    -------
    clusters : ndarray of int, shape (n_samples,)
        0 or 1 within each class; 0 for samples of classes not split.
    reduced : ndarray of shape (n_samples, width)
        Each sample's reduced representation, zero-padded to the widest
        class's width; a float64 tensor on the representations' device
        when they are a tensor, so that :func:`flag_clusters` scores the
        split there.
    """
    clusters = np.zeros(len(labels), dtype=np.int64)
    parts = []
    for label, seed in class_seeds:
        members = np.flatnonzero(labels == label)
        part = reduce_representations(
            take_rows(representations, members), n_dims, reduction, seed
        )
        clusters[members] = two_means(part, seed)
        parts.append((members, part))
    width = max((part.shape[1] for _, part in parts), default=0)
    reduced = np.zeros((len(labels), width))
    for members, part in parts:
        reduced[members, : part.shape[1]] = part
    if torch.is_tensor(representations):
        return clusters, torch.as_tensor(reduced, device=representations.device)
    return clusters, reduced


def two_means(points, random_state):
    """Cluster labels (0/1) of 2-means; all 0 with fewer than two distinct
    points, where a split is meaningless.

    Runs on one thread: 2-means of a class's reduced representations (ten
    values per sample) is small work, and scikit-learn's OpenMP threads
    spin against torch's and against any other busy process. On two busy
    cores, 2-means of ten classes of 5,000 points took 8.8-28.7 s with the
    default threads and 0.54 s on one.
    """
    points = np.asarray(points, dtype=np.float64)
    if len(points) < N_CLUSTERS or len(np.unique(points, axis=0)) < N_CLUSTERS:
        return np.zeros(len(points), dtype=np.int64)
    kmeans = KMeans(
        n_clusters=N_CLUSTERS, n_init=KMEANS_N_INIT, random_state=random_state
    )
    with threadpool_limits(limits=1):
        return kmeans.fit_predict(points).astype(np.int64)


def cluster_sizes(clusters, labels, n_classes):
    """``sizes[c, j]``: samples of class ``c`` in cluster ``j``
    (:data:`NO_CLUSTER` samples are not counted)."""
    clusters, labels = np.asarray(clusters), np.asarray(labels)
    clustered = clusters != NO_CLUSTER
    sizes = np.zeros((n_classes, N_CLUSTERS), dtype=np.int64)
    np.add.at(sizes, (labels[clustered], clusters[clustered]), 1)
    return sizes


def kept_by_clusters(flagged, labels, clusters):
    """Keep-mask: samples in no flagged cluster (:data:`NO_CLUSTER` samples
    are never kept)."""
    clusters, labels = np.asarray(clusters), np.asarray(labels)
    keep = np.zeros(len(labels), dtype=bool)
    clustered = clusters != NO_CLUSTER
    keep[clustered] = ~flagged[labels[clustered], clusters[clustered]]
    return keep


def relative_cluster_sizes(clusters, labels, n_classes):
    """``cluster_sizes`` divided by the class sizes (0 for empty classes)."""
    sizes = cluster_sizes(clusters, labels, n_classes)
    totals = sizes.sum(axis=1, keepdims=True)
    return sizes / np.maximum(totals, 1)


def flag_clusters(
    clusters,
    labels,
    analysis,
    *,
    size_threshold=0.35,
    silhouette_threshold=0.1,
    reduced=None,
    representations=None,
    random_state=None,
):
    """Decide which clusters of which classes are poison.

    Parameters
    ----------
    clusters : array-like of int, shape (n_samples,)
        Cluster (0 or 1) of each sample within its class.
    labels : array-like of int, shape (n_samples,)
        Encoded class (0..K-1) of each sample.
    analysis : {"smaller", "relative-size", "distance", "silhouette-scores"}
        See :class:`ActivationClusteringFilter`.
    size_threshold : float, default=0.35
    silhouette_threshold : float, default=0.1
    reduced : array-like or torch.Tensor of shape (n_samples, n_dims), default=None
        The reduced representations the clusters came from; needed by
        ``"silhouette-scores"``, which scores a tensor on its device
        (:func:`~sklearn_backdoor.device_clustering.silhouette`).
    representations : array-like of shape (n_samples, n_features), default=None
        Needed by ``"distance"``.
    random_state : int or None, default=None
        Draws the sample of classes too large for an exact silhouette score.

    Returns
    -------
    flagged : ndarray of bool, shape (n_classes, 2)
        ``flagged[c, j]``: cluster ``j`` of class ``c`` is poison.
    silhouettes : ndarray of float, shape (n_classes,)
        Silhouette score of each class (NaN unless computed).

    Examples
    --------
    >>> from sklearn_backdoor.activation_clustering import flag_clusters
    >>> clusters = [0, 0, 0, 1, 0, 1, 0, 1]
    >>> labels = [0, 0, 0, 0, 1, 1, 1, 1]
    >>> flag_clusters(clusters, labels, "relative-size")[0].tolist()
    [[False, True], [False, False]]
    >>> flag_clusters(clusters, labels, "smaller")[0].tolist()
    [[False, True], [True, False]]
    """
    clusters = np.asarray(clusters, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if analysis not in ANALYSES:
        raise ValueError(f"analysis must be one of {ANALYSES}, got {analysis!r}")
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    silhouettes = np.full(n_classes, np.nan)
    if analysis == "smaller":
        sizes = cluster_sizes(clusters, labels, n_classes)
        flagged = np.zeros((n_classes, N_CLUSTERS), dtype=bool)
        flagged[np.arange(n_classes), sizes.argmin(axis=1)] = True
        return flagged, silhouettes
    if analysis == "distance":
        if representations is None:
            raise ValueError("analysis='distance' needs representations")
        return _flag_by_distance(clusters, labels, representations), silhouettes
    small = relative_cluster_sizes(clusters, labels, n_classes) < size_threshold
    if analysis == "relative-size":
        return small, silhouettes
    if reduced is None:
        raise ValueError("analysis='silhouette-scores' needs reduced")
    silhouettes = _class_silhouettes(clusters, labels, reduced, random_state)
    cohesive = silhouettes > silhouette_threshold
    return small & cohesive[:, np.newaxis], silhouettes


def _class_silhouettes(clusters, labels, reduced, random_state):
    on_device = torch.is_tensor(reduced)
    if not on_device:
        reduced = np.asarray(reduced, dtype=np.float64)
    n_classes = int(labels.max()) + 1
    silhouettes = np.full(n_classes, np.nan)
    for label in range(n_classes):
        members = labels == label
        class_clusters = clusters[members]
        n_members = int(members.sum())
        # The score is defined for 2 <= distinct clusters <= n_samples - 1.
        if len(np.unique(class_clusters)) < 2 or n_members < 3:
            continue
        score = silhouette if on_device else silhouette_score
        silhouettes[label] = score(
            take_rows(reduced, np.flatnonzero(members)),
            class_clusters,
            sample_size=(
                SILHOUETTE_MAX_SAMPLES if n_members > SILHOUETTE_MAX_SAMPLES else None
            ),
            random_state=random_state,
        )
    return silhouettes


def _flag_by_distance(clusters, labels, representations):
    if torch.is_tensor(representations):
        representations = representations.cpu().numpy()
    representations = np.asarray(representations, dtype=np.float64)
    n_classes = int(labels.max()) + 1
    class_medians = np.stack(
        [
            np.median(representations[labels == label], axis=0)
            if np.any(labels == label)
            else np.full(representations.shape[1], np.nan)
            for label in range(n_classes)
        ]
    )
    flagged = np.zeros((n_classes, N_CLUSTERS), dtype=bool)
    for label in range(n_classes):
        members = labels == label
        medians = [
            np.median(representations[members & (clusters == j)], axis=0)
            for j in range(N_CLUSTERS)
            if np.any(members & (clusters == j))
        ]
        if len(medians) < N_CLUSTERS:
            continue
        own = [np.linalg.norm(m - class_medians[label]) for m in medians]
        for other in range(n_classes):
            if other == label or np.isnan(class_medians[other]).any():
                continue
            to_other = [np.linalg.norm(m - class_medians[other]) for m in medians]
            for j in range(N_CLUSTERS):
                k = 1 - j
                if to_other[j] < own[j] and to_other[k] > own[k]:
                    flagged[label, j] = True
    return flagged


def exclusionary_reclassification(predictions, labels, clusters, flagged, threshold):
    """Clear the flagged clusters that a network trained without them still
    assigns to their own class.

    Parameters
    ----------
    predictions : array-like of int, shape (n_samples,)
        Encoded class predicted for each sample by the retrained network.
    labels, clusters : array-like of int, shape (n_samples,)
        Encoded class and within-class cluster of each sample.
    flagged : ndarray of bool, shape (n_classes, 2)
        Clusters judged poison; not modified.
    threshold : float
        A cluster stays flagged when ``own / other <= threshold``, where
        ``own`` counts its samples predicted as their class and ``other``
        those predicted as the most predicted other class.

    Returns
    -------
    flagged : ndarray of bool, shape (n_classes, 2)
        The updated flags.
    ratios : ndarray of float, shape (n_classes, 2)
        ``own / other`` of each flagged cluster (inf when ``other`` is 0),
        NaN elsewhere.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.activation_clustering import (
    ...     exclusionary_reclassification)
    >>> flags, ratios = exclusionary_reclassification(
    ...     [1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1], [1, 1, 0, 1, 1, 0],
    ...     np.array([[False, True], [False, True]]), threshold=1.0)
    >>> flags.tolist(), ratios[:, 1].tolist()
    ([[False, True], [False, True]], [0.0, 0.0])
    """
    predictions = np.asarray(predictions, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    clusters = np.asarray(clusters, dtype=np.int64)
    flagged = np.array(flagged, dtype=bool)
    ratios = np.full(flagged.shape, np.nan)
    n_outputs = max(flagged.shape[0], int(predictions.max(initial=0)) + 1)
    for label, cluster in zip(*np.nonzero(flagged), strict=True):
        members = (labels == label) & (clusters == cluster)
        if not members.any():
            continue
        counts = np.bincount(predictions[members], minlength=n_outputs)
        own = counts[label]
        counts[label] = -1
        other = counts.max()
        ratios[label, cluster] = np.inf if other <= 0 else own / other
        if other <= 0 or own / other > threshold:
            flagged[label, cluster] = False
    return flagged, ratios
