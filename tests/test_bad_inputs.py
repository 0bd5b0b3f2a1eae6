"""Untrusted data in: a clear error naming the parameter, or a correct answer.

Hypothesis throws generated bad inputs at every public estimator's ``fit``,
``transform``, ``predict`` and ``predict_proba`` and at the public poisoning
and metric functions. Every call must either raise a ``ValueError`` or
``TypeError`` whose message names the offending parameter, raised by this
library or by scikit-learn's validation (never from inside torch, numpy, PIL
or skorch), or return a result that is checked to be right.
"""

import re
import string
import traceback
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone

from sklearn_backdoor import (
    ActivationClusteringFilter,
    IncompatibilityClustering,
    ITLMFilter,
    NetworkClassifier,
    NoisyLabelMinimaxTrainer,
    SpectralSignatureFilter,
)
from sklearn_backdoor.base import nonfinite_as_worst
from sklearn_backdoor.itlm import keep_lowest_loss, sample_losses
from sklearn_backdoor.metrics import (
    attack_success_rate,
    clean_accuracy,
    poison_accuracy,
    targeted_misclassification_rate,
)
from sklearn_backdoor.minimax import PRL, SPL
from sklearn_backdoor.poisoning import (
    BackdoorScenario,
    dirty_label_backdoor,
    pixel_trigger,
    systematic_label_flip,
)
from sklearn_backdoor.training import FastNeuralNetClassifier

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TINY = {"device": "cpu", "random_state": 0}
ESTIMATORS = {
    "ISPL": IncompatibilityClustering(
        n_components=2,
        n_bags=1,
        warmup_epochs=1,
        epochs_per_iteration=1,
        weak_learner_epochs=1,
        self_training=False,
        **TINY,
    ),
    "SS": SpectralSignatureFilter(epochs=1, **TINY),
    "AC": ActivationClusteringFilter(epochs=1, **TINY),
    "ITLM": ITLMFilter(n_rounds=1, first_round_epochs=1, **TINY),
    "Minimax": NoisyLabelMinimaxTrainer(epochs=1, batch_size=8, **TINY),
    "Classifier": NetworkClassifier(epochs=1, **TINY),
}
CLASSIFIERS = ("Minimax", "Classifier")
SANITIZERS = tuple(name for name in ESTIMATORS if name != "Classifier")
RAW_LIBRARIES = {"torch", "numpy", "PIL", "skorch"}
N_SAMPLES = 16
LAYOUTS = ((N_SAMPLES, 6), (N_SAMPLES, 4, 4), (N_SAMPLES, 4, 4, 3))
FLOAT32_MAX = float(np.finfo(np.float32).max)


def estimator(name, **params):
    return clone(ESTIMATORS[name]).set_params(**params)


def outcome(call):
    """``(result, None)`` or ``(None, error)`` for a ValueError/TypeError;
    any other exception fails the test."""
    try:
        return call(), None
    except (ValueError, TypeError) as error:
        return None, error


def assert_refused_naming(error, *names):
    """``error`` exists, names one of ``names`` as a word, and was raised by
    this library or scikit-learn rather than deep inside another library."""
    assert error is not None, f"expected an error naming {names}, got a result"
    message = str(error)
    assert any(
        re.search(rf"(?<![\w']){re.escape(name)}(?!\w)", message)
        or f"'{name}'" in message
        for name in names
    ), f"{type(error).__name__}({message!r}) names none of {names}"
    raised_in = set(Path(traceback.extract_tb(error.__traceback__)[-1].filename).parts)
    assert not raised_in & RAW_LIBRARIES, f"raised inside {raised_in}: {message!r}"


def assert_fitted_correctly(model, X, y):
    """The fitted attributes are those of a correct fit on ``(X, y)``."""
    np.testing.assert_array_equal(model.classes_, np.unique(y))
    if hasattr(model, "mask_"):
        assert model.mask_.shape == (len(y),) and model.mask_.dtype == bool
        np.testing.assert_array_equal(model.transform(X), model.mask_)
        assert np.isfinite(model.scores_).all()
    if hasattr(model, "predict_proba"):
        assert_probabilities(model.predict_proba(X), len(y), len(model.classes_))


