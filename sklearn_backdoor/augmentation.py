"""Batched data augmentation that runs where the data lives (GPU or CPU).

The reference implementation of paper 001 augments each sample in a CPU
``DataLoader`` with ``RandomCrop(32, padding=4)`` and ``RandomHorizontalFlip``;
that loader is what makes it slow. :class:`RandomCropFlip` draws the same
distribution of crops and flips for a whole batch at once, with a handful of
tensor operations and no host round trip.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class RandomCropFlip:
    """Per-sample random crop from constant padding and random horizontal flip.

    Equivalent in distribution to torchvision's
    ``RandomCrop(size, padding=padding)`` followed by
    ``RandomHorizontalFlip(0.5)`` applied to each image independently, but
    computed for a whole NCHW batch on its device.

    Parameters
    ----------
    padding : int, default=4
        Padding on each side; each image is translated by an offset drawn
        uniformly from ``[-padding, padding]`` in both directions.
    flip : bool, default=True
        Whether to flip each image horizontally with probability 0.5. Turn it
        off for data whose labels are not mirror-invariant (digits, text).
    fill : float or tuple of float, default=0.0
        Value of the padding, one per channel or one for all. The reference
        pads the *raw* image with black before normalising; on standardised
        tensors black is ``-mean / std`` per channel, which is what the
        library's estimators pass here (0 would be mean grey).

    Examples
    --------
    >>> import torch
    >>> from sklearn_backdoor.augmentation import RandomCropFlip
    >>> x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    >>> RandomCropFlip(padding=2)(x).shape
    torch.Size([2, 3, 8, 8])
    """

    padding: int = 4
    flip: bool = True
    fill: float | tuple = 0.0

    def __call__(self, x, generator=None):
        """Return an augmented copy of the NCHW batch ``x``.

        ``generator`` (a ``torch.Generator`` on ``x``'s device) draws the
        offsets and flips; the global generator is used when it is None.
        """
        if self.padding > 0:
            x = translate_batch(x, self.padding, generator, fill=self.fill)
        if self.flip:
            x = flip_batch(x, generator)
        return x


def translate_batch(x, padding, generator=None, fill=0.0):
    """Crop each image of ``x`` at a random offset from its padded copy.

    ``fill`` is the padding value, a scalar or one value per channel.
    """
    n, _, height, width = x.shape
    padded = pad_constant(x, padding, fill)
    offsets = torch.randint(
        0, 2 * padding + 1, (2, n, 1), device=x.device, generator=generator
    )
    rows = offsets[0] + torch.arange(height, device=x.device)
    cols = offsets[1] + torch.arange(width, device=x.device)
    batch = torch.arange(n, device=x.device)[:, None, None]
    channels_last = padded.permute(0, 2, 3, 1)
    cropped = channels_last[batch, rows[:, :, None], cols[:, None, :]]
    return cropped.permute(0, 3, 1, 2)


def pad_constant(x, padding, fill=0.0):
    """``x`` padded by ``padding`` on each side with ``fill`` (per channel)."""
    pad = (padding, padding, padding, padding)
    if isinstance(fill, int | float):
        return F.pad(x, pad, value=float(fill))
    level = torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    return F.pad(x - level, pad) + level


def flip_batch(x, generator=None):
    """Mirror a random half (in expectation) of the images of ``x``."""
    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)
