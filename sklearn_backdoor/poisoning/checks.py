"""Checks of the images, labels and arguments that triggers and attacks take.

Shared by every module of :mod:`sklearn_backdoor.poisoning` and by the attacks
built on it (:mod:`sklearn_backdoor.clean_label`,
:mod:`sklearn_backdoor.adaptive`). Each check raises a ``ValueError`` or
``TypeError`` naming the argument.
"""

import numbers

import numpy as np


def check_images(X, name="X"):
    """Return ``X`` as an array of shape (n, height, width, channels)."""
    if not isinstance(X, np.ndarray):
        X = np.asarray(X)
    if X.ndim != 4:
        raise ValueError(
            f"{name} must be a 4-d array of shape (n_samples, height, width, "
            f"channels), got shape {X.shape}"
        )
    if not (np.issubdtype(X.dtype, np.integer) or np.issubdtype(X.dtype, np.floating)):
        raise TypeError(f"{name} must have an integer or float dtype, got {X.dtype}")
    return X


def image_batch(X, name="X"):
    """``(images, grey)``: ``X`` as ``(n, height, width, channels)``; grey
    ``(n, height, width)`` input gets a channel axis (a view) and ``grey``."""
    if not isinstance(X, np.ndarray):
        X = np.asarray(X)
    if X.ndim not in (3, 4):
        raise ValueError(
            f"{name} must be a 4-d array of shape (n_samples, height, width, "
            "channels), or 3-d (n_samples, height, width) for grey images, got "
            f"shape {X.shape}; flat features have no pixels to carry a trigger"
        )
    grey = X.ndim == 3
    return check_images(X[..., np.newaxis] if grey else X, name), grey


def in_layout(images, grey):
    """Images from :func:`image_batch` back in the layout they came in."""
    return images[..., 0] if grey else images


def check_labels(y, n_samples=None, name="y"):
    """Return ``y`` as a 1-d integer array, optionally of length ``n_samples``."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-d array, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name} must have an integer dtype, got {y.dtype}")
    if n_samples is not None and y.shape[0] != n_samples:
        raise ValueError(
            f"{name} must have one label per sample ({n_samples}), got {y.shape[0]}"
        )
    return y


def check_attack_data(X, y):
    """Checked ``(X, y)`` of an attack: 4-d images and one integer label each."""
    X = check_images(X)
    return X, check_labels(y, X.shape[0])


def check_classes(classes, name="y"):
    """An attack needs a second class to relabel samples to."""
    if len(classes) < 2:
        raise ValueError(
            f"{name} must hold at least 2 classes for an attack to change a "
            f"label, got {len(classes)}: {classes}"
        )


def check_fraction(poison_fraction):
    """Return ``poison_fraction`` as a float in (0, 1]."""
    if isinstance(poison_fraction, bool) or not isinstance(
        poison_fraction, numbers.Real
    ):
        raise TypeError(
            f"poison_fraction must be a real number, got {poison_fraction!r}"
        )
    if not 0 < poison_fraction <= 1:
        raise ValueError(f"poison_fraction must be in (0, 1], got {poison_fraction}")
    return float(poison_fraction)


def check_int(value, name):
    """Return ``value`` as an int; bools and other types are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    return int(value)


def check_position(position, name="position"):
    """Return ``position`` as a (row, col) tuple of non-negative ints."""
    try:
        row, col = position
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a (row, col) pair of ints, got {position!r}"
        ) from None
    row, col = check_int(row, name), check_int(col, name)
    if row < 0 or col < 0:
        raise ValueError(f"{name} must be inside the image, got {position!r}")
    return row, col


def check_image_shape(image_shape):
    """Return ``(height, width, channels)``; channels default to 1."""
    shape = tuple(image_shape)
    if len(shape) not in (2, 3) or any(
        isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1
        for s in shape
    ):
        raise ValueError(
            "image_shape must be (height, width) or (height, width, channels) "
            f"of positive ints, got {image_shape!r}"
        )
    if len(shape) == 2:
        shape = (*shape, 1)
    return tuple(int(s) for s in shape)


def check_class(value, classes, name):
    """Return ``value`` as an int that is one of the labels ``classes``."""
    value = check_int(value, name)
    if value not in classes:
        raise ValueError(f"{name} must be one of the labels {classes}, got {value}")
    return value
