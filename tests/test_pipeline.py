import pickle
import re

import numpy as np
import pytest
import sklearn
from sklearn import pipeline as sk_pipeline
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from sklearn_backdoor import (
    IncompatibilityClustering,
    Pipeline,
    SanitizerMixin,
    SanitizerSampler,
    make_pipeline,
)
from sklearn_backdoor.inputs import check_sample_array, data_fingerprint


class DropLargeFirstFeature(SanitizerMixin, TransformerMixin, BaseEstimator):
    """Keeps the rows whose first feature is at most ``threshold``."""

    def __init__(self, threshold=0.8):
        self.threshold = threshold

    def fit(self, X, y=None):
        X = check_sample_array(X)
        self.mask_ = X[:, 0] <= self.threshold
        self.sample_indices_ = np.flatnonzero(self.mask_)
        self.n_features_in_ = X.shape[1]
        self.fit_fingerprint_ = data_fingerprint(X)
        return self


class RecordingClassifier(ClassifierMixin, BaseEstimator):
    """Remembers what it was fitted on; predicts the majority class."""

    def fit(self, X, y, sample_weight=None):
        self.X_fit_, self.y_fit_, self.sample_weight_ = X, y, sample_weight
        self.classes_ = np.unique(y)
        self.majority_ = np.bincount(y).argmax()
        return self

    def predict(self, X):
        return np.full(len(X), self.majority_)


def _tiny_incompatibility_clustering():
    return IncompatibilityClustering(
        n_components=2,
        n_bags=1,
        warmup_epochs=1,
        epochs_per_iteration=1,
        weak_learner_epochs=2,
        self_training=False,
        random_state=0,
    )


def _data(n=100, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.rand(n, 3)
    y = (X[:, 1] > 0.5).astype(int)
    return X, y


def test_later_steps_and_sample_weight_see_only_the_kept_rows():
    X, y = _data()
    weights = np.arange(len(y), dtype=float)
    pipe = Pipeline(
        [("clean", DropLargeFirstFeature()), ("clf", RecordingClassifier())]
    )
    pipe.fit(X, y, clf__sample_weight=weights)
    keep = X[:, 0] <= 0.8
    clf = pipe.named_steps["clf"]
    np.testing.assert_array_equal(clf.X_fit_, X[keep])
    np.testing.assert_array_equal(clf.y_fit_, y[keep])
    np.testing.assert_array_equal(clf.sample_weight_, weights[keep])


def test_transformers_after_a_sanitizer_are_fitted_on_kept_rows_only():
    X, y = _data()
    pipe = make_pipeline(
        DropLargeFirstFeature(), StandardScaler(), LogisticRegression()
    )
    pipe.fit(X, y)
    keep = X[:, 0] <= 0.8
    np.testing.assert_allclose(
        pipe.named_steps["standardscaler"].mean_, X[keep].mean(0)
    )


def test_prediction_skips_the_sanitizer_and_covers_every_row():
    X, y = _data()
    X_new, _ = _data(n=37, seed=1)
    pipe = Pipeline([("clean", DropLargeFirstFeature()), ("clf", LogisticRegression())])
    pipe.fit(X, y)
    reference = LogisticRegression().fit(X[X[:, 0] <= 0.8], y[X[:, 0] <= 0.8])
    np.testing.assert_array_equal(pipe.predict(X_new), reference.predict(X_new))
    assert pipe.score(X_new, reference.predict(X_new)) == 1.0
    assert pipe.predict_proba(X_new).shape == (37, 2)
    assert pipe.fit_predict(X, y).shape == (100,)


def test_pipeline_works_in_grid_search_and_cross_validation():
    X, y = _data(200)
    pipe = Pipeline([("clean", DropLargeFirstFeature()), ("clf", LogisticRegression())])
    search = GridSearchCV(pipe, {"clean__threshold": [0.5, 0.9]}, cv=3).fit(X, y)
    assert search.best_params_["clean__threshold"] in (0.5, 0.9)
    assert set(search.cv_results_["param_clean__threshold"]) == {0.5, 0.9}
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,)
    assert np.all(scores > 0.8)


