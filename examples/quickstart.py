"""
Quickstart: remove a backdoor from the digits data set with ISPL+B
==================================================================

An attacker stamps a 3-pixel trigger into the top-left corner of some images
of digit 0 and relabels them 7. A classifier trained on that data learns the
backdoor: test zeros carrying the trigger are read as something else. The
same classifier behind ``IncompatibilityClustering`` in a
``sklearn_backdoor.Pipeline`` is trained only on the samples the defense
keeps.

Runs on a CPU in about a minute::

    python examples/quickstart.py
"""

import time

from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import FunctionTransformer

from sklearn_backdoor import IncompatibilityClustering, Pipeline
from sklearn_backdoor.datasets import load_digits_images
from sklearn_backdoor.metrics import (
    clean_accuracy,
    removal_counts,
    targeted_misclassification_rate,
)
from sklearn_backdoor.poisoning import PatchTrigger, dirty_label_backdoor

SOURCE, TARGET, POISON_FRACTION = 0, 7, 0.2
CORNER_TRIGGER = PatchTrigger(pixels=((0, 0), (0, 1), (1, 0)), color=255)


def flatten_pixels(X):
    """Images to flat features in [0, 1], for the linear classifier."""
    return X.reshape(len(X), -1) / 255.0


def make_classifier():
    return Pipeline(
        [
            ("flatten", FunctionTransformer(flatten_pixels)),
            ("clf", LogisticRegression(max_iter=2000)),
        ]
    )


def evaluate(model, X_test, y_test, trigger):
    source = y_test == SOURCE
    tmr = targeted_misclassification_rate(
        y_test[source],
        model.predict(X_test[source]),
        model.predict(trigger.apply(X_test[source])),
    )
    return tmr, clean_accuracy(y_test, model.predict(X_test))


# %%
# The poisoned training set
# -------------------------
# The digits are 8x8 grey images (uint8, 0-255). 30% of them are held out
# for testing; in the rest, 20% of the zeros get the trigger and the label 7.

X, y = load_digits_images()
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)
poisoned = dirty_label_backdoor(
    X_train,
    y_train,
    CORNER_TRIGGER,
    source=SOURCE,
    target=TARGET,
    poison_fraction=POISON_FRACTION,
    random_state=0,
)
print(
    f"digits: {len(y_train)} training images, {len(poisoned.poison_indices)} "
    f"poisoned ({SOURCE} -> {TARGET}, 3-pixel corner trigger)"
)

# %%
# Without a defense
# -----------------
# A logistic regression trained on the poisoned data.

rows = []
started = time.perf_counter()
undefended = make_classifier().fit(poisoned.X, poisoned.y)
rows.append(("no defense", undefended, None, time.perf_counter() - started))

# %%
# Behind ISPL+B
# -------------
# The same classifier as the last step of a ``sklearn_backdoor.Pipeline``
# whose first step is the sanitizer: ``fit`` trains the classifier on the
# samples that ``IncompatibilityClustering`` keeps (its ``mask_``), and
# ``predict`` skips the sanitizer. ``verbose=1`` shows its progress bars (on
# stderr); like scikit-learn's estimators, the sanitizers are silent by
# default.

started = time.perf_counter()
defended = Pipeline(
    [
        ("clean", IncompatibilityClustering(random_state=0, verbose=1)),
        ("model", make_classifier()),
    ]
).fit(poisoned.X, poisoned.y)
mask = defended.named_steps["clean"].mask_
rows.append(("ISPL+B", defended, mask, time.perf_counter() - started))

# %%
# Results
# -------
# TMR is the targeted misclassification rate: the share of test zeros that
# are classified correctly, but not once the trigger is applied. FP counts
# the clean training samples the defense removed, FN the poisoned ones it
# kept.

print(f"{'defense':<12}{'TMR':>8}{'clean acc':>11}{'FP':>6}{'FN':>6}{'seconds':>9}")
for name, model, mask, seconds in rows:
    tmr, accuracy = evaluate(model, X_test, y_test, poisoned.trigger)
    if mask is None:
        fp, fn = 0, len(poisoned.poison_indices)
    else:
        counts = removal_counts(mask, poisoned.poison_indices)
        fp, fn = counts.false_positives, counts.false_negatives
    print(f"{name:<12}{tmr:>8.1%}{accuracy:>11.1%}{fp:>6d}{fn:>6d}{seconds:>9.1f}")
