import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_backdoor.activation_clustering import (
    ActivationClusteringFilter,
    cluster_each_class,
    cluster_sizes,
    exclusionary_reclassification,
    flag_clusters,
    reduce_representations,
    two_means,
)

SETTINGS = settings(max_examples=30, deadline=None)


# ---------------------------------------------------------------------------
# Pure functions: the definition of the method
# ---------------------------------------------------------------------------


@st.composite
def two_blobs(draw, min_small_share=0.0, min_big=10):
    """One class: a big blob and a small blob far apart along a random
    direction. Returns the points and the small blob's mask."""
    rng = np.random.RandomState(draw(st.integers(0, 2**31 - 1)))
    n_features = draw(st.integers(2, 24))
    n_big = draw(st.integers(min_big, 60))
    n_small = draw(st.integers(max(2, int(min_small_share * n_big) + 1), n_big))
    points = rng.uniform(-1, 1, size=(n_big + n_small, n_features))
    direction = rng.normal(size=n_features)
    points[n_big:] += 30 * np.sqrt(n_features) * direction / np.linalg.norm(direction)
    small = np.arange(n_big + n_small) >= n_big
    order = rng.permutation(len(points))
    return points[order], small[order]


def _recovered(clusters, truth):
    return np.array_equal(clusters == 1, truth) or np.array_equal(clusters == 0, truth)


@SETTINGS
@given(two_blobs(), st.integers(0, 100))
def test_two_means_separates_well_separated_blobs_after_pca(blobs, seed):
    points, small = blobs
    reduced = reduce_representations(points, 10, "pca", seed)
    assert reduced.shape == (len(points), min(10, points.shape[1]))
    assert _recovered(two_means(reduced, seed), small)


@SETTINGS
@given(two_blobs(min_small_share=0.25, min_big=30), st.integers(0, 100))
def test_two_means_separates_well_separated_blobs_after_fastica(blobs, seed):
    # FastICA whitens every component to unit variance, so with few samples
    # many noise components can outweigh the separating one; two components
    # leave one of each. Whitening also shrinks a tiny blob's lead: 2 of 20
    # points sit only ~3 units away, and k-means++ then misses them for some
    # seeds (a local optimum), hence the minimum share here. With a dozen
    # points, single points are as non-Gaussian as the blob, and FastICA can
    # split the small blob over both components (3 of 13 points, found by
    # hypothesis), hence at least 30 points in the big blob: activation
    # clustering sees hundreds of samples per class.
    points, small = blobs
    reduced = reduce_representations(points, 2, "fastica", seed)
    assert reduced.shape == (len(points), 2)
    assert _recovered(two_means(reduced, seed), small)


@SETTINGS
@given(two_blobs(), st.floats(0.05, 0.6))
def test_relative_size_flags_only_a_small_enough_cluster(blobs, threshold):
    points, small = blobs
    clusters = two_means(reduce_representations(points, 10, "pca", 0), 0)
    labels = np.zeros(len(points), dtype=int)
    flagged, _ = flag_clusters(
        clusters, labels, "relative-size", size_threshold=threshold
    )
    small_cluster = clusters[small][0]
    small_share = small.mean()
    assert flagged[0, small_cluster] == (small_share < threshold)
    assert flagged[0, 1 - small_cluster] == (1 - small_share < threshold)


@SETTINGS
@given(two_blobs())
def test_smaller_flags_the_smaller_cluster_of_every_class(blobs):
    points, small = blobs
    clusters = two_means(reduce_representations(points, 10, "pca", 0), 0)
    # The same class twice: both get their smaller cluster flagged.
    clusters2 = np.concatenate([clusters, clusters])
    labels = np.repeat([0, 1], len(points))
    flagged, _ = flag_clusters(clusters2, labels, "smaller")
    small_cluster = clusters[small][0]
    if small.mean() < 0.5:
        assert flagged[:, small_cluster].all()
        assert not flagged[:, 1 - small_cluster].any()
    assert flagged.sum() == 2


@SETTINGS
@given(two_blobs())
def test_silhouette_flags_small_cluster_of_a_real_split_only(blobs):
    points, small = blobs
    reduced = reduce_representations(points, 10, "pca", 0)
    clusters = two_means(reduced, 0)
    labels = np.zeros(len(points), dtype=int)
    flagged, silhouettes = flag_clusters(
        clusters, labels, "silhouette-scores", reduced=reduced, size_threshold=0.35
    )
    # Far-apart blobs have a silhouette score close to 1.
    assert silhouettes[0] > 0.9
    expected, _ = flag_clusters(clusters, labels, "relative-size")
    np.testing.assert_array_equal(flagged, expected)
    strict, _ = flag_clusters(
        clusters, labels, "silhouette-scores", reduced=reduced, silhouette_threshold=1
    )
    assert not strict.any()


