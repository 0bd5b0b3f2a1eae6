"""The fast training engine shared by every defense.

Every network a defense trains is a skorch ``NeuralNetClassifier``. To keep the
GPU busy through skorch, :class:`FastNeuralNetClassifier` changes four things
and nothing else:

- batches are index slices of tensors that already live on the device
  (:class:`DeviceBatchIterator` replaces the per-sample ``DataLoader``);
- augmentation is applied to the whole batch on the device
  (:class:`~sklearn_backdoor.augmentation.RandomCropFlip`);
- the epoch loss is accumulated on the device and read back once per epoch,
  not once per batch (skorch's ``run_single_epoch`` calls ``.item()`` per batch);
- the forward pass runs under bf16 autocast on CUDA.

Randomness comes from a ``torch.Generator`` owned by each net and seeded from
``random_state``, so nets trained in parallel threads stay reproducible. A net
that draws from torch's global generator all the same (a user's skorch net,
dropout) is initialised and trained under its own seed, and the caller's
generators are left as they were (:func:`seeded_for`).
"""

import secrets
import threading
import time
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import clone
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback
from tqdm.auto import tqdm

from sklearn_backdoor.augmentation import RandomCropFlip
from sklearn_backdoor.networks import build_network, default_network_name

# torch's default generator is process-global: module initialisation under a
# fixed seed must not interleave with another thread's. Re-entrant, since a
# net trained under the lock may initialise itself under it.
_GLOBAL_RNG_LOCK = threading.RLock()
# Where make_net keeps the seed of a skorch net that has no random_state.
_SEED_ATTRIBUTE = "backdoor_seed_"

PRESETS = {
    "preact_resnet18": {
        "optimizer": torch.optim.SGD,
        "lr": 0.02,
        "optimizer__momentum": 0.9,
        "optimizer__weight_decay": 5e-4,
        "batch_size": 128,
    },
    "resnet32": {
        "optimizer": torch.optim.SGD,
        "lr": 0.1,
        "optimizer__momentum": 0.9,
        "optimizer__weight_decay": 1e-4,
        "batch_size": 128,
    },
    "fast": {
        "optimizer": torch.optim.SGD,
        "lr": 0.05,
        "optimizer__momentum": 0.9,
        "optimizer__nesterov": True,
        "optimizer__weight_decay": 5e-4,
        "batch_size": 512,
    },
    # The CPU preset: FastCNN with widths (16, 64, 64), about 7x fewer
    # multiply-adds than "fast"; batch 128 as the reference, so that ISPL's
    # core sets of a thousand images still take several steps per epoch.
    "fast_cpu": {
        "optimizer": torch.optim.SGD,
        "lr": 0.05,
        "optimizer__momentum": 0.9,
        "optimizer__nesterov": True,
        "optimizer__weight_decay": 5e-4,
        "batch_size": 128,
    },
    "mlp": {
        "optimizer": torch.optim.AdamW,
        "lr": 1e-3,
        "optimizer__weight_decay": 1e-4,
        # The MLP serves small data sets (digits: ISPL core sets of ~150
        # samples), where batch 128 would leave one step per epoch.
        "batch_size": 32,
    },
}


def default_augmentation(input_shape, padding_fill=0.0):
    """The training augmentation of the presets for inputs of ``input_shape``.

    Images are translated by up to an eighth of their size (4 pixels on
    CIFAR-10, as the reference's ``RandomCrop(32, padding=4)``; 1 pixel on
    8x8 digits), padded with ``padding_fill`` (a scalar or one value per
    channel: the estimators pass black in standardised units) and, when they
    have 3 channels, flipped horizontally; grey images are not flipped
    because digits and characters are not mirror-invariant. Flat features are
    not augmented.
    """
    if len(input_shape) != 3:
        return None
    channels, height, width = input_shape
    padding = max(1, round(min(height, width) / 8))
    return RandomCropFlip(padding=padding, flip=channels == 3, fill=padding_fill)


