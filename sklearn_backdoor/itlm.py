"""Iterative Trimmed Loss Minimization: train, keep the lowest-loss samples,
train a fresh model on them, repeat.

Shen & Sanghavi, *Learning with Bad Training Data via Iterative Trimmed Loss
Minimization*, ICML 2019, as set up for backdoors in paper 001 (App. C).
Poisoned samples disagree with the clean majority, so a model fitted for a
limited number of epochs gives them higher losses than clean samples.
"""

import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval
from tqdm.auto import tqdm

from sklearn_backdoor.base import (
    BaseSanitizer,
    NetworkEstimatorMixin,
    nonfinite_as_worst,
)
from sklearn_backdoor.docstrings import fill_doc
from sklearn_backdoor.training import (
    per_sample_loss,
    predict_logits,
    train_net,
)

# Paper 001 App. C: alpha = 98%, 96%, 92% for epsilon = 5%, 10%, 20%.
KEEP_FRACTION_SLOPE = 0.4
# A round must leave enough samples to train on (BatchNorm needs two).
MIN_KEPT = 2


@fill_doc
class ITLMFilter(BaseSanitizer):
    """Remove backdoor poison by iterative trimmed loss minimization.

    Each of ``n_rounds`` rounds trains a fresh network on the samples kept by
    the previous round (all samples in the first round), computes the loss
    of *every* training sample, and keeps the ``keep_fraction`` of the
    samples with the lowest loss. The final mask is the last round's kept
    set.

    Parameters
    ----------
    {{net}}
        A fresh one is trained every round.
    expected_poison_fraction : float, default=0.1
        Expected fraction epsilon of poison; sets ``keep_fraction`` when that
        is None.
    keep_fraction : float or None, default=None
        Fraction alpha of the samples kept every round. None means
        ``1 - 0.4 * expected_poison_fraction``: paper 001 scales the ITLM
        authors' 98% at epsilon = 5% linearly (96% at 10%, 92% at 20%).
    n_rounds : int, default=4
        Training rounds (paper 001: "repeated several times").
    first_round_epochs : int, default=40
        Epochs of the first round's network (paper: 80).
    round_epochs : int, default=20
        Epochs of every later round's network (paper: 40). The defaults halve
        the paper's schedule for speed; the loss gap that ITLM relies on is
        largest early in training, before the poison is memorised.
    random_state : int, RandomState instance or None, default=None
        Seeds every network, its batch order and augmentation.
    {{device}}
    verbose : int, default=0
        Show tqdm progress bars when positive: over the rounds, and over the
        training epochs of each round's network.

    Attributes
    ----------
    mask_ : ndarray of bool, shape (n_samples,)
        True for the samples to keep: the last round's kept set.
    sample_indices_ : ndarray of int
        Indices of the kept samples.
    scores_ : ndarray of float, shape (n_samples,)
        Cross-entropy of each sample under the last round's network; higher
        is more suspicious. A loss that is not finite counts as higher than
        every finite one (and raises ``ValueError`` if no loss is finite).
    keep_fraction_ : float
        The fraction kept every round.
    round_masks_ : ndarray of bool, shape (n_rounds, n_samples)
        The kept set of each round.
    net_ : skorch.NeuralNetClassifier
        The last round's network.
    phase_seconds_ : dict
        Wall-clock seconds of ``"training"`` and ``"loss_passes"``, summed
        over the rounds, device work included.
    {{network_attributes}}

    Notes
    -----
    Each round keeps ``round(keep_fraction_ * n_samples)`` samples (halves
    rounded up, at least two); equal losses are broken by sample order, the
    earlier sample being kept. Losses are computed in eval mode on the
    un-augmented inputs.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.itlm import ITLMFilter
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(200, 6).astype(np.float32)
    >>> y = (X[:, 0] > 0.5).astype(int)
    >>> itlm = ITLMFilter(n_rounds=2, first_round_epochs=2, round_epochs=1,
    ...     random_state=0).fit(X, y)
    >>> itlm.keep_fraction_, int(itlm.mask_.sum())
    (0.96, 192)
    """

    _parameter_constraints: dict = {
        **NetworkEstimatorMixin._parameter_constraints,
        "expected_poison_fraction": [Interval(Real, 0, 1, closed="both")],
        "keep_fraction": [None, Interval(Real, 0, 1, closed="right")],
        "n_rounds": [Interval(Integral, 1, None, closed="left")],
        "first_round_epochs": [Interval(Integral, 1, None, closed="left")],
        "round_epochs": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        net=None,
        *,
        expected_poison_fraction=0.1,
        keep_fraction=None,
        n_rounds=4,
        first_round_epochs=40,
        round_epochs=20,
        random_state=None,
        device="auto",
        verbose=0,
    ):
        self.net = net
        self.expected_poison_fraction = expected_poison_fraction
        self.keep_fraction = keep_fraction
        self.n_rounds = n_rounds
        self.first_round_epochs = first_round_epochs
        self.round_epochs = round_epochs
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def _fit_mask(self, X_t, y_t, rng):
        self.keep_fraction_ = default_keep_fraction(
            self.expected_poison_fraction, self.keep_fraction
        )
        keep = np.ones(len(y_t), dtype=bool)
        round_masks = []
        rounds = tqdm(
            range(self.n_rounds), desc="ITLM rounds", disable=not self.verbose
        )
        for round_index in rounds:
            epochs = self.first_round_epochs if round_index == 0 else self.round_epochs
            index = torch.as_tensor(np.flatnonzero(keep), device=X_t.device)
            with self._phase("training"):
                net = train_net(
                    self._new_net(rng),
                    X_t[index],
                    y_t[index],
                    epochs=epochs,
                    progress=self._progress(f"round {round_index + 1} training"),
                )
            with self._phase("loss_passes"):
                losses = sample_losses(net, X_t, y_t)
            keep = keep_lowest_loss(losses, self.keep_fraction_)
            round_masks.append(keep)
        self.round_masks_ = np.stack(round_masks)
        self.net_ = net
        return keep, losses


