import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sklearn_backdoor.metrics import (
    RemovalCounts,
    attack_success_rate,
    clean_accuracy,
    mean_of_last_epochs,
    poison_accuracy,
    removal_counts,
    targeted_misclassification_rate,
)

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def label_triples(draw, min_size=1):
    n = draw(st.integers(min_size, 40))
    labels = st.lists(st.integers(0, 3), min_size=n, max_size=n)
    return draw(labels), draw(labels), draw(labels)


# ---------------------------------------------------------------------------
# Targeted misclassification rate
# ---------------------------------------------------------------------------


def test_tmr_concrete_values():
    y_true = [3, 3, 3, 3, 3]
    clean = [3, 3, 3, 1, 3]
    triggered = [5, 2, 3, 5, 5]
    assert targeted_misclassification_rate(y_true, clean, triggered) == 0.6
    assert targeted_misclassification_rate(y_true, clean, triggered, target=5) == 0.4


@SETTINGS
@given(label_triples(), st.integers(0, 3))
def test_tmr_matches_loop(triple, target):
    y_true, clean, triggered = triple
    any_wrong = sum(
        1 for t, c, p in zip(y_true, clean, triggered, strict=True) if c == t and p != t
    )
    to_target = sum(
        1
        for t, c, p in zip(y_true, clean, triggered, strict=True)
        if c == t and p == target
    )
    m = len(y_true)
    assert targeted_misclassification_rate(y_true, clean, triggered) == pytest.approx(
        any_wrong / m
    )
    assert targeted_misclassification_rate(
        y_true, clean, triggered, target=target
    ) == pytest.approx(to_target / m)


def test_tmr_validates_lengths_and_emptiness():
    with pytest.raises(ValueError, match="y_pred_triggered must have the same length"):
        targeted_misclassification_rate([0, 0], [0, 0], [1])
    with pytest.raises(ValueError, match="y_pred_clean must have the same length"):
        targeted_misclassification_rate([0, 0], [0], [1, 1])
    with pytest.raises(ValueError, match="y_true must not be empty"):
        targeted_misclassification_rate([], [], [])
    with pytest.raises(ValueError, match="y_true must be a 1-d array"):
        targeted_misclassification_rate([[0]], [0], [0])


# ---------------------------------------------------------------------------
# Attack success rate and accuracies
# ---------------------------------------------------------------------------


def test_attack_success_rate_concrete():
    assert attack_success_rate([1, 1, 0, 1], target=1) == 0.75
    assert attack_success_rate([1, 1, 0, 1], target=1, y_true=[0, 1, 2, 2]) == 2 / 3


@SETTINGS
@given(label_triples(), st.integers(0, 3))
def test_attack_success_rate_matches_loop(triple, target):
    y_true, _, triggered = triple
    assert attack_success_rate(triggered, target) == pytest.approx(
        sum(p == target for p in triggered) / len(triggered)
    )
    kept = [p for t, p in zip(y_true, triggered, strict=True) if t != target]
    if kept:
        assert attack_success_rate(triggered, target, y_true=y_true) == pytest.approx(
            sum(p == target for p in kept) / len(kept)
        )
    else:
        with pytest.raises(ValueError, match="y_true has no sample"):
            attack_success_rate(triggered, target, y_true=y_true)


def test_attack_success_rate_validates():
    with pytest.raises(ValueError, match="y_true must have the same length"):
        attack_success_rate([1, 1], 1, y_true=[0])
    with pytest.raises(ValueError, match="y_pred_triggered must not be empty"):
        attack_success_rate([], 1)


@SETTINGS
@given(label_triples())
def test_accuracies_match_loop(triple):
    y_true, clean, triggered = triple
    n = len(y_true)
    expected_clean = sum(a == b for a, b in zip(y_true, clean, strict=True)) / n
    expected_poison = sum(a == b for a, b in zip(y_true, triggered, strict=True)) / n
    assert clean_accuracy(y_true, clean) == pytest.approx(expected_clean)
    assert poison_accuracy(y_true, triggered) == pytest.approx(expected_poison)


