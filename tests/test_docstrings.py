"""Shared docstring fragments are filled in, and every fitted attribute of
the estimators is documented."""

import importlib
import inspect
import pkgutil
import re

import numpy as np
import pytest
from sklearn.base import clone

import sklearn_backdoor
from sklearn_backdoor import (
    ActivationClusteringFilter,
    IncompatibilityClustering,
    ITLMFilter,
    NetworkClassifier,
    NoisyLabelMinimaxTrainer,
    SanitizerSampler,
    SpectralSignatureFilter,
)
from sklearn_backdoor.docstrings import FRAGMENTS, fill_doc

TINY = {"device": "cpu", "random_state": 0}


def test_a_placeholder_line_becomes_the_fragment_indented_like_it():
    def f():
        """Parameters
        ----------
        {{device}}
        x : int
        """

    lines = fill_doc(f).__doc__.splitlines()
    assert lines[2:5] == [
        '        device : str, default="auto"',
        '            ``"auto"`` uses CUDA when available.',
        "        x : int",
    ]


def test_placeholders_only_on_their_own_line_and_known():
    def inline():
        """Braces {{device}} inside a sentence stay, as do {"a", "b"} and 5%."""

    assert fill_doc(inline).__doc__ == inline.__doc__

    def unknown():
        """{{no_such_fragment}}"""

    with pytest.raises(KeyError, match="no_such_fragment"):
        fill_doc(unknown)


def _package_objects():
    for info in pkgutil.walk_packages(sklearn_backdoor.__path__, "sklearn_backdoor."):
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module):
            if getattr(obj, "__module__", None) == info.name:
                yield obj
                yield from (
                    member for _, member in inspect.getmembers(obj, inspect.isfunction)
                )


def test_no_placeholder_is_left_unfilled():
    unfilled = {
        getattr(obj, "__qualname__", repr(obj))
        for obj in _package_objects()
        if re.search(r"^\s*\{\{\w+\}\}\s*$", inspect.getdoc(obj) or "", re.M)
    }
    assert not unfilled, f"decorate with fill_doc: {sorted(unfilled)}"


def test_every_fragment_is_used():
    docs = "\n".join(inspect.getdoc(obj) or "" for obj in _package_objects())
    for name, fragment in FRAGMENTS.items():
        assert fragment.split("\n")[0] in docs, name


def documented_attributes(cls):
    """Names listed in the Attributes section of ``cls``'s docstring."""
    doc = inspect.getdoc(cls)
    section = re.search(r"^Attributes\n-+\n(.*?)(?:\n\n\w+\n-+\n|\Z)", doc, re.S | re.M)
    names = set()
    for line in section.group(1).splitlines() if section else []:
        entry = re.match(r"(\w[\w, ]*?)\s*(?::|$)", line)
        if entry and not line.startswith(" "):
            names |= {name.strip() for name in entry.group(1).split(",")}
    return names


ISPL = IncompatibilityClustering(
    n_components=2,
    n_bags=1,
    warmup_epochs=1,
    epochs_per_iteration=1,
    weak_learner_epochs=1,
    self_training_rounds=1,
    self_training_epochs=1,
    **TINY,
)


@pytest.mark.parametrize(
    "estimator",
    [
        SpectralSignatureFilter(epochs=1, **TINY),
        ActivationClusteringFilter(
            epochs=1, analysis="silhouette-scores", ex_re_threshold=1.0, **TINY
        ),
        ITLMFilter(n_rounds=1, first_round_epochs=1, **TINY),
        NoisyLabelMinimaxTrainer(epochs=2, batch_size=16, **TINY),
        NetworkClassifier(epochs=1, **TINY),
        SanitizerSampler(SpectralSignatureFilter(epochs=1, **TINY)),
        ISPL,
    ],
    ids=lambda estimator: type(estimator).__name__,
)
def test_every_fitted_attribute_is_documented(estimator):
    rng = np.random.RandomState(0)
    X = rng.rand(60, 6).astype(np.float32)
    y = (X[:, 0] > 0.5).astype(int)
    fitted = clone(estimator)
    if isinstance(fitted, NoisyLabelMinimaxTrainer):
        fitted.fit(X, y, eval_set=(X[:10], y[:10], X[:10]))
    else:
        fitted.fit(X, y)
    attributes = {
        name for name in vars(fitted) if name.endswith("_") and not name.startswith("_")
    }
    assert attributes, "nothing was fitted"
    assert attributes <= documented_attributes(type(estimator)), sorted(
        attributes - documented_attributes(type(estimator))
    )
