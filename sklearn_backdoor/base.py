"""The network machinery shared by the estimators that train nets.

:class:`NetworkEstimatorMixin` validates the training data, standardises it
onto the device and builds each network from the ``net`` parameter (through
:func:`sklearn_backdoor.training.make_net`), and checks and standardises data
given after ``fit``. :class:`BaseSanitizer` joins it to the sanitizer contract
of :mod:`sklearn_backdoor.contract`: its ``fit`` runs a sanitizer's
``_fit_mask`` on the device tensors and stores the decision.
:func:`nonfinite_as_worst` is how every defense ranks a diverged sample.
"""

from contextlib import contextmanager

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, StrOptions
from sklearn.utils.validation import check_is_fitted

from sklearn_backdoor.contract import BackdoorWarning as BackdoorWarning
from sklearn_backdoor.contract import SanitizerMixin
from sklearn_backdoor.contract import is_sanitizer as is_sanitizer
from sklearn_backdoor.inputs import (
    check_label_array,
    check_same_scaling,
    check_sample_array,
    check_within_range,
    data_fingerprint,
    model_input_shape,
    named_errors,
    standardization_stats,
    to_float_channels_first,
    to_standardized_tensor,
    value_range,
)
from sklearn_backdoor.training import (
    PRESETS,
    Stopwatch,
    make_net,
    predict_logits,
    resolve_device,
)


class NetworkEstimatorMixin:
    """Validation and device tensors shared by estimators that train nets.

    Fitting sets ``classes_``, ``n_features_in_``, ``input_shape_`` (per
    sample, channels first), ``fit_fingerprint_``, ``device_``, the
    standardisation statistics ``input_mean_`` and ``input_std_``,
    ``input_dtype_`` (the dtype of the training data: later data must be
    uint8 exactly when it was) and ``input_range_`` (minimum and maximum of
    the training data per channel or feature, shape ``(2, n)``, after uint8
    is scaled to [0, 1]; later images must stay near it). See
    :mod:`sklearn_backdoor.inputs` for how later data is checked.
    """

    _parameter_constraints: dict = {
        "net": [None, StrOptions({"auto", *PRESETS}), HasMethods(["fit"])],
        "random_state": ["random_state"],
        "device": [str],
        "verbose": ["verbose"],
    }

    def _validate_training_data(self, X, y):
        X = check_sample_array(X)
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target "
                "y is None."
            )
        y = check_label_array(y, X.shape[0])
        with named_errors("y"):
            encoder = LabelEncoder().fit(y)
        if len(encoder.classes_) < 2:
            raise ValueError(
                "y must contain at least 2 classes, got "
                f"{len(encoder.classes_)} class: {encoder.classes_.tolist()}"
            )
        self.classes_ = encoder.classes_
        self.n_features_in_ = int(np.prod(X.shape[1:]))
        self.input_shape_ = model_input_shape(X)
        self.input_dtype_ = X.dtype
        self.fit_fingerprint_ = data_fingerprint(X)
        return X, encoder.transform(y)

    def _training_tensor(self, X):
        """Standardise the validated training data onto the device.

        Sets ``device_``, the statistics ``input_mean_``/``input_std_``
        that :meth:`_new_data_tensor` reuses for other data, and
        ``input_range_``.
        """
        self.device_ = resolve_device(self.device)
        Xf = to_float_channels_first(X)
        self.input_range_ = value_range(Xf)
        self.input_mean_, self.input_std_ = standardization_stats(Xf)
        return to_standardized_tensor(
            Xf, self.input_mean_, self.input_std_, self.device_
        )

    def _new_data_tensor(self, X, name="X"):
        """Validate data other than the training set and standardise it with
        the training statistics."""
        X = check_sample_array(X, input_name=name)
        n_features = int(np.prod(X.shape[1:]))
        if n_features != self.n_features_in_:
            raise ValueError(
                f"{name} has {n_features} features, but {type(self).__name__} is "
                f"expecting {self.n_features_in_} features as input."
            )
        if model_input_shape(X) != self.input_shape_:
            raise ValueError(
                f"{name} has per-sample shape {model_input_shape(X)} (channels "
                f"first), but {type(self).__name__} was fitted on samples of shape "
                f"{self.input_shape_}."
            )
        check_same_scaling(X, self.input_dtype_, input_name=name)
        Xf = to_float_channels_first(X)
        check_within_range(Xf, self.input_range_, input_name=name)
        return to_standardized_tensor(
            Xf, self.input_mean_, self.input_std_, self.device_, input_name=name
        )

    def _new_data_logits(self, X, name="X"):
        """The fitted ``net_``'s logits of data other than the training set.

        Raises ``ValueError`` naming ``name`` when they are not finite, so
        that no NaN becomes a probability or a class.
        """
        check_is_fitted(self, "net_")
        logits = predict_logits(self.net_, self._new_data_tensor(X, name))
        finite = torch.isfinite(logits).all(dim=1)
        if not finite.all():
            raise ValueError(
                f"The network's output is not finite for {int((~finite).sum())} of "
                f"the {len(finite)} samples of {name}: {name} lies too far from the "
                "training data for float32, or training diverged."
            )
        return logits

    def _progress(self, title):
        """``title`` when ``verbose`` asks for progress bars, else None: the
        ``progress`` argument of :func:`~sklearn_backdoor.training.train_net`."""
        return title if self.verbose else None

    def _new_net(self, rng):
        """A fresh skorch net for one model, seeded from ``rng``."""
        return make_net(
            self.net,
            n_classes=len(self.classes_),
            input_shape=self.input_shape_,
            device=self.device_,
            random_state=int(rng.randint(np.iinfo(np.int32).max)),
            padding_fill=self._black_level(),
        )

    def _black_level(self):
        """A raw 0 (black) in the standardised units the networks see, per
        channel: what the random crop pads with, as the reference pads the
        raw image before normalising."""
        if len(self.input_shape_) != 3:
            return 0.0
        level = -self.input_mean_ / self.input_std_
        return tuple(float(v) for v in level.reshape(-1))


