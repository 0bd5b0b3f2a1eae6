"""
A sanitizer inside a grid search
================================

A sanitizer is the first step of a ``sklearn_backdoor.Pipeline``, so
``GridSearchCV`` cross-validates the whole chain: in every fold the defense
filters that fold's training part, and the classifier is fitted on what it
keeps. Here the digits are poisoned as in the quickstart, and the
regularisation of a logistic regression is chosen behind
``ActivationClusteringFilter``.

The validation folds are poisoned too, so the cross-validated score can
choose the classifier but cannot tell whether the backdoor is gone. That is
measured at the end on test zeros carrying the trigger, which only this
experiment knows.

Runs on a CPU in about ten seconds (needs matplotlib)::

    python examples/pipeline_grid_search.py
"""

import tempfile

import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.preprocessing import FunctionTransformer

from sklearn_backdoor import ActivationClusteringFilter, Pipeline
from sklearn_backdoor.datasets import load_digits_images
from sklearn_backdoor.metrics import (
    clean_accuracy,
    removal_counts,
    targeted_misclassification_rate,
)
from sklearn_backdoor.poisoning import PatchTrigger, dirty_label_backdoor

SOURCE, TARGET = 0, 7

X, y = load_digits_images()
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)
poisoned = dirty_label_backdoor(
    X_train,
    y_train,
    PatchTrigger(pixels=((0, 0), (0, 1), (1, 0)), color=255),
    source=SOURCE,
    target=TARGET,
    poison_fraction=0.2,
    random_state=0,
)


def flatten_pixels(X):
    """Images to flat features in [0, 1], for the linear classifier."""
    return X.reshape(len(X), -1) / 255.0


# %%
# The search
# ----------
# The sanitizer comes first. Its fit does not depend on ``C``, so the
# pipeline's ``memory`` fits it once per fold and loads it for the other
# values of ``C``: three fits of the defense for the three folds, one more
# for the final refit on all the training data. Twenty epochs of its network
# are enough on the digits.

grid = {"clf__C": [0.01, 0.1, 1.0]}
with tempfile.TemporaryDirectory() as cache:
    defended = Pipeline(
        [
            ("clean", ActivationClusteringFilter(epochs=20, random_state=0)),
            ("flatten", FunctionTransformer(flatten_pixels)),
            ("clf", LogisticRegression(max_iter=2000)),
        ],
        memory=cache,
    )
    search = GridSearchCV(defended, grid, cv=3).fit(poisoned.X, poisoned.y)
print(f"best parameters: {search.best_params_}")

# %%
# The same search without the sanitizer, for comparison. The defended
# pipeline scores lower in cross-validation: its folds are scored against
# poisoned labels, which only the undefended classifier has learned, and it
# trains on fewer images.

undefended = Pipeline(
    [
        ("flatten", FunctionTransformer(flatten_pixels)),
        ("clf", LogisticRegression(max_iter=2000)),
    ]
)
baseline = GridSearchCV(undefended, grid, cv=3).fit(poisoned.X, poisoned.y)

fig, ax = plt.subplots(figsize=(5, 3.5))
for name, result in [("no defense", baseline), ("activation clustering", search)]:
    ax.errorbar(
        grid["clf__C"],
        result.cv_results_["mean_test_score"],
        yerr=result.cv_results_["std_test_score"],
        marker="o",
        capsize=3,
        label=name,
    )
ax.set_xscale("log")
ax.set_xlabel("C of the logistic regression")
ax.set_ylabel("cross-validated accuracy\n(on poisoned labels)")
ax.legend()
fig.tight_layout()
plt.show()

# %%
# The backdoor on the test set
# ----------------------------
# ``best_estimator_`` is the pipeline refitted on all the training data with
# the best ``C``; its sanitizer's ``mask_`` tells which training samples it
# kept.

sanitizer = search.best_estimator_.named_steps["clean"]
counts = removal_counts(sanitizer.mask_, poisoned.poison_indices)
print(
    f"the sanitizer removed {counts.n_removed} of {len(poisoned.y)} training "
    f"images: {counts.true_positives} of the {len(poisoned.poison_indices)} "
    f"poisoned ones and {counts.false_positives} clean ones"
)

zeros = y_test == SOURCE
triggered_zeros = poisoned.trigger.apply(X_test[zeros])
for name, result in [("no defense", baseline), ("activation clustering", search)]:
    model = result.best_estimator_
    tmr = targeted_misclassification_rate(
        y_test[zeros], model.predict(X_test[zeros]), model.predict(triggered_zeros)
    )
    accuracy = clean_accuracy(y_test, model.predict(X_test))
    seven = np.mean(model.predict(triggered_zeros) == TARGET)
    print(
        f"{name:<22} TMR {tmr:6.1%}  triggered zeros read as {TARGET}: {seven:6.1%}"
        f"  clean accuracy {accuracy:6.1%}"
    )