def resolve_device(device):
    """Return ``"cuda"`` for ``"auto"`` when CUDA is available, else ``"cpu"``.

    Any other value must name a device this machine has: ``"cpu"``,
    ``"cuda"`` or ``"cuda:<index>"`` with CUDA available and that many GPUs,
    or ``"mps"`` where Apple's Metal backend is available; it is returned
    unchanged. Anything else raises ``ValueError`` naming ``device``, before
    torch would fail on it later.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device must be 'auto' or a torch device string, got {device!r}"
        ) from exc
    problem = _device_problem(parsed)
    if problem:
        raise ValueError(
            f"device={device!r} cannot be used: {problem}; use device='auto' or 'cpu'"
        )
    return device


def _device_problem(device):
    """Why ``device`` (a ``torch.device``) is unusable here, or None."""
    if device.type == "cpu":
        return None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return "CUDA is not available on this machine"
        count = torch.cuda.device_count()
        if (device.index or 0) >= count:
            return f"this machine has {count} CUDA device(s)"
        return None
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            return "the MPS (Apple Metal) backend is not available on this machine"
        return None
    return f"the networks run on 'cpu', 'cuda' or 'mps', not {device.type!r}"


class DeviceBatchIterator:
    """Mini-batches of a skorch ``Dataset`` whose tensors are on the device.

    A drop-in for ``torch.utils.data.DataLoader`` as skorch's
    ``iterator_train``/``iterator_valid``: each batch is an index slice
    (``X[idx]``) of the data set's tensors, so no sample passes through the
    host.

    Parameters
    ----------
    dataset : skorch.dataset.Dataset
        Holds ``X`` (tensor) and ``y`` (tensor or None).
    batch_size : int, default=128
    shuffle : bool, default=False
        Draw a new permutation for every pass over the data.
    drop_last : bool, default=False
        Drop the last incomplete batch, as the reference implementation does
        while training. A data set smaller than one batch is still yielded
        as a single batch.
    augmentation : callable or None, default=None
        Applied to each input batch (e.g. :class:`RandomCropFlip`).
    generator : torch.Generator or None, default=None
        Source of the permutations; it must live on the data's device.
    """

    def __init__(
        self,
        dataset,
        batch_size=128,
        shuffle=False,
        drop_last=False,
        augmentation=None,
        generator=None,
    ):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.augmentation = augmentation
        self.generator = generator

    def __len__(self):
        n = len(self.dataset.X)
        if self.drop_last and n >= self.batch_size:
            return n // self.batch_size
        return -(-n // self.batch_size)

    def __iter__(self):
        X, y = self.dataset.X, self.dataset.y
        n = len(X)
        if self.shuffle:
            order = torch.randperm(n, device=X.device, generator=self.generator)
        else:
            order = None
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            stop = min(start + self.batch_size, n)
            if order is None:
                Xb = X[start:stop]
                yb = None if y is None else y[start:stop]
            else:
                idx = order[start:stop]
                Xb = X[idx]
                yb = None if y is None else y[idx]
            if self.augmentation is not None:
                Xb = self.augmentation(Xb, generator=self.generator)
            yield Xb, yb


class FastNeuralNetClassifier(NeuralNetClassifier):
    """A skorch classifier that trains at the speed of device-resident data.

    Same parameters as ``skorch.NeuralNetClassifier`` with defaults suited to
    this library (cross-entropy on logits, no internal validation split,
    :class:`DeviceBatchIterator`), plus:

    Parameters
    ----------
    module : torch.nn.Module class or instance
        Must return logits.
    random_state : int or None, default=None
        Seeds module initialisation and this net's ``torch.Generator``, which
        draws the batch order and the augmentation.
    precision : {"auto", "bf16", "fp32"}, default="auto"
        ``"auto"`` uses bf16 autocast on CUDA and fp32 elsewhere.
    **kwargs
        Passed to ``skorch.NeuralNetClassifier``; e.g.
        ``iterator_train__augmentation=RandomCropFlip()``.

    Notes
    -----
    Give it tensors that already live on ``device``; numpy arrays work too
    but are copied to the device on every call.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.networks import MLP
    >>> from sklearn_backdoor.training import FastNeuralNetClassifier
    >>> X = np.random.RandomState(0).rand(64, 4).astype(np.float32)
    >>> y = (X[:, 0] > 0.5).astype(np.int64)
    >>> net = FastNeuralNetClassifier(MLP, module__n_features=4,
    ...     module__n_classes=2, max_epochs=2, random_state=0, verbose=0)
    >>> net.fit(X, y).predict(X).shape
    (64,)
    """

    def __init__(
        self,
        module,
        *args,
        criterion=torch.nn.CrossEntropyLoss,
        train_split=None,
        iterator_train=DeviceBatchIterator,
        iterator_valid=DeviceBatchIterator,
        random_state=None,
        precision="auto",
        **kwargs,
    ):
        kwargs.setdefault("iterator_train__shuffle", True)
        kwargs.setdefault("iterator_train__drop_last", True)
        super().__init__(
            module,
            *args,
            criterion=criterion,
            train_split=train_split,
            iterator_train=iterator_train,
            iterator_valid=iterator_valid,
            **kwargs,
        )
        self.random_state = random_state
        self.precision = precision

    def initialize(self):
        """Initialise as skorch does, under this net's seed."""
        seed = _seed_from(self.random_state)
        with _GLOBAL_RNG_LOCK, seeded_global_rng(seed, self.device):
            super().initialize()
        self.generator_ = torch.Generator(device=self.device).manual_seed(seed)
        if _has_conv(self.module_):
            self.module_.to(memory_format=torch.channels_last)
        return self

    def get_iterator(self, dataset, training=False):
        """Return a batch iterator; a :class:`DeviceBatchIterator` gets the
        net's generator."""
        iterator = super().get_iterator(dataset, training=training)
        if isinstance(iterator, DeviceBatchIterator):
            iterator.generator = self.generator_
        return iterator

    def get_dataset(self, X, y=None):
        """Wrap ``X`` and ``y``, moving numpy input to the device once."""
        if isinstance(X, np.ndarray):
            X = torch.as_tensor(X, device=self.device)
        if isinstance(y, np.ndarray):
            y = torch.as_tensor(y, device=self.device)
        return super().get_dataset(X, y)

    def check_data(self, X, y):
        """Skip skorch's host-side ``np.unique(y)`` when ``classes`` is set."""
        if self.classes is None:
            super().check_data(X, y)

    def infer(self, x, **fit_params):
        """Forward pass, under bf16 autocast where :attr:`precision` asks."""
        with torch.autocast(
            device_type=torch.device(self.device).type,
            dtype=torch.bfloat16,
            enabled=self._uses_autocast(),
        ):
            return super().infer(x, **fit_params)

    def _set_training(self, training=True):
        """Switch train/eval mode only when the module is in the other mode.

        skorch calls this on every batch, and ``Module.train`` walks every
        submodule (110 us per batch for the fast CNN, 168 us for
        PreActResNet18 on a CPU core): time a GPU step at batch 512 cannot
        spare. Submodules put in another mode by hand are left as they are.
        """
        if self.module_.training != training:
            super()._set_training(training)

    def get_loss(self, y_pred, y_true, *args, **kwargs):
        """Loss computed in fp32 whatever the forward precision."""
        return super().get_loss(y_pred.float(), y_true, *args, **kwargs)

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        """skorch's training loop, on one CPU thread for networks without
        convolutions (see :func:`cpu_threads_for`)."""
        with cpu_threads_for(self):
            return super().fit_loop(X, y, epochs=epochs, **fit_params)

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        """One pass over ``iterator`` with a single host sync at its end."""
        if iterator is None:
            return
        loss_sum = torch.zeros((), device=self.device)
        n_seen = 0
        n_batches = 0
        for batch in iterator:
            self.notify("on_batch_begin", batch=batch, training=training)
            step = step_fn(batch, **fit_params)
            batch_size = len(batch[0])
            loss_sum += step["loss"].detach().float() * batch_size
            n_seen += batch_size
            n_batches += 1
            self.notify("on_batch_end", batch=batch, training=training, **step)
        if n_batches:
            self.history.record_batch(prefix + "_loss", (loss_sum / n_seen).item())
            self.history.record_batch(prefix + "_batch_size", n_seen)
        self.history.record(prefix + "_batch_count", n_batches)

    def _uses_cuda(self):
        return torch.device(self.device).type == "cuda"

    def _uses_autocast(self):
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(
                f"precision must be 'auto', 'bf16' or 'fp32', got {self.precision!r}"
            )
        if self.precision == "auto":
            return self._uses_cuda()
        return self.precision == "bf16"


