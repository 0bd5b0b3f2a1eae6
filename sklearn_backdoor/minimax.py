"""Noisy-label learning plus adversarial training against backdoors.

*Defending Backdoor Data Poisoning Attacks Using Noisy Label Defense
Algorithm* (anonymous ICLR 2022 submission, paper 002 of this project)
reduces a backdoor attack to a label-flipping attack: a small
trigger ``t`` (``||t||_inf <= tau``) is covered by the worst-case perturbation
``c`` of an inner maximisation, and the flipped labels are handled by any
noisy-label algorithm. Algorithm 1, for every mini-batch:

1. *inner maximisation*: one FGSM step (eq. 5) finds a single perturbation
   ``c`` shared by the whole batch, ``c = tau * sign(grad_c L)`` at ``c = 0``,
   where ``L`` is the noisy-label algorithm's loss (e.g. the mean loss of the
   samples it keeps); ``x + c`` is clipped to the valid pixel range;
2. *outer minimisation*: one optimiser step on the noisy-label algorithm's
   loss of the perturbed batch ``x + c``.

The noisy-label algorithms (paper Table 1) are the strategy objects of
:mod:`sklearn_backdoor.noisy_label` (:class:`PRL`, :class:`SPL`,
:class:`Bootstrap`, :class:`StandardTraining`), re-exported here. Every column
of the paper's Tables 2-5 is a parameter setting of
:class:`NoisyLabelMinimaxTrainer`.
"""

import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from skorch.callbacks import Callback

from sklearn_backdoor.base import BaseSanitizer, NetworkEstimatorMixin
from sklearn_backdoor.docstrings import fill_doc
from sklearn_backdoor.inputs import to_float_channels_first
from sklearn_backdoor.metrics import mean_of_last_epochs
from sklearn_backdoor.noisy_label import (
    PRL,
    SPL,
    STRATEGY_NAMES,
    Bootstrap,
    NoisyLabelStrategy,
    StandardTraining,
    bootstrap_targets,
    keep_smallest,
    loss_layer_gradient_norm,
    make_strategy,
    n_kept,
)
from sklearn_backdoor.training import (
    FastNeuralNetClassifier,
    check_trained,
    epoch_progress,
    predict_logits,
    seeded_for,
)

__all__ = [
    "Bootstrap",
    "EpochAccuracy",
    "MinimaxNet",
    "NOISY_LABEL_STEPS",
    "NoisyLabelMinimaxTrainer",
    "NoisyLabelStrategy",
    "PRL",
    "SPL",
    "STRATEGY_NAMES",
    "StandardTraining",
    "bootstrap_targets",
    "keep_smallest",
    "loss_layer_gradient_norm",
    "make_strategy",
    "n_kept",
    "perturb",
    "selection_decision",
    "shared_fgsm_perturbation",
    "valid_range",
]

NOISY_LABEL_STEPS = ("both", "inner", "outer")

# ---------------------------------------------------------------------------
# The inner maximisation
# ---------------------------------------------------------------------------


def shared_fgsm_perturbation(forward, X, y, strategy, budget):
    """One FGSM step of eq. 5: a perturbation shared by the whole batch.

    Parameters
    ----------
    forward : callable
        Maps a batch to logits.
    X, y : torch.Tensor
        The batch and its labels.
    strategy : NoisyLabelStrategy
        Its :meth:`~NoisyLabelStrategy.batch_loss` is maximised, so a filtering
        strategy lets only the samples it keeps steer ``c``.
    budget : torch.Tensor
        Step size, broadcastable to one sample (``tau`` per channel or
        feature, in the units of ``X``).

    Returns
    -------
    c : torch.Tensor of shape ``X.shape[1:]``
        ``budget * sign(grad_c loss(X + c))`` at ``c = 0``, so
        ``|c| <= budget`` elementwise.
    """
    c = torch.zeros((1, *X.shape[1:]), dtype=X.dtype, device=X.device)
    c.requires_grad_(True)
    loss, _ = strategy.batch_loss(forward(X + c).float(), y)
    (gradient,) = torch.autograd.grad(loss, c)
    return (budget * gradient.sign())[0]


