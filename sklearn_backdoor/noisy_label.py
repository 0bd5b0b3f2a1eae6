"""The noisy-label algorithms ``A`` of paper 002 (Table 1), on one mini-batch.

A strategy turns a batch's logits and labels into the training loss of
Algorithm 1 (:mod:`sklearn_backdoor.minimax`): :class:`PRL` and :class:`SPL`
keep the ``1 - eps`` fraction of the batch with the smallest loss-layer
gradient norm or loss, :class:`Bootstrap` trains on targets mixed with the
network's own prediction, :class:`StandardTraining` uses plain cross-entropy.
:func:`make_strategy` builds one from its name.
"""

import math
from dataclasses import dataclass
from numbers import Real

import torch
import torch.nn.functional as F

STRATEGY_NAMES = ("prl", "spl", "bootstrap", "none")


def n_kept(batch_size, eps):
    """Number of samples a filtering strategy keeps from a batch.

    ``batch_size - floor(eps * batch_size)``, which is
    ``ceil((1 - eps) * batch_size)`` in exact arithmetic, and at least 1.
    A tiny tolerance makes e.g. ``eps=0.3`` of 10 samples reject exactly 3.
    """
    n_rejected = math.floor(eps * batch_size + 1e-9)
    return max(1, batch_size - n_rejected)


def keep_smallest(values, n_keep):
    """Bool mask of the ``n_keep`` smallest ``values`` (ties: lower index first).

    A value that is not finite (NaN or an infinity) counts as larger than
    every finite one: the sample is the most suspicious.
    """
    values = torch.where(torch.isfinite(values), values, torch.inf)
    order = torch.argsort(values, stable=True)
    keep = torch.zeros(values.shape[0], dtype=torch.bool, device=values.device)
    keep[order[:n_keep]] = True
    return keep


def loss_layer_gradient_norm(logits, y):
    """``||softmax(logits) - onehot(y)||_2`` per sample.

    The norm of the cross-entropy's gradient with respect to the logits, the
    quantity PRL filters on.
    """
    probabilities = torch.softmax(logits.float(), dim=1)
    onehot = F.one_hot(y, num_classes=logits.shape[1]).to(probabilities.dtype)
    return torch.linalg.vector_norm(probabilities - onehot, dim=1)


def bootstrap_targets(logits, y, coefficient):
    """Soft bootstrap targets ``a * onehot(y) + (1 - a) * softmax(logits)``.

    The prediction is detached: the targets are constants of the update.
    """
    probabilities = torch.softmax(logits.detach().float(), dim=1)
    onehot = F.one_hot(y, num_classes=logits.shape[1]).to(probabilities.dtype)
    return coefficient * onehot + (1.0 - coefficient) * probabilities


class NoisyLabelStrategy:
    """Base class of the noisy-label algorithms ``A`` of Algorithm 1.

    A strategy turns a batch's logits and labels into a training loss. It
    selects samples (:meth:`select`) and scores each one
    (:meth:`per_sample_loss`); the batch loss is the mean loss of the
    selected samples. This base class keeps every sample and uses plain
    cross-entropy; subclasses override one of the two methods.
    """

    def select(self, logits, y):
        """Bool mask of the samples used in the update, shape ``(batch,)``."""
        return torch.ones(y.shape[0], dtype=torch.bool, device=y.device)

    def per_sample_loss(self, logits, y):
        """Loss of each sample, shape ``(batch,)``, differentiable in ``logits``."""
        return F.cross_entropy(logits.float(), y, reduction="none")

    def batch_loss(self, logits, y):
        """Mean loss of the selected samples, and the selection.

        Returns
        -------
        loss : torch.Tensor
            Scalar, differentiable in ``logits``.
        selected : torch.Tensor of bool, shape (batch,)
        """
        selected = self.select(logits.detach(), y)
        losses = self.per_sample_loss(logits, y)
        # where, not a product with the weights: a rejected NaN times 0 is NaN.
        kept_losses = torch.where(selected, losses, torch.zeros_like(losses))
        return kept_losses.sum() / selected.sum(), selected


@dataclass(frozen=True)
class StandardTraining(NoisyLabelStrategy):
    """No noisy-label handling: every sample, plain cross-entropy.

    With ``tau > 0`` this is adversarial training alone (the paper's "AT").
    """


