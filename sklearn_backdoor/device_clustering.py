"""Activation clustering's PCA and silhouette scores, on the features' device.

Activation clustering
(:func:`~sklearn_backdoor.activation_clustering.cluster_each_class`) reduces
each class's features by PCA, splits the class by 2-means and scores
the split by its silhouette. scikit-learn does all three on the CPU, which
is right for arrays. On a GPU, ISPL+B's cluster vote clusters the
representations and the 1,024-position saliency maps of six weak learners
over 50,000 CIFAR-10 images: on an H200 that vote took 124 of the 204
seconds of a scenario (docs/benchmarks.md), the GPU idle while the CPU
decomposed matrices the GPU had just computed. So when the features are a
torch tensor, the two costly steps run there with torch: PCA by the
eigendecomposition of the covariance (scikit-learn's
``svd_solver="covariance_eigh"``, exact), and the silhouette score on the
same random sample of large classes that
:func:`sklearn.metrics.silhouette_score` draws. 2-means stays with
scikit-learn's :class:`~sklearn.cluster.KMeans`, on the reduced features
(ten values per sample). Arrays keep the scikit-learn path unchanged.
"""

import numpy as np
import torch
from sklearn.utils import check_random_state

# Rows of the distance matrix computed at once: 4,096 x 10,000 float64
# values are 330 MB.
DISTANCE_ROWS = 4096


def clusters_on_device(X_t):
    """Whether features computed from ``X_t`` are clustered where they are:
    on a GPU (or any device but the CPU), not on the CPU, where
    scikit-learn's path on arrays is the faster and the reference.

    Examples
    --------
    >>> import torch
    >>> from sklearn_backdoor.device_clustering import clusters_on_device
    >>> clusters_on_device(torch.zeros(2, 3))
    False
    """
    return X_t.device.type != "cpu"


def take_rows(features, index):
    """``features[index]`` for an array, or a tensor on any device.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_backdoor.device_clustering import take_rows
    >>> take_rows(torch.arange(6).reshape(3, 2), np.array([2, 0])).tolist()
    [[4, 5], [0, 1]]
    """
    if torch.is_tensor(features):
        return features[torch.as_tensor(index, device=features.device)]
    return features[index]


def pca_scores(features, n_components):
    """Principal-component scores of ``features``, computed where they are.

    Parameters
    ----------
    features : torch.Tensor of shape (n_samples, n_features)
        Finite features, on any device.
    n_components : int
        Components kept; at most ``min(n_samples, n_features)``.

    Returns
    -------
    scores : ndarray of float64, shape (n_samples, n_components)
        The centred features projected on their top principal components,
        as :meth:`sklearn.decomposition.PCA.fit_transform` returns them,
        each component's sign fixed so that its largest loading is
        positive (scikit-learn's convention).

    Examples
    --------
    >>> import torch
    >>> from sklearn_backdoor.device_clustering import pca_scores
    >>> features = torch.tensor([[0.0, 0.0], [2.0, 0.1], [4.0, 0.0]])
    >>> pca_scores(features, 1).round(2).ravel().tolist()
    [-2.0, 0.0, 2.0]
    """
    n_samples, n_features = features.shape
    if not 0 < n_components <= min(n_samples, n_features):
        raise ValueError(
            f"n_components must be in [1, {min(n_samples, n_features)}], "
            f"got {n_components}"
        )
    centred = features.double() - features.double().mean(dim=0, keepdim=True)
    if n_features <= n_samples:
        _, vectors = torch.linalg.eigh(centred.T @ centred)
        components = vectors[:, -n_components:].flip(1)
    else:
        # Fewer samples than features: the Gram matrix is the smaller one.
        _, vectors = torch.linalg.eigh(centred @ centred.T)
        components = centred.T @ vectors[:, -n_components:].flip(1)
        norms = torch.linalg.vector_norm(components, dim=0)
        components = components / torch.where(norms > 0, norms, 1.0)
    largest = components.abs().argmax(dim=0)
    columns = torch.arange(n_components, device=components.device)
    signs = torch.sign(components[largest, columns])
    components = components * torch.where(signs == 0, 1.0, signs)
    return (centred @ components).cpu().numpy()


def silhouette(points, clusters, *, sample_size=None, random_state=None):
    """Mean silhouette coefficient of ``clusters``, computed where ``points`` are.

    The same value as :func:`sklearn.metrics.silhouette_score` with the
    Euclidean metric, including the sample it draws when ``sample_size`` is
    given, up to floating-point rounding.

    Parameters
    ----------
    points : torch.Tensor of shape (n_samples, n_features)
        On any device.
    clusters : array-like of int, shape (n_samples,)
        Each sample's cluster; 2 to n_samples - 1 distinct values.
    sample_size : int or None, default=None
        Score a random sample of this many points.
    random_state : int, RandomState or None, default=None
        Draws the sample.

    Returns
    -------
    score : float

    Examples
    --------
    >>> import torch
    >>> from sklearn_backdoor.device_clustering import silhouette
    >>> points = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
    >>> round(silhouette(points, [0, 0, 1, 1]), 3)
    0.9
    """
    clusters = np.asarray(clusters)
    if sample_size is not None:
        sample = check_random_state(random_state).permutation(len(points))
        sample = sample[:sample_size]
        points, clusters = take_rows(points, sample), clusters[sample]
    # Numbered 0..k-1 after the sample, as scikit-learn numbers them.
    clusters = np.unique(clusters, return_inverse=True)[1].ravel()
    n_clusters = int(clusters.max()) + 1 if len(clusters) else 0
    if not 2 <= n_clusters <= len(clusters) - 1:
        raise ValueError(
            f"Number of labels is {n_clusters}. Valid values are 2 to "
            "n_samples - 1 (inclusive)"
        )
    points = points.double()
    members = torch.as_tensor(clusters, device=points.device)
    one_hot = torch.nn.functional.one_hot(members, n_clusters).double()
    sizes = one_hot.sum(dim=0)
    coefficients = []
    for start in range(0, len(points), DISTANCE_ROWS):
        rows = slice(start, start + DISTANCE_ROWS)
        distances = torch.cdist(
            points[rows], points, compute_mode="donot_use_mm_for_euclid_dist"
        )
        coefficients.append(_coefficients(distances @ one_hot, members[rows], sizes))
    return float(torch.cat(coefficients).mean())


def _coefficients(cluster_sums, members, sizes):
    """Silhouette coefficients of rows whose summed distances to each
    cluster are ``cluster_sums``; 0 for members of one-point clusters."""
    own = members.unsqueeze(1)
    within = cluster_sums.gather(1, own).squeeze(1) / (sizes[members] - 1)
    means = cluster_sums / sizes
    nearest = means.scatter(1, own, float("inf")).min(dim=1).values
    coefficients = (nearest - within) / torch.maximum(within, nearest)
    return torch.nan_to_num(coefficients, nan=0.0)
