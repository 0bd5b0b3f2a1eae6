"""The common checks on every public estimator, with tiny CPU settings.

scikit-learn's estimator checks run on every estimator the package defines,
found by walking it, and imbalanced-learn's sampler checks on
:class:`SanitizerSampler`. Each is built from :data:`INIT_PARAMS`; an estimator
that cannot be checked is in :data:`NOT_CHECKED` with the reason, and every
check expected to fail is listed with the reason.
"""

import importlib
import inspect
import pkgutil
import random
import time

import numpy as np
import pytest
import torch
from imblearn.under_sampling import RandomUnderSampler
from imblearn.utils.estimator_checks import _yield_sampler_checks
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils.estimator_checks import parametrize_with_checks

import sklearn_backdoor
from sklearn_backdoor import (
    ActivationClusteringFilter,
    BaseSanitizer,
    FastNeuralNetClassifier,
    IncompatibilityClustering,
    ITLMFilter,
    NetworkClassifier,
    NoisyLabelMinimaxTrainer,
    Pipeline,
    SanitizerChain,
    SanitizerSampler,
    SpectralSignatureFilter,
)
from sklearn_backdoor.contract import is_sanitizer
from sklearn_backdoor.minimax import MinimaxNet

TINY = {"device": "cpu", "random_state": 0}
TINY_SANITIZER = SpectralSignatureFilter(epochs=1, **TINY)

# Constructor arguments small enough for the checks' toy data sets on a CPU;
# a list builds one instance per entry.
INIT_PARAMS = {
    ActivationClusteringFilter: [
        dict(epochs=1, **TINY),
        dict(epochs=1, analysis="smaller", ex_re_threshold=1.0, **TINY),
    ],
    IncompatibilityClustering: dict(
        n_components=2,
        n_bags=1,
        warmup_epochs=1,
        epochs_per_iteration=1,
        weak_learner_epochs=1,
        self_training_rounds=2,
        self_training_epochs=1,
        **TINY,
    ),
    ITLMFilter: dict(n_rounds=2, first_round_epochs=1, round_epochs=1, **TINY),
    NetworkClassifier: dict(epochs=3, **TINY),
    NoisyLabelMinimaxTrainer: dict(epochs=2, batch_size=16, lr=1e-2, **TINY),
    Pipeline: dict(steps=[("clean", TINY_SANITIZER), ("clf", LogisticRegression())]),
    SanitizerChain: dict(steps=[("first", TINY_SANITIZER), ("second", TINY_SANITIZER)]),
    SanitizerSampler: dict(sanitizer=TINY_SANITIZER),
    SpectralSignatureFilter: dict(epochs=1, **TINY),
}

SKORCH_NET = (
    "a skorch net: its module fixes the number of features and classes, which "
    "the checks vary, and skorch's __init__ takes **kwargs and sets attributes "
    "that the checks forbid; tests/test_training.py and the sanitizers that "
    "train it test it"
)
NOT_CHECKED = {
    BaseSanitizer: "a base class: its fit calls the _fit_mask that each sanitizer "
    "defines; every sanitizer in INIT_PARAMS is checked",
    FastNeuralNetClassifier: SKORCH_NET,
    MinimaxNet: SKORCH_NET,
}


def _public_estimator_classes():
    """Every estimator class of the package: exported, or public in a public module."""
    modules = [sklearn_backdoor] + [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(
            sklearn_backdoor.__path__, prefix="sklearn_backdoor."
        )
        if not info.name.rpartition(".")[2].startswith("_")
    ]
    return {
        cls
        for module in modules
        for name, cls in inspect.getmembers(module, inspect.isclass)
        if not name.startswith("_")
        and cls.__module__.startswith("sklearn_backdoor")
        and issubclass(cls, BaseEstimator)
        and not inspect.isabstract(cls)
    }


def _construct_instances(estimator_class):
    params = INIT_PARAMS[estimator_class]
    for one_set in params if isinstance(params, list) else [params]:
        yield clone(estimator_class(**one_set))


