"""Triggers: what an attacker stamps on an image.

:class:`Trigger` is the interface (``apply`` returns a triggered copy of a
batch). :class:`PatchTrigger` sets pixels to a colour,
:class:`BlendTrigger` alpha-blends a picture in, :class:`CompositeTrigger`
applies several in turn. The named triggers of the papers are built by
:mod:`sklearn_backdoor.poisoning.patches` and
:mod:`sklearn_backdoor.poisoning.blends`.
"""

import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
from sklearn.utils._param_validation import HasMethods, validate_params

from sklearn_backdoor.poisoning.checks import check_position, image_batch, in_layout

# ITU-R BT.601 luma weights, used to turn RGB patterns grey.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])


def _normalise_color(color):
    """Return ``color`` as a hashable float or tuple of floats."""
    arr = np.asarray(color, dtype=float)
    if arr.ndim > 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(
            f"color must be a finite scalar or 1-d sequence, got {color!r}"
        )
    if arr.ndim == 0:
        return float(arr)
    return tuple(float(v) for v in arr)


def _broadcast_color(color, n_channels):
    arr = np.asarray(color, dtype=float)
    if arr.ndim == 1 and arr.shape[0] not in (1, n_channels):
        raise ValueError(
            f"color must be a scalar or have one value per channel "
            f"({n_channels}), got {color!r}"
        )
    return np.broadcast_to(arr, (n_channels,))


def _cast_like(values, dtype):
    """Cast float ``values`` to ``dtype``; integer dtypes are rounded and clipped."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    return np.asarray(values).astype(dtype)


class Trigger(ABC):
    """Base class of backdoor triggers: ``apply`` stamps a batch of images."""

    @abstractmethod
    def apply(self, X):
        """Return a triggered copy of the image batch ``X``."""

    def __call__(self, X):
        return self.apply(X)


@dataclass(frozen=True)
class PatchTrigger(Trigger):
    """Set a fixed set of pixels to one colour.

    Parameters
    ----------
    pixels : sequence of (int, int)
        The (row, col) coordinates of the trigger pixels.
    color : float or sequence of float
        The colour in the image's own units, either a scalar or one value per
        channel. Integer images get the colour rounded and clipped.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.poisoning import PatchTrigger
    >>> X = np.zeros((1, 3, 3, 1), dtype=np.uint8)
    >>> PatchTrigger(pixels=((0, 0), (2, 1)), color=255).apply(X)[0, :, :, 0]
    array([[255,   0,   0],
           [  0,   0,   0],
           [  0, 255,   0]], dtype=uint8)
    """

    pixels: tuple
    color: float | tuple = 255

    def __post_init__(self):
        pixels = tuple(check_position(p, name="pixels") for p in self.pixels)
        if not pixels:
            raise ValueError("pixels must contain at least one (row, col) pair")
        object.__setattr__(self, "pixels", pixels)
        object.__setattr__(self, "color", _normalise_color(self.color))

    def apply(self, X):
        """Return a copy of ``X`` with the trigger pixels set to ``color``.

        Parameters
        ----------
        X : ndarray of shape (n_samples, height, width, channels) or \
