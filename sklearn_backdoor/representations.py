"""Learned representations of a trained network, read with a forward pre-hook.

Spectral Signatures and Activation Clustering judge samples by the
representation a network trained on the (poisoned) data assigns to them. The
representation is the *input* of one submodule, by default the one named by
the network's ``representation_layer`` attribute (see
:mod:`sklearn_backdoor.networks`).
"""

from contextlib import nullcontext

import numpy as np
import torch

from sklearn_backdoor.training import (
    cpu_threads_for,
    inference_batch_size,
    initialize_net,
    train_net,
)

_N_LISTED_NAMES = 8


class RepresentationFilterMixin:
    """Train one network on the data and read its representations.

    The first two phases shared by :class:`SpectralSignatureFilter` and
    :class:`ActivationClusteringFilter`: for a ``BaseSanitizer`` with
    ``epochs`` and ``layer`` parameters, sets ``net_`` and ``layer_`` and
    times ``"training"`` and ``"representations"`` into ``phase_seconds_``.
    """

    def _fit_representations(self, X_t, y_t, rng):
        """Representations (a device tensor) of ``X_t`` by a net trained on it."""
        net = initialize_net(self._new_net(rng))
        self.layer_ = resolve_representation_layer(net.module_, self.layer)
        with self._phase("training"):
            self.net_ = train_net(
                net, X_t, y_t, epochs=self.epochs, progress=self._progress("training")
            )
        with self._phase("representations"):
            return extract_representations(self.net_, X_t, self.layer_)

    def _finite_rows(self, representations, y):
        """Bool array: which samples have a finite representation.

        The others are judged the most suspicious by the defenses. Raises
        ``ValueError`` when a class has no finite representation at all:
        the network diverged and there is nothing to judge by.
        """
        finite = torch.isfinite(representations).all(dim=1).cpu().numpy()
        for label in np.unique(y[~finite]):
            if not finite[y == label].any():
                raise ValueError(
                    f"The representations of class {self.classes_[label]!r} are "
                    "not finite for any of its samples: the network diverged. "
                    "Give net a lower learning rate or rescale X."
                )
        return finite


class _RepresentationCaptured(Exception):
    """Raised by the hook to skip the layers after the representation."""


def resolve_representation_layer(module, layer=None):
    """The name of the submodule whose input is the representation.

    Parameters
    ----------
    module : torch.nn.Module
        The network.
    layer : str or None, default=None
        A dotted submodule name; None reads ``module.representation_layer``.

    Returns
    -------
    layer : str
        A name that ``module.get_submodule`` accepts.

    Raises
    ------
    ValueError
        If ``layer`` is None and the module has no ``representation_layer``,
        or if ``layer`` names no submodule.
    """
    if layer is None:
        layer = getattr(module, "representation_layer", None)
        if layer is None:
            raise ValueError(
                f"layer=None needs a module with a representation_layer attribute, "
                f"but {type(module).__name__} has none; pass layer, one of "
                f"{_some_layer_names(module)}"
            )
    if not isinstance(layer, str):
        raise ValueError(f"layer must be a str or None, got layer={layer!r}")
    try:
        module.get_submodule(layer)
    except AttributeError as exc:
        raise ValueError(
            f"layer={layer!r} is not a submodule of {type(module).__name__}; "
            f"valid names include {_some_layer_names(module)}"
        ) from exc
    return layer


def _some_layer_names(module):
    names = [name for name, _ in module.named_modules() if name]
    # The last layers are where representations are usually read.
    listed = names[-_N_LISTED_NAMES:]
    return ", ".join(repr(name) for name in listed) or "(no submodules)"