def assert_probabilities(proba, n_samples, n_classes):
    assert proba.shape == (n_samples, n_classes)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)


# ---------------------------------------------------------------------------
# Sample arrays
# ---------------------------------------------------------------------------


def _one_cell(values, draw, value, dtype=None):
    X = values.astype(dtype or values.dtype)
    flat = X.reshape(-1)
    flat[draw(st.integers(0, flat.size - 1))] = value
    return X


VALID_ARRAYS = {
    "float32": lambda v, draw: v.astype(np.float32),
    "float64": lambda v, draw: v,
    "float16": lambda v, draw: v.astype(np.float16),
    "uint8": lambda v, draw: (v * 255).astype(np.uint8),
    "int64 beyond 2**31": lambda v, draw: (v * 2**40).astype(np.int64),
    "bool": lambda v, draw: v > 0.5,
    "object of numbers": lambda v, draw: v.astype(object),
    "float32 near its limit": lambda v, draw: v.astype(np.float32) * 1e37,
    "list of lists": lambda v, draw: v.tolist(),
}
INVALID_ARRAYS = {
    "nan": lambda v, draw: _one_cell(v, draw, np.nan),
    "inf": lambda v, draw: _one_cell(v, draw, draw(st.sampled_from([np.inf, -np.inf]))),
    "finite in float64 only": lambda v, draw: _one_cell(
        v,
        draw,
        draw(st.floats(FLOAT32_MAX * 1.01, 1e308)) * draw(st.sampled_from([1, -1])),
    ),
    "complex": lambda v, draw: v.astype(np.complex128),
    "strings": lambda v, draw: v.astype(str),
    "object with text": lambda v, draw: _one_cell(
        v, draw, draw(st.text(string.ascii_letters, min_size=1, max_size=4)), object
    ),
    "object with None": lambda v, draw: _one_cell(v, draw, None, object),
    "one dimension": lambda v, draw: v.reshape(-1),
    "five dimensions": lambda v, draw: v.reshape(N_SAMPLES, -1, 1, 1, 1),
    "no samples": lambda v, draw: v[:0],
    "an empty axis": lambda v, draw: np.zeros((N_SAMPLES, *v.shape[1:-1], 0)),
    "sparse": lambda v, draw: scipy.sparse.csr_matrix(v.reshape(N_SAMPLES, -1)),
    "ragged": lambda v, draw: [
        row.reshape(-1)[: 1 + i % 2].tolist() for i, row in enumerate(v)
    ],
}


@st.composite
def sample_arrays(draw, kinds=None):
    """``(X, valid)``: a generated X of ``N_SAMPLES`` samples (unless the kind
    has none) in one of the layouts, and whether it is valid input."""
    kinds = kinds or sorted({**VALID_ARRAYS, **INVALID_ARRAYS})
    kind = draw(st.sampled_from(kinds))
    layout = draw(st.sampled_from(LAYOUTS))
    values = np.random.RandomState(draw(st.integers(0, 2**16))).rand(*layout)
    make = VALID_ARRAYS.get(kind) or INVALID_ARRAYS[kind]
    return make(values, draw), kind in VALID_ARRAYS


def labels_for(X):
    return np.arange(X.shape[0] if hasattr(X, "shape") else len(X)) % 2


@SETTINGS
@given(name=st.sampled_from(sorted(ESTIMATORS)), case=sample_arrays())
def test_fit_refuses_bad_X_by_name_or_fits_correctly(name, case):
    X, valid = case
    y = labels_for(X)
    model, error = outcome(lambda: estimator(name).fit(X, y))
    if valid:
        assert error is None, error
        assert_fitted_correctly(model, X, y)
    else:
        assert_refused_naming(error, "X")