def test_clone_and_pickle_round_trip():
    X, y = _data()
    pipe = Pipeline(
        [("clean", DropLargeFirstFeature(0.6)), ("clf", LogisticRegression())]
    )
    cloned = clone(pipe)
    assert isinstance(cloned, Pipeline)
    assert cloned.get_params()["clean__threshold"] == 0.6
    fitted = pipe.fit(X, y)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict(X), fitted.predict(X))
    np.testing.assert_array_equal(
        restored.named_steps["clean"].mask_, fitted.named_steps["clean"].mask_
    )


def test_fit_transform_returns_all_rows():
    X, y = _data()
    pipe = Pipeline([("clean", DropLargeFirstFeature()), ("scale", StandardScaler())])
    assert pipe.fit_transform(X, y).shape == X.shape


def test_user_line_with_incompatibility_clustering_runs_as_written():
    X, y = _data(120)
    pipe = Pipeline(
        [
            ("clean", _tiny_incompatibility_clustering()),
            ("clf", RecordingClassifier()),
        ]
    )
    pipe.fit(X, y)
    mask = pipe.named_steps["clean"].mask_
    np.testing.assert_array_equal(pipe.named_steps["clf"].X_fit_, X[mask])
    restored = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(restored.predict(X), pipe.predict(X))


def test_sanitizer_sampler_resamples_in_imblearn_pipeline():
    imblearn_pipeline = pytest.importorskip("imblearn.pipeline")
    X, y = _data()
    pipe = imblearn_pipeline.Pipeline(
        [
            ("clean", SanitizerSampler(DropLargeFirstFeature())),
            ("clf", RecordingClassifier()),
        ]
    )
    pipe.fit(X, y)
    keep = X[:, 0] <= 0.8
    np.testing.assert_array_equal(pipe.named_steps["clf"].X_fit_, X[keep])
    np.testing.assert_array_equal(
        pipe.named_steps["clean"].sample_indices_, np.flatnonzero(keep)
    )
    assert pipe.predict(X).shape == (100,)


def test_sanitizer_sampler_rejects_non_sanitizers():
    X, y = _data()
    with pytest.raises(TypeError, match="sanitizer must be a sanitizer"):
        SanitizerSampler(StandardScaler()).fit_resample(X, y)


# scikit-learn's line: "[Pipeline] ..... (step 1 of 2) Processing scale, total=   0.0s"
_VERBOSE_LINE = re.compile(
    r"\[Pipeline\] \.+ \(step (\d+) of (\d+)\) Processing (\w+), total=\s*\d+\.\ds"
)


@pytest.mark.parametrize(
    "pipeline_class, names",
    [
        (sk_pipeline.Pipeline, ["scale", "clf"]),
        (Pipeline, ["clean", "scale", "clf"]),
    ],
    ids=["scikit-learn", "with-sanitizer"],
)
def test_verbose_prints_each_step_time_as_scikit_learn_does(
    pipeline_class, names, capsys
):
    steps = {
        "clean": DropLargeFirstFeature(),
        "scale": StandardScaler(),
        "clf": LogisticRegression(),
    }
    pipe = pipeline_class([(name, steps[name]) for name in names], verbose=True)
    pipe.fit(*_data())
    lines = capsys.readouterr().out.splitlines()
    matches = [_VERBOSE_LINE.fullmatch(line) for line in lines]
    assert all(matches), lines
    expected = [(str(i), str(len(names)), name) for i, name in enumerate(names, 1)]
    assert [match.groups() for match in matches] == expected


def _count_fits(monkeypatch, estimator_class):
    """Record each call of ``estimator_class.fit`` in the returned list."""
    calls = []
    fit = estimator_class.fit

    def counted_fit(self, *args, **kwargs):
        calls.append(self)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(estimator_class, "fit", counted_fit)
    return calls


