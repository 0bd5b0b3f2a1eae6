import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sklearn_backdoor import IncompatibilityClustering
from sklearn_backdoor.cluster_vote import ClusterFindings
from sklearn_backdoor.pasted_pixels import confirm_pasted, pasted_values


def _class_with_a_pasted_pixel(n=100, n_pasted=20, seed=0):
    """Random 3x4x4 images; the first ``n_pasted`` carry one pixel of one
    colour at (1, 2)."""
    rng = np.random.RandomState(seed)
    X = torch.from_numpy(rng.rand(n, 3, 4, 4).astype(np.float32))
    X[:n_pasted, :, 1, 2] = torch.tensor([0.2, 0.7, 0.4])
    return X


def test_the_pasted_pixel_is_found_in_each_channel_and_nowhere_else():
    X = _class_with_a_pasted_pixel()
    pasted = pasted_values(X, np.arange(20), np.arange(20, 100))
    expected = np.zeros((3, 4, 4), dtype=bool)
    expected[:, 1, 2] = True
    np.testing.assert_array_equal(pasted, expected.ravel())


def test_a_cluster_that_only_looks_alike_carries_nothing():
    X = _class_with_a_pasted_pixel()
    X[20:40] = X[20:40] * 0.2  # twenty dark images: alike, not equal
    assert not pasted_values(X, np.arange(20, 40), np.arange(40, 100)).any()


def test_a_value_the_rest_of_the_class_shares_is_not_pasted():
    X = _class_with_a_pasted_pixel()
    X[:, :, 0, 0] = 1.0  # saturated everywhere
    X[40:, :, 1, 2] = torch.tensor([0.2, 0.7, 0.4])  # most of the class too
    assert not pasted_values(X, np.arange(20), np.arange(20, 100)).any()


def test_shares_decide_how_many_members_must_carry_it():
    X = _class_with_a_pasted_pixel(n_pasted=20)
    members = np.arange(25)  # 20 of 25 carry it: 80%
    assert not pasted_values(X, members, np.arange(25, 100)).any()
    assert pasted_values(X, members, np.arange(25, 100), min_share=0.8).sum() == 3


def test_no_members_or_no_others_carry_nothing():
    X = _class_with_a_pasted_pixel()
    empty = np.array([], dtype=int)
    assert not pasted_values(X, empty, np.arange(100)).any()
    assert not pasted_values(X, np.arange(100), empty).any()


def _findings(clusters, candidates):
    n_classes = candidates.shape[0]
    return ClusterFindings(
        clusters,
        candidates,
        np.zeros(n_classes),
        np.zeros(candidates.shape),
        np.zeros(candidates.shape, dtype=bool),
    )


def test_confirm_pasted_confirms_only_the_candidate_that_carries_the_trigger():
    X = torch.cat([_class_with_a_pasted_pixel(), _class_with_a_pasted_pixel(seed=1)])
    labels = np.repeat([0, 1], 100)
    clusters = np.ones(200, dtype=int)
    clusters[:20] = 0  # class 0: the triggered images
    clusters[100:130] = 0  # class 1: thirty of its images, triggered or not
    candidates = np.array([[True, False], [True, False]])
    found = confirm_pasted(_findings(clusters, candidates), X, labels)
    np.testing.assert_array_equal(found.confirmed, [[True, False], [False, False]])
    np.testing.assert_array_equal(found.candidates, candidates)  # unchanged


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), min_values=st.integers(1, 6))
def test_confirmed_is_a_subset_of_candidates(seed, min_values):
    rng = np.random.RandomState(seed)
    X = torch.from_numpy(rng.randint(0, 3, (60, 1, 3, 3)).astype(np.float32))
    labels = rng.randint(0, 3, 60)
    clusters = rng.randint(-1, 2, 60)
    candidates = rng.rand(3, 2) < 0.5
    found = confirm_pasted(
        _findings(clusters, candidates), X, labels, min_values=min_values
    )
    assert not (found.confirmed & ~candidates).any()


def test_only_bags_that_confirmed_nothing_are_judged_by_their_pixels():
    X = torch.cat([_class_with_a_pasted_pixel(), _class_with_a_pasted_pixel(seed=1)])
    labels = np.repeat([0, 1], 100)
    clusters = np.ones(200, dtype=int)
    clusters[:20] = 0
    trigger = np.array([[True, False], [False, False]])
    none = np.zeros((2, 2), dtype=bool)
    est = IncompatibilityClustering()
    est.component_bags_ = np.array([0, 0, 1, 1])
    est.pasted_judged_bags_ = np.zeros(2, dtype=bool)
    confirmed_elsewhere = _findings(clusters, trigger)._replace(confirmed=trigger)
    findings = [
        {"representations": confirmed_elsewhere},
        {"representations": _findings(clusters, none)},
        {"representations": _findings(clusters, trigger)},
        {"saliency": _findings(clusters, none)},
    ]
    judged = est._confirm_pasted_in_unconfirmed_bags(X, labels, findings)
    np.testing.assert_array_equal(est.pasted_judged_bags_, [False, True])
    assert judged[0]["representations"] is confirmed_elsewhere
    np.testing.assert_array_equal(judged[2]["representations"].confirmed, trigger)
    assert not judged[3]["saliency"].confirmed.any()


def test_a_fit_with_confirm_pasted_records_the_bags_it_judged():
    rng = np.random.RandomState(0)
    y = np.arange(80) % 2
    X = (rng.rand(80, 8, 8, 1) * 100).astype(np.uint8)
    X[y == 1, 2:6, 2:6] += 120
    params = dict(
        n_components=2,
        n_bags=2,
        warmup_epochs=1,
        epochs_per_iteration=1,
        weak_learner_epochs=1,
        vote="clusters",
        min_votes=1,
        self_training=False,
        random_state=0,
        device="cpu",
    )
    plain = IncompatibilityClustering(**params).fit(X, y)
    checked = IncompatibilityClustering(confirm_pasted=True, **params).fit(X, y)
    assert checked.pasted_judged_bags_.shape == (2,)
    assert not plain.pasted_judged_bags_.any()
    if not checked.pasted_judged_bags_.any():
        np.testing.assert_array_equal(checked.mask_, plain.mask_)
