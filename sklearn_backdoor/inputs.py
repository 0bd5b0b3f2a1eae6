"""Validation of user data and its conversion to model-ready tensors.

Two layouts are accepted everywhere:

- images ``(n, height, width, channels)`` (the layout of torchvision's
  ``CIFAR10.data`` and of PIL), or ``(n, height, width)`` for grey-scale,
  uint8 in 0-255 or float;
- flat features ``(n, n_features)``.

Values must be finite in float32, the precision the networks compute in:
NaN, infinity and values beyond about 3.4e38 are refused with a
``ValueError`` naming the array. uint8 images are scaled to [0, 1]; every
other dtype is used as it is. Every input is then standardised with the
per-channel (images) or per-feature (flat) mean and standard deviation of the
data given to ``fit``. The caller's arrays are never modified.

Data given after ``fit`` (to ``predict``, ``predict_proba`` or an
``eval_set``) must be in the units of the training data, and is refused with
a ``ValueError`` when it visibly is not:

- its dtype must be uint8 exactly when the training data's was (the fitted
  ``input_dtype_``), since only uint8 is rescaled: uint8 images at ``fit``
  and the same images as floats 0-255 (or floats in [0, 1] at ``fit`` and
  uint8 after it) would otherwise be read on another scale;
- images must stay within the training pixels' range per channel (the
  fitted ``input_range_``) widened by its width on either side, which
  refuses 0-255 floats after a fit on [0, 1] floats. Data in *smaller* units
  than the training data's cannot be told from dark images and is not
  detected; flat features are not range-checked;
- standardised with the training statistics, it must still be finite in
  float32.
"""

import hashlib
import re
from contextlib import contextmanager

import numpy as np
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, column_or_1d

FLOAT32_MAX = float(np.finfo(np.float32).max)


@contextmanager
def named_errors(name):
    """Make every ValueError or TypeError raised in the block name ``name``.

    scikit-learn's validation messages do not always say which argument
    they are about ("Found array with 0 sample(s)"); those are re-raised,
    with the same type, prefixed with ``Invalid {name}:``.
    """
    try:
        yield
    except (ValueError, TypeError) as exc:
        if re.search(rf"(?<!\w){re.escape(name)}(?!\w)", str(exc)):
            raise
        error = ValueError if isinstance(exc, ValueError) else TypeError
        raise error(f"Invalid {name}: {exc}") from exc


def _refuse_complex(values, name):
    """A short message for complex arrays (scikit-learn's prints them)."""
    dtype = getattr(values, "dtype", None)
    if getattr(dtype, "kind", None) == "c":
        raise ValueError(
            f"{name} holds complex numbers (dtype {dtype}): Complex data not supported"
        )


def check_sample_array(X, *, input_name="X"):
    """Validate ``X`` and return it as a numpy array of 2 or 4 dimensions.

    3-d input is read as grey-scale images and given a channel axis (a view,
    not a copy). Raises ``ValueError`` (``TypeError`` for sparse input)
    naming ``input_name`` for any other number of dimensions, an empty axis,
    non-numeric data, NaN, infinity or values beyond float32's range.
    """
    _refuse_complex(X, input_name)
    with named_errors(input_name):
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
    if 0 in X.shape[1:]:
        raise ValueError(
            f"{input_name} must have at least one value per sample, got shape {X.shape}"
        )
    _check_float32_range(X, input_name)
    return X


def _check_float32_range(X, name):
    """Refuse values finite in ``X``'s dtype but infinite in float32."""
    if X.dtype.kind != "f" or X.dtype.itemsize <= 4:
        return
    peak = max(float(X.max()), -float(X.min()))
    if peak > FLOAT32_MAX:
        raise ValueError(
            f"{name} holds values as large as {peak:.3g} in magnitude, beyond "
            f"float32's range (about {FLOAT32_MAX:.3g}), the precision the "
            f"networks compute in; rescale {name}"
        )


def check_label_array(y, n_samples, *, input_name="y"):
    """Validate classification targets for ``n_samples`` samples.

    Returns ``y`` as a 1-d array. Raises ``ValueError`` naming
    ``input_name`` for complex, continuous, NaN or mixed-type labels, for
    more than one column and for a length other than ``n_samples``.
    """
    _refuse_complex(y, input_name)
    with named_errors(input_name):
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
    if len(y) != n_samples:
        raise ValueError(
            f"X and {input_name} must have the same number of samples, got "
            f"{n_samples} in X and {len(y)} in {input_name}"
        )
    return y


