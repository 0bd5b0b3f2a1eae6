"""scikit-learn's estimator checks on every sanitizer, with tiny CPU settings."""

import random
import time

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_backdoor import (
    ActivationClusteringFilter,
    IncompatibilityClustering,
    ITLMFilter,
    NetworkClassifier,
    NoisyLabelMinimaxTrainer,
    SpectralSignatureFilter,
)

TINY = {"device": "cpu", "random_state": 0}

ESTIMATORS = [
    IncompatibilityClustering(
        n_components=2,
        n_bags=1,
        warmup_epochs=1,
        epochs_per_iteration=1,
        weak_learner_epochs=1,
        self_training_rounds=2,
        self_training_epochs=1,
        **TINY,
    ),
    SpectralSignatureFilter(epochs=1, **TINY),
    ActivationClusteringFilter(epochs=1, **TINY),
    ActivationClusteringFilter(
        epochs=1, analysis="smaller", ex_re_threshold=1.0, **TINY
    ),
    ITLMFilter(n_rounds=2, first_round_epochs=1, round_epochs=1, **TINY),
    NoisyLabelMinimaxTrainer(epochs=2, batch_size=16, lr=1e-2, **TINY),
    NetworkClassifier(epochs=3, **TINY),
]

TRANSFORM_ONLY_ON_TRAINING_DATA = (
    "transform returns the keep-mask of the data seen in fit and raises for any "
    "other data (the sanitizer contract)"
)
EXPECTED_FAILED_CHECKS = {
    "check_transformer_preserve_dtypes": "transform returns a bool keep-mask, "
    "not transformed features",
    "check_methods_sample_order_invariance": TRANSFORM_ONLY_ON_TRAINING_DATA,
    "check_methods_subset_invariance": TRANSFORM_ONLY_ON_TRAINING_DATA,
    "check_fit_idempotent": TRANSFORM_ONLY_ON_TRAINING_DATA,
}


def expected_failed_checks(estimator):
    return {} if isinstance(estimator, NetworkClassifier) else EXPECTED_FAILED_CHECKS


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)


PHASES = {
    "IncompatibilityClustering": {"clustering", "voting", "self_training"},
    "SpectralSignatureFilter": {"training", "representations", "scoring"},
    "ActivationClusteringFilter": {"training", "representations", "clustering"},
    "ITLMFilter": {"training", "loss_passes"},
}


@pytest.mark.parametrize(
    "estimator",
    [e for e in ESTIMATORS if type(e).__name__ in PHASES],
    ids=lambda e: f"{type(e).__name__}-{e.get_params().get('analysis', '')}",
)
def test_phase_seconds_name_each_phase_and_fit_within_the_fit(estimator):
    rng = np.random.RandomState(0)
    X = rng.rand(120, 8, 8).astype(np.float32)
    y = np.arange(120) % 3
    started = time.perf_counter()
    fitted = clone(estimator).fit(X, y)
    elapsed = time.perf_counter() - started
    expected = set(PHASES[type(estimator).__name__])
    if getattr(estimator, "ex_re_threshold", None) is not None and (
        fitted.poison_clusters_.any()
    ):
        expected.add("reclassification")
    assert set(fitted.phase_seconds_) == expected
    assert all(seconds >= 0 for seconds in fitted.phase_seconds_.values())
    assert sum(fitted.phase_seconds_.values()) <= elapsed


def _global_generator_states():
    # The legacy global state is the point: a fit must leave it alone.
    numpy_state = np.random.get_state()  # noqa: NPY002
    return torch.get_rng_state(), numpy_state, random.getstate()


def _assert_same_states(before, after):
    assert torch.equal(before[0], after[0]), "torch's generator moved"
    assert before[1][0] == after[1][0]
    np.testing.assert_array_equal(before[1][1], after[1][1])
    assert before[1][2:] == after[1][2:], "numpy's generator moved"
    assert before[2] == after[2], "python's random moved"


def _decision(model, X):
    if hasattr(model, "mask_"):
        return model.mask_, getattr(model, "scores_", None)
    return model.predict_proba(X), None


@pytest.mark.parametrize("net", ["preset", "user skorch net"])
@pytest.mark.parametrize(
    "estimator",
    ESTIMATORS,
    ids=lambda e: f"{type(e).__name__}-{e.get_params().get('analysis', '')}",
)
def test_random_state_decides_the_fit_and_global_generators_stay_put(
    estimator, net, user_skorch_net
):
    rng = np.random.RandomState(0)
    X = rng.rand(64, 6).astype(np.float32)
    y = (X[:, 0] > 0.5).astype(int)
    params = {} if net == "preset" else {"net": user_skorch_net()}
    torch.manual_seed(1)
    np.random.seed(2)  # noqa: NPY002
    random.seed(3)
    before = _global_generator_states()
    first = clone(estimator).set_params(**params).fit(X, y)
    _assert_same_states(before, _global_generator_states())
    second = clone(estimator).set_params(**params).fit(X, y)
    for a, b in zip(_decision(first, X), _decision(second, X), strict=True):
        np.testing.assert_array_equal(a, b)