def _has_conv(module):
    return any(isinstance(m, torch.nn.Conv2d) for m in module.modules())


@contextmanager
def cpu_threads_for(net):
    """Run a block on one torch thread when ``net`` is small work on a CPU.

    A network without convolutions (the MLP of flat features and tiny images)
    does so little work per batch that a second thread gains nothing while
    the CPU is idle, and costs many times over while another process keeps
    the cores busy: OpenMP's threads spin at every barrier waiting for a
    descheduled peer (digits' ISPL+B: 17 s on one thread, 531 s on two with
    both cores busy). Convolutional networks keep the caller's thread count.
    The count is restored on exit.
    """
    module = getattr(net, "module_", None)
    on_cpu = torch.device(net.device).type == "cpu"
    if not on_cpu or module is None or _has_conv(module):
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _seed_from(random_state):
    """``random_state`` as an int seed; None draws one from the operating
    system, leaving every global generator alone."""
    if random_state is None:
        return secrets.randbelow(2**31)
    return int(random_state)


@contextmanager
def seeded_global_rng(seed, device="cpu"):
    """Run a block under ``torch.manual_seed(seed)`` and restore the global
    generators afterwards, so the caller's random state is untouched."""
    cuda_devices = []
    if torch.device(device).type == "cuda":
        cuda_devices = [torch.device(device).index or 0]
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        yield