(n_samples, height, width)
            Images to trigger; left unchanged.

        Returns
        -------
        X_triggered : ndarray of the same shape and dtype as ``X``
        """
        X, grey = image_batch(X)
        height, width = X.shape[1:3]
        rows, cols = np.array(self.pixels).T
        outside = (rows >= height) | (cols >= width)
        if outside.any():
            bad = self.pixels[int(np.flatnonzero(outside)[0])]
            raise ValueError(
                f"trigger position {bad} is outside the image of height {height} "
                f"and width {width}"
            )
        color = _cast_like(_broadcast_color(self.color, X.shape[3]), X.dtype)
        X_new = X.copy()
        X_new[:, rows, cols, :] = color
        return in_layout(X_new, grey)


@dataclass(frozen=True)
class CompositeTrigger(Trigger):
    """Apply several triggers one after the other.

    Parameters
    ----------
    triggers : sequence of Trigger
        Applied in order, so later triggers overwrite earlier ones.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.poisoning import CompositeTrigger, pixel_trigger
    >>> trigger = CompositeTrigger(
    ...     (pixel_trigger((0, 0), 1.0), pixel_trigger((1, 1), 0.5))
    ... )
    >>> trigger.apply(np.zeros((1, 2, 2, 1)))[0, :, :, 0]
    array([[1. , 0. ],
           [0. , 0.5]])
    """

    triggers: tuple

    def __post_init__(self):
        triggers = tuple(self.triggers)
        if not triggers or not all(isinstance(t, Trigger) for t in triggers):
            raise TypeError(
                f"triggers must be a non-empty sequence of Trigger, got {triggers!r}"
            )
        object.__setattr__(self, "triggers", triggers)

    def apply(self, X):
        """Return a copy of ``X`` with every trigger applied in order."""
        X_new, grey = image_batch(X)
        for trigger in self.triggers:
            X_new = trigger.apply(X_new)
        return in_layout(X_new, grey)


def _frozen_array(values, name):
    arr = np.array(values, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    arr.setflags(write=False)
    return arr


def _default_value_range(dtype):
    """(low, high) of an image dtype: the full range for ints, [0, 1] for floats."""
    if np.issubdtype(dtype, np.integer):
        return 0.0, float(np.iinfo(dtype).max)
    return 0.0, 1.0


@dataclass(frozen=True, eq=False)
class BlendTrigger(Trigger):
    """Alpha-blend a pattern into a region of each image.

    The region of the pattern's size at ``anchor`` becomes
    ``(1 - alpha * mask) * x + alpha * mask * pattern``.

    Parameters
    ----------
    pattern : array-like of shape (p_height, p_width) or (p_height, p_width, c)
        The picture in relative units, 0 is the bottom and 1 the top of
        ``value_range``. A 3-channel pattern is turned grey for 1-channel
        images; a 1-channel pattern is broadcast to every channel.
    alpha : float
        Opacity in [0, 1]; 0 leaves the images unchanged.
    mask : array-like of shape (p_height, p_width), default=None
        Per-pixel opacity in [0, 1] (the picture's alpha channel). ``None``
        means fully opaque.
    anchor : (int, int), default=(0, 0)
        (row, col) of the pattern's upper-left pixel in the image.
    value_range : (float, float), default=None
        Image values that the pattern's 0 and 1 map to. ``None`` uses
        (0, max) for integer images (0-255 for ``uint8``) and (0, 1) for
        floating-point images.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.poisoning import BlendTrigger
    >>> trigger = BlendTrigger(pattern=np.ones((1, 2)), alpha=0.5)
    >>> trigger.apply(np.zeros((1, 2, 3, 1), dtype=np.uint8))[0, :, :, 0]
    array([[128, 128,   0],
           [  0,   0,   0]], dtype=uint8)
    """

    pattern: np.ndarray
    alpha: float
    mask: np.ndarray | None = None
    anchor: tuple = (0, 0)
    value_range: tuple | None = field(default=None)

    def __post_init__(self):
        pattern = _frozen_array(self.pattern, "pattern")
        if pattern.ndim == 2:
            pattern = _frozen_array(pattern[:, :, np.newaxis], "pattern")
        if pattern.ndim != 3 or pattern.shape[0] == 0 or pattern.shape[1] == 0:
            raise ValueError(
                "pattern must have shape (p_height, p_width) or "
                f"(p_height, p_width, channels), got {np.shape(self.pattern)}"
            )
        object.__setattr__(self, "pattern", pattern)
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, numbers.Real):
            raise TypeError(f"alpha must be a real number, got {self.alpha!r}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        object.__setattr__(self, "alpha", float(self.alpha))
        mask = np.ones(pattern.shape[:2]) if self.mask is None else self.mask
        mask = _frozen_array(mask, "mask")
        if mask.shape != pattern.shape[:2]:
            raise ValueError(
                f"mask must have shape {pattern.shape[:2]}, got {mask.shape}"
            )
        if mask.min() < 0 or mask.max() > 1:
            raise ValueError("mask values must be in [0, 1]")
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "anchor", check_position(self.anchor, "anchor"))
        if self.value_range is not None:
            low, high = (float(v) for v in self.value_range)
            object.__setattr__(self, "value_range", (low, high))

    def _pattern_for(self, n_channels):
        pattern = self.pattern
        if pattern.shape[2] == n_channels:
            return pattern
        if pattern.shape[2] == 1:
            return np.broadcast_to(pattern, (*pattern.shape[:2], n_channels))
        if n_channels == 1 and pattern.shape[2] == 3:
            return (pattern @ LUMA_WEIGHTS)[:, :, np.newaxis]
        raise ValueError(
            f"pattern has {pattern.shape[2]} channels, which do not fit images "
            f"with {n_channels} channels"
        )

    def apply(self, X):
        """Return a copy of ``X`` with the pattern blended in.

        Parameters
        ----------
        X : ndarray of shape (n_samples, height, width, channels) or \
(n_samples, height, width)
            Images to trigger; left unchanged.

        Returns
        -------
        X_triggered : ndarray of the same shape and dtype as ``X``
        """
        X, grey = image_batch(X)
        height, width, n_channels = X.shape[1:]
        p_height, p_width = self.pattern.shape[:2]
        row, col = self.anchor
        if row + p_height > height or col + p_width > width:
            raise ValueError(
                f"anchor {self.anchor} puts the {p_height}x{p_width} pattern "
                f"outside the image of height {height} and width {width}"
            )
        low, high = self.value_range or _default_value_range(X.dtype)
        pattern = low + self._pattern_for(n_channels) * (high - low)
        weight = (self.alpha * self.mask)[:, :, np.newaxis]
        region = (slice(None), slice(row, row + p_height), slice(col, col + p_width))
        blended = (1 - weight) * X[region] + weight * pattern
        X_new = X.copy()
        X_new[region] = _cast_like(blended, X.dtype)
        return in_layout(X_new, grey)


@validate_params(
    {"trigger": [HasMethods(["apply"])]},
    prefer_skip_nested_validation=True,
)
def apply_trigger(X, trigger):
    """Return a triggered copy of the images ``X``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, height, width, channels) or \
(n_samples, height, width)
        Images; left unchanged.
    trigger : Trigger
        The trigger to stamp.

    Returns
    -------
    X_triggered : ndarray of the same shape and dtype as ``X``

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.poisoning import apply_trigger, pixel_trigger
    >>> apply_trigger(np.zeros((1, 2, 2, 1)), pixel_trigger((1, 0), 1.0))[0, :, :, 0]
    array([[0., 0.],
           [1., 0.]])
    """
    return trigger.apply(X)