def perturb(X, c, lower, upper):
    """``X + c`` clipped elementwise to ``[lower, upper]`` (broadcast)."""
    return torch.clamp(X + c, min=lower, max=upper)


# ---------------------------------------------------------------------------
# The skorch net that runs Algorithm 1
# ---------------------------------------------------------------------------

_STANDARD = StandardTraining()


class MinimaxNet(FastNeuralNetClassifier):
    """A :class:`~sklearn_backdoor.training.FastNeuralNetClassifier` trained
    by Algorithm 1 of paper 002.

    ``train_step_single`` replaces skorch's: an inner FGSM step (when
    ``budget`` is not None) and the outer step on the strategy's loss; the
    net's ``criterion`` is not used. The target passed to ``fit`` is a
    ``(n_samples, 2)`` long tensor of (label, sample index) so that each
    batch's selection can be credited to its samples; the counts are
    accumulated on the device.

    Parameters
    ----------
    module : torch.nn.Module class or instance
    strategy : NoisyLabelStrategy, default=StandardTraining()
    noisy_label_steps : {"both", "inner", "outer"}, default="both"
        Which steps use ``strategy``; the other uses :class:`StandardTraining`.
    budget, lower, upper : torch.Tensor or None, default=None
        FGSM step size and valid input range, broadcastable to one sample.
        ``budget=None`` skips the inner step.
    **kwargs
        Passed to :class:`~sklearn_backdoor.training.FastNeuralNetClassifier`.
    """

    def __init__(
        self,
        module,
        *args,
        strategy=None,
        noisy_label_steps="both",
        budget=None,
        lower=None,
        upper=None,
        **kwargs,
    ):
        super().__init__(module, *args, **kwargs)
        self.strategy = strategy
        self.noisy_label_steps = noisy_label_steps
        self.budget = budget
        self.lower = lower
        self.upper = upper

    def start_recording(self, n_samples, from_epoch):
        """Count selections per sample from epoch ``from_epoch`` (1-based) on."""
        self.record_from_epoch_ = int(from_epoch)
        self.selected_counts_ = torch.zeros(n_samples, device=self.device)
        self.appearance_counts_ = torch.zeros(n_samples, device=self.device)
        return self

    def train_step_single(self, batch, **fit_params):
        """Algorithm 1 on one batch: inner FGSM step, then the outer loss."""
        self._set_training(True)
        Xi, target = batch
        yi, index = target[:, 0], target[:, 1]
        strategy = _STANDARD if self.strategy is None else self.strategy
        if self.budget is not None:
            inner = strategy if self.noisy_label_steps != "outer" else _STANDARD
            c = shared_fgsm_perturbation(
                lambda x: self.infer(x, **fit_params), Xi, yi, inner, self.budget
            )
            Xi = perturb(Xi, c, self.lower, self.upper)
        logits = self.infer(Xi, **fit_params).float()
        outer = strategy if self.noisy_label_steps != "inner" else _STANDARD
        loss, selected = outer.batch_loss(logits, yi)
        if outer is not strategy:
            selected = strategy.select(logits.detach(), yi)
        loss.backward()
        self._record_selection(index, selected)
        return {"loss": loss, "y_pred": logits}

    def _record_selection(self, index, selected):
        if len(self.history) < getattr(self, "record_from_epoch_", math.inf):
            return
        self.selected_counts_.index_add_(0, index, selected.to(torch.float32))
        self.appearance_counts_.index_add_(
            0, index, torch.ones_like(index, dtype=torch.float32)
        )


class EpochAccuracy(Callback):
    """Records clean and poison accuracy on held-out data after every epoch.

    Adds ``clean_accuracy`` and, when triggered images are given,
    ``poison_accuracy`` (accuracy of the triggered images against their true
    labels) to the net's history. One host sync per epoch.
    """

    def __init__(self, X, y, X_triggered=None):
        self.X = X
        self.y = y
        self.X_triggered = X_triggered

    def on_epoch_end(self, net, **kwargs):
        net.history.record("clean_accuracy", _accuracy(net, self.X, self.y))
        if self.X_triggered is not None:
            accuracy = _accuracy(net, self.X_triggered, self.y)
            net.history.record("poison_accuracy", accuracy)


