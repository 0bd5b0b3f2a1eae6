"""Classification networks as plain :class:`torch.nn.Module` objects.

Every network takes NCHW float images (or ``(n, n_features)`` for :class:`MLP`)
and returns logits. Its class attribute ``representation_layer`` names the
submodule whose *input* is the learned representation used by defences such as
Spectral Signatures and Activation Clustering; read it with a forward pre-hook on
``network.get_submodule(network.representation_layer)``.
"""

import math
import numbers

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MLP",
    "FastCNN",
    "PreActResNet18",
    "ResNet32",
    "build_network",
    "default_network_name",
]

NETWORK_NAMES = ("fast", "fast_cpu", "preact_resnet18", "resnet32", "mlp")
# The CPU preset of FastCNN: narrow enough to train a few thousand CIFAR-10
# images a second on two CPU cores, wide enough to learn the papers' triggers.
FAST_CPU_WIDTHS = (16, 64, 64)
_MIN_CONV_SIZE = 8
_MIN_FAST_SIZE = 16


def _is_positive_int(value):
    return (
        isinstance(value, numbers.Integral)
        and not isinstance(value, bool)
        and value >= 1
    )


def _check_positive_int(value, name):
    if not _is_positive_int(value):
        raise ValueError(f"{name} must be a positive integer, got {name}={value!r}.")
    return int(value)


def _check_positive_ints(values, name, length=None):
    values = tuple(values)
    if length is not None and len(values) != length:
        raise ValueError(f"{name} must have {length} entries, got {name}={values!r}.")
    if not all(_is_positive_int(value) for value in values):
        raise ValueError(
            f"{name} must contain positive integers, got {name}={values!r}."
        )
    return tuple(int(v) for v in values)


