import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_backdoor.spectral_signatures import (
    SpectralSignatureFilter,
    removal_count,
    removal_fraction,
    select_top_fraction_per_class,
    spectral_scores,
)

SETTINGS = settings(max_examples=40, deadline=None)


# ---------------------------------------------------------------------------
# Pure functions: the definition of the method
# ---------------------------------------------------------------------------


@st.composite
def shifted_classes(draw):
    """Classes of uniform noise; in class 0 a few rows are shifted far along
    one direction (the poison). Returns reps, labels, poison mask, fraction."""
    rng = np.random.RandomState(draw(st.integers(0, 2**31 - 1)))
    n_dims = draw(st.integers(2, 8))
    sizes = draw(st.lists(st.integers(12, 40), min_size=1, max_size=3))
    fraction = draw(st.sampled_from([0.1, 0.15, 0.2, 0.3]))
    n_poison = draw(st.integers(1, removal_count(fraction, sizes[0])))
    reps, labels = [], []
    for label, size in enumerate(sizes):
        reps.append(rng.uniform(-1, 1, size=(size, n_dims)) + 3 * label)
        labels.append(np.full(size, label))
    direction = rng.normal(size=n_dims)
    direction /= np.linalg.norm(direction)
    poison_rows = rng.choice(sizes[0], n_poison, replace=False)
    reps[0][poison_rows] += 40 * np.sqrt(n_dims) * direction
    poison = np.zeros(sum(sizes), dtype=bool)
    poison[poison_rows] = True
    order = rng.permutation(sum(sizes))
    return (
        np.concatenate(reps)[order],
        np.concatenate(labels)[order],
        poison[order],
        fraction,
    )


def _per_class_scores(reps, labels):
    scores = np.zeros(len(labels))
    for label in np.unique(labels):
        scores[labels == label] = spectral_scores(reps[labels == label])
    return scores


@SETTINGS
@given(shifted_classes())
def test_removes_exactly_the_budget_and_it_contains_the_shifted_points(data):
    reps, labels, poison, fraction = data
    flagged = select_top_fraction_per_class(
        _per_class_scores(reps, labels), labels, fraction
    )
    for label in np.unique(labels):
        in_class = labels == label
        assert flagged[in_class].sum() == removal_count(fraction, in_class.sum())
    assert flagged[poison].all()


@SETTINGS
@given(
    st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=60),
    st.floats(0, 1),
    st.integers(1, 4),
)
def test_top_fraction_flags_the_highest_scores_of_each_class(scores, fraction, k):
    scores = np.array(scores)
    labels = np.arange(len(scores)) % k
    flagged = select_top_fraction_per_class(scores, labels, fraction)
    for label in np.unique(labels):
        in_class = labels == label
        class_flagged = flagged[in_class]
        assert class_flagged.sum() == removal_count(fraction, in_class.sum())
        if class_flagged.any() and (~class_flagged).any():
            class_scores = scores[in_class]
            assert (
                class_scores[class_flagged].min() >= class_scores[~class_flagged].max()
            )


@SETTINGS
@given(
    st.integers(0, 2**31 - 1),
    st.integers(2, 30),
    st.integers(1, 6),
    st.floats(-5, 5).filter(lambda c: abs(c) > 0.1),
)
def test_scores_ignore_translation_and_scale_with_the_data(seed, n, d, c):
    reps = np.random.RandomState(seed).normal(size=(n, d))
    scores = spectral_scores(reps)
    assert scores.shape == (n,)
    assert (scores >= 0).all()
    np.testing.assert_allclose(spectral_scores(reps + 7.0), scores, atol=1e-8)
    np.testing.assert_allclose(spectral_scores(c * reps), abs(c) * scores, atol=1e-8)


def test_scores_concrete_values():
    # Centred rows along one axis: the projection is the distance to the mean.
    reps = np.array([[0.0, 1.0], [0.0, 2.0], [0.0, 6.0]])
    np.testing.assert_allclose(spectral_scores(reps), [2.0, 1.0, 3.0])
    np.testing.assert_array_equal(spectral_scores(np.ones((4, 3))), np.zeros(4))
    np.testing.assert_array_equal(spectral_scores(np.ones((1, 3))), [0.0])
    with pytest.raises(ValueError, match="2-dimensional"):
        spectral_scores(np.ones(3))


