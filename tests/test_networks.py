import pytest
import torch
from torch import nn

from sklearn_backdoor.networks import (
    MLP,
    FastCNN,
    PreActResNet18,
    ResNet32,
    build_network,
    default_network_name,
)

IMAGE_NETWORKS = [FastCNN, PreActResNet18, ResNet32]


def _n_parameters(network):
    return sum(p.numel() for p in network.parameters())


def _representation(network, x):
    """Input of ``representation_layer`` captured by a forward pre-hook."""
    captured = []
    layer = network.get_submodule(network.representation_layer)
    handle = layer.register_forward_pre_hook(lambda m, args: captured.append(args[0]))
    try:
        with torch.no_grad():
            network.eval()(x)
    finally:
        handle.remove()
    return captured[0]


def _seeded(build, seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build()


@pytest.mark.parametrize("network_class", IMAGE_NETWORKS)
@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (2, 1, 8, 8)])
def test_image_networks_output_shape(network_class, shape):
    network = network_class(n_classes=7, in_channels=shape[1])
    logits = network(torch.zeros(shape))
    assert logits.shape == (2, 7)
    assert logits.dtype == torch.float32


@pytest.mark.parametrize("network_class", IMAGE_NETWORKS)
def test_image_networks_accept_channels_last(network_class):
    x = _seeded(lambda: torch.randn(2, 3, 16, 16))
    network = _seeded(lambda: network_class(n_classes=3)).eval()
    with torch.no_grad():
        expected = network(x)
        actual = network(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def test_mlp_output_shape_flat_and_image_input():
    network = MLP(n_features=64, n_classes=5)
    assert network(torch.zeros(2, 64)).shape == (2, 5)
    assert network(torch.zeros(2, 1, 8, 8)).shape == (2, 5)


def test_mlp_rejects_wrong_feature_count():
    with pytest.raises(ValueError, match="Expected 64 features"):
        MLP(n_features=64, n_classes=5)(torch.zeros(2, 3, 8, 8))


@pytest.mark.parametrize(
    "network, expected",
    [
        (ResNet32(), 464_154),
        (PreActResNet18(), 11_172_170),
        (FastCNN(), 1_972_792),
        (MLP(3072, 10), 855_050),
    ],
)
def test_parameter_counts_at_cifar_shape(network, expected):
    assert _n_parameters(network) == expected


def test_resnet32_shortcuts_have_no_parameters():
    network = ResNet32()
    assert _n_parameters(network.layer2[0].shortcut) == 0
    assert 0.45e6 < _n_parameters(network) < 0.47e6


@pytest.mark.parametrize(
    "network, shape, expected",
    [
        (PreActResNet18(), (2, 3, 32, 32), (2, 256, 8, 8)),
        (ResNet32(), (2, 3, 32, 32), (2, 64, 8, 8)),
        (FastCNN(), (2, 3, 32, 32), (2, 256)),
        (FastCNN(widths=(8, 16, 32), in_channels=1), (2, 1, 8, 8), (2, 32)),
        (MLP(3072, 10), (2, 3, 32, 32), (2, 256)),
        (MLP(64, 10, hidden=()), (2, 64), (2, 64)),
    ],
)
def test_representation_pre_hook(network, shape, expected):
    features = _representation(network, torch.ones(shape))
    assert tuple(features.shape) == expected


def test_representation_layer_names():
    assert PreActResNet18.representation_layer == "layer4.0"
    assert ResNet32.representation_layer == "layer3.2"
    assert FastCNN.representation_layer == "head"
    assert MLP.representation_layer == "head"


def test_fast_cnn_logit_scale_and_stem():
    network = FastCNN(n_classes=4, in_channels=3, widths=(8, 16, 32)).eval()
    assert network.whiten.out_channels == 24
    assert network.whiten.kernel_size == (2, 2)
    assert network.head.bias is None
    x = torch.ones(2, 3, 16, 16)
    features = _representation(network, x)
    with torch.no_grad():
        torch.testing.assert_close(network(x), network.head(features) / 9)


@pytest.mark.parametrize(
    "build, shape",
    [
        (lambda: FastCNN(n_classes=3, widths=(8, 16, 16)), (8, 3, 16, 16)),
        (lambda: PreActResNet18(n_classes=3, in_channels=1), (8, 1, 8, 8)),
        (lambda: ResNet32(n_classes=3, in_channels=1), (8, 1, 8, 8)),
        (lambda: MLP(n_features=64, n_classes=3), (8, 1, 8, 8)),
    ],
)
def test_gradient_steps_reduce_loss(build, shape):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        network = build().train()
        x = torch.randn(shape)
        y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
        optimizer = torch.optim.SGD(network.parameters(), lr=0.01)
        losses = []
        for _ in range(3):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(network(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_build_network_classes_and_shapes():
    assert isinstance(
        build_network("fast", n_classes=10, input_shape=(3, 32, 32)), FastCNN
    )
    resnet = build_network("resnet32", n_classes=4, input_shape=(1, 28, 28))
    assert isinstance(resnet, ResNet32)
    assert resnet.stem.in_channels == 1 and resnet.head.out_features == 4
    preact = build_network("preact_resnet18", n_classes=2, input_shape=[3, 8, 8])
    assert isinstance(preact, PreActResNet18)
    mlp = build_network("mlp", n_classes=10, input_shape=(1, 8, 8), hidden=(32,))
    assert mlp.n_features == 64 and mlp.head.in_features == 32
    assert build_network("mlp", n_classes=3, input_shape=(20,)).n_features == 20


def test_build_network_passes_kwargs():
    network = build_network(
        "fast", n_classes=10, input_shape=(3, 32, 32), widths=(8, 16, 32)
    )
    assert network.head.in_features == 32


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "vgg"}, "name=.*'vgg'"),
        ({"name": "fast", "input_shape": (64,)}, r"name='fast'.*input_shape=\(64,\)"),
        (
            {"name": "resnet32", "input_shape": (1, 4, 4)},
            r"name='resnet32'.*input_shape=\(1, 4, 4\)",
        ),
        ({"name": "mlp", "input_shape": (3, 32)}, r"input_shape=\(3, 32\)"),
        ({"name": "mlp", "input_shape": (0,)}, r"input_shape=\(0,\)"),
        ({"name": "mlp", "input_shape": 5}, "input_shape=5"),
        ({"name": "mlp", "n_classes": 0}, "n_classes=0"),
    ],
)
def test_build_network_errors(kwargs, match):
    arguments = {"name": "mlp", "n_classes": 10, "input_shape": (3, 32, 32)}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        build_network(**arguments)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: FastCNN(widths=(8, 16)), r"widths=\(8, 16\)"),
        (lambda: FastCNN(in_channels=0), "in_channels=0"),
        (lambda: PreActResNet18(n_classes=2.5), "n_classes=2.5"),
        (lambda: ResNet32(n_classes=True), "n_classes=True"),
        (lambda: MLP(64, 10, dropout=1.0), "dropout=1.0"),
        (lambda: MLP(64, 10, hidden=(32, -1)), r"hidden=\(32, -1\)"),
    ],
)
def test_constructor_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize(
    "input_shape, expected",
    [
        ((3, 32, 32), "fast"),
        ((1, 16, 16), "fast"),
        ((1, 16, 15), "mlp"),
        ((1, 8, 8), "mlp"),
        ((784,), "mlp"),
    ],
)
def test_default_network_name(input_shape, expected):
    assert default_network_name(input_shape) == expected
