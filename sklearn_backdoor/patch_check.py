"""Samples whose label rests on one small patch unlike the rest of their class.

Not in the papers. On the digits, ISPL+B's self-training takes back the
poison the vote had removed (a ratchet: a few poisoned images re-admitted in
one round teach the next round's network the trigger, which re-admits the
rest; docs/benchmarks.md), and every admission rule tried that keeps the
poison out also keeps out the hardest clean digits, because to a network
trained on labels a handful of triggered images and a handful of one rare
handwriting look alike. What sets the poison apart is where its label
comes from: a trigger is a small patch that the rest of the target class
does not have, and the network that learned it reads the triggered image
as its source class as soon as that patch looks like the rest of the
class.

So, after self-training, every kept sample is read by the last
self-training network with each ``size`` x ``size`` patch in turn replaced
by the median of its labelled class there (over the kept samples of that
class). A sample *flips* at the position where its label's probability
falls lowest if it falls under one half and another class is read instead.
Flipped samples of one label at one position form a :class:`PatchGroup`.
A group is removed when two things hold:

- its patch is far from the class median where the class's other kept
  samples are close to it: the median distance of the members over that of
  the others is at least ``min_deviation``. A clean sample whose label
  rests on a patch is read that way because the patch is how its class is
  usually written, so it is close to the median there;
- the patch is a copy: at least ``min_carriers`` samples of the label, kept
  or removed, carry one member's patch to within ``tolerance`` of the
  members' distance to the median (:func:`patch_carriers`). An attacker
  pastes one trigger on every poisoned image, and most of those the vote
  has already removed, so a few poisoned samples left after self-training
  are counted with the rest; rare handwritings that flip at one patch are
  each written differently.

It finds only what the last network learned: where self-training kept the
poison out, the network does not know the trigger and nothing flips at it.
A trigger spread over the whole image (a blend) makes no such patch; one
drawn anew for every image, or pasted on fewer than ``min_carriers``, is no
copy that the check counts.
"""

from typing import NamedTuple

import numpy as np
import torch

from sklearn_backdoor.docstrings import fill_doc
from sklearn_backdoor.training import predict_logits

FLIP_PROBABILITY = 0.5
"""A sample flips when its label's probability falls under this and another
class is read instead."""

CARRIER_BLOCK = 256
"""Members whose carriers are counted at once (a block of distances to every
sample of the label)."""

QUANTILE_MAX_ELEMENTS = 2**24
"""The most values ``torch.quantile`` takes at once; larger classes are
taken a slice of pixels at a time."""


class PatchGroup(NamedTuple):
    """Kept samples that flip at one patch, as :func:`patch_groups` found them.

    Attributes
    ----------
    label : int
        The samples' encoded label.
    row, col : int
        The top-left corner of the patch, in the image the network reads.
    read_as : int
        The encoded class most members are read as once the patch is
        replaced.
    members : ndarray of int
        Indices of the samples.
    deviation_ratio : float
        Median distance of the members' patch to the class median there, over
        that of the class's other kept samples (inf where theirs is 0).
    carriers : int
        Samples of the label, kept or not, that carry the members' patch
        (:func:`patch_carriers`).
    removed : bool
        Whether the check removes the group.
    """

    label: int
    row: int
    col: int
    read_as: int
    members: np.ndarray
    deviation_ratio: float
    carriers: int
    removed: bool


@fill_doc
def class_medians(X, labels, keep, n_classes):
    """Per-pixel median image of each class over its kept samples.

    Parameters
    ----------
    {{patch_images}}
    keep : ndarray of bool, shape (n_samples,)
        The samples kept.
    n_classes : int
        Number of classes.

    Returns
    -------
    medians : torch.Tensor of shape (n_classes, channels, height, width)
        The median of each class (the mean of the two middle values for an
        even count); zeros for a class with no kept sample, whose samples
        are never checked.
    """
    medians = torch.zeros((n_classes, *X.shape[1:]), dtype=X.dtype, device=X.device)
    for label in range(n_classes):
        rows = np.flatnonzero(keep & (labels == label))
        if len(rows):
            index = torch.as_tensor(rows, device=X.device)
            medians[label] = _column_medians(X[index]).to(X.dtype)
    return medians