def draws_from_global_rng(net):
    """Whether training ``net`` draws from torch's global generator.

    A :class:`FastNeuralNetClassifier` draws its batch order and
    augmentation from its own generator through :class:`DeviceBatchIterator`,
    but dropout in its module, or another batch iterator, draws from the
    global one. Any other skorch net does (its initialisation, its
    ``DataLoader``'s shuffling, its dropout). Randomness a module draws in
    other ways is not detected.
    """
    if not isinstance(net, FastNeuralNetClassifier):
        return True
    iterator = net.iterator_train
    own_batches = isinstance(iterator, type) and issubclass(
        iterator, DeviceBatchIterator
    )
    module = getattr(net, "module_", None)
    dropout = module is not None and any(
        isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0
        for m in module.modules()
    )
    return dropout or not own_batches


@contextmanager
def seeded_for(net):
    """Run a block that initialises or trains ``net`` reproducibly.

    When ``net`` draws from torch's global generator
    (:func:`draws_from_global_rng`), the block runs under its seed (a
    :class:`FastNeuralNetClassifier`'s ``random_state``, the seed
    :func:`make_net` gave any other net, or a fresh one) and the caller's
    generator is restored afterwards; a lock keeps parallel fits
    reproducible.
    """
    if not draws_from_global_rng(net):
        yield
        return
    if isinstance(net, FastNeuralNetClassifier):
        seed = _seed_from(net.random_state)
    else:
        seed = _seed_from(getattr(net, _SEED_ATTRIBUTE, None))
    with _GLOBAL_RNG_LOCK, seeded_global_rng(seed, net.device):
        yield


def initialize_net(net):
    """``net.initialize()``, seeded as :func:`seeded_for` describes."""
    if isinstance(net, FastNeuralNetClassifier):
        return net.initialize()
    with seeded_for(net):
        return net.initialize()


def synchronize_stream(device):
    """Wait until the work queued on ``device``'s current stream has finished.

    A no-op off CUDA. Only the calling thread's current stream is waited for,
    so a thread timing its own work does not wait for other threads'.
    """
    if torch.device(device).type == "cuda":
        torch.cuda.current_stream(torch.device(device)).synchronize()


class Stopwatch:
    """Wall-clock seconds of a block, counting the device work queued in it.

    Synchronises the current stream on entry and exit (two host syncs per
    block, so time phases, not batches).

    Parameters
    ----------
    device : str
        A resolved torch device string.

    Attributes
    ----------
    seconds : float
        Set when the block exits.

    Examples
    --------
    >>> from sklearn_backdoor.training import Stopwatch
    >>> with Stopwatch("cpu") as watch:
    ...     _ = sum(range(1000))
    >>> watch.seconds >= 0
    True
    """

    def __init__(self, device):
        self.device = device
        self.seconds = None

    def __enter__(self):
        synchronize_stream(self.device)
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc_info):
        synchronize_stream(self.device)
        self.seconds = time.perf_counter() - self._started
        return False


@contextmanager
def side_stream(device):
    """Run a block on a CUDA stream of its own (a no-op off CUDA).

    Lets threads that train independent networks (ISPL's bags) have their
    kernels overlap on one GPU instead of queueing on the default stream.
    The new stream first waits for the work already queued on the caller's
    current stream (which produced the shared input tensors), and the block
    is finished on exit, so what it returns is safe to use on any stream.
    """
    if torch.device(device).type != "cuda":
        yield
        return
    caller = torch.cuda.current_stream(torch.device(device))
    stream = torch.cuda.Stream(device=torch.device(device))
    stream.wait_stream(caller)
    try:
        with torch.cuda.stream(stream):
            yield
    finally:
        stream.synchronize()