@st.composite
def label_arrays(draw):
    """``(y, valid)`` for ``N_SAMPLES`` float samples."""
    half = np.arange(N_SAMPLES) % 2
    cases = {
        "ints": (half, True),
        "strings": (np.array(["cat", "dog"])[half], True),
        "bools": (half == 1, True),
        "three classes": (np.arange(N_SAMPLES) % 3, True),
        "one class": (np.zeros(N_SAMPLES, dtype=int), False),
        "too short": (half[: draw(st.integers(0, N_SAMPLES - 1))], False),
        "too long": (np.r_[half, half][: draw(st.integers(N_SAMPLES + 1, 30))], False),
        "continuous": (np.linspace(0, 1, N_SAMPLES) + 0.001, False),
        "nan": (np.where(half == 1, np.nan, 0.0), False),
        "inf": (np.where(half == 1, np.inf, 0.0), False),
        "numbers and strings": (np.array([0, "a"] * (N_SAMPLES // 2), object), False),
        "complex": (half.astype(complex), False),
        "two columns": (np.c_[half, half], False),
        "None": (None, False),
    }
    return cases[draw(st.sampled_from(sorted(cases)))]


@SETTINGS
@given(name=st.sampled_from(sorted(ESTIMATORS)), case=label_arrays())
def test_fit_refuses_bad_y_by_name_or_fits_correctly(name, case):
    y, valid = case
    X = np.random.RandomState(0).rand(N_SAMPLES, 6).astype(np.float32)
    model, error = outcome(lambda: estimator(name).fit(X, y))
    if valid:
        assert error is None, error
        assert_fitted_correctly(model, X, y)
    else:
        assert_refused_naming(error, "y")


def _device_available(device):
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        return False
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        index = device.index or 0
        return torch.cuda.is_available() and index < torch.cuda.device_count()
    return False


DEVICES = ["cuda", "cuda:0", "cuda:7", "mps", "banana", "meta", "xpu", "cpu", "cpu:0"]


@SETTINGS
@given(
    name=st.sampled_from(sorted(ESTIMATORS)),
    device=st.one_of(st.sampled_from(DEVICES), st.text(max_size=6)),
)
def test_unavailable_devices_are_refused_at_fit_by_name(name, device):
    unfitted = estimator(name, device=device)
    X = np.random.RandomState(0).rand(N_SAMPLES, 6).astype(np.float32)
    y = labels_for(X)
    model, error = outcome(lambda: unfitted.fit(X, y))
    if device == "auto" or _device_available(device):
        assert error is None, error
        assert_fitted_correctly(model, X, y)
    else:
        assert_refused_naming(error, "device")


BAD_PARAMETER_VALUES = [-1, -0.5, 0, 1.5, float("nan"), float("inf"), "x", [1], None]


@SETTINGS
@given(
    name=st.sampled_from(sorted(ESTIMATORS)),
    data=st.data(),
    value=st.sampled_from(BAD_PARAMETER_VALUES),
)
def test_parameters_out_of_range_are_refused_by_name(name, data, value):
    unfitted = estimator(name)
    parameters = sorted(
        set(unfitted._parameter_constraints) - {"n_jobs", "verbose", "device"}
    )
    parameter = data.draw(st.sampled_from(parameters))
    unfitted.set_params(**{parameter: value})
    X = np.random.RandomState(0).rand(N_SAMPLES, 6).astype(np.float32)
    y = labels_for(X)
    model, error = outcome(lambda: unfitted.fit(X, y))
    if error is None:
        assert_fitted_correctly(model, X, y)
    else:
        assert_refused_naming(error, parameter)


# ---------------------------------------------------------------------------
# Data after fit: transform, predict, predict_proba
# ---------------------------------------------------------------------------

_FITTED = {}


def fitted(name, X, key):
    """One fit per estimator and training representation for the session."""
    if (name, key) not in _FITTED:
        _FITTED[name, key] = estimator(name).fit(X, labels_for(X))
    return _FITTED[name, key]


@SETTINGS
@given(name=st.sampled_from(sorted(ESTIMATORS)), case=sample_arrays())
def test_methods_after_fit_refuse_bad_X_by_name_or_answer_correctly(name, case):
    X, valid = case
    X_train = np.random.RandomState(1).rand(N_SAMPLES, 4, 4, 3).astype(np.float32)
    model = fitted(name, X_train, "images in [0, 1]")
    if name in SANITIZERS:
        assert_refused_naming(outcome(lambda: model.transform(X))[1], "X")
    if name not in CLASSIFIERS:
        return
    n_samples = X.shape[0] if hasattr(X, "shape") else len(X)
    for method in (model.predict, model.predict_proba):
        result, error = outcome(lambda method=method: method(X))
        if error is not None:
            assert_refused_naming(error, "X")
        elif method == model.predict_proba:
            assert_probabilities(result, n_samples, 2)
        else:
            assert set(result) <= set(model.classes_)


def representations(pixels):
    """The same images ``pixels`` (ints 0-255) in several dtypes and units."""
    return {
        "uint8": pixels.astype(np.uint8),
        "float32 in [0, 1]": (pixels / 255).astype(np.float32),
        "float64 in [0, 1]": pixels / 255,
        "float32 in 0-255": pixels.astype(np.float32),
        "int64 in 0-255": pixels.astype(np.int64),
    }


REPRESENTATIONS = sorted(representations(np.zeros(1)))
# Float data is read in its own units; data in fewer units than fit's (0-1
# after 0-255) cannot be told from dark images, so the test leaves that out.
UNDETECTABLE = {
    ("float32 in 0-255", "float32 in [0, 1]"),
    ("float32 in 0-255", "float64 in [0, 1]"),
    ("int64 in 0-255", "float32 in [0, 1]"),
    ("int64 in 0-255", "float64 in [0, 1]"),
}


@SETTINGS
@given(
    name=st.sampled_from(CLASSIFIERS),
    fit_as=st.sampled_from(REPRESENTATIONS),
    predict_as=st.sampled_from(REPRESENTATIONS),
    seed=st.integers(0, 2**16),
)
def test_predict_reads_data_in_other_dtypes_or_units_right_or_refuses(
    name, fit_as, predict_as, seed
):
    if (fit_as, predict_as) in UNDETECTABLE:
        return
    train = np.random.RandomState(0).randint(0, 256, (N_SAMPLES, 4, 4, 3))
    model = fitted(name, representations(train)[fit_as], fit_as)
    test = np.random.RandomState(seed).randint(0, 256, (5, 4, 4, 3))
    expected = model.predict_proba(representations(test)[fit_as])
    proba, error = outcome(
        lambda: model.predict_proba(representations(test)[predict_as])
    )
    if error is None:
        np.testing.assert_allclose(proba, expected, rtol=1e-4, atol=1e-6)
    else:
        assert_refused_naming(error, "X")


@SETTINGS
@given(
    name=st.sampled_from(CLASSIFIERS),
    value=st.floats(-FLOAT32_MAX, FLOAT32_MAX),
)
def test_predict_far_from_the_training_data_refuses_or_gives_probabilities(name, value):
    X_train = np.random.RandomState(1).rand(N_SAMPLES, 4, 4, 3).astype(np.float32)
    model = fitted(name, X_train, "images in [0, 1]")
    X = np.full((3, 4, 4, 3), value, dtype=np.float32)
    proba, error = outcome(lambda: model.predict_proba(X))
    if error is None:
        assert_probabilities(proba, 3, 2)
    else:
        assert_refused_naming(error, "X")


# ---------------------------------------------------------------------------
# Poisoning
# ---------------------------------------------------------------------------

ATTACK_PARAMETERS = ("X", "y", "target", "source", "poison_fraction", "mode")


@SETTINGS
@given(
    labels=st.lists(st.integers(0, 3), max_size=12),
    layout=st.sampled_from(["flat", "grey", "hwc"]),
    mode=st.sampled_from(["one-to-one", "all-to-one", "all-to-all"]),
    target=st.one_of(st.none(), st.integers(-1, 4)),
    source=st.one_of(st.none(), st.integers(-1, 4)),
    fraction=st.floats(0.01, 1.0),
)
def test_attacks_poison_for_real_or_refuse_by_name(
    labels, layout, mode, target, source, fraction
):
    y = np.array(labels, dtype=np.int64)
    shape = {"flat": (len(y), 16), "grey": (len(y), 4, 4), "hwc": (len(y), 4, 4, 3)}
    X = np.random.RandomState(0).randint(0, 200, shape[layout]).astype(np.uint8)
    trigger = pixel_trigger((0, 0), 255)
    poisoned, error = outcome(
        lambda: dirty_label_backdoor(
            X,
            y,
            trigger,
            target=target,
            source=source,
            poison_fraction=fraction,
            mode=mode,
            random_state=0,
        )
    )
    if layout == "flat":
        assert_refused_naming(error, "X")
        assert "height, width" in str(error)
        return
    if error is not None:
        assert_refused_naming(error, *ATTACK_PARAMETERS)
        return
    assert_real_poison(poisoned, X, y, trigger)


def assert_real_poison(poisoned, X, y, trigger):
    """Poison that is there: rows that changed label and carry the trigger,
    every other row untouched, shapes and dtypes kept."""
    index = poisoned.poison_indices
    assert index.size > 0
    assert poisoned.X.shape == X.shape and poisoned.X.dtype == X.dtype
    np.testing.assert_array_equal(poisoned.y_true, y)
    assert (poisoned.y[index] != y[index]).all()
    np.testing.assert_array_equal(poisoned.X[index], trigger.apply(X[index]))
    clean = np.setdiff1d(np.arange(len(y)), index)
    np.testing.assert_array_equal(poisoned.y[clean], y[clean])
    np.testing.assert_array_equal(poisoned.X[clean], X[clean])


@SETTINGS
@given(labels=st.lists(st.integers(0, 3), max_size=12), fraction=st.floats(0.01, 1.0))
def test_label_flips_change_labels_or_refuse_by_name(labels, fraction):
    y = np.array(labels, dtype=np.int64)
    result, error = outcome(lambda: systematic_label_flip(y, fraction, random_state=0))
    if error is not None:
        assert_refused_naming(error, "y", "poison_fraction")
        return
    y_new, flipped = result
    assert flipped.size > 0
    assert (y_new[flipped] != y[flipped]).all()
    unflipped = np.setdiff1d(np.arange(len(y)), flipped)
    np.testing.assert_array_equal(y_new[unflipped], y[unflipped])


@SETTINGS
@given(
    n_per_class=st.integers(1, 30),
    fraction=st.floats(0.01, 1.0),
    layout=st.sampled_from([(8, 8), (8, 8, 3)]),
)
def test_reference_scenarios_poison_for_real_or_refuse_by_name(
    n_per_class, fraction, layout
):
    scenario = BackdoorScenario(
        source=0,
        target=1,
        method="pixel",
        position=(2, 3),
        color=(250, 10, 10),
        poison_fraction=fraction,
        selection_seed=0,
        seed=0,
    )
    y = np.repeat([0, 1], n_per_class)
    X = np.zeros((len(y), *layout), dtype=np.uint8)
    poisoned, error = outcome(lambda: scenario.poison(X, y))
    if error is not None:
        assert_refused_naming(error, "poison_fraction", "color")
        return
    assert_real_poison(poisoned, X, y, scenario.trigger())


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------


@st.composite
def label_lists(draw, size):
    """``(labels, group)``: labels of one generated type, and whether they
    are numbers, strings, or something no label should be."""
    kind = draw(st.sampled_from(["ints", "floats", "bools", "strings", "mixed", "nan"]))
    ints = draw(st.lists(st.integers(0, 2), min_size=size, max_size=size))
    if kind == "ints":
        return np.array(ints, dtype=np.int64), "number"
    if kind == "floats":
        return np.array(ints, dtype=np.float64), "number"
    if kind == "bools":
        return np.array(ints, dtype=np.int64) > 0, "number"
    if kind == "strings":
        return np.array([str(v) for v in ints]), "string"
    if kind == "mixed":
        mixed = [v if i % 2 else str(v) for i, v in enumerate(ints)]
        return np.array(mixed, object), {0: "number", 1: "string"}.get(size)
    values = np.array(ints, dtype=np.float64)
    if size:
        values[draw(st.integers(0, size - 1))] = np.nan
    return values, (None if size else "number")


def matches(a, b):
    return np.array([x == y for x, y in zip(a.tolist(), b.tolist(), strict=True)])


@SETTINGS
@given(data=st.data(), size=st.integers(0, 6), other_size=st.integers(0, 6))
def test_accuracies_compare_like_labels_or_refuse_by_name(data, size, other_size):
    y_true, true_group = data.draw(label_lists(size))
    y_pred, pred_group = data.draw(label_lists(other_size))
    for metric, pred_name in (
        (clean_accuracy, "y_pred"),
        (poison_accuracy, "y_pred_triggered"),
    ):
        accuracy, error = outcome(lambda metric=metric: metric(y_true, y_pred))
        comparable = true_group is not None and true_group == pred_group
        if comparable and size == other_size and size > 0:
            assert error is None, error
            assert accuracy == pytest.approx(matches(y_true, y_pred).mean())
        else:
            assert_refused_naming(error, "y_true", pred_name)


@SETTINGS
@given(
    data=st.data(),
    size=st.integers(1, 6),
    target=st.one_of(st.integers(0, 2), st.sampled_from(["0", "1", "x"])),
)
def test_success_rates_compare_like_labels_or_refuse_by_name(data, size, target):
    y_true, true_group = data.draw(label_lists(size))
    clean, clean_group = data.draw(label_lists(size))
    triggered, triggered_group = data.draw(label_lists(size))
    target_group = "string" if isinstance(target, str) else "number"
    asr, error = outcome(lambda: attack_success_rate(triggered, target))
    if triggered_group == target_group:
        assert error is None, error
        assert asr == pytest.approx(np.mean([v == target for v in triggered.tolist()]))
    else:
        assert_refused_naming(error, "y_pred_triggered", "target")
    groups = {true_group, clean_group, triggered_group}
    tmr, error = outcome(
        lambda: targeted_misclassification_rate(y_true, clean, triggered)
    )
    if None not in groups and len(groups) == 1:
        assert error is None, error
        expected = matches(y_true, clean) & ~matches(y_true, triggered)
        assert tmr == pytest.approx(expected.mean())
    else:
        assert_refused_naming(error, "y_true", "y_pred_clean", "y_pred_triggered")


# ---------------------------------------------------------------------------
# Losses and representations that are not finite: the worst, in every defense
# ---------------------------------------------------------------------------


class MarkedNaN(torch.nn.Module):
    """Logits of a linear layer, NaN for the samples whose first value is
    negative; its input is its representation."""

    representation_layer = "linear"

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)

    def forward(self, x):
        return torch.where(x[:, :1] < 0, torch.nan, self.linear(x))


def marked_data(n_marked):
    """Ten samples of two features and two classes; the last ``n_marked`` of
    each class are marked (first value negative)."""
    rng = np.random.RandomState(0)
    X = torch.as_tensor(rng.rand(10, 2), dtype=torch.float32)
    y = torch.arange(10) % 2
    marked = (torch.arange(10) >= 10 - 2 * n_marked).numpy()
    X[marked, 0] = -1.0
    return X, y, marked


def marked_net():
    return FastNeuralNetClassifier(
        MarkedNaN, random_state=0, device="cpu", verbose=0
    ).initialize()


@SETTINGS
@given(
    values=st.lists(
        st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=12
    )
)
def test_nonfinite_values_rank_above_every_finite_one(values):
    values = np.array(values)
    finite = np.isfinite(values)
    ranked, error = outcome(lambda: nonfinite_as_worst(values, what="loss"))
    if values.size and not finite.any():
        assert_refused_naming(error, "net")
        return
    assert error is None
    assert np.isfinite(ranked).all()
    np.testing.assert_array_equal(ranked[finite], values[finite])
    if finite.any() and not finite.all():
        assert ranked[~finite].min() > values[finite].max()


def test_itlm_ranks_nonfinite_losses_as_the_highest():
    X, y, marked = marked_data(n_marked=1)
    losses = sample_losses(marked_net(), X, y)
    assert np.isfinite(losses).all()
    assert losses[marked].min() > losses[~marked].max()
    np.testing.assert_array_equal(keep_lowest_loss(losses, 0.8), ~marked)


def test_ispl_ranks_nonfinite_losses_as_the_highest():
    X, y, marked = marked_data(n_marked=1)
    ispl = IncompatibilityClustering(augment_scoring=False)
    losses = ispl._losses(marked_net(), X, y)
    assert losses[marked].min() > losses[~marked].max()


@pytest.mark.parametrize("strategy", [PRL(eps=0.3), SPL(eps=0.3)])
def test_minimax_filters_reject_nonfinite_samples_and_keep_a_finite_loss(strategy):
    logits = torch.tensor([[2.0, 0.0], [torch.nan, 0.0], [0.0, 1.0], [1.0, 1.0]])
    logits = torch.cat([logits, logits.flip(0)])
    logits[6] = torch.tensor([torch.inf, -torch.inf])
    y = torch.tensor([0, 1, 1, 0, 0, 1, 1, 0])
    loss, selected = strategy.batch_loss(logits.requires_grad_(), y)
    nonfinite = ~torch.isfinite(strategy.suspicion(logits.detach(), y))
    assert nonfinite.any() and not selected[nonfinite].any()
    assert torch.isfinite(loss)


def _fit_with_representations(model, representations):
    """Fit ``model`` as if its network had read ``representations``."""
    X = np.random.RandomState(0).rand(len(representations), 3).astype(np.float32)
    y = np.arange(len(X)) % 2
    model._fit_representations = lambda X_t, y_t, rng: representations
    return model.fit(X, y), y


NONFINITE = [np.nan, np.inf, -np.inf]


def marked_representations(value):
    """40 representations of 4 values, ``value`` in those of samples 4 and 9
    (one of each class); and the bool array of those two."""
    representations = torch.as_tensor(
        np.random.RandomState(1).rand(40, 4), dtype=torch.float32
    )
    marked = np.isin(np.arange(40), [4, 9])
    representations[marked, 1] = value
    return representations, marked


@pytest.mark.parametrize("value", NONFINITE)
def test_spectral_signatures_remove_nonfinite_representations_first(value):
    representations, marked = marked_representations(value)
    model = SpectralSignatureFilter(expected_poison_fraction=0.1, device="cpu")
    model, y = _fit_with_representations(model, representations)
    assert np.isfinite(model.scores_).all()
    assert not model.mask_[marked].any()
    for label in (0, 1):
        in_class = y == label
        assert (
            model.scores_[marked & in_class].min()
            > model.scores_[~marked & in_class].max()
        )


@pytest.mark.parametrize("value", NONFINITE)
def test_activation_clustering_removes_nonfinite_representations(value):
    representations, marked = marked_representations(value)
    model = ActivationClusteringFilter(device="cpu", random_state=0)
    model, y = _fit_with_representations(model, representations)
    assert not model.mask_[marked].any()
    np.testing.assert_array_equal(model.cluster_labels_[marked], -1)
    np.testing.assert_array_equal(model.scores_[marked], 1.0)
    assert model.cluster_sizes_.sum() == (~marked).sum()


@pytest.mark.parametrize(
    "model",
    [SpectralSignatureFilter(device="cpu"), ActivationClusteringFilter(device="cpu")],
    ids=lambda model: type(model).__name__,
)
def test_representations_not_finite_for_a_whole_class_are_refused(model):
    representations = torch.rand(20, 4)
    representations[::2] = torch.nan
    _, error = outcome(lambda: _fit_with_representations(model, representations))
    assert_refused_naming(error, "net")


@pytest.mark.parametrize(
    ("name", "parameter"),
    [("Classifier", "net"), ("Minimax", "lr"), ("ITLM", "net")],
)
def test_a_network_that_diverged_is_reported_not_used(name, parameter, user_skorch_net):
    X = np.random.RandomState(0).rand(40, 6).astype(np.float32)
    diverging = user_skorch_net(optimizer=torch.optim.SGD, lr=1e30, max_epochs=3)
    model = estimator(name, net=diverging)
    if name == "Minimax":
        model.set_params(lr=1e30, optimizer=None, batch_size=16)
    _, error = outcome(lambda: model.fit(X, labels_for(X)))
    assert_refused_naming(error, parameter)


@pytest.mark.parametrize("name", ["Classifier", "Minimax", "ITLM", "ISPL"])
def test_a_network_that_saw_no_batch_is_reported_not_used(name, user_skorch_net):
    X = np.random.RandomState(0).rand(40, 6).astype(np.float32)
    net = user_skorch_net(iterator_train__drop_last=True, batch_size=64)
    model = estimator(name, net=net)
    if name == "Minimax":
        model.set_params(batch_size=None)
    _, error = outcome(lambda: model.fit(X, labels_for(X)))
    assert_refused_naming(error, "batch_size")