class _PreActBlock(nn.Module):
    """BN-ReLU-conv twice with an identity or 1x1-conv shortcut."""

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(
            in_channels, out_channels, 3, stride=stride, padding=1, bias=False
        )
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(
                in_channels, out_channels, 1, stride=stride, bias=False
            )

    def forward(self, x):
        activated = F.relu(self.bn1(x))
        # The projection sees the activated input, the identity the raw input
        # (He et al. 2016b, "full pre-activation").
        shortcut = x if self.shortcut is None else self.shortcut(activated)
        out = self.conv1(activated)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """Pre-activation ResNet-18 for small images (He et al., 2016b).

    The common CIFAR variant: a 3x3 stem convolution with 64 channels, four
    layers of two pre-activation blocks with widths 64/128/256/512 and strides
    1/2/2/2, a final BatchNorm and ReLU, global average pooling and a linear
    classifier. Adaptive pooling makes any image size of at least 8 pixels work.

    Parameters
    ----------
    n_classes : int, default=10
        Number of output logits.
    in_channels : int, default=3
        Number of input image channels.

    Attributes
    ----------
    representation_layer : str
        ``"layer4.0"``: its input, the output of ``layer3`` (256 channels at
        1/4 of the image size: 256x8x8, 16384 values, for 32x32 images), is the
        representation.

    Examples
    --------
    >>> import torch
    >>> from sklearn_backdoor.networks import PreActResNet18
    >>> net = PreActResNet18(n_classes=10, in_channels=3)
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    representation_layer = "layer4.0"

    def __init__(self, n_classes=10, in_channels=3):
        super().__init__()
        n_classes = _check_positive_int(n_classes, "n_classes")
        in_channels = _check_positive_int(in_channels, "in_channels")
        self.stem = nn.Conv2d(in_channels, 64, 3, padding=1, bias=False)
        self.layer1 = self._make_layer(64, 64, stride=1)
        self.layer2 = self._make_layer(64, 128, stride=2)
        self.layer3 = self._make_layer(128, 256, stride=2)
        self.layer4 = self._make_layer(256, 512, stride=2)
        self.bn = nn.BatchNorm2d(512)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(512, n_classes)

    @staticmethod
    def _make_layer(in_channels, out_channels, stride):
        return nn.Sequential(
            _PreActBlock(in_channels, out_channels, stride),
            _PreActBlock(out_channels, out_channels, 1),
        )

    def forward(self, x):
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.pool(F.relu(self.bn(x)))
        return self.head(torch.flatten(x, 1))


class _ZeroPadShortcut(nn.Module):
    """Parameter-free shortcut: subsample by ``stride``, zero-pad channels."""

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def forward(self, x):
        x = x[:, :, :: self.stride, :: self.stride]
        before = self.extra_channels // 2
        return F.pad(x, (0, 0, 0, 0, before, self.extra_channels - before))


class _BasicBlock(nn.Module):
    """Conv-BN-ReLU, conv-BN, add the shortcut, ReLU."""

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_channels, out_channels, 3, stride=stride, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = _ZeroPadShortcut(in_channels, out_channels, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet32(nn.Module):
    """CIFAR ResNet-32 (He et al., 2016a, section 4.2).

    A 3x3 stem convolution with 16 channels, then three layers of five basic
    blocks with widths 16/32/64 (the first block of layers 2 and 3 halves the
    size), global average pooling and a linear classifier; about 0.46M
    parameters. Shortcuts that change shape use the paper's option A: the
    identity subsampled with stride 2 and zero-padded with extra channels, which
    adds no parameters.

    Parameters
    ----------
    n_classes : int, default=10
        Number of output logits.
    in_channels : int, default=3
        Number of input image channels.

    Attributes
    ----------
    representation_layer : str
        ``"layer3.2"``: its input, the output of the second block of the third
        layer (64 channels at 1/4 of the image size, 8x8 for 32x32 images), is
        the representation.

    Examples
    --------
    >>> import torch
    >>> from sklearn_backdoor.networks import ResNet32
    >>> net = ResNet32(n_classes=10, in_channels=3)
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    representation_layer = "layer3.2"

    def __init__(self, n_classes=10, in_channels=3):
        super().__init__()
        n_classes = _check_positive_int(n_classes, "n_classes")
        in_channels = _check_positive_int(in_channels, "in_channels")
        self.stem = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, 16, stride=1)
        self.layer2 = self._make_layer(16, 32, stride=2)
        self.layer3 = self._make_layer(32, 64, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(64, n_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")

    @staticmethod
    def _make_layer(in_channels, out_channels, stride, n_blocks=5):
        blocks = [_BasicBlock(in_channels, out_channels, stride)]
        blocks += [
            _BasicBlock(out_channels, out_channels, 1) for _ in range(1, n_blocks)
        ]
        return nn.Sequential(*blocks)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.head(torch.flatten(self.pool(x), 1))


def _fast_batch_norm(channels):
    # airbench's running-statistics decay of 0.6 is torch momentum 0.4; torch's
    # default eps is kept because the stem here is not data-whitened.
    return nn.BatchNorm2d(channels, momentum=0.4)


class _FastConvGroup(nn.Sequential):
    """Conv, max-pool, BN, GELU, conv, BN, GELU."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        # ceil_mode keeps a 1x1 map at 1x1, so 8x8 images pass all three pools.
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.norm1 = _fast_batch_norm(out_channels)
        self.act1 = nn.GELU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = _fast_batch_norm(out_channels)
        self.act2 = nn.GELU()


class FastCNN(nn.Module):
    """Small fast CNN in the style of airbench94 (Keller Jordan, 2024).

    A 2x2 convolution stem (``8 * in_channels`` channels, no padding) with GELU,
    three groups of [3x3 conv, 2x2 max-pool, BatchNorm, GELU, 3x3 conv,
    BatchNorm, GELU] with ``widths`` channels, global max pooling and a linear
    head without bias whose logits are multiplied by ``logit_scale = 1/9`` as in
    airbench, which keeps the initial logits small.

    Unlike airbench, the stem is not initialised from whitened image patches and
    all weights are trained. BatchNorm uses torch momentum 0.4 (airbench's
    decay 0.6). Max-pooling rounds up, so images as small as 8x8 work.

    Parameters
    ----------
    n_classes : int, default=10
        Number of output logits.
    in_channels : int, default=3
        Number of input image channels.
    widths : tuple of 3 int, default=(64, 256, 256)
        Channels of the three convolution groups.

    Attributes
    ----------
    representation_layer : str
        ``"head"``: its input, the ``widths[-1]`` pooled features, is the
        representation.

    Examples
    --------
    >>> import torch
    >>> from sklearn_backdoor.networks import FastCNN
    >>> net = FastCNN(n_classes=10, in_channels=3)
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    representation_layer = "head"
    logit_scale = 1 / 9

    def __init__(self, n_classes=10, in_channels=3, widths=(64, 256, 256)):
        super().__init__()
        n_classes = _check_positive_int(n_classes, "n_classes")
        in_channels = _check_positive_int(in_channels, "in_channels")
        widths = _check_positive_ints(widths, "widths", length=3)
        stem_channels = 2 * in_channels * 2 * 2
        self.whiten = nn.Conv2d(in_channels, stem_channels, 2, padding=0)
        self.whiten_act = nn.GELU()
        self.block1 = _FastConvGroup(stem_channels, widths[0])
        self.block2 = _FastConvGroup(widths[0], widths[1])
        self.block3 = _FastConvGroup(widths[1], widths[2])
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(widths[2], n_classes, bias=False)
        self._init_convs_near_identity()

    def _init_convs_near_identity(self):
        # As in airbench: the filters that can pass an input channel through
        # unchanged start as identities, which speeds up early training.
        for block in (self.block1, self.block2, self.block3):
            for conv in (block.conv1, block.conv2):
                n_identity = min(conv.in_channels, conv.out_channels)
                with torch.no_grad():
                    nn.init.dirac_(conv.weight[:n_identity, :n_identity])

    def forward(self, x):
        x = self.whiten_act(self.whiten(x))
        x = self.block3(self.block2(self.block1(x)))
        x = torch.flatten(self.pool(x), 1)
        return self.head(x) * self.logit_scale


class MLP(nn.Module):
    """Fully connected ReLU network for flat features or small images.

    Input with more than two dimensions, such as NCHW images, is flattened
    per sample first.

    Parameters
    ----------
    n_features : int
        Number of input features (``C * H * W`` for images).
    n_classes : int
        Number of output logits.
    hidden : tuple of int, default=(256, 256)
        Width of each hidden ``Linear -> ReLU`` layer.
    dropout : float, default=0.0
        Dropout probability after each hidden layer, in ``[0, 1)``.

    Attributes
    ----------
    representation_layer : str
        ``"head"``: its input, the last hidden layer's ``hidden[-1]`` features
        (``n_features`` if ``hidden`` is empty), is the representation.

    Examples
    --------
    >>> import torch
    >>> from sklearn_backdoor.networks import MLP
    >>> net = MLP(n_features=64, n_classes=10)
    >>> net(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """

    representation_layer = "head"

    def __init__(self, n_features, n_classes, hidden=(256, 256), dropout=0.0):
        super().__init__()
        n_features = _check_positive_int(n_features, "n_features")
        n_classes = _check_positive_int(n_classes, "n_classes")
        hidden = _check_positive_ints(hidden, "hidden")
        if not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got dropout={dropout!r}.")
        layers = []
        for width_in, width_out in zip((n_features, *hidden), hidden, strict=False):
            layers += [nn.Linear(width_in, width_out), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        self.body = nn.Sequential(*layers)
        self.n_features = n_features
        self.head = nn.Linear(hidden[-1] if hidden else n_features, n_classes)

    def forward(self, x):
        x = torch.flatten(x, 1)
        if x.shape[1] != self.n_features:
            raise ValueError(
                f"Expected {self.n_features} features per sample, got input of "
                f"shape {tuple(x.shape)}."
            )
        return self.head(self.body(x))


def _check_input_shape(input_shape):
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    if shape is None or len(shape) not in (1, 3):
        raise ValueError(
            "input_shape must be (n_features,) or (channels, height, width), "
            f"got input_shape={input_shape!r}."
        )
    return _check_positive_ints(shape, "input_shape")


def default_network_name(input_shape):
    """Name of the default network for samples of a given shape.

    Images of at least 16x16 pixels get ``"fast"`` (:class:`FastCNN`). Flat
    features and smaller images get ``"mlp"``: images that small leave too little
    space for the convolution stack and are flattened instead.

    Parameters
    ----------
    input_shape : tuple of int
        Per-sample shape, ``(channels, height, width)`` or ``(n_features,)``.

    Returns
    -------
    name : str
        ``"fast"`` or ``"mlp"``, a valid ``name`` for :func:`build_network`.

    Examples
    --------
    >>> from sklearn_backdoor.networks import default_network_name
    >>> default_network_name((3, 32, 32)), default_network_name((1, 8, 8))
    ('fast', 'mlp')
    """
    shape = _check_input_shape(input_shape)
    if len(shape) == 3 and min(shape[1:]) >= _MIN_FAST_SIZE:
        return "fast"
    return "mlp"


def build_network(name, *, n_classes, input_shape, **kwargs):
    """Build a network by name for samples of a given shape.

    Parameters
    ----------
    name : {"fast", "fast_cpu", "preact_resnet18", "resnet32", "mlp"}
        ``"fast"`` is :class:`FastCNN`, ``"fast_cpu"`` the CPU preset of
        :class:`FastCNN` (widths ``(16, 64, 64)``), ``"preact_resnet18"``
        :class:`PreActResNet18`, ``"resnet32"`` :class:`ResNet32` and
        ``"mlp"`` :class:`MLP`.
    n_classes : int
        Number of output logits.
    input_shape : tuple of int
        Per-sample shape: ``(channels, height, width)`` for NCHW images or
        ``(n_features,)`` for flat features. The convolutional networks need
        images of at least 8x8 pixels; ``"mlp"`` flattens images to
        ``channels * height * width`` features.
    **kwargs
        Further constructor arguments, such as ``widths`` for ``"fast"`` or
        ``hidden`` for ``"mlp"``.

    Returns
    -------
    network : torch.nn.Module
        The untrained network.

    Examples
    --------
    >>> from sklearn_backdoor.networks import build_network
    >>> net = build_network("mlp", n_classes=10, input_shape=(1, 8, 8))
    >>> net.head.in_features, net.body[0].in_features
    (256, 64)
    """
    if name not in NETWORK_NAMES:
        raise ValueError(
            f"name must be one of {list(NETWORK_NAMES)}, got name={name!r}."
        )
    shape = _check_input_shape(input_shape)
    if name == "mlp":
        return MLP(math.prod(shape), n_classes, **kwargs)
    if len(shape) != 3 or min(shape[1:]) < _MIN_CONV_SIZE:
        raise ValueError(
            f"name={name!r} needs images of shape (channels, height, width) with "
            f"height and width >= {_MIN_CONV_SIZE}, got input_shape={input_shape!r}."
        )
    if name == "fast_cpu":
        kwargs.setdefault("widths", FAST_CPU_WIDTHS)
    network_class = {
        "fast": FastCNN,
        "fast_cpu": FastCNN,
        "preact_resnet18": PreActResNet18,
        "resnet32": ResNet32,
    }[name]
    return network_class(n_classes=n_classes, in_channels=shape[0], **kwargs)
