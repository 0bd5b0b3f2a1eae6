import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sklearn_backdoor import IncompatibilityClustering
from sklearn_backdoor.cluster_vote import flag_poison_clusters, poison_rich_components


def test_poison_rich_core_set_is_the_one_the_other_learners_misread():
    """Two bags of two core sets: in bag 0 the learner of core set 0 misreads
    core set 1, in bag 1 the learner of core set 3 misreads core set 2."""
    labels = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    components = [np.arange(4), np.arange(4, 8), np.arange(4, 8), np.arange(4)]
    votes = np.stack(
        [
            [0, 0, 1, 1, 1, 1, 0, 1],  # learner of core set 0: 3 of 4 wrong
            [0, 0, 1, 0, 0, 0, 1, 1],  # learner of core set 1: 1 of 4 wrong
            [0, 1, 1, 1, 0, 0, 1, 1],  # learner of core set 2: 1 of 4 wrong
            [0, 0, 1, 1, 1, 0, 0, 0],  # learner of core set 3: 3 of 4 wrong
        ]
    )
    rich, errors = poison_rich_components(votes, labels, components, [0, 0, 1, 1])
    assert rich.tolist() == [1, 2]
    np.testing.assert_allclose(errors, [0.25, 0.75, 0.75, 0.25])


def test_a_bag_of_one_core_set_cannot_pick():
    with pytest.raises(ValueError, match="bag 1 has one"):
        poison_rich_components(
            np.zeros((3, 4), dtype=int),
            np.zeros(4, dtype=int),
            [np.array([0, 1]), np.array([2, 3]), np.array([0])],
            [0, 0, 1],
        )


def test_an_empty_core_set_is_never_picked():
    rich, errors = poison_rich_components(
        np.array([[1, 1, 1], [1, 1, 1]]),
        np.array([0, 0, 0]),
        [np.array([0, 1, 2]), np.array([], dtype=int)],
        [0, 0],
    )
    assert rich.tolist() == [0]
    assert errors[1] == -np.inf


@settings(max_examples=15, deadline=None)
@given(
    n_poison=st.integers(20, 60),
    n_clean=st.integers(200, 300),
    seed=st.integers(0, 2**16),
)
def test_a_small_tight_cluster_of_one_class_is_flagged(n_poison, n_clean, seed):
    """Class 1 holds a far, tight cluster (the trigger's feature): exactly its
    samples are flagged; class 0, one Gaussian blob, loses nothing."""
    rng = np.random.RandomState(seed)
    clean = rng.normal(size=(2 * n_clean, 20))
    poison = rng.normal(loc=8.0, scale=0.1, size=(n_poison, 20))
    representations = np.vstack([clean, poison])
    labels = np.r_[np.zeros(n_clean), np.ones(n_clean + n_poison)].astype(int)
    before = representations.copy()
    flagged = flag_poison_clusters(representations, labels, random_state=0)
    expected = np.r_[np.zeros(2 * n_clean, dtype=bool), np.ones(n_poison, dtype=bool)]
    np.testing.assert_array_equal(flagged, expected)
    np.testing.assert_array_equal(representations, before)


def test_non_finite_representations_are_flagged():
    """Each class is two equal clusters (neither flagged); only the two
    samples without a finite representation are."""
    rng = np.random.RandomState(0)
    centres = np.repeat(np.array([[0.0], [10.0], [20.0], [30.0]]), 25, axis=0)
    representations = centres + rng.normal(scale=0.1, size=(100, 5))
    representations[3, 2] = np.nan
    representations[7, 0] = np.inf
    flagged = flag_poison_clusters(
        representations, np.r_[np.zeros(50), np.ones(50)].astype(int), 0
    )
    assert flagged[[3, 7]].all()
    assert flagged.sum() == 2


def _small_images(n=160, seed=0):
    rng = np.random.RandomState(seed)
    return rng.randint(0, 256, (n, 8, 8, 1)).astype(np.uint8), rng.randint(0, 3, n)


TINY_CLUSTERS = {
    "n_components": 2,
    "n_bags": 2,
    "warmup_epochs": 1,
    "epochs_per_iteration": 1,
    "weak_learner_epochs": 2,
    "self_training": False,
    "vote": "clusters",
    "device": "cpu",
}


def test_cluster_vote_removes_what_enough_bags_flag():
    X, y = _small_images()
    ic = IncompatibilityClustering(random_state=0, min_votes=1, **TINY_CLUSTERS)
    ic.fit(X, y)
    assert ic.cluster_flags_.shape == (2, 160)
    assert ic.poison_rich_components_.shape == (2,)
    np.testing.assert_array_equal(
        ic.component_bags_[ic.poison_rich_components_], [0, 1]
    )
    np.testing.assert_array_equal(ic.boosting_mask_, ~ic.cluster_flags_.any(axis=0))
    np.testing.assert_array_equal(ic.mask_, ic.boosting_mask_)
    both = IncompatibilityClustering(random_state=0, min_votes=2, **TINY_CLUSTERS)
    both.fit(X, y)
    np.testing.assert_array_equal(both.mask_, ~ic.cluster_flags_.all(axis=0))


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_components": 1}, "n_components=1"),
        ({"vote_rounds": 2}, "vote_rounds=2"),
        ({"min_votes": 3}, "min_votes=3"),
        ({"vote": "majority"}, "vote"),
    ],
)
def test_cluster_vote_refuses_settings_it_cannot_honour(params, match):
    X, y = _small_images(40)
    with pytest.raises(ValueError, match=match):
        IncompatibilityClustering(**{**TINY_CLUSTERS, **params}).fit(X, y)
