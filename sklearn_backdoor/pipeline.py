"""Pipelines in which sanitizers act only while fitting.

:class:`Pipeline` is a drop-in for :class:`sklearn.pipeline.Pipeline`: when a
step is a sanitizer (``IncompatibilityClustering`` and friends), ``fit`` fits
it on the current data, then passes only the kept rows, and the same rows of
every sample-aligned fit parameter (such as ``sample_weight``), to the later
steps. ``predict``, ``score``, ``transform`` and the rest skip sanitizers: new
data is never filtered, only the training set is.

:class:`SanitizerSampler` exposes a sanitizer as an imbalanced-learn sampler
(``fit_resample``) for users of ``imblearn.pipeline.Pipeline``.
"""

from sklearn import pipeline as sk_pipeline
from sklearn.base import BaseEstimator, _fit_context, clone
from sklearn.utils import _safe_indexing
from sklearn.utils.validation import _num_samples

from sklearn_backdoor.base import is_sanitizer


class Pipeline(sk_pipeline.Pipeline):
    """A scikit-learn Pipeline whose sanitizer steps filter the training set.

    Same parameters, attributes and methods as
    :class:`sklearn.pipeline.Pipeline`. Differences:

    - ``fit`` fits a sanitizer step, then keeps only the rows of ``X``, ``y``
      and of every fit parameter with one entry per sample that the sanitizer
      kept, for all later steps;
    - ``predict``, ``predict_proba``, ``decision_function``, ``score``,
      ``transform`` (and the other inference methods) skip sanitizer steps;
    - ``fit_transform(X, y)`` and ``fit_predict(X, y)`` return the output for
      *all* rows of ``X``, i.e. ``fit(X, y)`` followed by ``transform(X)`` or
      ``predict(X)``;
    - ``memory`` caching does not apply to sanitizer steps (they are fitted in
      place, like every step of an uncached scikit-learn pipeline).

    Parameters
    ----------
    steps : list of tuples
        ``(name, estimator)`` pairs, as in scikit-learn.
    transform_input : list of str, default=None
        As in scikit-learn (metadata routing only).
    memory : str or object with the joblib.Memory interface, default=None
        As in scikit-learn, for non-sanitizer steps.
    verbose : bool, default=False
        As in scikit-learn.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn_backdoor import IncompatibilityClustering, Pipeline
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(120, 5).astype(np.float32)
    >>> y = (X[:, 0] > 0.5).astype(int)
    >>> clean = IncompatibilityClustering(n_components=2, n_bags=1,
    ...     warmup_epochs=2, epochs_per_iteration=1, weak_learner_epochs=10,
    ...     self_training=False, random_state=0)
    >>> pipe = Pipeline([("clean", clean), ("clf", LogisticRegression())])
    >>> pipe.fit(X, y).predict(X).shape
    (120,)
    """

    def _iter(self, with_final=True, filter_passthrough=True):
        for idx, name, step in super()._iter(
            with_final=with_final, filter_passthrough=filter_passthrough
        ):
            if not is_sanitizer(step):
                yield idx, name, step

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None, **params):
        """Fit every step; sanitizers shrink the training set for later steps.

        Parameters
        ----------
        X : array-like
            Training data for the first step.
        y : array-like, default=None
            Training targets.
        **params : dict
            ``step__param`` fit parameters as in scikit-learn; those with one
            value per sample are filtered along with ``X`` and ``y``.

        Returns
        -------
        self : Pipeline
        """
        self.steps = list(self.steps)
        self._validate_steps()
        routed = self._check_method_params(method="fit", props=params)
        Xt, yt = X, y
        names = [name for name, _ in self.steps]
        for idx, name, step in super()._iter(with_final=False):
            if is_sanitizer(step):
                keep = step.fit(Xt, yt, **routed[name]["fit"]).mask_
                n_before = _num_samples(Xt)
                Xt = _safe_indexing(Xt, keep)
                yt = None if yt is None else _safe_indexing(yt, keep)
                for later in names[idx + 1 :]:
                    if later in routed:
                        routed[later] = _filter_rows(routed[later], keep, n_before)
            else:
                Xt = step.fit_transform(Xt, yt, **routed[name]["fit_transform"])
        final = self._final_estimator
        if final != "passthrough":
            final.fit(Xt, yt, **routed[self.steps[-1][0]]["fit"])
        return self

    def fit_transform(self, X, y=None, **params):
        """``fit(X, y, **params)`` then ``transform(X)`` on all rows of ``X``."""
        return self.fit(X, y, **params).transform(X)

    def fit_predict(self, X, y=None, **params):
        """``fit(X, y, **params)`` then ``predict(X)`` on all rows of ``X``."""
        return self.fit(X, y, **params).predict(X)


