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

import numpy as np
from sklearn import pipeline as sk_pipeline
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, _fit_context, clone
from sklearn.utils import _safe_indexing

# These private helpers, like sklearn.pipeline's _fit_one and _fit_transform_one,
# exist with the signatures used here from scikit-learn 1.6 (our minimum) to 1.9.
from sklearn.utils._user_interface import _print_elapsed_time
from sklearn.utils.metadata_routing import MethodMapping, _routing_enabled
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import _num_samples, check_memory

from sklearn_backdoor.contract import is_sanitizer


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
      ``predict(X)``; each exists where ``transform`` or ``predict`` does.

    Parameters
    ----------
    steps : list of tuples
        ``(name, estimator)`` pairs, as in scikit-learn.
    transform_input : list of str, default=None
        As in scikit-learn (metadata routing only).
    memory : str or object with the joblib.Memory interface, default=None
        As in scikit-learn: every step but the last, sanitizers included, is
        fitted on a clone through ``memory.cache``, so refitting on the same
        data with the same parameters loads the fitted step instead.
    verbose : bool, default=False
        As in scikit-learn: print the time each step takes to fit.

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

    def _iter(self, with_final=True, filter_passthrough=True, filter_sanitizers=True):
        for idx, name, step in super()._iter(
            with_final=with_final, filter_passthrough=filter_passthrough
        ):
            if not (filter_sanitizers and is_sanitizer(step)):
                yield idx, name, step

    def _fit(self, X, y=None, routed_params=None, raw_params=None):
        """Fit every step but the last; return the data the last step sees.

        Each step is fitted (or loaded) through ``memory`` and timed when
        ``verbose``, as in scikit-learn. A fitted sanitizer does not transform
        ``X``: it removes the rows its ``mask_`` rejects from ``X``, ``y`` and,
        in place, from the sample-aligned values of ``routed_params`` of the
        later steps.

        Returns
        -------
        Xt, yt
            The training data for the final step.
        """
        self.steps = list(self.steps)
        self._validate_steps()
        memory = check_memory(self.memory)
        fit_one_cached = memory.cache(sk_pipeline._fit_one)
        fit_transform_one_cached = memory.cache(sk_pipeline._fit_transform_one)
        for step_idx, name, step in self._iter(
            with_final=False, filter_passthrough=False, filter_sanitizers=False
        ):
            message = self._log_message(step_idx)
            if step is None or step == "passthrough":
                with _print_elapsed_time("Pipeline", message):
                    continue
            step_params = self._get_metadata_for_step(
                step_idx=step_idx,
                step_params=routed_params[name],
                all_params=raw_params,
            )
            to_fit = _step_to_fit(step, memory)
            how = {"message_clsname": "Pipeline", "message": message}
            if is_sanitizer(step):
                fitted = fit_one_cached(to_fit, X, y, None, params=step_params, **how)
                X, y = self._keep_rows(fitted.mask_, X, y, routed_params, step_idx)
            else:
                X, fitted = fit_transform_one_cached(
                    to_fit, X, y, None, params=step_params, **how
                )
            # The cache returns a fitted copy, not the step itself.
            self.steps[step_idx] = (name, fitted)
        return X, y

    def _keep_rows(self, keep, X, y, routed_params, step_idx):
        """Subset ``X``, ``y`` and the fit parameters of the steps after one."""
        n_samples = _num_samples(X)
        for name, _ in self.steps[step_idx + 1 :]:
            if name in routed_params:
                routed_params[name] = _filter_rows(routed_params[name], keep, n_samples)
        y = None if y is None else _take_rows(y, keep)
        return _take_rows(X, keep), y

    def get_metadata_routing(self):
        """Metadata routing of this pipeline, sanitizer steps included.

        As in scikit-learn, plus a ``fit`` -> ``fit`` route to each sanitizer
        step but the last: sanitizers are fitted, never used at predict time.

        Returns
        -------
        routing : MetadataRouter
        """
        router = super().get_metadata_routing()
        for _, name, step in self._iter(with_final=False, filter_sanitizers=False):
            if is_sanitizer(step):
                fit_only = MethodMapping().add(caller="fit", callee="fit")
                router.add(method_mapping=fit_only, **{name: step})
        return router

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
            ``step__param`` fit parameters, or with metadata routing enabled
            the metadata the steps request, as in scikit-learn. A sanitizer
            step gets every row of a value with one entry per sample, the
            steps after it only the rows it kept.

        Returns
        -------
        self : Pipeline
        """
        # Not scikit-learn's fit: that gives the final step the caller's y,
        # which a sanitizer may have shortened.
        if not _routing_enabled() and self.transform_input is not None:
            raise ValueError(
                "transform_input can only be set when metadata routing is "
                "enabled, with sklearn.set_config(enable_metadata_routing=True); "
                f"got transform_input={self.transform_input!r}"
            )
        routed_params = self._check_method_params(method="fit", props=params)
        Xt, yt = self._fit(X, y, routed_params, raw_params=params)
        last_idx = len(self.steps) - 1
        with _print_elapsed_time("Pipeline", self._log_message(last_idx)):
            if self._final_estimator != "passthrough":
                last_params = self._get_metadata_for_step(
                    step_idx=last_idx,
                    step_params=routed_params[self.steps[-1][0]],
                    all_params=params,
                )
                self._final_estimator.fit(Xt, yt, **last_params["fit"])
        return self

    @available_if(lambda self: hasattr(self, "transform"))
    def fit_transform(self, X, y=None, **params):
        """``fit(X, y, **params)`` then ``transform(X)`` on all rows of ``X``."""
        return self.fit(X, y, **params).transform(X)

    @available_if(lambda self: hasattr(self, "predict"))
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


def _step_to_fit(step, memory):
    """The step itself without a cache location, as in scikit-learn, else a clone.

    A cached fit must not depend on, or change, the caller's estimator.
    """
    if getattr(memory, "location", "") is None:
        return step
    return clone(step)


def _filter_rows(step_params, keep, n_samples):
    """Subset every per-sample value among a step's routed fit parameters."""
    filtered = type(step_params)()
    for method, method_params in step_params.items():
        filtered[method] = type(method_params)(
            **{
                key: _take_rows(value, keep)
                if _is_per_sample(value, n_samples)
                else value
                for key, value in method_params.items()
            }
        )
    return filtered


def _take_rows(data, keep):
    """The rows ``keep`` of ``data``, in the container type of ``data``.

    An array-like that numpy can convert but that cannot be indexed (one with
    only ``__array__``) becomes an ndarray first.
    """
    if not hasattr(data, "shape") and not hasattr(data, "__len__"):
        data = np.asarray(data)
    return _safe_indexing(data, keep)


def _is_per_sample(value, n_samples):
    if isinstance(value, str) or not hasattr(value, "__len__"):
        return False
    try:
        return _num_samples(value) == n_samples
    except TypeError:
        return False


class SanitizerSampler(OneToOneFeatureMixin, BaseEstimator):
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
    n_features_in_ : int
        Number of features seen during ``fit_resample``.

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
        self.n_features_in_ = self.sanitizer_.n_features_in_
        keep = self.sanitizer_.mask_
        return _take_rows(X, keep), _take_rows(y, keep)