def test_budget_rules():
    assert removal_fraction(0.1, 1.5) == 0.15
    assert removal_fraction(0.2, 1.5) == 0.3
    assert removal_fraction(0.5, 1.5) == 0.5
    assert [removal_count(0.15, n) for n in (1, 2, 10, 100, 179)] == [0, 0, 2, 15, 27]
    flagged = select_top_fraction_per_class([1.0, 1.0, 1.0, 0.0], [0, 0, 0, 0], 0.5)
    # Ties: the earlier sample goes first.
    assert flagged.tolist() == [True, True, False, False]


def test_top_fraction_rejects_bad_input():
    with pytest.raises(ValueError, match="fraction"):
        select_top_fraction_per_class([1.0], [0], 1.5)
    with pytest.raises(ValueError, match="same length"):
        select_top_fraction_per_class([1.0, 2.0], [0], 0.1)


# ---------------------------------------------------------------------------
# The estimator
# ---------------------------------------------------------------------------


def _tiny_data():
    rng = np.random.RandomState(0)
    X = rng.rand(120, 5).astype(np.float32)
    y = np.repeat([3, 5, 7], 40)
    return X, y


def test_fit_gives_a_valid_mask_and_removes_the_budget():
    X, y = _tiny_data()
    X_before, y_before = X.copy(), y.copy()
    ss = SpectralSignatureFilter(epochs=2, random_state=0, device="cpu").fit(X, y)
    assert ss.mask_.dtype == bool and ss.mask_.shape == (120,)
    assert ss.removal_fraction_ == 0.15
    assert ss.n_removed_per_class_.tolist() == [6, 6, 6]
    assert (~ss.mask_).sum() == 18
    assert ss.scores_.shape == (120,)
    assert ss.layer_ == "head"
    assert ss.classes_.tolist() == [3, 5, 7]
    np.testing.assert_array_equal(ss.sample_indices_, np.flatnonzero(ss.mask_))
    np.testing.assert_array_equal(ss.transform(X), ss.mask_)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(y, y_before)
    # Within each class the removed samples are the highest-scoring.
    for label in (3, 5, 7):
        in_class = y == label
        removed = ~ss.mask_ & in_class
        kept = ss.mask_ & in_class
        assert ss.scores_[removed].min() >= ss.scores_[kept].max()


def test_fit_is_deterministic_under_random_state():
    X, y = _tiny_data()
    first = SpectralSignatureFilter(epochs=2, random_state=1, device="cpu").fit(X, y)
    second = SpectralSignatureFilter(epochs=2, random_state=1, device="cpu").fit(X, y)
    np.testing.assert_array_equal(first.mask_, second.mask_)
    np.testing.assert_array_equal(first.scores_, second.scores_)


@pytest.mark.parametrize(
    "params, name",
    [
        ({"expected_poison_fraction": 1.5}, "expected_poison_fraction"),
        ({"eps_multiplier": -1.0}, "eps_multiplier"),
        ({"epochs": 0}, "epochs"),
        ({"net": "resnet50"}, "net"),
    ],
)
def test_invalid_parameters_are_named(params, name):
    X, y = _tiny_data()
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter"):
        SpectralSignatureFilter(**params).fit(X, y)


def test_unknown_layer_is_named():
    X, y = _tiny_data()
    with pytest.raises(ValueError, match="layer='nope'"):
        SpectralSignatureFilter(layer="nope", epochs=1, device="cpu").fit(X, y)


def test_transform_rejects_other_data():
    X, y = _tiny_data()
    ss = SpectralSignatureFilter(epochs=1, random_state=0, device="cpu").fit(X, y)
    with pytest.raises(ValueError, match="only accepts the data seen in fit"):
        ss.transform(X[:-1])


# ---------------------------------------------------------------------------
# A user run on digits with the default parameters
# ---------------------------------------------------------------------------


def test_digits_user_run_with_defaults(poisoned_digits):
    data = poisoned_digits
    start = time.perf_counter()
    ss = SpectralSignatureFilter(random_state=0).fit(data.X, data.y)
    print(f"SpectralSignatureFilter digits fit: {time.perf_counter() - start:.1f} s")
    assert ss.mask_.dtype == bool and ss.mask_.shape == (1797,)
    counts = np.bincount(data.y, minlength=10)
    expected = sum(removal_count(0.15, int(n)) for n in counts)
    assert (~ss.mask_).sum() == expected
    print(
        "SpectralSignatureFilter removed "
        f"{(~ss.mask_[data.poison_indices]).sum()} of {len(data.poison_indices)} "
        "poisoned samples"
    )
