"""The torch path of activation clustering agrees with scikit-learn's.

Run here on CPU tensors: the code is the one a GPU runs
(tests/test_gpu.py repeats the comparison on CUDA).
"""

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score

import sklearn_backdoor.activation_clustering as activation_clustering
import sklearn_backdoor.incompatibility as incompatibility
from sklearn_backdoor import ActivationClusteringFilter, IncompatibilityClustering
from sklearn_backdoor.activation_clustering import cluster_each_class, flag_clusters
from sklearn_backdoor.cluster_vote import flag_poison_clusters
from sklearn_backdoor.device_clustering import pca_scores, silhouette, take_rows
from sklearn_backdoor.poisoning import PatchTrigger, dirty_label_backdoor
from sklearn_backdoor.saliency import input_saliency, normalised_maps
from sklearn_backdoor.training import FastNeuralNetClassifier


def _structured(n_samples, n_features, seed):
    """Points whose principal axes have well-separated variances."""
    rng = np.random.RandomState(seed)
    scales = 2.0 ** -np.arange(n_features)
    rotation = np.linalg.qr(rng.normal(size=(n_features, n_features)))[0]
    return (rng.normal(size=(n_samples, n_features)) * scales) @ rotation + 3.0


@pytest.mark.parametrize(("n_samples", "n_features"), [(200, 12), (8, 12)])
def test_pca_scores_are_scikit_learns_with_its_sign_convention(n_samples, n_features):
    """Both branches (covariance, and Gram with fewer samples than
    features) give scikit-learn's exact PCA scores, signs included."""
    X = _structured(n_samples, n_features, seed=n_samples)
    expected = PCA(4, svd_solver="full").fit_transform(X)
    scores = pca_scores(torch.as_tensor(X), 4)
    assert scores.dtype == np.float64 and scores.shape == (n_samples, 4)
    np.testing.assert_allclose(scores, expected, atol=1e-8)


def test_pca_scores_leave_the_features_as_they_were():
    features = torch.as_tensor(_structured(50, 6, seed=1), dtype=torch.float32)
    before = features.clone()
    pca_scores(features, 2)
    assert torch.equal(features, before)


@pytest.mark.parametrize("n_components", [0, 7])
def test_pca_scores_name_a_component_count_out_of_range(n_components):
    with pytest.raises(ValueError, match=rf"n_components .* got {n_components}"):
        pca_scores(torch.ones(6, 4), n_components)


