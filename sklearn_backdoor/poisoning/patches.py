"""Patch triggers: the pixel, X and L shapes of paper 001 and the
checkerboard of paper 002."""

from sklearn.utils._param_validation import StrOptions, validate_params

from sklearn_backdoor.poisoning.checks import check_image_shape, check_position
from sklearn_backdoor.poisoning.triggers import CompositeTrigger, PatchTrigger

TRIGGER_METHODS = ("pixel", "pattern", "ell")


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
    return PatchTrigger(pixels=(check_position(position),), color=color)


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
    row, col = check_position(position)
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
    row, col = check_position(position)
    pixels = ((row, col), (row + 1, col), (row, col + 1))
    return PatchTrigger(pixels=pixels, color=color)


_TRIGGER_FACTORIES = {
    "pixel": pixel_trigger,
    "pattern": pattern_trigger,
    "ell": ell_trigger,
}


@validate_params(
    {"method": [StrOptions(set(TRIGGER_METHODS))]},
    prefer_skip_nested_validation=True,
)
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
    height, width, _ = check_image_shape(image_shape)
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