@SETTINGS
@given(st.integers(0, 2**31 - 1), st.integers(3, 8), st.integers(2, 6))
def test_distance_flags_the_cluster_sitting_on_another_class(seed, n_features, k):
    rng = np.random.RandomState(seed)
    n_clean, n_poison, n_other = 30, k, 30
    centre_a = np.zeros(n_features)
    centre_b = np.full(n_features, 20.0)
    reps = np.concatenate(
        [
            centre_a + rng.uniform(-1, 1, (n_clean, n_features)),
            # Poison labelled 0 that looks like class 1.
            centre_b + rng.uniform(-1, 1, (n_poison, n_features)),
            centre_b + rng.uniform(-1, 1, (n_other, n_features)),
        ]
    )
    labels = np.repeat([0, 0, 1], [n_clean, n_poison, n_other])
    clusters = np.zeros(len(labels), dtype=int)
    for label in (0, 1):
        members = labels == label
        clusters[members] = two_means(reps[members], 0)
    flagged, _ = flag_clusters(clusters, labels, "distance", representations=reps)
    poison_cluster = clusters[n_clean]
    assert flagged.tolist()[0] == [poison_cluster == 0, poison_cluster == 1]
    assert not flagged[1].any()


def test_flag_clusters_concrete_values():
    clusters = [0, 0, 0, 1, 0, 1, 0, 1]
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    flagged, silhouettes = flag_clusters(clusters, labels, "relative-size")
    assert flagged.tolist() == [[False, True], [False, False]]
    assert np.isnan(silhouettes).all()
    # Ties go to cluster 0.
    assert flag_clusters(clusters, labels, "smaller")[0].tolist() == [
        [False, True],
        [True, False],
    ]
    assert cluster_sizes(clusters, labels, 2).tolist() == [[3, 1], [2, 2]]
    with pytest.raises(ValueError, match="analysis must be one of"):
        flag_clusters(clusters, labels, "largest")
    with pytest.raises(ValueError, match="needs representations"):
        flag_clusters(clusters, labels, "distance")


def test_cluster_each_class_splits_only_the_listed_classes():
    # Class 0: 6 points near the origin and 3 far away; class 1 is not listed.
    representations = np.zeros((12, 3))
    representations[6:9] = [10.0, 0.0, 0.0]
    representations[9:] = [[5.0, 5.0, 5.0], [-5.0, 0.0, 1.0], [0.0, 7.0, 0.0]]
    representations[:6] += np.arange(6)[:, None] * 0.01
    labels = np.array([0] * 9 + [1] * 3)
    clusters, reduced = cluster_each_class(
        representations, labels, [(0, 0)], n_dims=2, reduction="pca"
    )
    assert len(set(clusters[:6])) == 1 and len(set(clusters[6:9])) == 1
    assert clusters[0] != clusters[6]
    assert clusters[9:].tolist() == [0, 0, 0]
    assert reduced.shape == (12, 2) and not reduced[9:].any()


def test_one_cluster_classes_are_never_split():
    assert two_means(np.ones((5, 3)), 0).tolist() == [0] * 5
    assert two_means(np.ones((1, 3)), 0).tolist() == [0]
    # An empty second cluster is "smaller" but holds nobody.
    flagged, _ = flag_clusters([0, 0, 0], [0, 0, 0], "smaller")
    assert flagged.tolist() == [[False, True]]


def test_exclusionary_reclassification_concrete_values():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    clusters = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    flagged = np.array([[False, True], [False, True]])
    # Class 0's flagged samples are predicted as class 1 (poison: stays);
    # class 1's are predicted 1, 1 (legitimate: cleared).
    predictions = np.array([0, 0, 1, 1, 1, 1, 1, 1])
    new_flags, ratios = exclusionary_reclassification(
        predictions, labels, clusters, flagged, threshold=1.0
    )
    assert new_flags.tolist() == [[False, True], [False, False]]
    assert ratios[0, 1] == 0.0 and ratios[1, 1] == np.inf
    assert np.isnan(ratios[:, 0]).all()
    assert flagged.tolist() == [[False, True], [False, True]]
    # 2 own vs 1 other: cleared at threshold 1, kept at threshold 2.
    predictions = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    labels2 = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    clusters2 = np.array([0, 0, 1, 1, 1, 0, 0, 0])
    flags1, ratios1 = exclusionary_reclassification(
        predictions, labels2, clusters2, np.array([[False, True], [False, False]]), 1.0
    )
    flags2, _ = exclusionary_reclassification(
        predictions, labels2, clusters2, np.array([[False, True], [False, False]]), 2.0
    )
    assert ratios1[0, 1] == 2.0
    assert not flags1.any()
    assert flags2[0, 1]


# ---------------------------------------------------------------------------
# The estimator
# ---------------------------------------------------------------------------


def _tiny_data():
    rng = np.random.RandomState(0)
    X = rng.rand(120, 5).astype(np.float32)
    y = np.repeat([3, 5, 7], 40)
    return X, y


def _consistent(ac, y):
    encoded = np.searchsorted(ac.classes_, y)
    np.testing.assert_array_equal(
        ac.mask_, ~ac.poison_clusters_[encoded, ac.cluster_labels_]
    )
    np.testing.assert_array_equal(
        ac.cluster_sizes_, cluster_sizes(ac.cluster_labels_, encoded, 3)
    )


