"""Docstring fragments shared by the estimators.

A parameter or fitted attribute documented alike in several estimators is
written once, in :data:`FRAGMENTS`. A docstring line that holds only
``{{name}}`` is replaced by the fragment ``name``, indented as that line was,
when :func:`fill_doc` decorates the class or function. Placeholders take a
line of their own, so the braces of ``{"pca", "fastica"}`` and the ``%`` of
"5-20%" in the rest of a docstring need no escaping.
"""

import re

FRAGMENTS = {
    "net": """\
net : None, str or skorch.NeuralNetClassifier, default=None
    The network to train. None picks one from the input shape (the fast
    CNN for images of at least 16 px, an MLP otherwise); a preset name
    (``"preact_resnet18"``, ``"resnet32"``, ``"fast"``, ``"fast_cpu"``,
    ``"mlp"``) builds that network with its optimiser; a skorch net is
    cloned.""",
    "cluster_readings": """\
clusters : ndarray of int, shape (n_samples,)
    Cluster (0 or 1) of each sample within its class.
labels : ndarray of int, shape (n_samples,)
    Encoded labels (0..K-1).
predictions : ndarray of int, shape (n_networks, n_samples)
    Each network's encoded prediction of each sample.
eligible : ndarray of bool, shape (n_networks, n_samples), default=None
    Which predictions count; None counts all of them.""",
    "patch_images": """\
X : torch.Tensor of shape (n_samples, channels, height, width)
    The images as the network reads them.
labels : ndarray of int, shape (n_samples,)
    Encoded labels.""",
    "device": """\
device : str, default="auto"
    ``"auto"`` uses CUDA when available.""",
    "network_attributes": """\
classes_ : ndarray
    Class labels seen in ``fit``.
n_features_in_ : int
    Number of values per sample (pixels times channels for images).
input_shape_ : tuple of int
    Per-sample shape as the network sees it: ``(channels, height, width)``
    for images, ``(n_features,)`` for flat features.
input_mean_, input_std_ : ndarray of shape (1, n_channels, 1, 1) or \
(1, n_features)
    Standardisation statistics of the training data, per channel (images)
    or feature; data given after ``fit`` is standardised with them.
input_dtype_ : numpy dtype
    The dtype of the training data. Data given after ``fit`` must be uint8
    exactly when this is: only uint8 is scaled (0-255 to [0, 1]).
input_range_ : ndarray of shape (2, n_channels or n_features)
    Minimum and maximum of the training data per channel or feature, after
    that scaling; images given after ``fit`` far outside it are refused as
    being in other units (see :mod:`sklearn_backdoor.inputs`).
fit_fingerprint_ : str
    Digest of the training data's shape, dtype and values
    (:func:`sklearn_backdoor.inputs.data_fingerprint`); a sanitizer's
    ``transform`` accepts only the data with this digest.
device_ : str
    The device the networks were trained on.""",
}

_PLACEHOLDER = re.compile(r"^(?P<indent>[ \t]*)\{\{(?P<name>\w+)\}\}[ \t]*$", re.M)


def fill_doc(obj):
    r"""Replace each ``{{name}}`` line of ``obj``'s docstring by its fragment.

    Parameters
    ----------
    obj : class or function
        Its ``__doc__`` is rewritten in place (left alone when None, as
        under ``python -OO``).

    Returns
    -------
    obj : class or function
        The same object, so that ``fill_doc`` serves as a decorator.

    Raises
    ------
    KeyError
        For a placeholder that names no fragment of :data:`FRAGMENTS`.

    Examples
    --------
    >>> from sklearn_backdoor.docstrings import fill_doc
    >>> def fit(device="auto"):
    ...     pass
    >>> fit.__doc__ = "Parameters\n----------\n{{device}}"
    >>> print(fill_doc(fit).__doc__)
    Parameters
    ----------
    device : str, default="auto"
        ``"auto"`` uses CUDA when available.
    """
    if obj.__doc__ is not None:
        obj.__doc__ = _PLACEHOLDER.sub(_indented_fragment, obj.__doc__)
    return obj


def _indented_fragment(match):
    name = match["name"]
    if name not in FRAGMENTS:
        raise KeyError(
            f"docstring placeholder {{{{{name}}}}} names no fragment; known: "
            f"{sorted(FRAGMENTS)}"
        )
    return "\n".join(
        match["indent"] + line if line else line for line in FRAGMENTS[name].split("\n")
    )
