import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sklearn_backdoor.networks import MLP
from sklearn_backdoor.saliency import input_saliency, label_margin, normalised_maps
from sklearn_backdoor.training import FastNeuralNetClassifier


def _linear_net(n_features=6, n_classes=3, seed=0):
    """An MLP without hidden layers: logits are a linear map of the input."""
    return FastNeuralNetClassifier(
        MLP,
        module__n_features=n_features,
        module__n_classes=n_classes,
        module__hidden=(),
        device="cpu",
        random_state=seed,
    ).initialize()


def test_a_linear_networks_saliency_is_its_weight_difference_times_the_input():
    """For logits ``W x``, the margin of label c against the runner-up r has
    gradient ``W[c] - W[r]``; the map is ``|(W[c] - W[r]) * x|`` scaled to
    sum 1."""
    net = _linear_net()
    rng = np.random.RandomState(0)
    X = rng.normal(size=(20, 6)).astype(np.float32)
    y = rng.randint(0, 3, 20)
    maps = input_saliency(net, torch.from_numpy(X), y)
    with torch.no_grad():
        logits = net.module_(torch.from_numpy(X)).numpy()
    weight = net.module_.head.weight.detach().numpy()
    expected = []
    for i, label in enumerate(y):
        others = np.delete(np.arange(3), label)
        runner_up = others[np.argmax(logits[i, others])]
        row = np.abs((weight[label] - weight[runner_up]) * X[i])
        expected.append(row / row.sum())
    np.testing.assert_allclose(maps, np.array(expected), rtol=1e-4, atol=1e-6)


def test_saliency_finds_the_pixels_a_network_reads():
    """A network whose logits read only the top-left 2x2 of each image puts
    all of every image's saliency there."""

    class Corner(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))  # for the optimiser

        def forward(self, x):
            corner = x[:, :, :2, :2].sum(dim=(1, 2, 3))
            return torch.stack([corner, -corner], dim=1)

    net = FastNeuralNetClassifier(Corner, device="cpu").initialize()
    X = torch.randn(10, 3, 8, 8)
    maps = input_saliency(net, X, np.zeros(10, dtype=int)).reshape(10, 8, 8)
    np.testing.assert_allclose(maps[:, :2, :2].sum(axis=(1, 2)), 1.0, rtol=1e-6)
    assert (maps[:, 2:, :] == 0).all() and (maps[:, :, 2:] == 0).all()


def test_saliency_leaves_the_weights_and_the_mode_as_they_were():
    net = _linear_net()
    net.module_.train()
    before = [p.detach().clone() for p in net.module_.parameters()]
    X = torch.randn(7, 6)
    kept = X.clone()
    input_saliency(net, X, np.zeros(7, dtype=int), batch_size=3)
    assert net.module_.training
    for p, b in zip(net.module_.parameters(), before, strict=True):
        assert p.grad is None
        assert torch.equal(p, b)
    assert torch.equal(X, kept) and not X.requires_grad


def test_saliency_is_the_same_in_any_batch_size():
    net = _linear_net(seed=3)
    X = torch.randn(11, 6)
    y = np.arange(11) % 3
    np.testing.assert_allclose(
        input_saliency(net, X, y, batch_size=4), input_saliency(net, X, y), atol=1e-7
    )


def test_saliency_needs_an_initialised_net():
    net = FastNeuralNetClassifier(
        MLP, module__n_features=4, module__n_classes=2, device="cpu"
    )
    with pytest.raises(ValueError, match="initialised"):
        input_saliency(net, torch.zeros(2, 4), np.zeros(2, dtype=int))


def test_label_margin_against_the_runner_up():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 0.0, 5.0], [1.0, 1.0, 1.0]])
    margins = label_margin(logits, torch.tensor([0, 1, 2]))
    assert margins.tolist() == [1.0, -5.0, 0.0]


@settings(max_examples=40, deadline=None)
@given(
    attributions=arrays(
        np.float64,
        st.tuples(st.integers(1, 5), st.integers(1, 3), st.integers(1, 4)),
        elements=st.one_of(st.just(0.0), st.floats(1e-3, 1e3), st.floats(-1e3, -1e-3)),
    ),
    scale=st.floats(1e-3, 1e3),
)
def test_maps_are_distributions_that_ignore_sign_and_scale(attributions, scale):
    maps = normalised_maps(attributions)
    assert maps.shape == (attributions.shape[0], attributions.shape[2])
    assert (maps >= 0).all()
    totals = maps.sum(axis=1)
    zero = np.abs(attributions).sum(axis=(1, 2)) == 0
    np.testing.assert_allclose(totals[~zero], 1.0)
    assert (maps[zero] == 0).all()
    np.testing.assert_allclose(normalised_maps(-scale * attributions), maps, atol=1e-9)