def make_net(net, *, n_classes, input_shape, device, random_state, padding_fill=0.0):
    """Return a fresh, unfitted skorch net for one model of a defense.

    Parameters
    ----------
    net : None, str or skorch.NeuralNetClassifier
        ``None`` or ``"auto"`` picks a preset from ``input_shape``
        (:func:`~sklearn_backdoor.networks.default_network_name`); a preset
        name (one of :data:`PRESETS`) builds that network with the paper's
        optimiser settings; a skorch net is cloned (its own settings kept,
        its ``device`` replaced by ``device`` and its ``train_split`` by
        None: the defenses choose the samples each model trains on, so no
        internal validation split may hold some back). Give a skorch net a
        module *class* so that each model starts from its own
        initialisation; a module instance is copied, weights included.
    n_classes : int
    input_shape : tuple of int
        Per-sample shape: ``(C, H, W)`` or ``(n_features,)``.
    device : str
        A resolved torch device string.
    random_state : int
        Seed of this model: a :class:`FastNeuralNetClassifier`'s
        ``random_state``; any other skorch net is initialised and trained
        under it by :func:`train_net` and :func:`initialize_net`.
    padding_fill : float or tuple of float, default=0.0
        Padding value of a preset's random crop (see
        :func:`default_augmentation`); a skorch net keeps its own iterator.

    Returns
    -------
    skorch.NeuralNetClassifier
    """
    if net is None or isinstance(net, str):
        name = default_network_name(input_shape) if net in (None, "auto") else net
        if name not in PRESETS:
            raise ValueError(
                f"net must be None, 'auto', one of {sorted(PRESETS)} or a skorch "
                f"NeuralNetClassifier, got {net!r}"
            )
        return FastNeuralNetClassifier(
            build_network,
            module__name=name,
            module__n_classes=n_classes,
            module__input_shape=tuple(input_shape),
            classes=list(range(n_classes)),
            device=device,
            random_state=random_state,
            verbose=0,
            iterator_train__augmentation=default_augmentation(
                input_shape, padding_fill
            ),
            **PRESETS[name],
        )
    if not isinstance(net, NeuralNetClassifier):
        raise TypeError(
            "net must be None, a preset name or a skorch NeuralNetClassifier, "
            f"got {type(net).__name__}"
        )
    fresh = clone(net).set_params(device=device, train_split=None)
    if isinstance(fresh, FastNeuralNetClassifier):
        fresh.set_params(random_state=random_state)
    else:
        setattr(fresh, _SEED_ATTRIBUTE, random_state)
    return fresh


def train_net(net, X, y, *, epochs, random_state=None, warm_start=False, progress=None):
    """Train ``net`` on device tensors for ``epochs`` epochs.

    With ``warm_start=True`` an initialised net continues from its current
    weights and optimiser state (``partial_fit``), as ISPL does across its
    iterations; otherwise it starts afresh. Initialisation and training are
    seeded by :func:`initialize_net` and :func:`seeded_for`; for a net that
    is not a :class:`FastNeuralNetClassifier`, ``random_state``, if given,
    replaces the seed :func:`make_net` gave it. ``progress``, if given, is
    the title of a tqdm bar over the epochs (see :func:`epoch_progress`).
    Raises ``ValueError`` when training fails (see :func:`check_trained`).
    """
    net.set_params(max_epochs=int(epochs))
    if random_state is not None and not isinstance(net, FastNeuralNetClassifier):
        setattr(net, _SEED_ATTRIBUTE, int(random_state))
    if not warm_start:
        initialize_net(net)
    if epochs <= 0:
        return net
    with seeded_for(net), epoch_progress(net, epochs, progress):
        net.partial_fit(X, y)
    return check_trained(net)


class _EpochCounter(Callback):
    """Advances a tqdm bar by one at the end of every epoch."""

    def __init__(self, bar):
        self.bar = bar

    def on_epoch_end(self, net, **kwargs):
        self.bar.update(1)


@contextmanager
def epoch_progress(net, epochs, title):
    """Show a tqdm bar over the training epochs of ``net`` run in a block.

    The bar is titled ``title``, counts up to ``epochs`` and advances at the
    end of every epoch that ``net`` (an initialised skorch net) trains in
    the block; it disappears when the block ends, even on error. The net's
    own callbacks are left as they were. ``title=None`` shows nothing.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.networks import MLP
    >>> from sklearn_backdoor.training import (
    ...     FastNeuralNetClassifier, epoch_progress)
    >>> X = np.zeros((8, 4), dtype=np.float32)
    >>> y = np.array([0, 1] * 4)
    >>> net = FastNeuralNetClassifier(MLP, module__n_features=4,
    ...     module__n_classes=2, max_epochs=3, batch_size=4, verbose=0,
    ...     random_state=0).initialize()
    >>> with epoch_progress(net, 3, "training"):
    ...     _ = net.partial_fit(X, y)
    >>> len(net.history)
    3
    """
    if title is None:
        yield
        return
    callbacks = net.callbacks_
    with tqdm(total=int(epochs), desc=title, unit="epoch", leave=False) as bar:
        net.callbacks_ = [*callbacks, ("epoch_progress", _EpochCounter(bar))]
        try:
            yield
        finally:
            net.callbacks_ = callbacks


