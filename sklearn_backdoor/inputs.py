"""Validation of user data and its conversion to model-ready tensors.

Two layouts are accepted everywhere:

- images ``(n, height, width, channels)`` (the layout of torchvision's
  ``CIFAR10.data`` and of PIL), or ``(n, height, width)`` for grey-scale,
  uint8 in 0-255 or float;
- flat features ``(n, n_features)``.

uint8 images are scaled to [0, 1]; every input is then standardised with the
per-channel (images) or per-feature (flat) mean and standard deviation of the
data given to ``fit``. The caller's arrays are never modified.
"""

import hashlib

import numpy as np
import torch
from sklearn.utils.validation import check_array


def check_sample_array(X, *, input_name="X"):
    """Validate ``X`` and return it as a numpy array of 2 or 4 dimensions.

    3-d input is read as grey-scale images and given a channel axis (a view,
    not a copy). Raises ``ValueError`` naming ``input_name`` for any other
    number of dimensions, for non-numeric data, NaN or infinity.
    """
    X = check_array(
        X,
        accept_sparse=False,
        dtype="numeric",
        allow_nd=True,
        ensure_min_samples=1,
        input_name=input_name,
    )
    if X.dtype.kind not in "uif" and X.dtype != bool:
        raise ValueError(
            f"{input_name} must hold numbers, got an array of dtype {X.dtype}"
        )
    if X.ndim == 3:
        X = X[..., np.newaxis]
    if X.ndim not in (2, 4):
        raise ValueError(
            f"{input_name} must have shape (n_samples, n_features), "
            "(n_samples, height, width) or (n_samples, height, width, channels), "
            f"got shape {X.shape}"
        )
    return X


def model_input_shape(X):
    """Per-sample shape as the networks see it: ``(C, H, W)`` or ``(F,)``."""
    if X.ndim == 4:
        _, height, width, channels = X.shape
        return (channels, height, width)
    return (X.shape[1],)


def to_float_channels_first(X):
    """A float32 copy of ``X`` with images in NCHW order, uint8 scaled to [0, 1]."""
    Xf = X.astype(np.float32, copy=True)
    if X.dtype == np.uint8:
        Xf /= 255.0
    if Xf.ndim == 4:
        Xf = np.ascontiguousarray(Xf.transpose(0, 3, 1, 2))
    return Xf


def standardization_stats(Xf):
    """Mean and standard deviation per channel (NCHW) or per feature (2-d).

    A constant channel gets a standard deviation of 1 so that it is centred
    and left unscaled.
    """
    axes = (0, 2, 3) if Xf.ndim == 4 else (0,)
    mean = Xf.mean(axis=axes, dtype=np.float64)
    std = Xf.std(axis=axes, dtype=np.float64)
    std[std == 0] = 1.0
    shape = (1, -1, 1, 1) if Xf.ndim == 4 else (1, -1)
    return mean.astype(np.float32).reshape(shape), std.astype(np.float32).reshape(shape)


def to_standardized_tensor(Xf, mean, std, device):
    """``(Xf - mean) / std`` as a float32 tensor on ``device``.

    ``Xf`` comes from :func:`to_float_channels_first`. Images are stored
    channels-last in memory on CUDA, the layout convolutions run fastest in.
    """
    tensor = torch.from_numpy((Xf - mean) / std).to(device)
    if tensor.ndim == 4 and torch.device(device).type == "cuda":
        tensor = tensor.contiguous(memory_format=torch.channels_last)
    return tensor


def data_fingerprint(X):
    """A digest of ``X``'s shape, dtype and content, to recognise it later."""
    X = np.ascontiguousarray(X)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((X.shape, X.dtype.str)).encode())
    digest.update(X.view(np.uint8).reshape(-1) if X.size else b"")
    return digest.hexdigest()