def default_keep_fraction(expected_poison_fraction, keep_fraction=None):
    """``keep_fraction``, or ``1 - 0.4 * expected_poison_fraction`` if None.

    Examples
    --------
    >>> from sklearn_backdoor.itlm import default_keep_fraction
    >>> [default_keep_fraction(eps) for eps in (0.05, 0.1, 0.2)]
    [0.98, 0.96, 0.92]
    """
    if keep_fraction is not None:
        return float(keep_fraction)
    # Rounded so that 1 - 0.4 * 0.1 reads as 0.96.
    return round(1.0 - KEEP_FRACTION_SLOPE * expected_poison_fraction, 12)


def sample_losses(net, X_t, y_t):
    """Per-sample cross-entropy (float64 array); a non-finite loss ranks as
    the most suspicious (see :func:`~sklearn_backdoor.base.nonfinite_as_worst`,
    which raises ``ValueError`` when no loss is finite)."""
    logits = predict_logits(net, X_t)
    losses = per_sample_loss(logits, y_t).cpu().numpy()
    return nonfinite_as_worst(losses, what="loss")


def kept_count(fraction, n):
    """``fraction * n`` rounded half up, at least ``min(n, 2)``."""
    return min(n, max(MIN_KEPT, math.floor(fraction * n + 0.5)))


def keep_lowest_loss(losses, fraction):
    """Keep the ``fraction`` of samples with the lowest loss.

    Parameters
    ----------
    losses : array-like of shape (n_samples,)
    fraction : float in (0, 1]
        ``kept_count(fraction, n_samples)`` samples are kept.

    Returns
    -------
    keep : ndarray of bool, shape (n_samples,)
        No kept sample has a higher loss than a removed one; equal losses are
        broken by position, the earlier sample being kept.

    Examples
    --------
    >>> from sklearn_backdoor.itlm import keep_lowest_loss
    >>> keep_lowest_loss([0.3, 2.0, 0.1, 0.3], 0.75)
    array([ True, False,  True,  True])
    """
    losses = np.asarray(losses, dtype=np.float64)
    if losses.ndim != 1:
        raise ValueError(f"losses must be 1-dimensional, got shape {losses.shape}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got fraction={fraction!r}")
    order = np.argsort(losses, kind="stable")
    keep = np.zeros(len(losses), dtype=bool)
    keep[order[: kept_count(fraction, len(losses))]] = True
    return keep