def _by_name(classes):
    return sorted(classes, key=lambda cls: cls.__name__)


ESTIMATORS = [
    estimator
    for estimator_class in _by_name(INIT_PARAMS)
    for estimator in _construct_instances(estimator_class)
]
NETWORK_ESTIMATORS = [e for e in ESTIMATORS if "net" in e.get_params(deep=False)]


@pytest.mark.parametrize(
    "estimator_class", _by_name(_public_estimator_classes()), ids=lambda c: c.__name__
)
def test_every_public_estimator_is_checked_or_says_why_not(estimator_class):
    assert estimator_class in INIT_PARAMS or estimator_class in NOT_CHECKED, (
        f"{estimator_class.__module__}.{estimator_class.__name__} is a public "
        "estimator without an entry in tests/test_common.py: add its tiny "
        "constructor arguments to INIT_PARAMS, or, if scikit-learn's checks "
        "cannot apply, the reason to NOT_CHECKED"
    )
    assert not (estimator_class in INIT_PARAMS and estimator_class in NOT_CHECKED)


TRANSFORM_ONLY_ON_TRAINING_DATA = (
    "transform returns the keep-mask of the data seen in fit and raises for any "
    "other data (the sanitizer contract)"
)
SANITIZER_EXPECTED_FAILED_CHECKS = {
    "check_transformer_preserve_dtypes": "transform returns a bool keep-mask, "
    "not transformed features",
    "check_methods_sample_order_invariance": TRANSFORM_ONLY_ON_TRAINING_DATA,
    "check_methods_subset_invariance": TRANSFORM_ONLY_ON_TRAINING_DATA,
    "check_fit_idempotent": TRANSFORM_ONLY_ON_TRAINING_DATA,
}
FITS_STEPS_IN_PLACE = (
    "as scikit-learn's own Pipeline (in its expected failures): fit fits the "
    "estimators of the steps parameter in place"
)
EXPECTED_FAILED_CHECKS = {
    Pipeline: {
        "check_dont_overwrite_parameters": FITS_STEPS_IN_PLACE,
        "check_estimators_overwrite_params": FITS_STEPS_IN_PLACE,
    },
}


def expected_failed_checks(estimator):
    if is_sanitizer(estimator):
        return SANITIZER_EXPECTED_FAILED_CHECKS
    return EXPECTED_FAILED_CHECKS.get(type(estimator), {})


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)


NOT_A_CLASS_RATIO = (
    "no sampling_strategy: the sanitizer decides which rows to keep, not a "
    "target number of samples per class"
)
DENSE_NUMERIC_X = "the sanitizers train networks on dense, finite, numeric X"
# imbalanced-learn's own checks need its tags (sampler_tags, input_tags.dataframe),
# which SanitizerSampler cannot declare without depending on imbalanced-learn: run
# each sampler check it runs on RandomUnderSampler, which accepts every input type.
SAMPLER_EXPECTED_FAILED_CHECKS = {
    "check_samplers_fit": NOT_A_CLASS_RATIO,
    "check_samplers_sparse": DENSE_NUMERIC_X,
    "check_samplers_string": DENSE_NUMERIC_X,
    "check_samplers_nan": DENSE_NUMERIC_X,
    "check_samplers_multiclass_ova": "the sanitizers take one label per sample, "
    "not a one-hot y",
    "check_samplers_sample_indices": "reads imbalanced-learn's sampler_tags; "
    "sample_indices_ is tested in tests/test_pipeline.py",
}


def _sampler_checks():
    for check in _yield_sampler_checks(RandomUnderSampler()):
        reason = SAMPLER_EXPECTED_FAILED_CHECKS.get(check.__name__)
        marks = pytest.mark.xfail(reason=reason) if reason else ()
        yield pytest.param(check, id=check.__name__, marks=marks)


@pytest.mark.parametrize("check", _sampler_checks())
def test_imblearn_sampler_checks(check):
    (sampler,) = _construct_instances(SanitizerSampler)
    check(type(sampler).__name__, sampler)


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
    NETWORK_ESTIMATORS,
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
