import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from sklearn_backdoor.noisy_label import (
    PRL,
    SPL,
    Bootstrap,
    StandardTraining,
    bootstrap_targets,
    keep_smallest,
    loss_layer_gradient_norm,
    make_strategy,
    n_kept,
)

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def batches(draw, max_size=40, max_classes=6):
    n = draw(st.integers(1, max_size))
    k = draw(st.integers(2, max_classes))
    seed = draw(st.integers(0, 2**31 - 1))
    generator = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(n, k, generator=generator)
    y = torch.randint(0, k, (n,), generator=generator)
    return logits, y


def numpy_softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def numpy_cross_entropy(logits, y):
    p = numpy_softmax(logits.astype(np.float64))
    return -np.log(p[np.arange(len(y)), y])


@given(st.integers(1, 300), st.data())
def test_n_kept_rejects_floor_of_eps_times_batch(batch_size, data):
    rejected = data.draw(st.integers(0, batch_size - 1))
    assert n_kept(batch_size, rejected / batch_size) == batch_size - rejected


@given(st.integers(1, 300), st.floats(0, 0.999), st.floats(0, 0.999))
def test_n_kept_is_ceil_and_monotone(batch_size, eps_a, eps_b):
    low, high = sorted((eps_a, eps_b))
    assert 1 <= n_kept(batch_size, high) <= n_kept(batch_size, low) <= batch_size
    exact = math.ceil(round((1 - low) * batch_size, 6))
    assert n_kept(batch_size, low) == max(1, exact)


def test_n_kept_concrete_values():
    assert [n_kept(10, e) for e in (0.0, 0.25, 0.3, 0.5, 0.95)] == [10, 8, 7, 5, 1]
    assert n_kept(128, 0.25) == 96


def test_keep_smallest_breaks_ties_by_index():
    keep = keep_smallest(torch.tensor([1.0, 0.0, 1.0, 1.0]), 2)
    assert keep.tolist() == [True, True, False, False]


@SETTINGS
@given(batches())
def test_loss_layer_gradient_norm_is_the_cross_entropy_gradient(batch):
    logits, y = batch
    logits = logits.double().requires_grad_(True)
    F.cross_entropy(logits, y, reduction="sum").backward()
    expected = torch.linalg.vector_norm(logits.grad, dim=1).float()
    actual = loss_layer_gradient_norm(logits.detach(), y)
    np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


@SETTINGS
@given(batches(), st.floats(0, 0.95))
def test_prl_keeps_the_smallest_gradient_norms(batch, eps):
    logits, y = batch
    keep = PRL(eps).select(logits, y).numpy()
    p = numpy_softmax(logits.numpy().astype(np.float64))
    norms = np.linalg.norm(p - np.eye(logits.shape[1])[y.numpy()], axis=1)
    assert keep.sum() == n_kept(len(y), eps)
    if not keep.all():
        assert norms[keep].max() <= norms[~keep].min() + 1e-6


@SETTINGS
@given(batches(), st.floats(0, 0.95))
def test_spl_keeps_the_smallest_losses(batch, eps):
    logits, y = batch
    keep = SPL(eps).select(logits, y).numpy()
    losses = numpy_cross_entropy(logits.numpy(), y.numpy())
    assert keep.sum() == n_kept(len(y), eps)
    if not keep.all():
        assert losses[keep].max() <= losses[~keep].min() + 1e-5


@SETTINGS
@given(batches(), st.sampled_from([PRL(0.3), SPL(0.3)]))
def test_filtering_batch_loss_is_mean_loss_of_kept(batch, strategy):
    logits, y = batch
    loss, kept = strategy.batch_loss(logits, y)
    losses = numpy_cross_entropy(logits.numpy(), y.numpy())
    assert float(loss) == pytest.approx(losses[kept.numpy()].mean(), rel=1e-5, abs=1e-6)


def test_prl_and_spl_can_disagree():
    # Sample 0: p_y = 0.5, the rest on one class (loss 0.69, norm 0.71).
    # Sample 1: p_y = 0.45, the rest spread over 9 classes (loss 0.80, norm 0.58).
    logits = torch.full((2, 10), -30.0)
    logits[0, :2] = 0.0
    logits[1] = torch.tensor([2.0] + [0.0] * 9)
    y = torch.tensor([0, 0])
    assert PRL(0.5).select(logits, y).tolist() == [False, True]
    assert SPL(0.5).select(logits, y).tolist() == [True, False]


@SETTINGS
@given(batches(), st.floats(0, 1))
def test_bootstrap_targets_mix_label_and_prediction(batch, coefficient):
    logits, y = batch
    targets = bootstrap_targets(logits, y, coefficient).numpy()
    onehot = np.eye(logits.shape[1])[y.numpy()]
    expected = coefficient * onehot + (1 - coefficient) * numpy_softmax(
        logits.numpy().astype(np.float64)
    )
    np.testing.assert_allclose(targets, expected, atol=1e-6)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-6)


@SETTINGS
@given(batches(), st.floats(0, 1))
def test_bootstrap_gradient_treats_targets_as_constants(batch, coefficient):
    logits, y = batch
    logits = logits.requires_grad_(True)
    loss, kept = Bootstrap(coefficient).batch_loss(logits, y)
    loss.backward()
    targets = bootstrap_targets(logits, y, coefficient)
    expected = (torch.softmax(logits.detach(), 1) - targets) / len(y)
    assert kept.all()
    np.testing.assert_allclose(logits.grad.numpy(), expected.numpy(), atol=1e-5)


def test_bootstrap_with_coefficient_one_is_cross_entropy():
    logits = torch.tensor([[1.0, -1.0, 0.5], [0.0, 2.0, 1.0]])
    y = torch.tensor([2, 0])
    loss, _ = Bootstrap(1.0).batch_loss(logits, y)
    assert float(loss) == pytest.approx(float(F.cross_entropy(logits, y)))


def test_standard_training_keeps_everything():
    logits = torch.tensor([[1.0, -1.0], [0.0, 2.0], [3.0, 0.0]])
    y = torch.tensor([1, 0, 0])
    loss, kept = StandardTraining().batch_loss(logits, y)
    assert kept.tolist() == [True, True, True]
    assert float(loss) == pytest.approx(float(F.cross_entropy(logits, y)))


def test_make_strategy_names():
    assert make_strategy("prl", eps=0.2) == PRL(0.2)
    assert make_strategy("spl", eps=0.1) == SPL(0.1)
    assert make_strategy("bootstrap", bootstrap_coefficient=0.8) == Bootstrap(0.8)
    assert make_strategy("none") == StandardTraining()
    with pytest.raises(ValueError, match="strategy must be one of"):
        make_strategy("mixup")


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: PRL(1.0), "eps must be in"),
        (lambda: SPL(-0.1), "eps must be in"),
        (lambda: PRL("0.2"), "eps must be a float"),
        (lambda: Bootstrap(1.5), "coefficient must be in"),
    ],
)
def test_strategy_errors_name_the_parameter(build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()
