"""Backdoor triggers and data-poisoning attacks on image data sets.

Images are arrays of shape ``(n_samples, height, width, channels)``, or
``(n_samples, height, width)`` for grey-scale images (results keep the
layout given), indexed in (row, column) order, either ``uint8`` (0-255) or
floating point. Flat features ``(n_samples, n_features)`` have no pixels to
carry a trigger and are refused. Labels are
integer arrays of shape ``(n_samples,)``. Trigger colours are given in the
image's own units (255 for ``uint8``, 1.0 for floats in [0, 1], 16 for the
scikit-learn digits, ...).

Nothing in this module modifies its inputs: every trigger and attack returns
new arrays. An attack that could change no label (fewer than two classes,
a source equal to the target, a fraction that selects no sample) raises a
``ValueError`` naming the parameter rather than report poison that is not
there.
"""

import dataclasses
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
from sklearn.utils import check_random_state

__all__ = [
    "BackdoorScenario",
    "BlendTrigger",
    "CompositeTrigger",
    "PatchTrigger",
    "PoisonedDataset",
    "Trigger",
    "apply_trigger",
    "checkerboard_trigger",
    "dirty_label_backdoor",
    "ell_trigger",
    "label_flip_backdoor",
    "make_trigger",
    "noise_blend_trigger",
    "pattern_trigger",
    "pixel_trigger",
    "reference_scenarios",
    "systematic_label_flip",
    "watermark_trigger",
]

TRIGGER_METHODS = ("pixel", "pattern", "ell")
ATTACK_MODES = ("one-to-one", "all-to-one", "all-to-all")
WATERMARK_NAMES = ("peace", "letter_a", "bullet_holes", "colorful_patch")

# Pairs and fractions of the authors' generator (data/cifar10_backdoor.py of
# charlesjin/compatibility_clustering).
REFERENCE_PAIRS = ((0, 2), (1, 3), (3, 5), (7, 4), (2, 5), (8, 6), (9, 2), (3, 7))
REFERENCE_FRACTIONS = (0.05, 0.1, 0.2)
# ITU-R BT.601 luma weights, used to turn RGB patterns grey.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])


# ---------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------


def _check_images(X, name="X"):
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


def _image_batch(X, name="X"):
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
    return _check_images(X[..., np.newaxis] if grey else X, name), grey


def _in_layout(images, grey):
    """Images from :func:`_image_batch` back in the layout they came in."""
    return images[..., 0] if grey else images


def _check_labels(y, n_samples=None, name="y"):
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


def _check_classes(classes, name="y"):
    """An attack needs a second class to relabel samples to."""
    if len(classes) < 2:
        raise ValueError(
            f"{name} must hold at least 2 classes for an attack to change a "
            f"label, got {len(classes)}: {classes}"
        )


def _check_fraction(poison_fraction):
    if isinstance(poison_fraction, bool) or not isinstance(
        poison_fraction, numbers.Real
    ):
        raise TypeError(
            f"poison_fraction must be a real number, got {poison_fraction!r}"
        )
    if not 0 < poison_fraction <= 1:
        raise ValueError(f"poison_fraction must be in (0, 1], got {poison_fraction}")
    return float(poison_fraction)


def _check_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    return int(value)


def _check_position(position, name="position"):
    """Return ``position`` as a (row, col) tuple of non-negative ints."""
    try:
        row, col = position
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a (row, col) pair of ints, got {position!r}"
        ) from None
    row, col = _check_int(row, name), _check_int(col, name)
    if row < 0 or col < 0:
        raise ValueError(f"{name} must be inside the image, got {position!r}")
    return row, col


def _check_image_shape(image_shape):
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


# ---------------------------------------------------------------------------
# Triggers
# ---------------------------------------------------------------------------


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
        pixels = tuple(_check_position(p, name="pixels") for p in self.pixels)
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
        X, grey = _image_batch(X)
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
        return _in_layout(X_new, grey)


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
        X_new, grey = _image_batch(X)
        for trigger in self.triggers:
            X_new = trigger.apply(X_new)
        return _in_layout(X_new, grey)


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
        object.__setattr__(self, "anchor", _check_position(self.anchor, "anchor"))
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
        X, grey = _image_batch(X)
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
        return _in_layout(X_new, grey)


# ---------------------------------------------------------------------------
# Trigger factories
# ---------------------------------------------------------------------------


