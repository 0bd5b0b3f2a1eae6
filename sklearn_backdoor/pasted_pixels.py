"""Clusters whose members share pixel values that the rest of their class lacks.

Not in the papers. The cluster vote (:mod:`sklearn_backdoor.cluster_vote`)
confirms a candidate cluster when networks that did not learn it misread
it. Where every weak learner of a bag has learned the trigger (every core
set held some poison: on the two-class CIFAR-10 tier, 8-to-6 with the X
pattern at eps 20%, 158-841 poisoned images in each), none misreads the
poison, and the bag's candidates stand or fall with nothing to tell them
apart (docs/benchmarks.md).

A pasted trigger leaves a mark in the pixels themselves: every poisoned
image carries the same values at the trigger's pixels, which natural
images of the class take only by chance. So a candidate is confirmed when
at least ``min_values`` pixel values (a pixel's channels counted apart) are
carried by at least ``min_share`` of its members, to within ``tolerance``
of that value's standard deviation over the class, and by at most
``max_other_share`` of the class's other samples (:func:`pasted_values`).
A clean sub-style of a class (dark cats, aeroplanes in a white sky) is
alike in its look, not to the pixel value over nine tenths of its members;
where it is (a saturated background, say), the rest of the class must
still lack that value for it to count. On the two-class CIFAR-10 tier no
clean candidate was confirmed this way (docs/benchmarks.md).

A trigger blended into the image, drawn anew for each image, or moved
about is no such mark, and a cluster of which fewer than ``min_share`` are
poisoned is not confirmed this way.
"""

import numpy as np
import torch

MIN_SHARE = 0.9
MAX_OTHER_SHARE = 0.1
TOLERANCE = 0.05
MIN_VALUES = 3


def pasted_values(
    X,
    members,
    others,
    *,
    min_share=MIN_SHARE,
    max_other_share=MAX_OTHER_SHARE,
    tolerance=TOLERANCE,
):
    """The pixel values ``members`` share and ``others`` lack.

    Parameters
    ----------
    X : torch.Tensor of shape (n_samples, ...)
        The samples (any shape after the first axis; each entry is one
        value).
    members : ndarray of int
        The cluster.
    others : ndarray of int
        The other samples of its class.
    min_share : float, default=0.9
        Share of the members that must carry a value.
    max_other_share : float, default=0.1
        Share of the others that may carry it.
    tolerance : float, default=0.05
        A sample carries a value when it is within this many standard
        deviations of it (the value's deviation over members and others);
        the value is the members' median there.

    Returns
    -------
    pasted : ndarray of bool, shape (n_values,)
        The values pasted on the members; none where there are no members
        or no others.
    """
    n_values = int(np.prod(X.shape[1:]))
    if len(members) == 0 or len(others) == 0:
        return np.zeros(n_values, dtype=bool)
    member_values = _rows(X, members)
    other_values = _rows(X, others)
    centre = member_values.median(dim=0).values
    spread = torch.cat([member_values, other_values]).std(dim=0)
    radius = tolerance * spread
    member_share = _share_within(member_values, centre, radius)
    other_share = _share_within(other_values, centre, radius)
    pasted = (member_share >= min_share) & (other_share <= max_other_share)
    return (pasted & (spread > 0)).cpu().numpy()


def confirm_pasted(findings, X, labels, *, min_values=MIN_VALUES, **shares):
    """Confirm the candidates of ``findings`` whose members carry pasted values.

    Parameters
    ----------
    findings : ClusterFindings
        What :func:`~sklearn_backdoor.cluster_vote.flag_poison_clusters`
        found in one network.
    X : torch.Tensor of shape (n_samples, ...)
        The samples the network read.
    labels : ndarray of int, shape (n_samples,)
        Encoded labels (0..K-1).
    min_values : int, default=3
        Fewest :func:`pasted_values` of a candidate that is confirmed (a
        one-pixel trigger on colour images has three).
    **shares
        ``min_share``, ``max_other_share`` and ``tolerance`` of
        :func:`pasted_values`.

    Returns
    -------
    findings : ClusterFindings
        ``findings`` with ``confirmed`` replaced: each candidate confirmed
        if and only if it carries at least ``min_values`` pasted values.
    """
    labels = np.asarray(labels, dtype=np.int64)
    confirmed = np.zeros_like(findings.candidates)
    for label, cluster in zip(*np.nonzero(findings.candidates), strict=True):
        in_class = labels == label
        in_cluster = in_class & (findings.clusters == cluster)
        members = np.flatnonzero(in_cluster)
        others = np.flatnonzero(in_class & ~in_cluster)
        pasted = pasted_values(X, members, others, **shares)
        confirmed[label, cluster] = pasted.sum() >= min_values
    return findings._replace(confirmed=confirmed)


def _rows(X, rows):
    return X[torch.as_tensor(rows, device=X.device)].flatten(1).float()


def _share_within(values, centre, radius):
    return ((values - centre).abs() <= radius).float().mean(dim=0)
