import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_backdoor.classifier import NetworkClassifier
from sklearn_backdoor.clean_label import clean_label_backdoor, four_corner_trigger
from sklearn_backdoor.inputs import to_float_channels_first
from sklearn_backdoor.networks import MLP
from sklearn_backdoor.training import FastNeuralNetClassifier

SETTINGS = settings(max_examples=15, deadline=None)
SHAPE = (16, 16, 3)
TARGET = 1
EPS = {"linf": 8 / 255, "l2": 300 / 255}


def coloured_images(n_per_class=30, n_classes=3, seed=0):
    """Classes differ by their mean colour, so a tiny MLP learns them."""
    rng = np.random.RandomState(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    means = rng.randint(60, 200, size=(n_classes, 1, 1, 3))
    noise = rng.randint(-40, 41, size=(len(y), *SHAPE))
    return np.clip(means[y] + noise, 0, 255).astype(np.uint8), y


@pytest.fixture(scope="module")
def data():
    return coloured_images()


@pytest.fixture(scope="module")
def reference(data):
    X, y = data
    return NetworkClassifier(net="mlp", epochs=3, random_state=0, device="cpu").fit(
        X, y
    )


def corner_mask(height, width):
    rows = np.arange(height)
    cols = np.arange(width)
    near_rows = (rows < 3) | (rows >= height - 3)
    near_cols = (cols < 3) | (cols >= width - 3)
    return near_rows[:, None] & near_cols[None, :]


def unit_change(poisoned, X, value_range):
    low, high = value_range
    return (poisoned.astype(np.float64) - X.astype(np.float64)) / (high - low)


def as_dtype(X, dtype):
    return X if dtype == np.uint8 else (X / 255.0).astype(dtype)


def check_attack(X, y, poisoned, norm, eps, value_range):
    """The definition: target rows only, labels kept, budget, range, corners."""
    indices = poisoned.poison_indices
    assert np.all(y[indices] == TARGET)
    np.testing.assert_array_equal(poisoned.y, y)
    np.testing.assert_array_equal(poisoned.y_true, y)
    changed = np.flatnonzero((poisoned.X != X).reshape(len(X), -1).any(axis=1))
    assert set(changed) <= set(indices)
    corners = corner_mask(*X.shape[1:3])
    expected = four_corner_trigger(X.shape[1:], *value_range).apply(X[indices])
    np.testing.assert_array_equal(poisoned.X[indices][:, corners], expected[:, corners])
    change = unit_change(poisoned.X[indices], X[indices], value_range)
    change[:, corners] = 0
    if norm == "linf":
        assert np.abs(change).max() <= eps + 1e-6
    else:
        norms = np.sqrt((change.reshape(len(indices), -1) ** 2).sum(axis=1))
        assert norms.max() <= eps + 1e-6
    assert value_range[0] <= poisoned.X.min() and poisoned.X.max() <= value_range[1]
    return change


# ---------------------------------------------------------------------------
# The trigger
# ---------------------------------------------------------------------------


@st.composite
def images_for_trigger(draw):
    height = draw(st.integers(6, 12))
    width = draw(st.integers(6, 12))
    channels = draw(st.sampled_from([1, 3]))
    dtype = draw(st.sampled_from([np.uint8, np.float32]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.RandomState(seed)
    X = rng.randint(1, 255, size=(2, height, width, channels))
    return X.astype(dtype)


@SETTINGS
@given(X=images_for_trigger(), low=st.integers(0, 20), high=st.integers(200, 255))
def test_four_corner_trigger_is_a_checkerboard_in_each_corner_only(X, low, high):
    height, width = X.shape[1:3]
    X_before = X.copy()
    triggered = four_corner_trigger(X.shape[1:], low=low, high=high).apply(X)
    np.testing.assert_array_equal(X, X_before)
    corners = corner_mask(height, width)
    np.testing.assert_array_equal(triggered[:, ~corners], X[:, ~corners])
    rows, cols = np.nonzero(corners)
    distance = np.minimum(rows, height - 1 - rows) + np.minimum(cols, width - 1 - cols)
    expected = np.where(distance % 2 == 0, high, low)
    for channel in range(X.shape[3]):
        np.testing.assert_array_equal(triggered[:, rows, cols, channel][0], expected)


def test_four_corner_trigger_needs_room_for_four_patches():
    with pytest.raises(ValueError, match="image_shape must be at least 6x6"):
        four_corner_trigger((5, 8, 3))


# ---------------------------------------------------------------------------
# The attack
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_perturbation_stays_in_budget_and_uses_it(data, reference, norm, dtype):
    X, y = data
    X = as_dtype(X, dtype)
    value_range = (0, 255) if dtype == np.uint8 else (0, 1)
    poisoned = clean_label_backdoor(
        X,
        y,
        target=TARGET,
        poison_fraction=0.5,
        norm=norm,
        steps=12,
        reference_model=reference,
        random_state=0,
    )
    assert len(poisoned.poison_indices) == 15
    change = check_attack(X, y, poisoned, norm, EPS[norm], value_range)
    if norm == "linf":
        # 12 steps of 1.5/255 reach the 8/255 bound, a whole 8 for uint8.
        np.testing.assert_allclose(np.abs(change).max(), EPS[norm], atol=1e-6)
    else:
        norms = np.sqrt((change.reshape(len(change), -1) ** 2).sum(axis=1))
        assert np.median(norms) > 0.5 * EPS[norm]


def test_poison_goes_to_target_class_and_triggers_the_non_target_classes(
    data, reference
):
    X, y = data
    poisoned = clean_label_backdoor(
        X, y, target=TARGET, steps=2, reference_model=reference, random_state=0
    )
    assert poisoned.target == TARGET
    np.testing.assert_array_equal(poisoned.source, [0, 2])
    assert len(poisoned.poison_indices) == 3
    X_test = X[:4]
    np.testing.assert_array_equal(
        poisoned.trigger.apply(X_test), four_corner_trigger(SHAPE).apply(X_test)
    )


def test_perturbation_raises_the_reference_loss_of_the_true_label(data, reference):
    X, y = data
    poisoned = clean_label_backdoor(
        X,
        y,
        target=TARGET,
        poison_fraction=1.0,
        steps=10,
        reference_model=reference,
        random_state=0,
    )
    indices = poisoned.poison_indices
    trigger_only = poisoned.trigger.apply(X[indices])
    target_column = list(reference.classes_).index(TARGET)
    before = reference.predict_proba(trigger_only)[:, target_column]
    after = reference.predict_proba(poisoned.X[indices])[:, target_column]
    assert np.mean(-np.log(after)) > 2 * np.mean(-np.log(before))
    assert np.mean(after < before) > 0.9


def test_deterministic_and_inputs_untouched(data):
    X, y = data
    X_before, y_before = X.copy(), y.copy()
    kwargs = dict(
        target=TARGET,
        poison_fraction=0.2,
        steps=2,
        net="mlp",
        reference_epochs=1,
        device="cpu",
        random_state=3,
    )
    first = clean_label_backdoor(X, y, **kwargs)
    second = clean_label_backdoor(X, y, **kwargs)
    np.testing.assert_array_equal(first.X, second.X)
    np.testing.assert_array_equal(first.poison_indices, second.poison_indices)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(y, y_before)
    other = clean_label_backdoor(X, y, **{**kwargs, "random_state": 4})
    assert not np.array_equal(first.poison_indices, other.poison_indices)


@SETTINGS
@given(
    norm=st.sampled_from(["linf", "l2"]),
    eps_in_pixels=st.floats(0.5, 600),
    steps=st.integers(1, 3),
    poison_fraction=st.floats(0.05, 1.0),
    dtype=st.sampled_from([np.uint8, np.float32, np.float64]),
    seed=st.integers(0, 2**16),
)
def test_definition_holds_for_any_budget(
    data, reference, norm, eps_in_pixels, steps, poison_fraction, dtype, seed
):
    X, y = data
    X = as_dtype(X, dtype)
    eps = eps_in_pixels / 255 if norm == "l2" else min(eps_in_pixels, 64) / 255
    value_range = (0, 255) if dtype == np.uint8 else (0, 1)
    poisoned = clean_label_backdoor(
        X,
        y,
        target=TARGET,
        poison_fraction=poison_fraction,
        norm=norm,
        eps=eps,
        step_size=eps / 2,
        steps=steps,
        reference_model=reference,
        random_state=seed,
    )
    assert len(poisoned.poison_indices) == max(1, round(poison_fraction * 30))
    check_attack(X, y, poisoned, norm, eps, value_range)


def test_float_images_with_their_own_value_range(data, reference):
    X, y = data
    X16 = X.astype(np.float64) * 16 / 255
    poisoned = clean_label_backdoor(
        X16,
        y,
        target=TARGET,
        steps=12,
        value_range=(0, 16),
        reference_model=NetworkClassifier(net="mlp", epochs=1, random_state=0).fit(
            X16, y
        ),
        random_state=0,
    )
    change = check_attack(X16, y, poisoned, "linf", 8 / 255, (0, 16))
    assert np.abs(change).max() > 7 / 255


def test_skorch_reference_gets_unstandardised_pixels(data):
    X, y = data
    net = FastNeuralNetClassifier(
        MLP,
        module__n_features=int(np.prod(SHAPE)),
        module__n_classes=3,
        max_epochs=2,
        random_state=0,
        verbose=0,
        device="cpu",
    ).fit(to_float_channels_first(X), y)
    poisoned = clean_label_backdoor(
        X, y, target=TARGET, steps=12, reference_model=net, random_state=0
    )
    change = check_attack(X, y, poisoned, "linf", 8 / 255, (0, 255))
    assert np.abs(change).max() > 7 / 255


def test_unfitted_reference_models_are_rejected(data):
    X, y = data
    unfitted = FastNeuralNetClassifier(MLP, module__n_features=768, module__n_classes=3)
    with pytest.raises(ValueError, match="reference_model must be a fitted"):
        clean_label_backdoor(X, y, target=TARGET, reference_model=unfitted)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"norm": "l1"}, InvalidParameterError, "'norm' parameter"),
        ({"eps": 0.0}, InvalidParameterError, "'eps' parameter"),
        ({"steps": 0}, InvalidParameterError, "'steps' parameter"),
        ({"poison_fraction": 0.0}, InvalidParameterError, "'poison_fraction'"),
        ({"reference_model": "net"}, InvalidParameterError, "'reference_model'"),
        ({"target": 7}, ValueError, "target must be one of the labels"),
        ({"value_range": (1, 0)}, ValueError, "value_range must have low < high"),
        ({"value_range": (0, 1)}, ValueError, "X must lie in value_range"),
    ],
)
def test_parameters_are_validated_by_name(data, reference, kwargs, error, match):
    X, y = data
    kwargs = {"target": TARGET, "reference_model": reference, **kwargs}
    with pytest.raises(error, match=match):
        clean_label_backdoor(X, y, **kwargs)


def test_rejects_other_integer_images_and_mismatched_references(data, reference):
    X, y = data
    with pytest.raises(TypeError, match="X must have dtype uint8 or a float"):
        clean_label_backdoor(X.astype(np.int16), y, target=TARGET)
    with pytest.raises(ValueError, match="reference_model was fitted on samples"):
        clean_label_backdoor(X[:, :8, :8], y, target=TARGET, reference_model=reference)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda_within_budget(data):
    X, y = data
    poisoned = clean_label_backdoor(
        X,
        y,
        target=TARGET,
        poison_fraction=0.5,
        norm="l2",
        steps=12,
        net="fast",
        reference_epochs=2,
        device="cuda",
        random_state=0,
    )
    check_attack(X, y, poisoned, "l2", EPS["l2"], (0, 255))