class BaseSanitizer(
    SanitizerMixin, NetworkEstimatorMixin, TransformerMixin, BaseEstimator
):
    """Shared machinery of the network-based sanitizers.

    Subclasses implement ``_fit_mask(X_t, y_t, rng)`` which trains its
    networks on the device tensors and returns ``(mask, scores)``, timing its
    phases with :meth:`_phase` into ``phase_seconds_``.
    """

    # False, as scikit-learn does for estimators that wrap a user's one
    # (SelectFromModel): a user's `net` keeps its own validation.
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Decide which samples of ``(X, y)`` to keep.

        Parameters
        ----------
        X : array-like of shape (n_samples, height, width, channels), \
(n_samples, height, width) or (n_samples, n_features)
            Training images (uint8 or float) or flat features.
        y : array-like of shape (n_samples,)
            Training labels (possibly poisoned).

        Returns
        -------
        self : object
            Fitted sanitizer.
        """
        X, y_encoded = self._validate_training_data(X, y)
        rng = check_random_state(self.random_state)
        X_t = self._training_tensor(X)
        y_t = _labels_to_tensor(y_encoded, self.device_)
        self.phase_seconds_ = {}
        mask, scores = self._fit_mask(X_t, y_t, rng)
        self._store_decision(mask, scores)
        return self

    @contextmanager
    def _phase(self, name):
        """Add the wall-clock seconds of a block of ``fit``, device work
        included, to ``phase_seconds_[name]`` (two stream syncs per block)."""
        with Stopwatch(self.device_) as watch:
            yield
        self.phase_seconds_[name] = self.phase_seconds_.get(name, 0.0) + watch.seconds

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.non_deterministic = self.random_state is None
        return tags


def nonfinite_as_worst(values, *, what):
    """A float64 copy of ``values`` whose NaN and infinities rank as the worst.

    Every defense ranks samples by a per-sample loss or score, higher being
    more suspicious. A sample whose value is not finite is ranked the most
    suspicious, as the reference implementations do: its value becomes one
    above every finite value (``max + max(1, |max|)``), which stays finite so
    that quantiles and moving averages of the values are defined.

    Raises ``ValueError`` when no value is finite: the network diverged and
    there is nothing to rank by. ``what`` names the values in the message.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.base import nonfinite_as_worst
    >>> nonfinite_as_worst([0.5, np.nan, 2.0, np.inf], what="loss")
    array([0.5, 4. , 2. , 4. ])
    """
    values = np.array(values, dtype=np.float64)
    finite = np.isfinite(values)
    if finite.all():
        return values
    if not finite.any():
        raise ValueError(
            f"The {what} is not finite for any of the {values.size} samples: the "
            "network diverged. Give net a lower learning rate or rescale X."
        )
    top = values[finite].max()
    values[~finite] = top + max(1.0, abs(top))
    return values


def _labels_to_tensor(y_encoded, device):
    return torch.as_tensor(y_encoded, dtype=torch.long, device=device)