def check_same_scaling(X, fit_dtype, *, input_name="X"):
    """Refuse ``X`` unless it is uint8 exactly when the training data was.

    Only uint8 is rescaled (0-255 to [0, 1]); data of the other kind would
    be read on another scale than the training data.
    """
    if (X.dtype == np.uint8) != (np.dtype(fit_dtype) == np.uint8):
        raise ValueError(
            f"{input_name} has dtype {X.dtype}, but the data given to fit had "
            f"dtype {np.dtype(fit_dtype)}: uint8 images are read as 0-255 and "
            "scaled to [0, 1], every other dtype is used as it is, so "
            f"{input_name} would be misread. Pass {input_name} in the dtype and "
            "units of the training data."
        )


def check_within_range(Xf, fit_range, *, input_name="X"):
    """Refuse images far outside the training images' range.

    ``Xf`` (from :func:`to_float_channels_first`) may reach beyond
    ``fit_range`` (see :func:`value_range`) per channel by the range's width
    on either side (by its magnitude, at least 1, for a constant channel).
    Flat features are not checked.
    """
    if Xf.ndim != 4:
        return
    low, high = fit_range
    width = np.where(high > low, high - low, np.maximum(np.abs(high), 1.0))
    X_low, X_high = value_range(Xf)
    outside = (X_low < low - width) | (X_high > high + width)
    if outside.any():
        channel = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"{input_name} has values in [{X_low[channel]:.4g}, "
            f"{X_high[channel]:.4g}] in channel {channel}, far outside the "
            f"[{low[channel]:.4g}, {high[channel]:.4g}] of the images given to "
            f"fit: {input_name} seems to be in other units (0-255 rather than "
            f"[0, 1]?). Pass {input_name} in the units of the training data."
        )


def value_range(Xf):
    """Minimum and maximum per channel (NCHW) or feature (2-d), shape (2, C)."""
    axes = (0, 2, 3) if Xf.ndim == 4 else (0,)
    return np.stack([Xf.min(axis=axes), Xf.max(axis=axes)])


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
    mean = Xf.mean(axis=axes, dtype=np.float64).astype(np.float32)
    # Zeroed after the cast: a float64 deviation below float32's smallest
    # number would otherwise divide by zero.
    std = Xf.std(axis=axes, dtype=np.float64).astype(np.float32)
    std[std == 0] = 1.0
    shape = (1, -1, 1, 1) if Xf.ndim == 4 else (1, -1)
    return mean.reshape(shape), std.reshape(shape)


def to_standardized_tensor(Xf, mean, std, device, *, input_name="X"):
    """``(Xf - mean) / std`` as a float32 tensor on ``device``.

    ``Xf`` comes from :func:`to_float_channels_first`. Images are stored
    channels-last in memory, the layout convolutions run fastest in (on CUDA
    and on the CPU).
    Raises ``ValueError`` naming ``input_name`` when a standardised value
    overflows float32 (values too far from the training data's, or spread
    over too wide a range to standardise).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        standardized = (Xf - mean) / std
    # A float64 sum of float32 values cannot overflow: it is finite exactly
    # when every value is.
    if not np.isfinite(standardized.sum(dtype=np.float64)):
        raise ValueError(
            f"{input_name} standardised with the training data's mean and "
            "standard deviation overflows float32: its values are too far from "
            f"those of the data given to fit, or spread too widely; rescale "
            f"{input_name}"
        )
    # Imported here: the checks above serve the sanitizer contract
    # (sklearn_backdoor.contract), which does not depend on torch.
    import torch

    tensor = torch.from_numpy(standardized).to(device)
    if tensor.ndim == 4:
        # Convolutions run fastest channels-last on CUDA and on the CPU
        # (oneDNN: 1.5x training and 2x inference for the CPU preset).
        tensor = tensor.contiguous(memory_format=torch.channels_last)
    return tensor


def data_fingerprint(X):
    """A digest of ``X``'s shape, dtype and content, to recognise it later."""
    X = np.ascontiguousarray(X)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((X.shape, X.dtype.str)).encode())
    digest.update(X.view(np.uint8).reshape(-1) if X.size else b"")
    return digest.hexdigest()