def check_trained(net, hint="give net a lower learning rate"):
    """Return ``net`` if its last epoch trained, else raise ``ValueError``.

    A net fails when its last epoch saw no batch (an iterator that drops an
    incomplete last batch, given fewer samples than ``batch_size``) or
    ended with a loss that is not finite (training diverged; ``hint`` says
    what to change).
    """
    if not len(net.history):
        return net
    last = net.history[-1]
    if last.get("train_batch_count") == 0:
        raise ValueError(
            "The network trained on no batch: its batch iterator drops an "
            "incomplete last batch, and it was given fewer samples than "
            f"batch_size={net.batch_size}; lower batch_size or set "
            "iterator_train__drop_last=False"
        )
    loss = last.get("train_loss")
    if loss is not None and not np.isfinite(loss):
        raise ValueError(
            f"The network's training loss is {loss} after {len(net.history)} "
            f"epochs: training diverged; {hint}, or rescale X"
        )
    return net


def inference_batch_size(net, batch_size=None):
    """The number of samples per pass of ``net`` over data it does not train on.

    ``batch_size`` when given. Else, for a convolutional network on a CPU,
    :data:`CPU_CONV_INFERENCE_BATCH`; otherwise ``max(1024, 4 *
    net.batch_size)``: a pass that updates no weights can take batches
    several times the training batch, and the floor of 1024 keeps the
    per-pass overhead small for nets trained on tiny batches. Shared by
    :func:`predict_logits` and the representation and saliency passes. The
    batch changes which random crop each sample draws when a pass scores
    augmented images, and a network's outputs in eval mode by float
    rounding at most.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> inference_batch_size(SimpleNamespace(batch_size=512))
    2048
    >>> inference_batch_size(SimpleNamespace(batch_size=32)), inference_batch_size(
    ...     SimpleNamespace(batch_size=32), 100)
    (1024, 100)
    """
    if batch_size:
        return int(batch_size)
    if _is_conv_net_on_cpu(net):
        return CPU_CONV_INFERENCE_BATCH
    return max(1024, 4 * int(getattr(net, "batch_size", 256)))


CPU_CONV_INFERENCE_BATCH = 256
"""Samples per inference pass of a convolutional network on a CPU. The
first block's activations of a batch of 1,024 CIFAR-sized images (16 x 31 x
31 floats each in the CPU preset) are 63 MB, far beyond the CPU's caches: on
2 AMD EPYC cores, one thread, 10,000 images through the CPU preset, the
saliency pass took 14.6-14.9 s at 1,024, 10.4-10.9 s at 128-256 and 11.2-12.6
s at 512, with the same outputs (docs/performance.md)."""


def _is_conv_net_on_cpu(net):
    module = getattr(net, "module_", None)
    device = getattr(net, "device", None)
    if module is None or device is None:
        return False
    return torch.device(device).type == "cpu" and _has_conv(module)


def predict_logits(net, X, *, augmentation=None, batch_size=None):
    """Logits of a fitted net on device tensor ``X``, computed in eval mode.

    ``augmentation`` (if given) is applied to each batch first, which is how
    the reference implementation scores samples (through its training
    loader). Returns an fp32 tensor on ``X``'s device.
    """
    batch_size = inference_batch_size(net, batch_size)
    generator = getattr(net, "generator_", None)
    net.module_.eval()
    outputs = []
    with torch.inference_mode(), cpu_threads_for(net):
        for start in range(0, len(X), batch_size):
            Xb = X[start : start + batch_size]
            if augmentation is not None:
                Xb = augmentation(Xb, generator=generator)
            outputs.append(net.infer(Xb).float())
    return torch.cat(outputs)


def per_sample_loss(logits, y):
    """Cross-entropy of each sample (no reduction)."""
    return F.cross_entropy(logits, y, reduction="none")


def train_augmentation(net):
    """The batch augmentation a net trains with, or None."""
    return getattr(net, "iterator_train__augmentation", None)
