"""The sanitizer contract, without the torch engine.

A *sanitizer* is a scikit-learn estimator whose ``fit(X, y)`` decides which
training samples to keep. After fitting it exposes

- ``mask_``: bool array ``(n_samples,)``, True = keep;
- ``sample_indices_``: the indices of the kept samples;
- ``scores_``: a per-sample suspicion score (higher = more suspicious) where
  the method defines one;
- ``classes_`` and ``n_features_in_``.

``transform(X)`` returns ``mask_`` for the very data seen in ``fit`` and
raises for any other data: a keep/remove decision exists only for the
training samples, so there is nothing meaningful to return for new rows.
:class:`sklearn_backdoor.Pipeline` uses sanitizers while fitting and skips
them when predicting.

Code that only needs to recognise sanitizers, such as
:class:`sklearn_backdoor.Pipeline`, imports this module rather than
:mod:`sklearn_backdoor.base`, where the networks are trained.
:class:`SanitizerMixin` sets the marker that :func:`is_sanitizer` reads.
"""

import warnings

import numpy as np
from sklearn.utils.validation import check_is_fitted

from sklearn_backdoor.inputs import check_sample_array, data_fingerprint


class BackdoorWarning(UserWarning):
    """Base class of every warning this library emits."""


def is_sanitizer(estimator):
    """True when ``estimator`` follows the sanitizer contract."""
    return bool(getattr(estimator, "_is_sanitizer", False))


class SanitizerMixin:
    """Marks an estimator as a sanitizer for :class:`sklearn_backdoor.Pipeline`.

    A sanitizer's ``fit`` sets ``mask_`` (True = keep); the pipeline fits it,
    passes only the kept rows (and the matching rows of sample-aligned fit
    parameters) to the later steps, and skips it at predict time.
    """

    _is_sanitizer = True

    def transform(self, X):
        """Return the keep-mask of the training data seen in ``fit``.

        Parameters
        ----------
        X : array-like
            Must be the same data that was passed to ``fit`` (same shape,
            dtype and values).

        Returns
        -------
        mask : ndarray of bool, shape (n_samples,)
            True for the samples to keep. A copy of ``mask_``.

        Raises
        ------
        ValueError
            If ``X`` is not the data seen in ``fit``: sanitizers judge
            training samples and have no decision for other data.
        """
        check_is_fitted(self, "mask_")
        X = check_sample_array(X)
        n_features = int(np.prod(X.shape[1:]))
        if n_features != self.n_features_in_:
            raise ValueError(
                f"X has {n_features} features, but {type(self).__name__} is "
                f"expecting {self.n_features_in_} features as input."
            )
        if data_fingerprint(X) != self.fit_fingerprint_:
            raise ValueError(
                f"{type(self).__name__}.transform only accepts the data seen in "
                f"fit ({self.mask_.shape[0]} samples); got a different X of shape "
                f"{X.shape} and dtype {X.dtype}. Sanitizers decide which *training* "
                "samples to keep; use mask_ or sample_indices_, or a "
                "sklearn_backdoor.Pipeline, which skips sanitizers at predict time."
            )
        return self.mask_.copy()

    def fit_transform(self, X, y=None, **fit_params):
        """Fit to ``X, y`` and return the keep-mask (``mask_``)."""
        return self.fit(X, y, **fit_params).mask_.copy()

    def _store_decision(self, mask, scores):
        """Set ``mask_``, ``sample_indices_`` and, unless None, ``scores_``;
        warn when no sample is kept."""
        self.mask_ = np.asarray(mask, dtype=bool)
        self.sample_indices_ = np.flatnonzero(self.mask_)
        if not self.mask_.any():
            warnings.warn(
                f"{type(self).__name__} kept none of the {self.mask_.size} samples; "
                "its networks are probably undertrained for this data (see the "
                "epoch parameters).",
                BackdoorWarning,
                stacklevel=3,
            )
        if scores is not None:
            self.scores_ = np.asarray(scores, dtype=np.float64)
