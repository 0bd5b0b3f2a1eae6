import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression

from sklearn_backdoor import Pipeline, SanitizerChain, SanitizerMixin


class BelowThreshold(SanitizerMixin, BaseEstimator):
    """Keeps the samples whose first feature is under ``threshold``; records
    what it was fitted on."""

    def __init__(self, threshold=0.5):
        self.threshold = threshold

    def fit(self, X, y):
        X = np.asarray(X)
        self.fitted_on_ = X.copy()
        self.classes_ = np.unique(y)
        self.n_features_in_ = X.shape[1]
        self._store_decision(X[:, 0] < self.threshold, None)
        return self


def _data(n=30, seed=0):
    rng = np.random.RandomState(seed)
    return rng.rand(n, 3), np.arange(n) % 2


def test_each_step_sees_what_the_steps_before_it_kept():
    X, y = _data()
    chain = SanitizerChain(
        [("loose", BelowThreshold(0.8)), ("tight", BelowThreshold(0.4))]
    ).fit(X, y)
    first, second = (step for _, step in chain.steps_)
    np.testing.assert_array_equal(first.fitted_on_, X)
    np.testing.assert_array_equal(second.fitted_on_, X[X[:, 0] < 0.8])
    np.testing.assert_array_equal(chain.mask_, X[:, 0] < 0.4)
    expected = np.where(X[:, 0] >= 0.8, 0, np.where(X[:, 0] >= 0.4, 1, -1))
    np.testing.assert_array_equal(chain.removed_by_, expected)
    np.testing.assert_array_equal(chain.sample_indices_, np.flatnonzero(X[:, 0] < 0.4))
    np.testing.assert_array_equal(chain.classes_, [0, 1])
    assert chain.n_features_in_ == 3


@settings(max_examples=40, deadline=None)
@given(
    thresholds=st.lists(st.floats(0.05, 1.0), min_size=1, max_size=4),
    seed=st.integers(0, 1000),
)
def test_the_chain_keeps_what_every_step_keeps_and_names_the_first_to_remove(
    thresholds, seed
):
    X, y = _data(n=60, seed=seed)
    y[:2] = [0, 1]
    X[:2, 0] = 0.0  # two classes survive every step
    before = X.copy()
    steps = [(f"s{i}", BelowThreshold(t)) for i, t in enumerate(thresholds)]
    chain = SanitizerChain(steps).fit(X, y)
    np.testing.assert_array_equal(X, before)
    below = np.stack([X[:, 0] < t for t in thresholds])
    np.testing.assert_array_equal(chain.mask_, below.all(axis=0))
    first_failed = np.where(below.all(axis=0), -1, np.argmin(below, axis=0))
    np.testing.assert_array_equal(chain.removed_by_, first_failed)
    np.testing.assert_array_equal(chain.transform(X), chain.mask_)


def test_step_parameters_are_reachable_by_name_and_the_given_steps_stay_unfitted():
    X, y = _data()
    given_step = BelowThreshold(0.9)
    chain = SanitizerChain([("a", given_step), ("b", BelowThreshold(0.9))])
    chain.set_params(b__threshold=0.3)
    assert chain.get_params()["b__threshold"] == 0.3
    chain.fit(X, y)
    np.testing.assert_array_equal(chain.mask_, X[:, 0] < 0.3)
    assert not hasattr(given_step, "mask_")
    assert clone(chain).get_params()["b__threshold"] == 0.3
    assert set(chain.named_steps) == {"a", "b"}


def test_a_chain_is_one_sanitizer_step_of_a_pipeline():
    X, y = _data(n=40)
    pipe = Pipeline(
        [
            ("clean", SanitizerChain([("a", BelowThreshold(0.7))])),
            ("clf", LogisticRegression()),
        ]
    ).fit(X, y)
    assert pipe.named_steps["clean"].mask_.sum() == (X[:, 0] < 0.7).sum()
    assert pipe.predict(X).shape == (40,)


@pytest.mark.parametrize(
    "steps, error, match",
    [
        ([], ValueError, "at least one"),
        ([("a", LogisticRegression())], TypeError, "'a' is LogisticRegression"),
        ([("a", BelowThreshold()), ("a", BelowThreshold())], ValueError, "unique"),
        ([BelowThreshold()], ValueError, r"\(name, sanitizer\) tuples"),
    ],
)
def test_bad_steps_are_named_in_the_error(steps, error, match):
    X, y = _data()
    with pytest.raises(error, match=match):
        SanitizerChain(steps).fit(X, y)


def test_a_step_left_with_one_class_is_named_instead_of_fitted():
    X, y = _data()
    X[:, 0] = np.where(y == 0, 0.1, 0.9)
    steps = [("first", BelowThreshold(0.5)), ("second", BelowThreshold())]
    chain = SanitizerChain(steps)
    with pytest.raises(ValueError, match="before 'second' kept 15 samples of 1 class"):
        chain.fit(X, y)


def test_transform_refuses_other_data():
    X, y = _data()
    chain = SanitizerChain([("a", BelowThreshold())]).fit(X, y)
    with pytest.raises(ValueError, match="only accepts the data seen in fit"):
        chain.transform(X[:10])
