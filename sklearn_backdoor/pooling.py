"""Images seen at a lower resolution: the block mean of every image.

A backdoor trigger of a few pixels is a high-frequency signal; the classes of
natural images are mostly not. Averaging every ``size`` x ``size`` block of
pixels (and repeating the mean over the block, so that the shape and the
network stay the same) divides a one-pixel trigger's contrast by ``size**2``
while a network still tells airplanes from birds (docs/benchmarks.md).
"""

import torch.nn.functional as F


def block_mean(X, size):
    """Each ``size`` x ``size`` block of every image of ``X`` replaced by its mean.

    Parameters
    ----------
    X : torch.Tensor of shape (n_samples, channels, height, width)
        Images; ``height`` and ``width`` must be multiples of ``size``.
    size : int
        Side of the blocks; 1 returns ``X`` itself.

    Returns
    -------
    torch.Tensor
        A new tensor of the shape, dtype and device of ``X`` (``X`` itself
        when ``size`` is 1; never modified).

    Examples
    --------
    >>> import torch
    >>> from sklearn_backdoor.pooling import block_mean
    >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> block_mean(x, 2)[0, 0]
    tensor([[ 2.5000,  2.5000,  4.5000,  4.5000],
            [ 2.5000,  2.5000,  4.5000,  4.5000],
            [10.5000, 10.5000, 12.5000, 12.5000],
            [10.5000, 10.5000, 12.5000, 12.5000]])
    """
    if size == 1:
        return X
    means = F.avg_pool2d(X, size)
    return means.repeat_interleave(size, dim=2).repeat_interleave(size, dim=3)


def check_block_size(input_shape, size, name):
    """Raise ValueError unless images of ``input_shape`` (C, H, W) split into
    ``size`` x ``size`` blocks; ``name`` is the parameter's name."""
    if size == 1:
        return
    if len(input_shape) != 3:
        raise ValueError(
            f"{name}={size} needs images (n_samples, height, width[, channels]), "
            f"got flat features of shape {input_shape}."
        )
    _, height, width = input_shape
    if height % size or width % size:
        raise ValueError(
            f"{name}={size} must divide the image height and width, got "
            f"images of {height} x {width}."
        )