def extract_representations(net, X_t, layer=None, batch_size=None):
    """Representations of ``X_t`` at ``layer`` of a fitted skorch net.

    Registers a forward pre-hook on ``net.module_.get_submodule(layer)`` that
    records the (flattened) input of that submodule, then runs the network in
    eval mode under ``torch.inference_mode`` and the net's own autocast
    (through ``net.infer``). The layers after ``layer`` are skipped. The hook
    is removed and the module's train/eval mode restored even on error.

    Parameters
    ----------
    net : skorch.NeuralNetClassifier
        An initialised (usually fitted) net.
    X_t : torch.Tensor of shape (n_samples, ...)
        Model-ready inputs, on the net's device.
    layer : str or None, default=None
        Dotted name of the submodule whose input is the representation; None
        uses ``net.module_.representation_layer``.
    batch_size : int or None, default=None
        Samples per forward pass; None uses
        :func:`~sklearn_backdoor.training.inference_batch_size`.

    Returns
    -------
    representations : torch.Tensor of shape (n_samples, n_dims), float32
        On ``X_t``'s device, so that the defenses can decompose them there
        (call ``.cpu().numpy()`` for an array).

    Raises
    ------
    ValueError
        If ``layer`` is invalid (see :func:`resolve_representation_layer`) or
        the submodule is never called in the forward pass.

    Examples
    --------
    >>> import torch
    >>> from sklearn_backdoor.networks import MLP
    >>> from sklearn_backdoor.representations import extract_representations
    >>> from sklearn_backdoor.training import FastNeuralNetClassifier
    >>> net = FastNeuralNetClassifier(MLP, module__n_features=4,
    ...     module__n_classes=2, module__hidden=(8,), random_state=0).initialize()
    >>> extract_representations(net, torch.zeros(5, 4)).shape
    torch.Size([5, 8])
    """
    _, representations = _forward_recording(net, X_t, layer, batch_size, False)
    return representations


def logits_and_representations(net, X_t, layer=None, batch_size=None):
    """The logits and the representations of ``X_t`` in one forward pass.

    What :func:`~sklearn_backdoor.training.predict_logits` and
    :func:`extract_representations` return, for the cost of one pass
    instead of two (the cluster vote of
    :class:`~sklearn_backdoor.IncompatibilityClustering` needs both from
    every weak learner). Same parameters as :func:`extract_representations`.

    Returns
    -------
    logits : torch.Tensor of shape (n_samples, n_classes), float32
    representations : torch.Tensor of shape (n_samples, n_dims), float32
        Both on ``X_t``'s device.

    Examples
    --------
    >>> import torch
    >>> from sklearn_backdoor.networks import MLP
    >>> from sklearn_backdoor.representations import logits_and_representations
    >>> from sklearn_backdoor.training import FastNeuralNetClassifier
    >>> net = FastNeuralNetClassifier(MLP, module__n_features=4,
    ...     module__n_classes=3, module__hidden=(8,), random_state=0).initialize()
    >>> logits, representations = logits_and_representations(net, torch.zeros(5, 4))
    >>> logits.shape, representations.shape
    (torch.Size([5, 3]), torch.Size([5, 8]))
    """
    return _forward_recording(net, X_t, layer, batch_size, True)


def _forward_recording(net, X_t, layer, batch_size, with_logits):
    """Run ``net`` in eval mode over ``X_t``, recording the input of
    ``layer``; return ``(logits or None, representations)``. Without
    logits, the layers after ``layer`` are skipped."""
    module = getattr(net, "module_", None)
    if module is None:
        raise ValueError("net must be initialised (fitted) before extracting")
    layer = resolve_representation_layer(module, layer)
    batch_size = inference_batch_size(net, batch_size)
    captured, logits = [], []

    def record_input(_, args):
        captured.append(torch.flatten(args[0].detach(), 1).float())
        if not with_logits:
            raise _RepresentationCaptured

    was_training = module.training
    handle = module.get_submodule(layer).register_forward_pre_hook(record_input)
    module.eval()
    try:
        # The logits' pass replaces predict_logits's, so it keeps its thread
        # use (one thread for networks without convolutions on a CPU).
        threads = cpu_threads_for(net) if with_logits else nullcontext()
        with torch.inference_mode(), threads:
            for start in range(0, len(X_t), batch_size):
                n_before = len(captured)
                try:
                    logits.append(net.infer(X_t[start : start + batch_size]).float())
                except _RepresentationCaptured:
                    pass
                if len(captured) == n_before:
                    raise ValueError(
                        f"layer={layer!r} was not called in the forward pass of "
                        f"{type(module).__name__}; pick a layer on the main path"
                    )
    finally:
        handle.remove()
        module.train(was_training)
    if not captured:
        empty = torch.empty((0, 0), dtype=torch.float32, device=X_t.device)
        return (empty if with_logits else None), empty
    return (torch.cat(logits) if with_logits else None), torch.cat(captured)