def _column_medians(values):
    """The median over the first axis, a slice of columns at a time so that
    no ``torch.quantile`` call exceeds :data:`QUANTILE_MAX_ELEMENTS`."""
    flat = values.float().flatten(1)
    step = max(1, QUANTILE_MAX_ELEMENTS // len(flat))
    slices = [
        torch.quantile(flat[:, start : start + step], 0.5, dim=0)
        for start in range(0, flat.shape[1], step)
    ]
    return torch.cat(slices).reshape(values.shape[1:])


def lowest_label_readings(net, X, labels, medians, size):
    """Each sample read with each patch replaced by its class's median there.

    Parameters
    ----------
    net : skorch.NeuralNetClassifier
        A fitted network that reads ``X``.
    X : torch.Tensor of shape (n_samples, channels, height, width)
        The samples to read.
    labels : ndarray of int, shape (n_samples,)
        Their encoded labels.
    medians : torch.Tensor of shape (n_classes, channels, height, width)
        From :func:`class_medians`.
    size : int
        Side of the square patch; every position of it is tried.

    Returns
    -------
    lowest : ndarray of float, shape (n_samples,)
        The lowest probability of the label over the positions, or its
        probability on the sample as it is if no replacement lowers it.
    positions : ndarray of int, shape (n_samples, 2)
        The patch's (row, col) where it is lowest; -1 where none lowers it.
    read_as : ndarray of int, shape (n_samples,)
        The class read there; -1 where no replacement lowers it.
    """
    height, width = X.shape[-2:]
    own_median = medians[torch.as_tensor(labels, device=X.device)]
    lowest = _of_labels(_probabilities(net, X), labels)
    positions = np.full((len(labels), 2), -1)
    read_as = np.full(len(labels), -1)
    replaced = X.clone()
    for row in range(height - size + 1):
        for col in range(width - size + 1):
            window = _window(row, col, size)
            replaced[window] = own_median[window]
            probabilities = _probabilities(net, replaced)
            replaced[window] = X[window]
            label_probability = _of_labels(probabilities, labels)
            lower = label_probability < lowest
            lowest[lower] = label_probability[lower]
            positions[lower] = (row, col)
            read_as[lower] = probabilities.argmax(axis=1)[lower]
    return lowest, positions, read_as


@fill_doc
def patch_groups(
    X,
    labels,
    keep,
    readings,
    medians,
    size,
    *,
    min_carriers,
    min_deviation,
    tolerance,
):
    """Group the kept samples that flip, and decide which groups to remove.

    Parameters
    ----------
    {{patch_images}}
    keep : ndarray of bool, shape (n_samples,)
        The samples kept before the check; only they are grouped.
    readings : tuple
        ``(lowest, positions, read_as)`` of :func:`lowest_label_readings`.
    medians : torch.Tensor of shape (n_classes, channels, height, width)
        From :func:`class_medians`.
    size : int
        Side of the patch.
    min_carriers : int
        Fewest samples of the label carrying the members' patch
        (:attr:`PatchGroup.carriers`) of a group that is removed.
    min_deviation : float
        Smallest :attr:`PatchGroup.deviation_ratio` of a group that is
        removed.
    tolerance : float
        How close a patch must be to carry the members' one, as a share of
        their median distance to the class median (:func:`patch_carriers`).

    Returns
    -------
    groups : list of PatchGroup
        Every group of flipped kept samples, largest first.
    """
    lowest, positions, read_as = readings
    flipped = keep & (lowest < FLIP_PROBABILITY) & (read_as != labels) & (read_as >= 0)
    keys = np.column_stack([labels, positions])[flipped]
    indices = np.flatnonzero(flipped)
    groups = []
    for key in np.unique(keys, axis=0):
        label, row, col = (int(v) for v in key)
        members = indices[(keys == key).all(axis=1)]
        others = np.setdiff1d(np.flatnonzero(keep & (labels == label)), members)
        window = _window(row, col, size)
        ratio = deviation_ratio(X, members, others, medians[label], row, col, size)
        carriers = patch_carriers(
            X[window],
            members,
            np.flatnonzero(labels == label),
            medians[label][window],
            tolerance,
        )
        removed = carriers >= min_carriers and ratio >= min_deviation
        most_read = int(np.bincount(read_as[members]).argmax())
        groups.append(
            PatchGroup(label, row, col, most_read, members, ratio, carriers, removed)
        )
    groups.sort(key=lambda group: -len(group.members))
    return groups


def patch_carriers(patches, members, rows, median, tolerance):
    """How many of ``rows`` carry one of the ``members``' patch.

    A sample carries a member's patch when their L1 distance is at most
    ``tolerance`` times the members' median L1 distance to ``median``; the
    member whose patch most samples carry is the one counted. Each member is
    tried in turn rather than their per-pixel median, because a trigger
    smaller than the patch leaves the rest of the patch to the image.

    Parameters
    ----------
    patches : torch.Tensor of shape (n_samples, channels, size, size)
        Every sample's patch.
    members : ndarray of int
        The group, indices into ``patches``.
    rows : ndarray of int
        The samples that may carry it (every sample of the label), members
        included.
    median : torch.Tensor of shape (channels, size, size)
        The class median there.
    tolerance : float
        See above.

    Returns
    -------
    carriers : int
        The most samples of ``rows`` that carry one member's patch.
    """
    device = patches.device
    candidates = patches[torch.as_tensor(members, device=device)].float().flatten(1)
    pool = patches[torch.as_tensor(rows, device=device)].float().flatten(1)
    to_median = (candidates - median.float().flatten()).abs().sum(dim=1)
    radius = tolerance * float(torch.quantile(to_median, 0.5))
    most = 0
    for start in range(0, len(candidates), CARRIER_BLOCK):
        block = candidates[start : start + CARRIER_BLOCK]
        within = torch.cdist(block, pool, p=1) <= radius
        most = max(most, int(within.sum(dim=1).max()))
    return most


def deviation_ratio(X, members, others, median, row, col, size):
    """Median L1 distance of ``members``' patch to ``median`` there, over that
    of ``others`` (inf where theirs is 0 and the members' is not; 0 where
    both are)."""
    window = _window(row, col, size)
    member_distance = _median_distance(X, members, median, window)
    other_distance = _median_distance(X, others, median, window)
    if other_distance > 0:
        return member_distance / other_distance
    return np.inf if member_distance > 0 else 0.0


def _window(row, col, size):
    return (..., slice(row, row + size), slice(col, col + size))


def _median_distance(X, rows, median, window):
    if len(rows) == 0:
        return 0.0
    patches = X[torch.as_tensor(rows, device=X.device)][window].float()
    distance = (patches - median[window].float()).abs().flatten(1).sum(dim=1)
    return float(torch.quantile(distance, 0.5).cpu())


def _probabilities(net, X):
    return torch.softmax(predict_logits(net, X), dim=1).cpu().numpy()


def _of_labels(probabilities, labels):
    return probabilities[np.arange(len(labels)), labels]
