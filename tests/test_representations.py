import numpy as np
import pytest
import torch
from torch import nn

from sklearn_backdoor.networks import MLP, FastCNN
from sklearn_backdoor.representations import (
    extract_representations,
    logits_and_representations,
    resolve_representation_layer,
)
from sklearn_backdoor.training import FastNeuralNetClassifier, predict_logits


def _mlp_net(hidden=(5,)):
    return FastNeuralNetClassifier(
        MLP,
        module__n_features=3,
        module__n_classes=2,
        module__hidden=hidden,
        random_state=0,
        device="cpu",
    ).initialize()


class _NoLayerAttribute(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(3, 4)
        self.unused = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


def _plain_net():
    return FastNeuralNetClassifier(
        _NoLayerAttribute, random_state=0, device="cpu"
    ).initialize()


def test_mlp_representation_is_the_hidden_activation():
    net = _mlp_net()
    X = torch.arange(12, dtype=torch.float32).reshape(4, 3) / 10
    reps = extract_representations(net, X)
    module = net.module_
    expected = module.body(X).detach()
    assert reps.shape == (4, 5)
    assert reps.dtype == torch.float32
    torch.testing.assert_close(reps, expected)
    # The head's input reproduces the logits.
    torch.testing.assert_close(module.head(reps), module(X).detach())


def test_batches_match_a_single_pass_and_input_is_unchanged():
    net = _mlp_net()
    X = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    X_before = X.clone()
    whole = extract_representations(net, X, batch_size=100)
    batched = extract_representations(net, X, batch_size=3)
    torch.testing.assert_close(whole, batched)
    assert torch.equal(X, X_before)


def _small_cnn():
    return FastNeuralNetClassifier(
        FastCNN,
        module__n_classes=3,
        module__in_channels=1,
        module__widths=(4, 4, 6),
        random_state=0,
        device="cpu",
    ).initialize()


def test_explicit_layer_and_image_network_flattens():
    net = _small_cnn()
    X = torch.randn(7, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    assert extract_representations(net, X).shape == (7, 6)
    # block3's input: 4 channels; the 2x2 stem makes 8x8 into 7x7 and two
    # ceil-mode pools make that 4x4, then 2x2.
    assert extract_representations(net, X, layer="block3").shape == (7, 4 * 2 * 2)


@pytest.mark.parametrize("make_net", [_mlp_net, _small_cnn])
def test_one_pass_gives_the_logits_and_the_representations_of_two(make_net):
    net = make_net()
    shape = (9, 3) if make_net is _mlp_net else (9, 1, 8, 8)
    X = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    X_before = X.clone()
    calls = []
    net.module_.register_forward_pre_hook(lambda module, args: calls.append(1))
    logits, representations = logits_and_representations(net, X, batch_size=4)
    assert len(calls) == 3  # one forward pass per batch of 4
    torch.testing.assert_close(
        logits, predict_logits(net, X, batch_size=4), rtol=0, atol=0
    )
    torch.testing.assert_close(
        representations, extract_representations(net, X, batch_size=4), rtol=0, atol=0
    )
    assert torch.equal(X, X_before)
    assert not net.module_.head._forward_pre_hooks


def test_hook_removed_and_training_mode_restored():
    net = _mlp_net()
    net.module_.train()
    extract_representations(net, torch.zeros(2, 3))
    assert net.module_.training
    assert not net.module_.head._forward_pre_hooks
    with pytest.raises(ValueError, match="layer='unused'"):
        plain = _plain_net()
        extract_representations(plain, torch.zeros(2, 3), layer="unused")
    assert not plain.module_.unused._forward_pre_hooks
    assert plain.module_.training


def test_missing_representation_layer_names_layer():
    plain = _plain_net()
    with pytest.raises(ValueError, match="layer=None.*'head'"):
        extract_representations(plain, torch.zeros(2, 3))
    reps = extract_representations(plain, torch.zeros(2, 3), layer="head")
    assert reps.shape == (2, 4)


def test_unknown_layer_lists_valid_names():
    net = _mlp_net()
    with pytest.raises(ValueError, match=r"layer='nope'.*'body.0'.*'head'"):
        extract_representations(net, torch.zeros(2, 3), layer="nope")
    with pytest.raises(ValueError, match="layer must be a str"):
        resolve_representation_layer(net.module_, 3)


def test_uninitialised_net_is_rejected():
    net = FastNeuralNetClassifier(MLP, module__n_features=3, module__n_classes=2)
    with pytest.raises(ValueError, match="initialised"):
        extract_representations(net, torch.zeros(2, 3))


def test_empty_input_gives_empty_array():
    reps = extract_representations(_mlp_net(), torch.zeros(0, 3))
    assert reps.shape[0] == 0
    assert np.asarray(reps.numpy()).dtype == np.float32
