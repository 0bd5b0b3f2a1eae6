import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_backdoor.itlm import (
    ITLMFilter,
    default_keep_fraction,
    keep_lowest_loss,
    kept_count,
)

SETTINGS = settings(max_examples=60, deadline=None)

# Few distinct values, so that ties are common.
losses_lists = st.lists(
    st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.5, 7.0]) | st.floats(0, 100),
    min_size=1,
    max_size=80,
)


# ---------------------------------------------------------------------------
# Pure functions: the definition of the method
# ---------------------------------------------------------------------------


@SETTINGS
@given(losses_lists, st.floats(0.01, 1.0))
def test_keeps_exactly_its_fraction_and_never_a_higher_loss(losses, fraction):
    losses = np.array(losses)
    keep = keep_lowest_loss(losses, fraction)
    assert keep.dtype == bool and keep.shape == losses.shape
    assert keep.sum() == kept_count(fraction, len(losses))
    if keep.any() and (~keep).any():
        assert losses[keep].max() <= losses[~keep].min()


@SETTINGS
@given(losses_lists, st.floats(0.01, 1.0))
def test_ties_are_broken_by_position(losses, fraction):
    losses = np.array(losses)
    keep = keep_lowest_loss(losses, fraction)
    if keep.any() and (~keep).any():
        boundary = losses[keep].max()
        tied = np.flatnonzero(losses == boundary)
        # Among samples tied at the boundary, the kept ones come first.
        kept_tied = keep[tied]
        assert (np.diff(kept_tied.astype(int)) <= 0).all()


def test_keep_lowest_loss_concrete_values():
    assert keep_lowest_loss([0.3, 2.0, 0.1, 0.3], 0.75).tolist() == [
        True,
        False,
        True,
        True,
    ]
    assert keep_lowest_loss([1.0, 1.0, 1.0, 1.0], 0.5).tolist() == [
        True,
        True,
        False,
        False,
    ]
    assert [kept_count(0.96, n) for n in (1, 2, 3, 25, 100, 1797)] == [
        1,
        2,
        3,
        24,
        96,
        1725,
    ]
    with pytest.raises(ValueError, match="fraction"):
        keep_lowest_loss([1.0], 0.0)
    with pytest.raises(ValueError, match="1-dimensional"):
        keep_lowest_loss([[1.0]], 0.5)


def test_keep_fraction_follows_paper_001():
    assert [default_keep_fraction(e) for e in (0.05, 0.1, 0.2)] == [0.98, 0.96, 0.92]
    assert default_keep_fraction(0.2, keep_fraction=0.5) == 0.5


# ---------------------------------------------------------------------------
# The estimator
# ---------------------------------------------------------------------------


def _tiny_data():
    rng = np.random.RandomState(0)
    X = rng.rand(100, 5).astype(np.float32)
    y = np.repeat([3, 5], 50)
    return X, y


def _tiny(**params):
    defaults = dict(
        n_rounds=2, first_round_epochs=2, round_epochs=1, random_state=0, device="cpu"
    )
    return ITLMFilter(**{**defaults, **params})


def test_fit_gives_a_valid_mask():
    X, y = _tiny_data()
    X_before, y_before = X.copy(), y.copy()
    itlm = _tiny(n_rounds=3).fit(X, y)
    assert itlm.mask_.dtype == bool and itlm.mask_.shape == (100,)
    assert itlm.keep_fraction_ == 0.96
    assert itlm.mask_.sum() == 96
    assert itlm.round_masks_.shape == (3, 100)
    assert itlm.round_masks_.sum(axis=1).tolist() == [96, 96, 96]
    np.testing.assert_array_equal(itlm.round_masks_[-1], itlm.mask_)
    # The mask is the lowest-loss set of the last round's losses.
    assert itlm.scores_[itlm.mask_].max() <= itlm.scores_[~itlm.mask_].min()
    np.testing.assert_array_equal(itlm.transform(X), itlm.mask_)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(y, y_before)


def test_keep_fraction_overrides_expected_poison_fraction():
    X, y = _tiny_data()
    itlm = _tiny(keep_fraction=0.5, expected_poison_fraction=0.2).fit(X, y)
    assert itlm.keep_fraction_ == 0.5
    assert itlm.mask_.sum() == 50
    itlm = _tiny(expected_poison_fraction=0.2).fit(X, y)
    assert itlm.mask_.sum() == 92


def test_fit_is_deterministic_under_random_state():
    X, y = _tiny_data()
    first = _tiny(random_state=3).fit(X, y)
    second = _tiny(random_state=3).fit(X, y)
    np.testing.assert_array_equal(first.mask_, second.mask_)
    np.testing.assert_array_equal(first.scores_, second.scores_)


@pytest.mark.parametrize(
    "params, name",
    [
        ({"keep_fraction": 0.0}, "keep_fraction"),
        ({"keep_fraction": 1.5}, "keep_fraction"),
        ({"expected_poison_fraction": -0.1}, "expected_poison_fraction"),
        ({"n_rounds": 0}, "n_rounds"),
        ({"first_round_epochs": 0}, "first_round_epochs"),
        ({"round_epochs": 0}, "round_epochs"),
    ],
)
def test_invalid_parameters_are_named(params, name):
    X, y = _tiny_data()
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter"):
        ITLMFilter(**params).fit(X, y)


# ---------------------------------------------------------------------------
# A user run on digits with the default parameters
# ---------------------------------------------------------------------------


def test_digits_user_run_with_defaults(poisoned_digits):
    data = poisoned_digits
    start = time.perf_counter()
    itlm = ITLMFilter(random_state=0).fit(data.X, data.y)
    print(f"ITLMFilter digits fit: {time.perf_counter() - start:.1f} s")
    assert itlm.mask_.dtype == bool and itlm.mask_.shape == (1797,)
    assert itlm.mask_.sum() == 1725
    print(
        f"ITLMFilter removed {(~itlm.mask_[data.poison_indices]).sum()} of "
        f"{len(data.poison_indices)} poisoned samples"
    )
