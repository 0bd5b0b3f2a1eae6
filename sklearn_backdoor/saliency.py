"""Where in its input a trained network looks to read each sample's label.

A patch trigger is a few fixed pixels that decide the prediction of a network
that learned it: in that network, the saliency of every poisoned image sits on
those pixels, while clean images spread theirs over the object. So the
saliency maps of the poison form a small, tight cluster even where the
trigger makes no cluster in the network's learned representations (the ell
and X triggers of the two-class CIFAR-10 tier, docs/benchmarks.md), and
:func:`~sklearn_backdoor.cluster_vote.flag_poison_clusters` can cluster them
as it clusters representations.

The map is gradient x input (Shrikumar et al., 2016; Simonyan et al.'s
gradient weighted by the input it multiplies) of the label's margin (its
logit minus the highest other logit), in absolute value, summed over the
channels and scaled to sum 1 per sample, so that a map says *where* the
network looks and not how confident it is. Not in the papers: Chen et al.
cluster representations; SentiNet (Chou et al., 2020) locates triggers with
Grad-CAM at test time.
"""

import numpy as np
import torch

from sklearn_backdoor.training import cpu_threads_for, inference_batch_size


def label_margin(logits, y):
    """Each sample's label logit minus its highest other logit.

    Parameters
    ----------
    logits : torch.Tensor of shape (n_samples, n_classes)
    y : torch.Tensor of int, shape (n_samples,)
        Encoded labels.

    Returns
    -------
    margin : torch.Tensor of shape (n_samples,)

    Examples
    --------
    >>> import torch
    >>> from sklearn_backdoor.saliency import label_margin
    >>> logits = torch.tensor([[2.0, 0.5, 1.0], [0.0, 3.0, -1.0]])
    >>> label_margin(logits, torch.tensor([0, 2])).tolist()
    [1.0, -4.0]
    """
    own = logits.gather(1, y[:, None])[:, 0]
    others = logits.scatter(1, y[:, None], float("-inf"))
    return own - others.max(dim=1).values


def normalised_maps(attributions):
    """Absolute attributions summed over the channel axis (axis 1 of images,
    none of flat features), flattened and scaled to sum 1 per sample; a
    sample whose attributions are all zero gets a map of zeros.

    Parameters
    ----------
    attributions : ndarray or torch.Tensor of shape (n_samples, ...)

    Returns
    -------
    maps : ndarray of float, shape (n_samples, n_positions)
        A float64 tensor on the attributions' device for a tensor.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.saliency import normalised_maps
    >>> a = np.array([[[[1.0, -3.0]], [[0.0, 0.0]]], [[[0.0, 0.0]], [[0.0, 0.0]]]])
    >>> normalised_maps(a).tolist()
    [[0.25, 0.75], [0.0, 0.0]]
    """
    if torch.is_tensor(attributions):
        magnitude = attributions.double().abs()
    else:
        magnitude = np.abs(np.asarray(attributions, dtype=np.float64))
    if magnitude.ndim > 2:
        magnitude = magnitude.sum(1)
    magnitude = magnitude.reshape(len(magnitude), -1)
    if torch.is_tensor(magnitude):
        totals = magnitude.sum(dim=1, keepdim=True)
        return torch.where(totals > 0, magnitude / totals, 0.0)
    totals = magnitude.sum(axis=1, keepdims=True)
    return np.divide(magnitude, totals, out=np.zeros_like(magnitude), where=totals > 0)


def input_saliency(net, X_t, y, batch_size=None, *, as_tensor=False):
    """Each sample's saliency map in a fitted skorch net: gradient x input
    of its label's margin (:func:`label_margin`), as :func:`normalised_maps`.

    Runs the network in eval mode (restoring its mode after, even on error)
    through ``net.infer``, so under the net's own autocast; only the inputs'
    gradients are computed, the weights' are left untouched.

    Parameters
    ----------
    net : skorch.NeuralNetClassifier
        An initialised (usually fitted) net.
    X_t : torch.Tensor of shape (n_samples, ...)
        Model-ready inputs, on the net's device.
    y : array-like of int, shape (n_samples,)
        Encoded labels (0..n_classes-1).
    batch_size : int or None, default=None
        Samples per pass; None uses
        :func:`~sklearn_backdoor.training.inference_batch_size`.
    as_tensor : bool, default=False
        Return the maps as a float64 tensor on ``X_t``'s device, for
        callers that cluster them there
        (:mod:`sklearn_backdoor.device_clustering`), instead of an array.

    Returns
    -------
    maps : ndarray of float, shape (n_samples, n_positions)
        One row per sample, summing to 1 (0 where the gradient vanishes);
        ``n_positions`` is height x width for images, the number of
        features for flat inputs.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_backdoor.networks import MLP
    >>> from sklearn_backdoor.saliency import input_saliency
    >>> from sklearn_backdoor.training import FastNeuralNetClassifier
    >>> net = FastNeuralNetClassifier(MLP, module__n_features=4,
    ...     module__n_classes=2, module__hidden=(8,), random_state=0).initialize()
    >>> maps = input_saliency(net, torch.ones(3, 4), np.array([0, 1, 1]))
    >>> maps.shape, np.allclose(maps.sum(axis=1), 1)
    ((3, 4), True)
    """
    module = getattr(net, "module_", None)
    if module is None:
        raise ValueError("net must be initialised (fitted) before saliency")
    y_t = torch.as_tensor(np.asarray(y), dtype=torch.long, device=X_t.device)
    batch_size = inference_batch_size(net, batch_size)
    maps = []
    was_training = module.training
    module.eval()
    try:
        with torch.enable_grad(), cpu_threads_for(net):
            for start in range(0, len(X_t), batch_size):
                Xb = X_t[start : start + batch_size].detach().float()
                Xb.requires_grad_(True)
                margin = label_margin(
                    net.infer(Xb).float(), y_t[start : start + batch_size]
                )
                (gradient,) = torch.autograd.grad(margin.sum(), Xb)
                attributions = (gradient * Xb).detach()
                if not as_tensor:
                    attributions = attributions.cpu().numpy()
                maps.append(normalised_maps(attributions))
    finally:
        module.train(was_training)
    if not maps:
        empty = np.zeros((0, int(np.prod(X_t.shape[2:] or X_t.shape[1:]))))
        return torch.as_tensor(empty, device=X_t.device) if as_tensor else empty
    return torch.cat(maps) if as_tensor else np.concatenate(maps)