def _accuracy(net, X, y):
    correct = predict_logits(net, X).argmax(dim=1) == y
    return float(correct.float().mean().item())


# ---------------------------------------------------------------------------
# The estimator
# ---------------------------------------------------------------------------


@fill_doc
class NoisyLabelMinimaxTrainer(ClassifierMixin, BaseSanitizer):
    """Train a classifier robust to backdoors: noisy-label learning plus a
    shared-perturbation adversarial step (paper 002, Algorithm 1).

    For every mini-batch an inner FGSM step finds one perturbation ``c`` of
    L-infinity size ``tau`` shared by the batch that maximises the noisy-label
    algorithm's loss; the network is then updated on the algorithm's loss of
    ``x + c`` (clipped to the valid pixel range). The fitted estimator is a
    classifier (``predict``, ``predict_proba``, ``score``) and a sanitizer:
    ``mask_`` records which samples the noisy-label filter kept.

    Parameters
    ----------
    {{net}}
        ``"resnet32"`` is the paper's network. The optimiser settings of a
        skorch net are replaced by ``optimizer``, ``lr``, ``weight_decay`` and
        ``batch_size`` where those are not None. The loss is always
        cross-entropy (the net's ``criterion`` is unused).
    strategy : {"prl", "spl", "bootstrap", "none"} or NoisyLabelStrategy, \
default="prl"
        The noisy-label algorithm ``A``: :class:`PRL`, :class:`SPL`,
        :class:`Bootstrap` or :class:`StandardTraining` (``"none"``), or a
        strategy object of your own.
    eps : float or None, default=None
        Corruption rate assumed by PRL and SPL: each keeps the
        ``ceil((1 - eps) * batch)`` samples of a batch it trusts most. None
        means 0.5, the paper's setting for an unknown rate (sec. 7.6, Table 8:
        the worst case the assumptions allow); its Tables 2-5 use the true
        poisoning rate.
    tau : float, default=0.05
        L-infinity budget of the perturbation as a fraction of the valid
        pixel range (the paper's 0.05). 0 turns the inner step off: the
        trainer is then exactly its noisy-label algorithm alone.
    noisy_label_steps : {"both", "inner", "outer"}, default="both"
        Which steps use the noisy-label algorithm; the other uses plain
        cross-entropy over the whole batch ("inner"/"outer" are the ablations
        of Tables 4-5).
    bootstrap_coefficient : float, default=0.95
        Weight of the observed label in the bootstrap targets. Paper 002
        gives no value; 0.95 is Reed et al.'s soft bootstrapping.
    epochs : int, default=100
        Training epochs (the paper's 100).
    optimizer : torch.optim.Optimizer class or None, default=torch.optim.AdamW
        None keeps the net's optimiser and its settings.
    lr : float or None, default=3e-4
        Learning rate (the paper's 3e-4). None keeps the net's.
    weight_decay : float or None, default=0.01
        The optimiser's ``weight_decay`` (torch's AdamW default; the paper
        does not give one). None keeps the net's.
    batch_size : int or None, default=128
        None keeps the net's.
    n_last_epochs : int, default=10
        The final epochs whose selections define ``mask_`` and over which
        ``clean_accuracy_`` and ``poison_accuracy_`` are averaged (the paper
        reports the mean of the last 10 epochs). Capped at ``epochs``.
    random_state : int, RandomState instance or None, default=None
        Seeds the network's initialisation, batch order and augmentation.
    {{device}}
    verbose : int, default=0
        Show a tqdm bar over the epochs when positive.

    Attributes
    ----------
    net_ : MinimaxNet
        The trained skorch net.
    strategy_ : NoisyLabelStrategy
        The strategy object used.
    mask_ : ndarray of bool, shape (n_samples,)
        True for the samples the noisy-label filter kept in at least half of
        the batches it appeared in during the last ``n_last_epochs`` epochs,
        i.e. ``scores_ <= 0.5``. The selection recorded for a batch is the
        strategy's selection on the perturbed batch ``x + c`` that the
        network is updated on: the samples the update used when
        ``noisy_label_steps`` is "both" or "outer"; with "inner" the outer step
        uses every sample and the recorded selection is what the strategy
        would have kept. Strategies that keep every sample (``"bootstrap"``,
        ``"none"``) give an all-True mask. A sample that never appeared in
        those epochs (possible because incomplete last batches are dropped) is
        kept.
    sample_indices_ : ndarray of int
        Indices of the kept samples.
    scores_ : ndarray of float, shape (n_samples,)
        Fraction of its appearances in the last ``n_last_epochs`` epochs in
        which the sample was rejected (higher = more suspicious); 0 for
        samples that never appeared.
    history_ : dict of str to ndarray of shape (epochs,)
        ``"train_loss"`` per epoch and, when ``fit`` got ``eval_set``,
        ``"clean_accuracy"`` and ``"poison_accuracy"``.
    clean_accuracy_, poison_accuracy_ : float
        Mean of the last ``n_last_epochs`` values of the history (only with
        ``eval_set``; ``poison_accuracy_`` only with triggered images).
    input_lower_, input_upper_ : ndarray
        The valid input range in standardised units: ``[0, 1]`` pixels for
        uint8 data and for data within ``[0, 1]``, else the per-channel
        minimum and maximum of the training data.
    {{network_attributes}}

    Notes
    -----
    Within a batch, PRL and SPL rank a sample whose loss or gradient norm is
    not finite as the most suspicious (it is rejected first). ``fit`` raises
    ``ValueError`` if the training loss ends non-finite (the network
    diverged), and ``predict`` and ``predict_proba`` raise it rather than
    return the classes or probabilities of non-finite outputs.

    The perturbation budget in standardised units is
    ``tau * (upper - lower)`` per channel, so ``tau`` is a fraction of the
    pixel range whatever the channel's standard deviation. The inner step runs
    the network in training mode (as the outer step does). Defaults for
    the paper's CIFAR-10 setting: ``net="resnet32", epochs=100, lr=3e-4,
    tau=0.05``; with the default ``epochs=100`` an MLP on the digits takes a few
    seconds on a CPU.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.minimax import NoisyLabelMinimaxTrainer
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(120, 4, 4).astype(np.float32)
    >>> y = np.where(X[:, 0, 0] > 0.5, "a", "b")
    >>> model = NoisyLabelMinimaxTrainer(eps=0.2, epochs=3, lr=1e-2,
    ...     batch_size=32, random_state=0).fit(X, y)
    >>> model.classes_.tolist(), model.predict(X[:3]).shape, model.mask_.shape
    (['a', 'b'], (3,), (120,))
    >>> sorted(model.history_)
    ['train_loss']
    """

    _parameter_constraints: dict = {
        **NetworkEstimatorMixin._parameter_constraints,
        "strategy": [StrOptions(set(STRATEGY_NAMES)), NoisyLabelStrategy],
        "eps": [None, Interval(Real, 0, 1, closed="left")],
        "tau": [Interval(Real, 0, 1, closed="both")],
        "noisy_label_steps": [StrOptions(set(NOISY_LABEL_STEPS))],
        "bootstrap_coefficient": [Interval(Real, 0, 1, closed="both")],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "optimizer": [None, callable],
        "lr": [None, Interval(Real, 0, None, closed="neither")],
        "weight_decay": [None, Interval(Real, 0, None, closed="left")],
        "batch_size": [None, Interval(Integral, 1, None, closed="left")],
        "n_last_epochs": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        net=None,
        *,
        strategy="prl",
        eps=None,
        tau=0.05,
        noisy_label_steps="both",
        bootstrap_coefficient=0.95,
        epochs=100,
        optimizer=torch.optim.AdamW,
        lr=3e-4,
        weight_decay=0.01,
        batch_size=128,
        n_last_epochs=10,
        random_state=None,
        device="auto",
        verbose=0,
    ):
        self.net = net
        self.strategy = strategy
        self.eps = eps
        self.tau = tau
        self.noisy_label_steps = noisy_label_steps
        self.bootstrap_coefficient = bootstrap_coefficient
        self.epochs = epochs
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.n_last_epochs = n_last_epochs
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, eval_set=None):
        """Train the network by Algorithm 1 and record which samples it kept.

        Parameters
        ----------
        X : array-like of shape (n_samples, height, width, channels), \
(n_samples, height, width) or (n_samples, n_features)
            Training images (uint8 or float) or flat features.
        y : array-like of shape (n_samples,)
            Training labels (possibly poisoned).
        eval_set : tuple (X_test, y_test, X_test_triggered) or None, \
default=None
            Held-out data scored after every epoch (``history_``):
            ``y_test`` are true labels in the label space of ``y`` and
            ``X_test_triggered`` (may be None) the same images with the
            trigger, for the poison accuracy.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        X, y_encoded = self._validate_training_data(X, y)
        rng = check_random_state(self.random_state)
        self.strategy_ = self._make_strategy()
        X_t = self._training_tensor(X)
        lower, upper = valid_range(X, to_float_channels_first(X))
        self.input_lower_ = (lower - self.input_mean_) / self.input_std_
        self.input_upper_ = (upper - self.input_mean_) / self.input_std_
        eval_callbacks = self._eval_callbacks(eval_set)
        net = self._minimax_net(rng, eval_callbacks)
        n_last = min(self.n_last_epochs, self.epochs)
        net.initialize()
        net.start_recording(len(X_t), from_epoch=self.epochs - n_last + 1)
        y_t = torch.as_tensor(y_encoded, dtype=torch.long, device=self.device_)
        index = torch.arange(len(y_t), device=self.device_)
        progress = self._progress("minimax epochs")
        with seeded_for(net), epoch_progress(net, self.epochs, progress):
            net.partial_fit(X_t, torch.stack([y_t, index], dim=1))
        self.net_ = check_trained(net, hint="lower lr or weight_decay")
        self._store_history(net, eval_set is not None, n_last)
        self._store_decision(*selection_decision(net))
        return self

    def predict_proba(self, X):
        """Class probabilities (softmax of the network's logits).

        Parameters
        ----------
        X : array-like of the training data's per-sample shape

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``.
        """
        logits = self._logits(X)
        return torch.softmax(logits, dim=1).cpu().numpy().astype(np.float64)

    def predict(self, X):
        """Predicted class of each sample, in the label space of ``classes_``.

        Parameters
        ----------
        X : array-like of the training data's per-sample shape

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        encoded = self._logits(X).argmax(dim=1).cpu().numpy()
        return self.classes_[encoded]

    def _make_strategy(self):
        if isinstance(self.strategy, NoisyLabelStrategy):
            return self.strategy
        eps = 0.5 if self.eps is None else self.eps
        return make_strategy(
            self.strategy, eps=eps, bootstrap_coefficient=self.bootstrap_coefficient
        )

    def _logits(self, X):
        return self._new_data_logits(X)

    def _device_tensor(self, values):
        return torch.as_tensor(values, dtype=torch.float32, device=self.device_)

    def _minimax_net(self, rng, callbacks):
        base = self._new_net(rng)
        params = {
            key: value
            for key, value in base.get_params(deep=False).items()
            if not key.startswith("_")
        }
        if self.optimizer is not None:
            params = {
                k: v for k, v in params.items() if not k.startswith("optimizer__")
            }
            params["optimizer"] = self.optimizer
        if self.weight_decay is not None:
            params["optimizer__weight_decay"] = self.weight_decay
        for name in ("lr", "batch_size"):
            if getattr(self, name) is not None:
                params[name] = getattr(self, name)
        params["callbacks"] = [*(params.get("callbacks") or []), *callbacks]
        params["classes"] = list(range(len(self.classes_)))
        params["max_epochs"] = self.epochs
        params["verbose"] = 0
        params.setdefault("random_state", int(rng.randint(np.iinfo(np.int32).max)))
        adversarial = self.tau > 0
        return MinimaxNet(
            **params,
            strategy=self.strategy_,
            noisy_label_steps=self.noisy_label_steps,
            budget=self._budget() if adversarial else None,
            lower=self._device_tensor(self.input_lower_) if adversarial else None,
            upper=self._device_tensor(self.input_upper_) if adversarial else None,
        )

    def _budget(self):
        width = self.input_upper_ - self.input_lower_
        return self._device_tensor(self.tau * width)

    def _eval_callbacks(self, eval_set):
        if eval_set is None:
            return []
        if not isinstance(eval_set, tuple | list) or len(eval_set) != 3:
            length = len(eval_set) if hasattr(eval_set, "__len__") else None
            raise ValueError(
                "eval_set must be a tuple (X_test, y_test, X_test_triggered), got "
                f"a {type(eval_set).__name__} of length {length}"
            )
        X_test, y_test, X_triggered = eval_set
        X_test_t = self._new_data_tensor(X_test, name="eval_set X_test")
        y_test_t = torch.as_tensor(
            self._encode_true_labels(y_test, len(X_test_t)), device=self.device_
        )
        X_triggered_t = None
        if X_triggered is not None:
            X_triggered_t = self._new_data_tensor(
                X_triggered, name="eval_set X_test_triggered"
            )
            if len(X_triggered_t) != len(X_test_t):
                raise ValueError(
                    "eval_set X_test_triggered must have as many samples as X_test "
                    f"({len(X_test_t)}), got {len(X_triggered_t)}"
                )
        callback = EpochAccuracy(X_test_t, y_test_t, X_triggered_t)
        return [("minimax_eval", callback)]

    def _encode_true_labels(self, y_test, n_samples):
        """Encoded labels; a label unseen in ``fit`` becomes -1 (never right)."""
        y_test = np.asarray(y_test)
        if y_test.shape != (n_samples,):
            raise ValueError(
                f"eval_set y_test must have shape ({n_samples},), got {y_test.shape}"
            )
        position = np.searchsorted(self.classes_, y_test)
        position = np.minimum(position, len(self.classes_) - 1)
        return np.where(self.classes_[position] == y_test, position, -1)

    def _store_history(self, net, evaluated, n_last):
        names = ["train_loss"]
        if evaluated:
            names.append("clean_accuracy")
            if "poison_accuracy" in net.history[-1]:
                names.append("poison_accuracy")
        self.history_ = {name: np.asarray(net.history[:, name]) for name in names}
        for name in names[1:]:
            setattr(self, name + "_", mean_of_last_epochs(self.history_[name], n_last))


def valid_range(X, Xf):
    """The valid value range per channel (images) or feature, before scaling.

    ``[0, 1]`` for uint8 data (already scaled to it in ``Xf``) and for data
    within ``[0, 1]``; otherwise the observed minimum and maximum.
    """
    shape = (1, -1, 1, 1) if Xf.ndim == 4 else (1, -1)
    n_channels = Xf.shape[1]
    if X.dtype == np.uint8 or (Xf.min() >= 0 and Xf.max() <= 1):
        lower = np.zeros(n_channels, dtype=np.float32)
        upper = np.ones(n_channels, dtype=np.float32)
    else:
        axes = (0, 2, 3) if Xf.ndim == 4 else (0,)
        lower, upper = Xf.min(axis=axes), Xf.max(axis=axes)
    return lower.reshape(shape), upper.reshape(shape)


def selection_decision(net):
    """``(mask, scores)`` from a :class:`MinimaxNet`'s selection counts.

    ``scores`` is the fraction of a sample's recorded appearances in which it
    was rejected (0 without appearances); ``mask`` is ``scores <= 0.5``.
    """
    selected = net.selected_counts_.cpu().numpy().astype(np.float64)
    appeared = net.appearance_counts_.cpu().numpy().astype(np.float64)
    scores = np.divide(
        appeared - selected, appeared, out=np.zeros_like(appeared), where=appeared > 0
    )
    return scores <= 0.5, scores