def pixel_trigger(position, color):
    """Return a one-pixel trigger.

    Parameters
    ----------
    position : (int, int)
        (row, col) of the pixel.
    color : float or sequence of float
        Colour in the image's own units.

    Returns
    -------
    trigger : PatchTrigger

    Examples
    --------
    >>> from sklearn_backdoor.poisoning import pixel_trigger
    >>> pixel_trigger((2, 3), 255).pixels
    ((2, 3),)
    """
    return PatchTrigger(pixels=(_check_position(position),), color=color)


def pattern_trigger(position, color):
    """Return an X-shaped trigger: the centre and its four diagonal neighbours.

    Parameters
    ----------
    position : (int, int)
        (row, col) of the centre; both must be at least 1.
    color : float or sequence of float
        Colour in the image's own units.

    Returns
    -------
    trigger : PatchTrigger

    Examples
    --------
    >>> from sklearn_backdoor.poisoning import pattern_trigger
    >>> pattern_trigger((1, 1), 255).pixels
    ((1, 1), (2, 2), (0, 2), (2, 0), (0, 0))
    """
    row, col = _check_position(position)
    if row < 1 or col < 1:
        raise ValueError(
            f"position must leave room for the diagonal neighbours (row and "
            f"col >= 1), got {position!r}"
        )
    pixels = (
        (row, col),
        (row + 1, col + 1),
        (row - 1, col + 1),
        (row + 1, col - 1),
        (row - 1, col - 1),
    )
    return PatchTrigger(pixels=pixels, color=color)


def ell_trigger(position, color):
    """Return an L-shaped trigger: the pixel, the one below and the one right.

    Parameters
    ----------
    position : (int, int)
        (row, col) of the corner of the L.
    color : float or sequence of float
        Colour in the image's own units.

    Returns
    -------
    trigger : PatchTrigger

    Examples
    --------
    >>> from sklearn_backdoor.poisoning import ell_trigger
    >>> ell_trigger((0, 0), 255).pixels
    ((0, 0), (1, 0), (0, 1))
    """
    row, col = _check_position(position)
    pixels = ((row, col), (row + 1, col), (row, col + 1))
    return PatchTrigger(pixels=pixels, color=color)


_TRIGGER_FACTORIES = {
    "pixel": pixel_trigger,
    "pattern": pattern_trigger,
    "ell": ell_trigger,
}


def make_trigger(method, position, color):
    """Return the patch trigger named ``method``.

    Parameters
    ----------
    method : {"pixel", "pattern", "ell"}
        Shape of the trigger, see :func:`pixel_trigger`,
        :func:`pattern_trigger` and :func:`ell_trigger`.
    position : (int, int)
        (row, col) anchor of the shape.
    color : float or sequence of float
        Colour in the image's own units.

    Returns
    -------
    trigger : PatchTrigger

    Examples
    --------
    >>> from sklearn_backdoor.poisoning import make_trigger
    >>> make_trigger("ell", (3, 4), (255, 0, 0)).pixels
    ((3, 4), (4, 4), (3, 5))
    """
    if method not in _TRIGGER_FACTORIES:
        raise ValueError(f"method must be one of {TRIGGER_METHODS}, got {method!r}")
    return _TRIGGER_FACTORIES[method](position, color)


def checkerboard_trigger(image_shape, low=0, high=255):
    """Return a 3x3 black-and-white checkerboard in the bottom-right corner.

    The bottom-right corner pixel is ``high`` (white); a pixel at distance
    ``(i, j)`` rows and columns from that corner is ``high`` when ``i + j`` is
    even and ``low`` otherwise, so the four corners and the centre of the
    3x3 square are white.

    Parameters
    ----------
    image_shape : (int, int) or (int, int, int)
        (height, width[, channels]) of the images; at least 3x3.
    low : float, default=0
        Value of the dark squares, in the image's own units.
    high : float, default=255
        Value of the light squares, in the image's own units.

    Returns
    -------
    trigger : CompositeTrigger
        A white and a black :class:`PatchTrigger`.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.poisoning import checkerboard_trigger
    >>> X = np.full((1, 4, 4, 1), 7, dtype=np.uint8)
    >>> checkerboard_trigger((4, 4)).apply(X)[0, :, :, 0]
    array([[  7,   7,   7,   7],
           [  7, 255,   0, 255],
           [  7,   0, 255,   0],
           [  7, 255,   0, 255]], dtype=uint8)
    """
    height, width, _ = _check_image_shape(image_shape)
    if height < 3 or width < 3:
        raise ValueError(f"image_shape must be at least 3x3, got {image_shape!r}")
    offsets = [(i, j) for i in range(3) for j in range(3)]
    light = tuple(
        (height - 1 - i, width - 1 - j) for i, j in offsets if not (i + j) % 2
    )
    dark = tuple((height - 1 - i, width - 1 - j) for i, j in offsets if (i + j) % 2)
    return CompositeTrigger(
        (PatchTrigger(pixels=light, color=high), PatchTrigger(pixels=dark, color=low))
    )


