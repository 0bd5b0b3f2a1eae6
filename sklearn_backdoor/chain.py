"""Sanitizers applied one after another, as one sanitizer.

:class:`SanitizerChain` fits each of its sanitizers on what the ones before
it kept, and keeps what the last one kept. It is itself a sanitizer, so its
``mask_`` indexes the data given to ``fit`` and it can be one step of a
:class:`sklearn_backdoor.Pipeline`, a benchmark's defense, or a search's
estimator; ``removed_by_`` says which step removed each sample.

Why chain two sanitizers: they can fail in different places. On the digits
grid the cluster vote of :class:`~sklearn_backdoor.IncompatibilityClustering`
removes the many poisoned digits of eps 20%, which make a cluster of their
own and, left in, teach the label vote's learners and its self-training the
trigger; the label vote removes the few of eps 5%, which make no cluster
(docs/benchmarks.md). Chained, the second sees what the first left.
"""

import numpy as np
from sklearn.base import TransformerMixin, _fit_context, clone
from sklearn.utils import _safe_indexing
from sklearn.utils.metaestimators import _BaseComposition

from sklearn_backdoor.contract import SanitizerMixin, is_sanitizer
from sklearn_backdoor.inputs import (
    check_label_array,
    check_sample_array,
    data_fingerprint,
)

KEPT = -1


class SanitizerChain(SanitizerMixin, TransformerMixin, _BaseComposition):
    """Apply sanitizers in turn, each to the samples the previous ones kept.

    Parameters
    ----------
    steps : list of (str, sanitizer) tuples
        The sanitizers, in order, each with a unique name. Each is cloned
        and fitted on the rows that every earlier step kept. Their
        parameters are reachable as ``<name>__<parameter>`` through
        ``get_params`` and ``set_params``.

    Attributes
    ----------
    steps_ : list of (str, sanitizer) tuples
        The fitted clones, in order.
    removed_by_ : ndarray of int, shape (n_samples,)
        For each sample of the data given to ``fit``, the index in ``steps``
        of the step that removed it; -1 for the samples kept.
    mask_ : ndarray of bool, shape (n_samples,)
        True for the samples every step kept.
    sample_indices_ : ndarray of int
        Indices of the kept samples.
    classes_ : ndarray
        The labels seen in ``fit``.
    n_features_in_ : int
        Number of features of each sample (pixels times channels for images).

    See Also
    --------
    sklearn_backdoor.Pipeline : Sanitizers followed by a classifier.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor import ITLMFilter, SanitizerChain
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(40, 4).astype(np.float32)
    >>> y = np.repeat([0, 1], 20)
    >>> itlm = ITLMFilter(keep_fraction=0.9, n_rounds=1, first_round_epochs=1,
    ...                   random_state=0)
    >>> chain = SanitizerChain([("first", itlm), ("second", itlm)]).fit(X, y)
    >>> int(chain.mask_.sum()), np.bincount(chain.removed_by_ + 1).tolist()
    (32, [32, 4, 4])
    """

    _parameter_constraints = {"steps": [list]}

    def __init__(self, steps):
        self.steps = steps

    def get_params(self, deep=True):
        """Parameters of the chain and, with ``deep``, of its steps."""
        return self._get_params("steps", deep=deep)

    def set_params(self, **params):
        """Set parameters of the chain or, as ``<name>__<parameter>``, of a
        step."""
        self._set_params("steps", **params)
        return self

    @property
    def named_steps(self):
        """The steps by name (the unfitted ones given as ``steps``)."""
        return dict(self.steps)

    # False: each step validates its own parameters when it is fitted.
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Fit every step on what the steps before it kept.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Training samples, in any form the steps accept.
        y : array-like of shape (n_samples,)
            Training labels (possibly poisoned).

        Returns
        -------
        self : object
            Fitted chain.
        """
        self._check_steps()
        X = check_sample_array(X)
        if y is None:
            raise ValueError(
                "SanitizerChain requires y to be passed, but the target y is None."
            )
        y = check_label_array(y, X.shape[0])
        self.classes_ = np.unique(y)
        self.n_features_in_ = int(np.prod(X.shape[1:]))
        self.fit_fingerprint_ = data_fingerprint(X)
        rows = np.arange(X.shape[0])
        removed_by = np.full(X.shape[0], KEPT, dtype=np.int64)
        self.steps_ = []
        for index, (name, step) in enumerate(self.steps):
            self._check_trainable(name, y[rows])
            fitted = clone(step).fit(_safe_indexing(X, rows), _safe_indexing(y, rows))
            keep = np.asarray(fitted.mask_, dtype=bool)
            removed_by[rows[~keep]] = index
            rows = rows[keep]
            self.steps_.append((name, fitted))
        self.removed_by_ = removed_by
        self._store_decision(removed_by == KEPT, None)
        return self

    def _check_steps(self):
        """Raise unless ``steps`` is a non-empty list of uniquely named
        sanitizers."""
        if not self.steps:
            raise ValueError("steps must hold at least one (name, sanitizer) pair")
        for entry in self.steps:
            if not (isinstance(entry, tuple) and len(entry) == 2):
                raise ValueError(
                    f"steps must be (name, sanitizer) tuples, got {entry!r}"
                )
            name, step = entry
            if not is_sanitizer(step):
                raise TypeError(
                    f"steps: {name!r} is {type(step).__name__}, not a sanitizer "
                    "(an estimator whose fit sets mask_, such as "
                    "IncompatibilityClustering)"
                )
        names = [name for name, _ in self.steps]
        self._validate_names(names)

    def _check_trainable(self, name, y_kept):
        """Raise when the earlier steps left step ``name`` under two classes."""
        classes = np.unique(y_kept)
        if len(classes) < 2:
            raise ValueError(
                f"steps: the steps before {name!r} kept {len(y_kept)} samples of "
                f"{len(classes)} class(es) {classes.tolist()}; {name!r} needs at "
                "least two classes"
            )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.non_deterministic = any(
            step.__sklearn_tags__().non_deterministic for _, step in self.steps
        )
        return tags


__all__ = ["SanitizerChain"]
