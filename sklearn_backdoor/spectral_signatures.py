"""Spectral Signatures: remove the samples that stand out along the top
singular direction of their class's representations.

Tran, Li & Madry, *Spectral Signatures in Backdoor Attacks*, NeurIPS 2018.
A network trained on poisoned data represents the poisoned samples of a class
differently from its clean samples; after centring the class's
representations, that difference dominates the top singular vector, so the
poisoned samples have the largest projections onto it.
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
from sklearn_backdoor.representations import RepresentationFilterMixin

MAX_REMOVAL_FRACTION = 0.5


@fill_doc
class SpectralSignatureFilter(RepresentationFilterMixin, BaseSanitizer):
    """Remove backdoor poison by spectral signatures (Tran et al., 2018).

    Trains one network on all the data, reads every sample's representation
    at ``layer``, and within each class scores each sample by the absolute
    projection of its centred representation onto the class's top right
    singular vector. The ``removal_fraction_`` highest-scoring samples of
    every class are removed, where ``removal_fraction_ = min(0.5,
    eps_multiplier * expected_poison_fraction)``.

    Parameters
    ----------
    {{net}}
    expected_poison_fraction : float, default=0.1
        An upper bound on the fraction of a class that is poison (Tran et
        al.'s epsilon). 0.1 is the middle of the 5-20% range of paper 001.
    eps_multiplier : float, default=1.5
        Tran et al. remove 1.5 times the expected amount of poison from every
        class. Paper 001 (App. C) removes 20% of each class for epsilon of 5%
        and 10% and 30% for 20%; reproduce that with
        ``expected_poison_fraction * eps_multiplier = 0.2`` (or 0.3).
    layer : str or None, default=None
        Dotted name of the submodule whose *input* is the representation.
        None uses the network's ``representation_layer`` (PreActResNet18:
        ``"layer4.0"``, ResNet32: ``"layer3.2"``, the layers of paper 001;
        FastCNN and MLP: ``"head"``, the penultimate features).
    epochs : int, default=40
        Training epochs. Paper 001 trains its models for 100 epochs with a
        step schedule (Tran et al. up to 200); a backdoor is learned long
        before that, and the spectral signature only needs the backdoor to
        be learned, so the default trades that schedule for a 2.5-5 times
        faster fit.
    random_state : int, RandomState instance or None, default=None
        Seeds the network's initialisation, batch order and augmentation.
    {{device}}
    verbose : int, default=0
        Show tqdm progress bars when positive: over the network's training
        epochs, then over the classes.

    Attributes
    ----------
    mask_ : ndarray of bool, shape (n_samples,)
        True for the samples to keep.
    sample_indices_ : ndarray of int
        Indices of the kept samples.
    scores_ : ndarray of float, shape (n_samples,)
        Absolute projection of each sample's centred representation onto its
        class's top singular vector. Higher is more suspicious; scores are
        comparable within a class only, since every class has its own
        direction and scale. ART scores with the squared projection; the
        ranking, and so the decision, is identical.
    removal_fraction_ : float
        Fraction of every class that is removed (before rounding).
    n_removed_per_class_ : ndarray of int, shape (n_classes,)
        Samples removed from each class of ``classes_``.
    singular_values_ : ndarray of float, shape (n_classes,)
        Top singular value of each class's centred representations.
    net_ : skorch.NeuralNetClassifier
        The trained network.
    layer_ : str
        The layer whose input was read.
    phase_seconds_ : dict
        Wall-clock seconds of ``"training"``, ``"representations"`` and
        ``"scoring"``, device work included.
    {{network_attributes}}

    Notes
    -----
    A class of ``n`` samples loses ``round(removal_fraction_ * n)`` samples
    (halves rounded up), but never its last sample. Ties in the score are
    broken by sample order, the earlier sample being removed first.

    A sample whose representation is not finite is left out of its class's
    decomposition and scores above every other sample of the class, so it is
    removed first; a class without a single finite representation raises
    ``ValueError`` (the network diverged).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.spectral_signatures import SpectralSignatureFilter
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(200, 6).astype(np.float32)
    >>> y = (X[:, 0] > 0.5).astype(int)
    >>> ss = SpectralSignatureFilter(epochs=2, random_state=0).fit(X, y)
    >>> ss.removal_fraction_, int((~ss.mask_).sum())
    (0.15, 30)
    """

    _parameter_constraints: dict = {
        **NetworkEstimatorMixin._parameter_constraints,
        "expected_poison_fraction": [Interval(Real, 0, 1, closed="both")],
        "eps_multiplier": [Interval(Real, 0, None, closed="left")],
        "layer": [None, str],
        "epochs": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        net=None,
        *,
        expected_poison_fraction=0.1,
        eps_multiplier=1.5,
        layer=None,
        epochs=40,
        random_state=None,
        device="auto",
        verbose=0,
    ):
        self.net = net
        self.expected_poison_fraction = expected_poison_fraction
        self.eps_multiplier = eps_multiplier
        self.layer = layer
        self.epochs = epochs
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def _fit_mask(self, X_t, y_t, rng):
        representations = self._fit_representations(X_t, y_t, rng)
        with self._phase("scoring"):
            return self._score_and_select(representations, y_t)

    def _score_and_select(self, representations, y_t):
        """Score each class's representations; flag each class's top fraction."""
        y = y_t.cpu().numpy()
        scores = np.zeros(len(y))
        self.singular_values_ = np.zeros(len(self.classes_))
        classes = tqdm(
            range(len(self.classes_)),
            desc="spectral signatures",
            disable=not self.verbose,
            leave=False,
        )
        finite = self._finite_rows(representations, y)
        for label in classes:
            members = np.flatnonzero(y == label)
            usable = members[finite[members]]
            index = torch.as_tensor(usable, device=representations.device)
            class_scores, singular_value = top_direction_scores(representations[index])
            scores[members] = np.nan
            scores[usable] = class_scores
            scores[members] = nonfinite_as_worst(scores[members], what="representation")
            self.singular_values_[label] = singular_value
        self.removal_fraction_ = removal_fraction(
            self.expected_poison_fraction, self.eps_multiplier
        )
        remove = select_top_fraction_per_class(scores, y, self.removal_fraction_)
        self.n_removed_per_class_ = np.bincount(y[remove], minlength=len(self.classes_))
        return ~remove, scores


def spectral_scores(representations):
    """Spectral-signature outlier score of each row of one class.

    Parameters
    ----------
    representations : array-like or torch.Tensor of shape (n_samples, n_dims)
        The representations of the samples of one class.

    Returns
    -------
    scores : ndarray of float64, shape (n_samples,)
        ``|(r_i - mean) . v|`` where ``v`` is the top right singular vector of
        the centred matrix (Algorithm 1 of Tran et al.). All zero when the
        rows are identical or there are fewer than two.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.spectral_signatures import spectral_scores
    >>> spectral_scores(np.array([[0.0, 0.0], [0.0, 1.0], [0.0, 5.0]])).round(2)
    array([2., 1., 3.])
    """
    return top_direction_scores(representations)[0]


def top_direction_scores(representations):
    """:func:`spectral_scores` and the top singular value."""
    matrix = torch.as_tensor(representations)
    if matrix.ndim != 2:
        raise ValueError(
            f"representations must be 2-dimensional, got shape {tuple(matrix.shape)}"
        )
    if len(matrix) < 2 or matrix.shape[1] == 0:
        return np.zeros(len(matrix)), 0.0
    # float64 keeps the ranking stable for nearly tied projections.
    centred = matrix.double() - matrix.double().mean(dim=0, keepdim=True)
    _, singular_values, right_vectors = torch.linalg.svd(centred, full_matrices=False)
    projections = centred @ right_vectors[0]
    return projections.abs().cpu().numpy(), float(singular_values[0])


def select_top_fraction_per_class(scores, labels, fraction):
    """Flag the highest-scoring ``fraction`` of every class.

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Higher means more suspicious.
    labels : array-like of shape (n_samples,)
        Class of each sample.
    fraction : float in [0, 1]
        A class of ``n`` samples gets ``removal_count(fraction, n)`` flags.

    Returns
    -------
    flagged : ndarray of bool, shape (n_samples,)
        Ties are broken by position: the earlier sample is flagged first.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.spectral_signatures import (
    ...     select_top_fraction_per_class)
    >>> select_top_fraction_per_class(
    ...     [0.1, 0.9, 0.5, 0.2, 0.3, 0.8], [0, 0, 0, 1, 1, 1], 1 / 3)
    array([False,  True, False, False, False,  True])
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(
            "scores and labels must be 1-dimensional of the same length, got "
            f"shapes {scores.shape} and {labels.shape}"
        )
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got fraction={fraction!r}")
    flagged = np.zeros(len(scores), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n_flag = removal_count(fraction, len(members))
        order = np.argsort(-scores[members], kind="stable")
        flagged[members[order[:n_flag]]] = True
    return flagged


def removal_fraction(expected_poison_fraction, eps_multiplier):
    """``min(0.5, eps_multiplier * expected_poison_fraction)``.

    Rounded to 12 decimals so that ``1.5 * 0.1`` reads as 0.15.
    """
    product = eps_multiplier * expected_poison_fraction
    return round(min(MAX_REMOVAL_FRACTION, product), 12)


def removal_count(fraction, n):
    """``fraction * n`` rounded half up, leaving at least one sample."""
    return max(0, min(n - 1, math.floor(fraction * n + 0.5)))