def make_pipeline(*steps, memory=None, transform_input=None, verbose=False):
    """Build a :class:`Pipeline` from estimators, naming steps automatically.

    Parameters
    ----------
    *steps : list of estimators
    memory, transform_input, verbose
        As in :func:`sklearn.pipeline.make_pipeline`.

    Returns
    -------
    Pipeline

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn_backdoor import IncompatibilityClustering, make_pipeline
    >>> make_pipeline(IncompatibilityClustering(), LogisticRegression()).steps[0][0]
    'incompatibilityclustering'
    """
    return Pipeline(
        sk_pipeline._name_estimators(steps),
        memory=memory,
        transform_input=transform_input,
        verbose=verbose,
    )


def _filter_rows(step_params, keep, n_samples):
    """Subset every per-sample value among a step's routed fit parameters."""
    filtered = type(step_params)()
    for method, method_params in step_params.items():
        filtered[method] = type(method_params)(
            (
                key,
                _safe_indexing(value, keep)
                if _is_per_sample(value, n_samples)
                else value,
            )
            for key, value in method_params.items()
        )
    return filtered


def _is_per_sample(value, n_samples):
    if isinstance(value, str) or not hasattr(value, "__len__"):
        return False
    try:
        return _num_samples(value) == n_samples
    except TypeError:
        return False


class SanitizerSampler(BaseEstimator):
    """Use a sanitizer as an imbalanced-learn sampler.

    ``fit_resample(X, y)`` fits a clone of ``sanitizer`` and returns the kept
    rows, which is what ``imblearn.pipeline.Pipeline`` expects of a sampler.
    imbalanced-learn itself is not needed to use this class.

    Parameters
    ----------
    sanitizer : estimator
        Any sanitizer of this library.

    Attributes
    ----------
    sanitizer_ : estimator
        The fitted clone of ``sanitizer``.
    sample_indices_ : ndarray of int
        Indices of the kept samples (as imbalanced-learn's under-samplers).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor import IncompatibilityClustering, SanitizerSampler
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(100, 4).astype(np.float32)
    >>> y = (X[:, 0] > 0.5).astype(int)
    >>> sampler = SanitizerSampler(IncompatibilityClustering(n_components=2,
    ...     n_bags=1, warmup_epochs=1, epochs_per_iteration=1,
    ...     weak_learner_epochs=1, self_training=False, random_state=0))
    >>> X_kept, y_kept = sampler.fit_resample(X, y)
    >>> len(X_kept) == len(sampler.sample_indices_)
    True
    """

    def __init__(self, sanitizer):
        self.sanitizer = sanitizer

    def fit(self, X, y, **params):
        """Fit the sanitizer; returns ``self``."""
        self.fit_resample(X, y, **params)
        return self

    def fit_resample(self, X, y, **params):
        """Fit a clone of the sanitizer and return the rows it keeps.

        Returns
        -------
        X_resampled, y_resampled
            The kept rows of ``X`` and ``y``, in their original order.
        """
        if not is_sanitizer(self.sanitizer):
            raise TypeError(
                "sanitizer must be a sanitizer of sklearn_backdoor (with mask_ "
                f"after fit), got {type(self.sanitizer).__name__}"
            )
        self.sanitizer_ = clone(self.sanitizer).fit(X, y, **params)
        self.sample_indices_ = self.sanitizer_.sample_indices_
        keep = self.sanitizer_.mask_
        return _safe_indexing(X, keep), _safe_indexing(y, keep)