@pytest.mark.parametrize(
    "pipeline_class, first_step, fitted_attribute",
    [
        (sk_pipeline.Pipeline, StandardScaler(), "mean_"),
        (Pipeline, DropLargeFirstFeature(), "mask_"),
        (Pipeline, _tiny_incompatibility_clustering(), "mask_"),
    ],
    ids=["scikit-learn-transformer", "sanitizer", "incompatibility-clustering"],
)
def test_memory_loads_the_first_step_on_a_second_identical_fit(
    pipeline_class, first_step, fitted_attribute, tmp_path, monkeypatch
):
    X, y = _data()
    weights = np.linspace(0.5, 1.5, len(y))
    fits = _count_fits(monkeypatch, type(first_step))
    pipe = pipeline_class(
        [("first", first_step), ("clf", LogisticRegression())], memory=str(tmp_path)
    )
    clone(pipe).fit(X, y, clf__sample_weight=weights)
    cached = clone(pipe).fit(X, y, clf__sample_weight=weights)
    assert len(fits) == 1
    uncached = clone(pipe).set_params(memory=None)
    uncached.fit(X, y, clf__sample_weight=weights)
    np.testing.assert_array_equal(
        getattr(cached.named_steps["first"], fitted_attribute),
        getattr(uncached.named_steps["first"], fitted_attribute),
    )
    np.testing.assert_allclose(
        cached.named_steps["clf"].coef_, uncached.named_steps["clf"].coef_
    )


@pytest.mark.parametrize(
    "pipeline_class",
    [sk_pipeline.Pipeline, Pipeline],
    ids=["scikit-learn", "sklearn_backdoor"],
)
def test_transform_input_without_metadata_routing_raises_as_in_scikit_learn(
    pipeline_class,
):
    pipe = pipeline_class(
        [("scale", StandardScaler()), ("clf", LogisticRegression())],
        transform_input=["X_val"],
    )
    with pytest.raises(ValueError, match="metadata routing"):
        pipe.fit(*_data())


class WeightedDropLargeFirstFeature(DropLargeFirstFeature):
    """Also remembers the sample weights its fit received."""

    def fit(self, X, y=None, sample_weight=None):
        self.sample_weight_ = sample_weight
        return super().fit(X, y)


@pytest.mark.parametrize(
    "pipeline_class, first_step, kept",
    [
        (sk_pipeline.Pipeline, MinMaxScaler(), lambda X: np.ones(len(X), bool)),
        (Pipeline, DropLargeFirstFeature(), lambda X: X[:, 0] <= 0.8),
    ],
    ids=["scikit-learn", "with-sanitizer"],
)
def test_metadata_routing_gives_later_steps_the_kept_rows_of_sample_weight(
    pipeline_class, first_step, kept
):
    X, y = _data()
    weights = np.linspace(0.5, 1.5, len(y))
    keep = kept(X)
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = pipeline_class(
            [
                ("first", first_step),
                ("clf", RecordingClassifier().set_fit_request(sample_weight=True)),
            ]
        )
        pipe.fit(X, y, sample_weight=weights)
    clf = pipe.named_steps["clf"]
    np.testing.assert_array_equal(clf.sample_weight_, weights[keep])
    np.testing.assert_array_equal(clf.y_fit_, y[keep])


def test_metadata_routing_gives_a_sanitizer_all_weights_it_requests():
    X, y = _data()
    weights = np.linspace(0.5, 1.5, len(y))
    keep = X[:, 0] <= 0.8
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = Pipeline(
            [
                (
                    "clean",
                    WeightedDropLargeFirstFeature().set_fit_request(sample_weight=True),
                ),
                ("scale", MinMaxScaler()),
                ("clf", LogisticRegression().set_fit_request(sample_weight=True)),
            ]
        )
        pipe.fit(X, y, sample_weight=weights)
    np.testing.assert_array_equal(pipe.named_steps["clean"].sample_weight_, weights)
    scaler = MinMaxScaler().fit(X[keep])
    reference = LogisticRegression().fit(
        scaler.transform(X[keep]), y[keep], sample_weight=weights[keep]
    )
    np.testing.assert_allclose(pipe.named_steps["clf"].coef_, reference.coef_)
    np.testing.assert_array_equal(
        pipe.predict(X), reference.predict(scaler.transform(X))
    )


@pytest.mark.parametrize(
    "last_step, methods",
    [
        (LogisticRegression(), {"fit_predict"}),
        (StandardScaler(), {"fit_transform"}),
        ("passthrough", {"fit_transform"}),
    ],
    ids=["classifier", "transformer", "passthrough"],
)
def test_fit_transform_and_fit_predict_exist_where_transform_and_predict_do(
    last_step, methods
):
    pipe = Pipeline([("clean", DropLargeFirstFeature()), ("last", last_step)])
    available = {
        method for method in ("fit_transform", "fit_predict") if hasattr(pipe, method)
    }
    assert available == methods
    X, y = _data()
    for method in methods:
        assert len(getattr(pipe, method)(X, y)) == len(X)
