import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_backdoor.compatibility import (
    compatibility_gap,
    sample_per_class,
    self_expansion_error,
)

SETTINGS = settings(max_examples=40, deadline=None)
TRAINING = {"epochs": 10, "net": "mlp", "device": "cpu", "random_state": 0}
CLEAN = np.arange(120)
OTHER = np.arange(120, 240)


@pytest.fixture(scope="module")
def blobs():
    """Two well separated classes; the second half's labels can be flipped."""
    rng = np.random.RandomState(0)
    y = np.tile([0, 1], 120)
    X = (rng.randn(240, 5) + 3 * y[:, None]).astype(np.float32)
    y_flipped = y.copy()
    y_flipped[OTHER] = 1 - y[OTHER]
    return X, y, y_flipped


def test_flipped_labels_raise_the_expansion_error_of_the_clean_set(blobs):
    X, y, y_flipped = blobs
    compatible = self_expansion_error(X, y, CLEAN, given=OTHER, **TRAINING)
    flipped = self_expansion_error(X, y_flipped, CLEAN, given=OTHER, **TRAINING)
    assert compatible.error < 0.1
    assert flipped.error > compatible.error + 0.15


def test_the_gap_is_positive_only_for_incompatible_data(blobs):
    X, y, y_flipped = blobs
    compatible = compatibility_gap(X, y, CLEAN, OTHER, n_repeats=2, **TRAINING)
    flipped = compatibility_gap(X, y_flipped, CLEAN, OTHER, n_repeats=2, **TRAINING)
    assert flipped.gap > 0.15
    assert compatible.gap < 0.05
    assert flipped.gap == pytest.approx(flipped.given.error - flipped.alone.error)
    assert flipped.alone.error < 0.1
    assert flipped.given.repeat_errors.shape == (2,)


def test_groups_are_scored_by_the_same_networks(blobs):
    X, _, y_flipped = blobs
    groups = {
        "clean": CLEAN,
        "even": CLEAN[CLEAN % 2 == 0],
        "odd": CLEAN[CLEAN % 2 == 1],
        "poison": np.arange(240) >= 120,
    }
    result = self_expansion_error(
        X,
        y_flipped,
        CLEAN,
        given=OTHER,
        groups=groups,
        n_repeats=2,
        **TRAINING,
    )
    assert result.group_errors["clean"] == pytest.approx(result.error)
    halves = (result.group_errors["even"] + result.group_errors["odd"]) / 2
    assert halves == pytest.approx(result.error)
    assert result.group_errors["poison"] > 0.2
    again = self_expansion_error(
        X,
        y_flipped,
        CLEAN,
        given=OTHER,
        groups=groups,
        n_repeats=2,
        **TRAINING,
    )
    np.testing.assert_array_equal(result.repeat_errors, again.repeat_errors)
    assert result.group_errors == again.group_errors


def test_works_on_images_with_a_boolean_subset():
    rng = np.random.RandomState(0)
    y = np.repeat([0, 1], 40)
    X = rng.randint(0, 60, size=(80, 8, 8, 1)).astype(np.uint8)
    X[y == 1, :4] += 150
    result = self_expansion_error(X, y, y >= 0, expansion=0.25, **TRAINING)
    assert result.error < 0.1


@st.composite
def labels_and_pool(draw):
    n = draw(st.integers(1, 60))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 4, size=n)
    pool = np.flatnonzero(rng.rand(n) < 0.7)
    return y, pool


@SETTINGS
@given(data=labels_and_pool(), fraction=st.floats(0.01, 1.0), seed=st.integers(0, 99))
def test_sample_per_class_draws_the_rounded_up_fraction_of_each_class(
    data, fraction, seed
):
    y, pool = data
    sample = sample_per_class(pool, y, fraction, random_state=seed)
    assert np.all(np.diff(sample) > 0)
    assert set(sample) <= set(pool)
    for label in np.unique(y[pool]):
        members = np.sum(y[pool] == label)
        assert np.sum(y[sample] == label) == int(np.ceil(fraction * members))
    np.testing.assert_array_equal(
        sample, sample_per_class(pool, y, fraction, random_state=seed)
    )


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"subset": []}, ValueError, "subset must hold at least one sample"),
        ({"subset": [0, 240]}, ValueError, r"subset must hold indices in \[0, 240\)"),
        ({"subset": [1, 1]}, ValueError, "subset must not repeat an index"),
        ({"subset": [[1, 2]]}, ValueError, "subset must be a 1-d array"),
        ({"given": np.ones(3, bool)}, ValueError, "given as a boolean mask"),
        ({"groups": {"p": [-1]}}, ValueError, r"groups\['p'\] must hold indices"),
        ({"groups": [1]}, InvalidParameterError, "'groups' parameter"),
        ({"expansion": 0.0}, InvalidParameterError, "'expansion' parameter"),
        ({"n_repeats": 0}, InvalidParameterError, "'n_repeats' parameter"),
    ],
)
def test_parameters_are_validated_by_name(blobs, kwargs, error, match):
    X, y, _ = blobs
    kwargs = {"subset": CLEAN, **TRAINING, **kwargs}
    with pytest.raises(error, match=match):
        self_expansion_error(X, y, **kwargs)