@settings(max_examples=25, deadline=None)
@given(
    n_samples=st.integers(4, 60),
    n_clusters=st.integers(2, 3),
    sample=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_silhouette_is_scikit_learns(n_samples, n_clusters, sample, seed):
    """The same score, with the same sample drawn by the same seed; a
    one-point cluster scores 0 as scikit-learn scores it."""
    rng = np.random.RandomState(seed)
    points = rng.normal(size=(n_samples, 3))
    clusters = rng.randint(0, n_clusters, n_samples)
    clusters[:n_clusters] = np.arange(n_clusters)
    sample_size = n_samples - 1 if sample else None
    drawn = np.random.RandomState(seed).permutation(n_samples)[:sample_size]
    assume(2 <= len(np.unique(clusters[drawn])) <= len(drawn) - 1)
    expected = silhouette_score(
        points, clusters, sample_size=sample_size, random_state=seed
    )
    score = silhouette(
        torch.as_tensor(points), clusters, sample_size=sample_size, random_state=seed
    )
    assert score == pytest.approx(expected, abs=1e-12)


def test_silhouette_scores_in_chunks_as_in_one_piece(monkeypatch):
    import sklearn_backdoor.device_clustering as device_clustering

    points = torch.as_tensor(_structured(50, 3, seed=2))
    clusters = (points[:, 0] > points[:, 0].median()).long().numpy()
    whole = silhouette(points, clusters)
    monkeypatch.setattr(device_clustering, "DISTANCE_ROWS", 7)
    assert silhouette(points, clusters) == pytest.approx(whole, abs=1e-12)


def test_silhouette_needs_two_clusters_and_not_one_per_point():
    with pytest.raises(ValueError, match="Number of labels is 1"):
        silhouette(torch.zeros(4, 2), [0, 0, 0, 0])
    with pytest.raises(ValueError, match="Number of labels is 3"):
        silhouette(torch.zeros(3, 2), [0, 1, 2])


def test_take_rows_of_an_array_and_a_tensor_agree():
    X = np.arange(12.0).reshape(6, 2)
    rows = np.array([4, 1, 1])
    np.testing.assert_array_equal(take_rows(torch.as_tensor(X), rows).numpy(), X[rows])


def _planted(seed=0, n_clean=200, n_poison=40):
    """Class 1 holds a far, tight cluster; class 0 is one blob."""
    rng = np.random.RandomState(seed)
    clean = rng.normal(size=(2 * n_clean, 20))
    poison = rng.normal(loc=8.0, scale=0.1, size=(n_poison, 20))
    labels = np.r_[np.zeros(n_clean), np.ones(n_clean + n_poison)].astype(int)
    return np.vstack([clean, poison]), labels


def test_a_tensor_is_clustered_as_its_array_is():
    """Same 2-means clusters; the reduced features stay a tensor, so that
    the silhouette scores are computed beside them, and agree."""
    X, labels = _planted()
    seeds = [(0, 11), (1, 12)]
    clusters, reduced = cluster_each_class(X, labels, seeds, 10, "pca")
    t_clusters, t_reduced = cluster_each_class(
        torch.as_tensor(X, dtype=torch.float32), labels, seeds, 10, "pca"
    )
    assert torch.is_tensor(t_reduced) and t_reduced.dtype == torch.float64
    agree = (clusters == t_clusters).mean()
    assert agree in (0.0, 1.0)  # the same split, its two halves maybe swapped
    args = dict(analysis="silhouette-scores", random_state=0)
    flagged, silhouettes = flag_clusters(clusters, labels, reduced=reduced, **args)
    t_flagged, t_silhouettes = flag_clusters(
        t_clusters, labels, reduced=t_reduced, **args
    )
    np.testing.assert_allclose(t_silhouettes, silhouettes, atol=1e-5)
    assert (
        t_flagged.any(axis=1).tolist()
        == flagged.any(axis=1).tolist()
        == [
            False,
            True,
        ]
    )


@pytest.mark.parametrize("other_reads_it_as_source", [False, True])
def test_the_cluster_vote_flags_the_same_samples_from_a_tensor(
    other_reads_it_as_source,
):
    X, labels = _planted(seed=3)
    other = labels.copy()
    if other_reads_it_as_source:
        other[-40:] = 0
    X[5, 3] = np.nan  # a non-finite row is flagged on either path
    kwargs = dict(other_predictions=other[np.newaxis], return_findings=True)
    flagged, cohesion, findings = flag_poison_clusters(X, labels, 0, **kwargs)
    t_flagged, t_cohesion, t_findings = flag_poison_clusters(
        torch.as_tensor(X), labels, 0, **kwargs
    )
    np.testing.assert_array_equal(t_flagged, flagged)
    assert t_flagged[-40:].all() == other_reads_it_as_source
    assert t_flagged[5] and t_flagged.sum() == 1 + 40 * other_reads_it_as_source
    assert t_cohesion == pytest.approx(cohesion, abs=1e-6)
    np.testing.assert_allclose(t_findings.silhouettes, findings.silhouettes, atol=1e-6)


def test_maps_of_a_tensor_are_the_maps_of_its_array():
    attributions = torch.randn(5, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    attributions[2] = 0.0
    maps = normalised_maps(attributions)
    assert torch.is_tensor(maps) and maps.dtype == torch.float64
    np.testing.assert_allclose(maps.numpy(), normalised_maps(attributions.numpy()))
    assert maps[2].abs().sum() == 0


def test_saliency_as_a_tensor_is_the_array_on_the_inputs_device():
    from sklearn_backdoor.networks import MLP

    net = FastNeuralNetClassifier(
        MLP,
        module__n_features=6,
        module__n_classes=3,
        module__hidden=(8,),
        random_state=0,
    ).initialize()
    X = torch.randn(9, 6, generator=torch.Generator().manual_seed(1))
    y = np.arange(9) % 3
    maps = input_saliency(net, X, y, batch_size=4, as_tensor=True)
    assert torch.is_tensor(maps) and maps.device == X.device
    np.testing.assert_allclose(maps.numpy(), input_saliency(net, X, y), atol=1e-12)
    empty = input_saliency(net, X[:0], y[:0], as_tensor=True)
    assert torch.is_tensor(empty) and empty.shape == (0, 6)


def _poisoned_small_images(n, seed, poison_fraction):
    """Random 8x8 images of three classes, class 0 poisoned to 1 with a
    corner trigger."""
    rng = np.random.RandomState(seed)
    X = rng.randint(0, 256, (n, 8, 8, 1)).astype(np.uint8)
    y = rng.randint(0, 3, n)
    trigger = PatchTrigger(pixels=((0, 0), (0, 1), (1, 0)), color=255)
    return dirty_label_backdoor(
        X,
        y,
        trigger,
        source=0,
        target=1,
        poison_fraction=poison_fraction,
        random_state=0,
    )


def test_the_cluster_vote_decides_alike_on_the_device_path(monkeypatch):
    """IncompatibilityClustering's GPU path (features kept as tensors where
    the learners computed them), run here on CPU tensors, flags what the
    array path flags."""
    poisoned = _poisoned_small_images(160, seed=0, poison_fraction=0.2)
    params = dict(
        n_components=2,
        n_bags=2,
        warmup_epochs=1,
        epochs_per_iteration=1,
        weak_learner_epochs=2,
        self_training=False,
        vote="clusters",
        cluster_features="both",
        min_votes=1,
        device="cpu",
        random_state=0,
    )
    arrays = IncompatibilityClustering(**params).fit(poisoned.X, poisoned.y)
    kinds = []
    flag = incompatibility.flag_poison_clusters

    def recording(features, *args, **kwargs):
        kinds.append(torch.is_tensor(features))
        return flag(features, *args, **kwargs)

    monkeypatch.setattr(incompatibility, "clusters_on_device", lambda X_t: True)
    monkeypatch.setattr(incompatibility, "flag_poison_clusters", recording)
    tensors = IncompatibilityClustering(**params).fit(poisoned.X, poisoned.y)
    assert kinds == [True] * 8  # four learners, two kinds of features each
    np.testing.assert_array_equal(tensors.cluster_flags_, arrays.cluster_flags_)
    np.testing.assert_array_equal(tensors.mask_, arrays.mask_)
    assert tensors.poison_rich_features_.tolist() == (
        arrays.poison_rich_features_.tolist()
    )
    np.testing.assert_allclose(
        tensors.cluster_cohesion_, arrays.cluster_cohesion_, atol=1e-9
    )


@pytest.mark.parametrize("analysis", ["smaller", "silhouette-scores", "distance"])
def test_activation_clustering_decides_alike_on_the_device_path(monkeypatch, analysis):
    """ActivationClusteringFilter's GPU path (representations reduced and
    scored as tensors), run here on CPU tensors, removes what the array
    path removes."""
    poisoned = _poisoned_small_images(150, seed=1, poison_fraction=0.3)
    params = dict(analysis=analysis, epochs=3, device="cpu", random_state=0)
    arrays = ActivationClusteringFilter(**params).fit(poisoned.X, poisoned.y)
    monkeypatch.setattr(activation_clustering, "clusters_on_device", lambda X_t: True)
    tensors = ActivationClusteringFilter(**params).fit(poisoned.X, poisoned.y)
    np.testing.assert_array_equal(tensors.cluster_labels_, arrays.cluster_labels_)
    np.testing.assert_array_equal(tensors.mask_, arrays.mask_)
    np.testing.assert_allclose(
        tensors.silhouette_scores_, arrays.silhouette_scores_, atol=1e-9
    )
    if analysis == "smaller":
        assert (~arrays.mask_).any()
    if analysis == "silhouette-scores":
        assert np.isfinite(arrays.silhouette_scores_).all()
