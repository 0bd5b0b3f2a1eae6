"""A scikit-learn classifier around one network of the fast engine.

The papers judge a defense by the model trained on what it keeps: the same
network, trained from scratch on the sanitized set. :class:`NetworkClassifier`
is that model, as the final step of a :class:`sklearn_backdoor.Pipeline` or on
its own.
"""

from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import LRScheduler

from sklearn_backdoor.base import NetworkEstimatorMixin
from sklearn_backdoor.docstrings import fill_doc
from sklearn_backdoor.training import train_net


@fill_doc
class NetworkClassifier(NetworkEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Train one network (a preset or a skorch net) as a classifier.

    Parameters
    ----------
    {{net}}
    epochs : int, default=40
        Training epochs. The papers train their final models for 100-200
        epochs with step decays; the fast network needs far fewer.
    lr_schedule : {"cosine", "constant"}, default="cosine"
        ``"cosine"`` anneals the learning rate to zero over ``epochs``.
    random_state : int, RandomState instance or None, default=None
    {{device}}
    verbose : int, default=0
        Print skorch's per-epoch log when positive.

    Attributes
    ----------
    net_ : skorch.NeuralNetClassifier
        The trained network.
    {{network_attributes}}

    Notes
    -----
    ``fit`` raises ``ValueError`` if the training loss ends non-finite (the
    network diverged), and ``predict`` and ``predict_proba`` raise it rather
    than return the classes or probabilities of non-finite outputs.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.classifier import NetworkClassifier
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(200, 5).astype(np.float32)
    >>> y = (X[:, 0] > 0.5).astype(int)
    >>> NetworkClassifier(epochs=20, random_state=0).fit(X, y).score(X, y) > 0.9
    True
    """

    _parameter_constraints: dict = {
        **NetworkEstimatorMixin._parameter_constraints,
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "lr_schedule": [StrOptions({"cosine", "constant"})],
    }

    def __init__(
        self,
        net=None,
        *,
        epochs=40,
        lr_schedule="cosine",
        random_state=None,
        device="auto",
        verbose=0,
    ):
        self.net = net
        self.epochs = epochs
        self.lr_schedule = lr_schedule
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # False, as scikit-learn does for estimators that wrap a user's one
    # (SelectFromModel): a user's `net` keeps its own validation.
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Train a fresh network on ``(X, y)``.

        Parameters
        ----------
        X : array-like of images or flat features
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : object
        """
        X, y_encoded = self._validate_training_data(X, y)
        X_t = self._training_tensor(X)
        y_t = torch.as_tensor(y_encoded, dtype=torch.long, device=self.device_)
        net = self._new_net(check_random_state(self.random_state))
        net.set_params(verbose=self.verbose)
        if self.lr_schedule == "cosine":
            net.set_params(
                callbacks=[("lr", LRScheduler("CosineAnnealingLR", T_max=self.epochs))]
            )
        self.net_ = train_net(net, X_t, y_t, epochs=self.epochs)
        return self

    def predict_proba(self, X):
        """Softmax of the network's logits, columns in ``classes_`` order."""
        logits = self._new_data_logits(X)
        return torch.softmax(logits, dim=1).cpu().numpy().astype(np.float64)

    def predict(self, X):
        """The most probable class of each sample."""
        check_is_fitted(self, "net_")
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
