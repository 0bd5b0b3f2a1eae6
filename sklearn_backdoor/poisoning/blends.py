"""Blended triggers: paper 002's Gaussian-noise blend and paper 001's
WATERMARK pictures (8x8, RGB in [0, 1] plus an alpha mask)."""

from numbers import Real

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import StrOptions, validate_params

from sklearn_backdoor.constraints import StrictInterval
from sklearn_backdoor.poisoning.checks import check_image_shape
from sklearn_backdoor.poisoning.triggers import BlendTrigger

WATERMARK_NAMES = ("peace", "letter_a", "bullet_holes", "colorful_patch")
WATERMARK_SIZE = 8
OPACITY = StrictInterval(Real, 0, 1, closed="both")


@validate_params(
    {"alpha": [OPACITY], "random_state": ["random_state"]},
    prefer_skip_nested_validation=True,
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
    height, width, channels = check_image_shape(image_shape)
    rng = check_random_state(random_state)
    z = rng.standard_normal((height, width, channels))
    pattern = np.clip(0.5 + 0.25 * z, 0, 1)
    return BlendTrigger(
        pattern=pattern, alpha=alpha, anchor=(0, 0), value_range=value_range
    )


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


@validate_params(
    {"name": [StrOptions(set(WATERMARK_NAMES))], "opacity": [OPACITY]},
    prefer_skip_nested_validation=True,
)
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
    colour, mask = _WATERMARK_DRAWERS[name]()
    return BlendTrigger(
        pattern=colour, alpha=opacity, mask=mask, anchor=(0, 0), value_range=value_range
    )