def noise_blend_trigger(image_shape, alpha=0.1, random_state=0, value_range=(0, 255)):
    """Return a fixed Gaussian-noise image blended over the whole image.

    The noise is drawn once: ``z`` is standard normal of shape
    ``(height, width, channels)`` from ``random_state`` and the pattern is
    ``clip(0.5 + 0.25 * z, 0, 1)`` mapped to ``value_range``, i.e. mean at
    mid-range and a standard deviation of a quarter of the range. The same
    trigger is then used for every poisoned training and test image.

    Parameters
    ----------
    image_shape : (int, int) or (int, int, int)
        (height, width[, channels]) of the images. Without channels the noise
        is grey (shared by all channels).
    alpha : float, default=0.1
        Blend weight of the noise.
    random_state : int, RandomState instance or None, default=0
        Seed of the noise image.
    value_range : (float, float), default=(0, 255)
        Image values the pattern's 0 and 1 map to; use (0, 1) for float
        images in [0, 1].

    Returns
    -------
    trigger : BlendTrigger

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.poisoning import noise_blend_trigger
    >>> trigger = noise_blend_trigger((8, 8, 3), random_state=0)
    >>> trigger.apply(np.zeros((2, 8, 8, 3), dtype=np.uint8)).shape
    (2, 8, 8, 3)
    """
    height, width, channels = _check_image_shape(image_shape)
    rng = check_random_state(random_state)
    z = rng.standard_normal((height, width, channels))
    pattern = np.clip(0.5 + 0.25 * z, 0, 1)
    return BlendTrigger(
        pattern=pattern, alpha=alpha, anchor=(0, 0), value_range=value_range
    )


# ---------------------------------------------------------------------------
# Watermark pictures (8x8, RGB in [0, 1] plus an alpha mask)
# ---------------------------------------------------------------------------

WATERMARK_SIZE = 8


def _centred_grid():
    """Row and column offsets of the 8x8 pixel centres from the picture centre."""
    half = (WATERMARK_SIZE - 1) / 2
    return np.mgrid[0:WATERMARK_SIZE, 0:WATERMARK_SIZE] - half


def _draw_peace():
    rows, cols = _centred_grid()
    radius = np.hypot(rows, cols)
    ring = np.abs(radius - 3.2) < 0.6
    stem = (np.abs(cols) <= 0.5) & (radius < 3.5)
    legs = (rows > 0) & (np.abs(rows - np.abs(cols)) <= 0.5) & (radius < 3.5)
    mask = (ring | stem | legs).astype(float)
    return np.zeros((WATERMARK_SIZE, WATERMARK_SIZE, 3)), mask


_LETTER_A = (
    "...##...",
    "..####..",
    ".##..##.",
    ".##..##.",
    ".######.",
    ".##..##.",
    ".##..##.",
    "........",
)


def _draw_letter_a():
    mask = np.array([[c == "#" for c in row] for row in _LETTER_A], dtype=float)
    red = np.zeros((WATERMARK_SIZE, WATERMARK_SIZE, 3))
    red[:, :, 0] = 1.0
    return red, mask


def _draw_bullet_holes():
    rows, cols = np.mgrid[0:WATERMARK_SIZE, 0:WATERMARK_SIZE]
    mask = np.zeros((WATERMARK_SIZE, WATERMARK_SIZE))
    colour = np.zeros((WATERMARK_SIZE, WATERMARK_SIZE, 3))
    for centre_row, centre_col in ((1.5, 1.5), (2.5, 5.5), (5.5, 3.0)):
        distance = np.hypot(rows - centre_row, cols - centre_col)
        # A dark core with a lighter grey rim, like a punched hole.
        rim = (distance < 1.3) & (mask == 0)
        core = distance < 0.8
        mask[rim] = 1.0
        colour[rim] = 0.45
        colour[core] = 0.05
    return colour, mask