@dataclass(frozen=True)
class _FilteringStrategy(NoisyLabelStrategy):
    """Keeps the :func:`n_kept` samples of a batch with the smallest suspicion."""

    eps: float = 0.5

    def __post_init__(self):
        if isinstance(self.eps, bool) or not isinstance(self.eps, Real):
            raise TypeError(f"eps must be a float in [0, 1), got eps={self.eps!r}")
        if not 0.0 <= self.eps < 1.0:
            raise ValueError(f"eps must be in [0, 1), got eps={self.eps!r}")

    def suspicion(self, logits, y):
        """Per-sample value; the smallest ones are kept."""
        raise NotImplementedError

    def select(self, logits, y):
        return keep_smallest(self.suspicion(logits, y), n_kept(y.shape[0], self.eps))


@dataclass(frozen=True)
class PRL(_FilteringStrategy):
    """Provable Robust Learning (Liu et al., 2021) on one batch.

    Keeps the ``ceil((1 - eps) * batch)`` samples with the smallest loss-layer
    gradient norm ``||softmax(f(x)) - onehot(y)||_2`` (:func:`n_kept`).

    Parameters
    ----------
    eps : float, default=0.5
        Assumed corruption rate, in [0, 1).

    Examples
    --------
    >>> import torch
    >>> from sklearn_backdoor.noisy_label import PRL
    >>> logits = torch.tensor([[4.0, 0.0], [0.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    >>> PRL(eps=0.5).select(logits, torch.tensor([0, 0, 0, 1])).tolist()
    [True, False, False, True]
    """

    def suspicion(self, logits, y):
        return loss_layer_gradient_norm(logits, y)


@dataclass(frozen=True)
class SPL(_FilteringStrategy):
    """Self-Paced Learning (Kumar et al., 2010; Jiang et al., 2017) on one batch.

    Keeps the ``ceil((1 - eps) * batch)`` samples with the smallest
    cross-entropy (:func:`n_kept`).

    Parameters
    ----------
    eps : float, default=0.5
        Assumed corruption rate, in [0, 1).

    Examples
    --------
    >>> import torch
    >>> from sklearn_backdoor.noisy_label import SPL
    >>> logits = torch.tensor([[4.0, 0.0], [0.0, 4.0], [1.0, 0.0]])
    >>> SPL(eps=0.4).select(logits, torch.tensor([0, 0, 0])).tolist()
    [True, False, True]
    """

    def suspicion(self, logits, y):
        return F.cross_entropy(logits.float(), y, reduction="none")


@dataclass(frozen=True)
class Bootstrap(NoisyLabelStrategy):
    """Soft bootstrapping (Reed et al., 2014): every sample, mixed targets.

    The loss of a sample is the cross-entropy against
    :func:`bootstrap_targets` ``coefficient * onehot(y) + (1 - coefficient) *
    softmax(f(x))`` with the prediction detached.

    Parameters
    ----------
    coefficient : float, default=0.95
        Weight ``alpha`` of the observed label (paper 002 Table 1). The paper
        gives no value; 0.95 is Reed et al.'s soft-bootstrapping ``beta``.

    Examples
    --------
    >>> import torch
    >>> from sklearn_backdoor.noisy_label import Bootstrap
    >>> loss, kept = Bootstrap(0.5).batch_loss(torch.zeros(2, 2), torch.tensor([0, 1]))
    >>> round(float(loss), 4), kept.tolist()
    (0.6931, [True, True])
    """

    coefficient: float = 0.95

    def __post_init__(self):
        value = self.coefficient
        if isinstance(value, bool) or not isinstance(value, Real):
            raise TypeError(f"coefficient must be a float in [0, 1], got {value!r}")
        if not 0.0 <= value <= 1.0:
            raise ValueError(
                f"coefficient must be in [0, 1], got coefficient={value!r}"
            )

    def per_sample_loss(self, logits, y):
        targets = bootstrap_targets(logits, y, self.coefficient)
        return -(targets * torch.log_softmax(logits.float(), dim=1)).sum(dim=1)


def make_strategy(name, *, eps=0.5, bootstrap_coefficient=0.95):
    """The strategy object for a name of :data:`STRATEGY_NAMES`.

    Examples
    --------
    >>> from sklearn_backdoor.noisy_label import make_strategy
    >>> make_strategy("spl", eps=0.25)
    SPL(eps=0.25)
    """
    if name == "prl":
        return PRL(eps)
    if name == "spl":
        return SPL(eps)
    if name == "bootstrap":
        return Bootstrap(bootstrap_coefficient)
    if name == "none":
        return StandardTraining()
    raise ValueError(f"strategy must be one of {list(STRATEGY_NAMES)}, got {name!r}")