def test_accuracy_concrete_and_errors():
    assert clean_accuracy([0, 1, 2, 3], [0, 1, 0, 0]) == 0.5
    assert poison_accuracy(np.array([4, 4]), np.array([4, 2])) == 0.5
    with pytest.raises(ValueError, match="y_pred must have the same length"):
        clean_accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="y_pred_triggered must have the same length"):
        poison_accuracy([0, 1], [0, 1, 2])


# ---------------------------------------------------------------------------
# Removal counts
# ---------------------------------------------------------------------------


def test_removal_counts_concrete():
    keep = np.array([True, True, False, False, True, False])
    counts = removal_counts(keep, [0, 2])
    assert counts == RemovalCounts(
        false_positives=2,
        false_negatives=1,
        true_positives=1,
        true_negatives=2,
        n_removed=3,
        n_kept=3,
    )
    as_mask = np.array([True, False, True, False, False, False])
    assert removal_counts(keep, as_mask) == counts
    assert removal_counts(keep, np.array([], dtype=int)).false_negatives == 0


@SETTINGS
@given(
    st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=60),
    st.booleans(),
)
def test_removal_counts_match_loop(pairs, as_mask):
    keep = np.array([k for k, _ in pairs], dtype=bool)
    poison = np.array([p for _, p in pairs], dtype=bool)
    indices = poison if as_mask else np.flatnonzero(poison)
    counts = removal_counts(keep, indices)
    assert counts.false_positives == sum(not k and not p for k, p in pairs)
    assert counts.false_negatives == sum(k and p for k, p in pairs)
    assert counts.true_positives == sum(not k and p for k, p in pairs)
    assert counts.true_negatives == sum(k and not p for k, p in pairs)
    n_poison = int(poison.sum())
    assert counts.false_positives + counts.true_negatives == len(pairs) - n_poison
    assert counts.true_positives + counts.false_negatives == n_poison
    assert counts.n_removed == counts.false_positives + counts.true_positives
    assert counts.n_kept + counts.n_removed == len(pairs)


def test_removal_counts_validates():
    keep = np.array([True, False, True])
    with pytest.raises(TypeError, match="mask must be a bool array"):
        removal_counts(np.array([1, 0, 1]), [0])
    with pytest.raises(ValueError, match="mask must be a 1-d array"):
        removal_counts(np.ones((2, 2), dtype=bool), [0])
    with pytest.raises(ValueError, match=r"poison_indices must be in \[0, 3\), got 3"):
        removal_counts(keep, [0, 3])
    with pytest.raises(ValueError, match="poison_indices must be in"):
        removal_counts(keep, [-1])
    with pytest.raises(ValueError, match="poison_indices must be unique"):
        removal_counts(keep, [1, 1])
    with pytest.raises(ValueError, match="poison_indices must have the same length"):
        removal_counts(keep, np.array([True, False]))
    with pytest.raises(TypeError, match="poison_indices must be integer"):
        removal_counts(keep, [0.5])


# ---------------------------------------------------------------------------
# Mean of the last epochs
# ---------------------------------------------------------------------------


def test_mean_of_last_epochs_concrete():
    values = np.arange(20, dtype=float)
    assert mean_of_last_epochs(values) == 14.5
    assert mean_of_last_epochs([1.0, 2.0, 4.0], n_last=2) == 3.0
    np.testing.assert_allclose(
        mean_of_last_epochs([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]], n_last=2), [3.0, 4.0]
    )


@SETTINGS
@given(
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=30),
    st.integers(1, 30),
)
def test_mean_of_last_epochs_matches_loop(values, n_last):
    if n_last > len(values):
        with pytest.raises(ValueError, match="fewer than n_last"):
            mean_of_last_epochs(values, n_last=n_last)
        return
    tail = values[len(values) - n_last :]
    assert mean_of_last_epochs(values, n_last=n_last) == pytest.approx(
        sum(tail) / n_last, abs=1e-6
    )


def test_mean_of_last_epochs_validates():
    with pytest.raises(
        ValueError, match=r"'n_last' parameter .* int in the range \[1, inf\). Got 0 "
    ):
        mean_of_last_epochs([1.0], n_last=0)
    with pytest.raises(
        TypeError, match="'n_last' parameter of mean_of_last_epochs must be an int"
    ):
        mean_of_last_epochs([1.0], n_last=1.5)