@pytest.mark.parametrize(
    "analysis", ["relative-size", "smaller", "distance", "silhouette-scores"]
)
def test_fit_gives_a_valid_mask(analysis):
    X, y = _tiny_data()
    X_before, y_before = X.copy(), y.copy()
    ac = ActivationClusteringFilter(
        analysis=analysis, epochs=1, random_state=0, device="cpu"
    ).fit(X, y)
    assert ac.mask_.dtype == bool and ac.mask_.shape == (120,)
    assert ac.poison_clusters_.shape == (3, 2)
    assert ac.cluster_sizes_.sum(axis=1).tolist() == [40, 40, 40]
    assert ac.scores_.shape == (120,)
    assert ((ac.scores_ >= 0) & (ac.scores_ <= 1)).all()
    assert ac.layer_ == "head"
    _consistent(ac, y)
    if analysis == "smaller":
        assert ac.poison_clusters_.sum(axis=1).tolist() == [1, 1, 1]
    if analysis == "silhouette-scores":
        assert np.isfinite(ac.silhouette_scores_).all()
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(y, y_before)


# FastICA on 40 samples of an untrained network need not converge.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_exclusionary_reclassification_in_fit():
    X, y = _tiny_data()
    ac = ActivationClusteringFilter(
        analysis="smaller",
        ex_re_threshold=1.0,
        reduction="fastica",
        epochs=1,
        random_state=0,
        device="cpu",
    ).fit(X, y)
    assert ac.reclassification_net_ is not None
    assert ac.ex_re_scores_.shape == (3, 2)
    # Every class had a flagged cluster, so each got a ratio.
    assert (np.isfinite(ac.ex_re_scores_) | np.isposinf(ac.ex_re_scores_)).sum() == 3
    _consistent(ac, y)


def test_fit_is_deterministic_under_random_state():
    X, y = _tiny_data()
    kwargs = dict(analysis="smaller", epochs=1, random_state=2, device="cpu")
    first = ActivationClusteringFilter(**kwargs).fit(X, y)
    second = ActivationClusteringFilter(**kwargs).fit(X, y)
    np.testing.assert_array_equal(first.mask_, second.mask_)
    np.testing.assert_array_equal(first.cluster_labels_, second.cluster_labels_)


@pytest.mark.parametrize(
    "params, name",
    [
        ({"analysis": "largest"}, "analysis"),
        ({"reduction": "tsne"}, "reduction"),
        ({"n_dims": 0}, "n_dims"),
        ({"size_threshold": 2.0}, "size_threshold"),
        ({"ex_re_threshold": 0.0}, "ex_re_threshold"),
        ({"epochs": 0}, "epochs"),
    ],
)
def test_invalid_parameters_are_named(params, name):
    X, y = _tiny_data()
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter"):
        ActivationClusteringFilter(**params).fit(X, y)


def test_unknown_layer_is_named():
    X, y = _tiny_data()
    with pytest.raises(ValueError, match="layer='nope'"):
        ActivationClusteringFilter(layer="nope", epochs=1, device="cpu").fit(X, y)


# ---------------------------------------------------------------------------
# A user run on digits with the default parameters
# ---------------------------------------------------------------------------


def test_digits_user_run_with_defaults(poisoned_digits):
    data = poisoned_digits
    start = time.perf_counter()
    ac = ActivationClusteringFilter(random_state=0).fit(data.X, data.y)
    print(f"ActivationClusteringFilter digits fit: {time.perf_counter() - start:.1f} s")
    assert ac.mask_.dtype == bool and ac.mask_.shape == (1797,)
    assert ac.cluster_sizes_.sum() == 1797
    _consistent_digits = ~ac.poison_clusters_[data.y, ac.cluster_labels_]
    np.testing.assert_array_equal(ac.mask_, _consistent_digits)
    print(
        f"ActivationClusteringFilter removed {(~ac.mask_).sum()} samples, "
        f"{(~ac.mask_[data.poison_indices]).sum()} of {len(data.poison_indices)} "
        "poisoned; flagged clusters per class "
        f"{ac.poison_clusters_.sum(axis=1).tolist()}"
    )


def test_two_means_runs_on_one_thread_and_splits_as_kmeans_does(monkeypatch):
    """2-means is small work: its thread pools are held to one thread (they
    spin against torch's on a busy CPU), which changes no cluster."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_info

    rng = np.random.RandomState(0)
    points = np.vstack([rng.normal(size=(300, 10)), rng.normal(4.0, 1.0, (60, 10))])
    expected = KMeans(2, n_init=10, random_state=3).fit_predict(points)
    seen = []
    fit_predict = KMeans.fit_predict

    def recording(self, X, *args, **kwargs):
        seen.extend(pool["num_threads"] for pool in threadpool_info())
        return fit_predict(self, X, *args, **kwargs)

    monkeypatch.setattr(KMeans, "fit_predict", recording)
    clusters = two_means(points, 3)
    assert seen and set(seen) == {1}
    np.testing.assert_array_equal(clusters, expected)