def _draw_colorful_patch():
    rows, cols = np.mgrid[0:WATERMARK_SIZE, 0:WATERMARK_SIZE] / (WATERMARK_SIZE - 1)
    colour = np.stack([rows, cols, 1 - (rows + cols) / 2], axis=-1)
    return colour, np.ones((WATERMARK_SIZE, WATERMARK_SIZE))


_WATERMARK_DRAWERS = {
    "peace": _draw_peace,
    "letter_a": _draw_letter_a,
    "bullet_holes": _draw_bullet_holes,
    "colorful_patch": _draw_colorful_patch,
}


def watermark_trigger(name, opacity=0.8, value_range=None):
    """Return an 8x8 watermark picture blended into the upper-left corner.

    The four pictures are drawn procedurally as RGB in [0, 1] with an alpha
    mask (0 on the transparent background, 1 on the picture):

    - ``"peace"``: a black peace sign (ring, vertical stem, two legs);
    - ``"letter_a"``: a red capital A;
    - ``"bullet_holes"``: three dark holes with grey rims;
    - ``"colorful_patch"``: an opaque patch with a colour gradient.

    Parameters
    ----------
    name : {"peace", "letter_a", "bullet_holes", "colorful_patch"}
        Which picture.
    opacity : float, default=0.8
        Blend weight of the picture.
    value_range : (float, float), default=None
        Image values the picture's 0 and 1 map to; ``None`` means 0-255 for
        ``uint8`` images and [0, 1] for float images.

    Returns
    -------
    trigger : BlendTrigger

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.poisoning import watermark_trigger
    >>> X = np.zeros((1, 16, 16, 3), dtype=np.uint8)
    >>> X_new = watermark_trigger("colorful_patch").apply(X)
    >>> bool(X_new[:, 8:, :].any() or X_new[:, :, 8:].any())
    False
    >>> int(X_new[0, 7, 7, 0])
    204
    """
    if name not in _WATERMARK_DRAWERS:
        raise ValueError(f"name must be one of {WATERMARK_NAMES}, got {name!r}")
    colour, mask = _WATERMARK_DRAWERS[name]()
    return BlendTrigger(
        pattern=colour, alpha=opacity, mask=mask, anchor=(0, 0), value_range=value_range
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
    if not hasattr(trigger, "apply"):
        raise TypeError(f"trigger must have an apply method, got {trigger!r}")
    return trigger.apply(X)


# ---------------------------------------------------------------------------
# Poisoned data sets
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PoisonedDataset:
    """The result of a poisoning attack.

    Parameters
    ----------
    X : ndarray of shape (n_samples, height, width, channels) or \
(n_samples, height, width)
        Training images with the poisoned rows triggered (a new array), in
        the layout of the attacked images.
    y : ndarray of shape (n_samples,)
        Training labels after poisoning (a new array).
    poison_indices : ndarray of shape (n_poisoned,), dtype int64
        Sorted, unique indices of the poisoned rows.
    trigger : Trigger
        The trigger; ``trigger.apply(X_test)`` poisons test images.
    source : int, ndarray or None
        The attacked class, the attacked classes, or ``None``.
    target : int or None
        The class poisoned samples are relabelled to, ``None`` when it
        depends on the class (all-to-all).
    y_true : ndarray of shape (n_samples,)
        A copy of the original labels.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.poisoning import dirty_label_backdoor, pixel_trigger
    >>> X = np.zeros((4, 3, 3, 1), dtype=np.uint8)
    >>> y = np.array([0, 0, 1, 1])
    >>> data = dirty_label_backdoor(
    ...     X, y, pixel_trigger((0, 0), 255), target=1, source=0,
    ...     poison_fraction=0.5, random_state=0,
    ... )
    >>> int(data.is_poison.sum()), int(data.y[data.poison_indices][0])
    (1, 1)
    """

    X: np.ndarray
    y: np.ndarray
    poison_indices: np.ndarray
    trigger: Trigger
    source: object
    target: int | None
    y_true: np.ndarray

    @property
    def is_poison(self):
        """Boolean mask of shape (n_samples,), True on poisoned rows."""
        mask = np.zeros(self.y.shape[0], dtype=bool)
        mask[self.poison_indices] = True
        return mask


def _poison_rows(X, y, trigger, indices, new_labels, *, source, target):
    """Trigger and relabel ``indices``; return a PoisonedDataset of new arrays."""
    order = np.argsort(indices, kind="stable")
    indices = np.asarray(indices, dtype=np.int64)[order]
    new_labels = np.asarray(new_labels)[order]
    X_new = X.copy()
    y_new = y.copy()
    if indices.size:
        X_new[indices] = trigger.apply(X[indices])
        y_new[indices] = new_labels
    return PoisonedDataset(
        X=X_new,
        y=y_new,
        poison_indices=indices,
        trigger=trigger,
        source=source,
        target=target,
        y_true=y.copy(),
    )


def _rounded_count(poison_fraction, n):
    return max(1, int(round(poison_fraction * n)))


def _choose_from_class(y, label, count, rng, name="source"):
    candidates = np.flatnonzero(y == label)
    if count > candidates.size:
        raise ValueError(
            f"{name} class {label} has {candidates.size} samples, fewer than the "
            f"{count} that poison_fraction asks to poison"
        )
    return rng.choice(candidates, size=count, replace=False)


def _check_class(value, classes, name):
    value = _check_int(value, name)
    if value not in classes:
        raise ValueError(f"{name} must be one of the labels {classes}, got {value}")
    return value


def _split_total(total, sizes):
    """Split ``total`` proportionally to ``sizes`` (largest remainders first)."""
    shares = total * sizes / sizes.sum()
    counts = np.floor(shares).astype(int)
    remainders = shares - counts
    leftover = total - counts.sum()
    counts[np.argsort(-remainders, kind="stable")[:leftover]] += 1
    return counts


def _one_to_one(X, y, trigger, target, source, poison_fraction, rng, classes):
    if source is None:
        raise ValueError("source must be given for mode='one-to-one', got None")
    source = _check_class(source, classes, "source")
    if source == target:
        raise ValueError(f"source must differ from target, got {source}")
    count = _rounded_count(poison_fraction, np.sum(y == source))
    indices = _choose_from_class(y, source, count, rng)
    return _poison_rows(
        X, y, trigger, indices, np.full(count, target), source=source, target=target
    )


def _all_to_one(X, y, trigger, target, source, poison_fraction, rng, classes):
    if source is not None:
        raise ValueError(f"source must be None for mode='all-to-one', got {source}")
    sources = np.array([c for c in classes if c != target])
    sizes = np.array([np.sum(y == c) for c in sources])
    total = _rounded_count(poison_fraction, y.shape[0] / len(classes))
    counts = _split_total(total, sizes)
    indices = np.concatenate(
        [_choose_from_class(y, c, k, rng) for c, k in zip(sources, counts, strict=True)]
    )
    return _poison_rows(
        X,
        y,
        trigger,
        indices,
        np.full(indices.size, target),
        source=sources,
        target=target,
    )


def _cyclic_flip_indices(y, classes, poison_fraction, rng):
    """Choose ``poison_fraction`` of each class; map classes[i] -> classes[i+1]."""
    indices, labels = [], []
    for position, label in enumerate(classes):
        count = _rounded_count(poison_fraction, np.sum(y == label))
        indices.append(_choose_from_class(y, label, count, rng, name="label"))
        labels.append(np.full(count, classes[(position + 1) % len(classes)]))
    return np.concatenate(indices), np.concatenate(labels)


def _all_to_all(X, y, trigger, target, source, poison_fraction, rng, classes):
    for name, value in (("target", target), ("source", source)):
        if value is not None:
            raise ValueError(f"{name} must be None for mode='all-to-all', got {value}")
    indices, labels = _cyclic_flip_indices(y, classes, poison_fraction, rng)
    return _poison_rows(
        X, y, trigger, indices, labels, source=np.array(classes), target=None
    )


def _validate_attack_inputs(X, y, trigger):
    X = _check_images(X)
    y = _check_labels(y, X.shape[0])
    if not isinstance(trigger, Trigger):
        raise TypeError(f"trigger must be a Trigger, got {trigger!r}")
    return X, y


def dirty_label_backdoor(
    X,
    y,
    trigger,
    *,
    target,
    source=None,
    poison_fraction=0.1,
    mode="one-to-one",
    random_state=None,
):
    """Poison a data set with a dirty-label backdoor.

    Poisoned samples get the trigger and a wrong label (Gu et al. 2017,
    Tran et al. 2018). Counts are ``int(round(fraction * size))``, at least 1.

    - ``"one-to-one"``: ``poison_fraction`` of class ``source`` (chosen
      uniformly without replacement) is relabelled to ``target``.
    - ``"all-to-one"``: ``round(poison_fraction * n_samples / n_classes)``
      samples in total, i.e. the fraction of the mean class size, split over
      the non-target classes in proportion to their sizes (an equal share of
      each when the classes are balanced), all relabelled to ``target``.
      ``source`` must be None.
    - ``"all-to-all"``: ``poison_fraction`` of every class is relabelled by
      the cyclic permutation of the sorted labels, ``c -> (c + 1) mod K`` for
      labels ``0..K-1``. ``source`` and ``target`` must be None.

    Parameters
    ----------
    X : ndarray of shape (n_samples, height, width, channels) or \
(n_samples, height, width)
        Training images; left unchanged.
    y : ndarray of shape (n_samples,)
        Integer labels of at least two classes; left unchanged.
    trigger : Trigger
        Trigger stamped on the poisoned images.
    target : int or None
        Label given to the poisoned samples (None for ``"all-to-all"``).
    source : int, default=None
        The attacked class for ``"one-to-one"``.
    poison_fraction : float, default=0.1
        Fraction in (0, 1], see above.
    mode : {"one-to-one", "all-to-one", "all-to-all"}, default="one-to-one"
        The attack.
    random_state : int, RandomState instance or None, default=None
        Controls which samples are poisoned.

    Returns
    -------
    poisoned : PoisonedDataset

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.poisoning import dirty_label_backdoor, pixel_trigger
    >>> X = np.zeros((20, 4, 4, 1), dtype=np.uint8)
    >>> y = np.repeat([0, 1], 10)
    >>> data = dirty_label_backdoor(
    ...     X, y, pixel_trigger((0, 0), 255), target=1, source=0,
    ...     poison_fraction=0.3, random_state=0,
    ... )
    >>> len(data.poison_indices), set(data.y_true[data.poison_indices].tolist())
    (3, {0})
    """
    X, grey = _image_batch(X)
    X, y = _validate_attack_inputs(X, y, trigger)
    poison_fraction = _check_fraction(poison_fraction)
    attacks = {
        "one-to-one": _one_to_one,
        "all-to-one": _all_to_one,
        "all-to-all": _all_to_all,
    }
    if mode not in attacks:
        raise ValueError(f"mode must be one of {ATTACK_MODES}, got {mode!r}")
    classes = [int(c) for c in np.unique(y)]
    _check_classes(classes)
    if mode != "all-to-all":
        target = _check_class(target, classes, "target")
    rng = check_random_state(random_state)
    poisoned = attacks[mode](
        X, y, trigger, target, source, poison_fraction, rng, classes
    )
    return _poisoned_in_layout(poisoned, grey)


def _poisoned_in_layout(poisoned, grey):
    """A :class:`PoisonedDataset` whose images are in the input's layout."""
    if not grey:
        return poisoned
    return dataclasses.replace(poisoned, X=_in_layout(poisoned.X, grey))


def systematic_label_flip(y, poison_fraction, random_state=None):
    """Relabel a fraction of every class to the next class.

    For each class ``c`` (sorted labels, ``K`` classes),
    ``max(1, round(poison_fraction * n_c))`` samples chosen uniformly without
    replacement get the label ``(c + 1) mod K`` (the next label in sorted
    order for labels other than ``0..K-1``).

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Integer labels of at least two classes; left unchanged.
    poison_fraction : float
        Fraction in (0, 1] of each class to flip.
    random_state : int, RandomState instance or None, default=None
        Controls which samples are flipped.

    Returns
    -------
    y_new : ndarray of shape (n_samples,)
        The flipped labels (a new array).
    flipped_indices : ndarray of shape (n_flipped,), dtype int64
        Sorted indices of the flipped samples.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.poisoning import systematic_label_flip
    >>> y_new, flipped = systematic_label_flip(np.array([0, 1, 2]), 1.0)
    >>> y_new, flipped
    (array([1, 2, 0]), array([0, 1, 2]))
    """
    y = _check_labels(y)
    poison_fraction = _check_fraction(poison_fraction)
    classes = [int(c) for c in np.unique(y)]
    _check_classes(classes)
    rng = check_random_state(random_state)
    indices, labels = _cyclic_flip_indices(y, classes, poison_fraction, rng)
    order = np.argsort(indices)
    y_new = y.copy()
    y_new[indices] = labels
    return y_new, indices[order].astype(np.int64)


def label_flip_backdoor(X, y, trigger, *, poison_fraction, random_state=None):
    """Poison with a systematic label flip plus a trigger.

    For every class ``c`` a ``poison_fraction`` of its samples gets the
    trigger (e.g. :func:`checkerboard_trigger` or :func:`noise_blend_trigger`)
    and the label ``(c + 1) mod K``, see :func:`systematic_label_flip`. This
    is the all-to-all attack of :func:`dirty_label_backdoor`.

    Parameters
    ----------
    X : ndarray of shape (n_samples, height, width, channels) or \
(n_samples, height, width)
        Training images; left unchanged.
    y : ndarray of shape (n_samples,)
        Integer labels of at least two classes; left unchanged.
    trigger : Trigger
        Trigger stamped on the flipped images.
    poison_fraction : float
        Fraction in (0, 1] of each class to poison.
    random_state : int, RandomState instance or None, default=None
        Controls which samples are poisoned.

    Returns
    -------
    poisoned : PoisonedDataset
        ``source`` holds the classes and ``target`` is None.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.poisoning import checkerboard_trigger
    >>> from sklearn_backdoor.poisoning import label_flip_backdoor
    >>> X = np.zeros((6, 4, 4, 1), dtype=np.uint8)
    >>> data = label_flip_backdoor(
    ...     X, np.array([0, 0, 1, 1, 2, 2]), checkerboard_trigger((4, 4)),
    ...     poison_fraction=0.5, random_state=0,
    ... )
    >>> len(data.poison_indices)
    3
    """
    return dirty_label_backdoor(
        X,
        y,
        trigger,
        target=None,
        poison_fraction=poison_fraction,
        mode="all-to-all",
        random_state=random_state,
    )


# ---------------------------------------------------------------------------
# The reference CIFAR-10 scenarios
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BackdoorScenario:
    """One backdoor scenario of the reference CIFAR-10 benchmark.

    Parameters
    ----------
    source : int
        Attacked class.
    target : int
        Label given to the poisoned samples.
    method : {"pixel", "pattern", "ell"}
        Trigger shape.
    position : (int, int)
        (row, col) of the trigger; the reference indexes ``image[p[0], p[1]]``
        on (height, width, channel) images.
    color : (int, int, int)
        RGB colour in 0-254.
    poison_fraction : float
        Fraction of the source class that is poisoned.
    selection_seed : int
        Seed that selects the poisoned samples.
    seed : int
        Seed of the generator that produced the scenario.

    Examples
    --------
    >>> from sklearn_backdoor.poisoning import reference_scenarios
    >>> scenario = reference_scenarios(100, poison_fractions=(0.1,))[0]
    >>> scenario.name, scenario.position, scenario.selection_seed
    ('0-to-2-pixel-0.1-seed100', (24, 3), 112)
    """

    source: int
    target: int
    method: str
    position: tuple
    color: tuple
    poison_fraction: float
    selection_seed: int
    seed: int

    @property
    def name(self):
        """A readable id such as ``"0-to-2-pixel-0.1-seed100"``."""
        return (
            f"{self.source}-to-{self.target}-{self.method}-"
            f"{self.poison_fraction}-seed{self.seed}"
        )

    def trigger(self):
        """Return the scenario's :class:`PatchTrigger`."""
        return make_trigger(self.method, self.position, self.color)

    def poison(self, X, y):
        """Poison a training set exactly as the reference does.

        The poisoned rows are ``np.random.RandomState(selection_seed).choice(
        np.flatnonzero(y == source), size=int(poison_fraction * n_source),
        replace=False)``: the reference's count (truncation, not rounding) and
        the same RNG calls as its ``np.random.seed`` + ``np.random.choice``.
        At test time the reference triggers every source-class test image:
        ``scenario.trigger().apply(X_test[y_test == scenario.source])``.

        Parameters
        ----------
        X : ndarray of shape (n_samples, height, width, channels) or \
(n_samples, height, width)
            Training images (CIFAR-10 in the reference); left unchanged.
        y : ndarray of shape (n_samples,)
            Integer labels; left unchanged.

        Returns
        -------
        poisoned : PoisonedDataset

        Raises
        ------
        ValueError
            If ``source`` equals ``target``, or ``poison_fraction`` of the
            source class truncates to no sample.
        """
        X, grey = _image_batch(X)
        X, y = _validate_attack_inputs(X, y, self.trigger())
        if self.source == self.target:
            raise ValueError(f"source must differ from target, got {self.source}")
        candidates = np.flatnonzero(y == self.source)
        count = int(self.poison_fraction * candidates.size)
        if count == 0:
            raise ValueError(
                f"poison_fraction={self.poison_fraction} of the {candidates.size} "
                f"samples of source class {self.source} truncates to no sample "
                "to poison"
            )
        # A local RandomState gives the stream of the reference's global seed.
        rng = np.random.RandomState(self.selection_seed)
        indices = rng.choice(candidates, size=count, replace=False)
        poisoned = _poison_rows(
            X,
            y,
            self.trigger(),
            indices,
            np.full(count, self.target),
            source=self.source,
            target=self.target,
        )
        return _poisoned_in_layout(poisoned, grey)


def _draw_reference_trigger(rng):
    """Draw method, position and colour with the reference generator's calls."""
    method = TRIGGER_METHODS[rng.randint(3)]
    if method == "pixel":
        position = rng.randint(31, size=(2,))
    elif method == "pattern":
        position = rng.randint(1, 30, size=(2,))
    else:
        position = rng.randint(0, 30, size=(2,))
    color = rng.randint(255, size=(3,))
    return method, tuple(int(p) for p in position), tuple(int(c) for c in color)


def reference_scenarios(seed=100, poison_fractions=REFERENCE_FRACTIONS, order="pair"):
    """Regenerate the backdoor scenarios of the reference CIFAR-10 benchmark.

    Reproduces ``generate_backdoor_poison`` of the authors' code
    (charlesjin/compatibility_clustering, data/cifar10_backdoor.py): one RNG
    seeded with ``seed`` draws, for each (source, target) pair in
    ``[(0, 2), (1, 3), (3, 5), (7, 4), (2, 5), (8, 6), (9, 2), (3, 7)]``, the
    method (``randint(3)``), the position (``randint(31, size=2)`` for pixel,
    ``randint(1, 30, size=2)`` for pattern, ``randint(0, 30, size=2)`` for
    ell) and the colour (``randint(255, size=3)``). Every fraction of a pair
    shares these and gets
    ``selection_seed = seed + int(f * 100) + 10 * source + target``. The
    draws do not depend on ``poison_fractions``, so any subset of fractions
    gives the same triggers. See :meth:`BackdoorScenario.poison` for the
    sample selection.

    Parameters
    ----------
    seed : int, default=100
        Generator seed; the paper's scenarios use 100, 1000 and 10000.
    poison_fractions : sequence of float, default=(0.05, 0.1, 0.2)
        Fractions of the source class to poison.
    order : {"pair", "fraction"}, default="pair"
        ``"pair"`` lists by pair, then fraction (the generator's order);
        ``"fraction"`` lists by fraction, then pair (the order of the
        experiment ids in the reference's evaluation/backdoor_tests.py).

    Returns
    -------
    scenarios : list of BackdoorScenario
        ``8 * len(poison_fractions)`` scenarios.

    Examples
    --------
    >>> from sklearn_backdoor.poisoning import reference_scenarios
    >>> scenarios = reference_scenarios(100)
    >>> len(scenarios), scenarios[0].name
    (24, '0-to-2-pixel-0.05-seed100')
    >>> reference_scenarios(100, order="fraction")[1].name
    '1-to-3-pixel-0.05-seed100'
    """
    seed = _check_int(seed, "seed")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    fractions = tuple(_check_fraction(f) for f in poison_fractions)
    if not fractions:
        raise ValueError("poison_fractions must not be empty")
    if order not in ("pair", "fraction"):
        raise ValueError(f"order must be 'pair' or 'fraction', got {order!r}")
    # The reference calls np.random.seed(seed); a local RandomState has the
    # same stream.
    rng = np.random.RandomState(seed)
    by_pair = []
    for source, target in REFERENCE_PAIRS:
        method, position, color = _draw_reference_trigger(rng)
        by_pair.append(
            [
                BackdoorScenario(
                    source=source,
                    target=target,
                    method=method,
                    position=position,
                    color=color,
                    poison_fraction=f,
                    selection_seed=seed + int(f * 100) + source * 10 + target,
                    seed=seed,
                )
                for f in fractions
            ]
        )
    if order == "fraction":
        by_pair = list(zip(*by_pair, strict=True))
    return [scenario for group in by_pair for scenario in group]
