import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sklearn_backdoor import IncompatibilityClustering
from sklearn_backdoor.patch_check import (
    class_medians,
    deviation_ratio,
    lowest_label_readings,
    patch_carriers,
    patch_groups,
)
from sklearn_backdoor.training import FastNeuralNetClassifier


class TriggerReader(torch.nn.Module):
    """Reads class 1 when the top-left 2x2 patch is bright, else class 0."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))  # for the optimiser

    def forward(self, x):
        corner = 10 * (x[:, :, :2, :2].mean(dim=(1, 2, 3)) - 0.5)
        return torch.stack([-corner, corner], dim=1)


def _trigger_reader():
    return FastNeuralNetClassifier(TriggerReader, device="cpu").initialize()


def test_class_medians_are_numpys_medians_of_the_kept_samples_of_each_class():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 2, 4, 4)).astype(np.float32)
    labels = rng.randint(0, 3, 30)
    keep = rng.rand(30) < 0.7
    medians = class_medians(torch.from_numpy(X), labels, keep, 4).numpy()
    for label in range(3):
        expected = np.median(X[keep & (labels == label)], axis=0)
        np.testing.assert_allclose(medians[label], expected, rtol=1e-6)
    assert (medians[3] == 0).all()  # no sample of class 3


def test_a_sample_whose_label_rests_on_the_patch_is_read_as_the_other_class():
    """Class 1's median has a dark corner; a class-1 sample with a bright one
    is read as 0 once its corner is replaced, at the corner."""
    X = torch.zeros(4, 1, 6, 6)
    X[0, :, :2, :2] = 1.0  # a "triggered" sample labelled 1
    labels = np.array([1, 1, 1, 0])
    medians = class_medians(X, labels, np.ones(4, dtype=bool), 2)
    lowest, positions, read_as = lowest_label_readings(
        _trigger_reader(), X, labels, medians, 2
    )
    assert lowest[0] < 0.01 and read_as[0] == 0
    assert tuple(positions[0]) == (0, 0)
    # The others already read as their median does: nothing lowers their label.
    assert (read_as[1:] == -1).all() and (positions[1:] == -1).all()


def test_reading_leaves_the_samples_as_they_were():
    X = torch.rand(5, 1, 6, 6)
    before = X.clone()
    labels = np.array([0, 1, 0, 1, 1])
    medians = class_medians(X, labels, np.ones(5, dtype=bool), 2)
    lowest_label_readings(_trigger_reader(), X, labels, medians, 3)
    assert torch.equal(X, before)


def _grouped_samples(n_class=40, n_trigger=10, n_style=10):
    """Class 0 of ``n_class`` images with a stroke at (3, 3) of every
    strength from 0.5 to 1; ``n_trigger`` of them are bright in the top-left
    corner, where the rest are dark. The triggered ones and ``n_style``
    others flipped (to class 1), at the corner and at the stroke."""
    X = torch.zeros(n_class, 1, 8, 8)
    order = torch.randperm(n_class, generator=torch.Generator().manual_seed(0))
    strength = torch.linspace(0.5, 1.0, n_class)[order]
    X[:, :, 3:5, 3:5] = strength.reshape(-1, 1, 1, 1)
    X[:n_trigger, :, :2, :2] = 1.0
    style = slice(n_trigger, n_trigger + n_style)
    labels = np.zeros(n_class, dtype=int)
    keep = np.ones(n_class, dtype=bool)
    lowest = np.full(n_class, 0.9)
    positions = np.full((n_class, 2), -1)
    read_as = np.full(n_class, -1)
    lowest[: n_trigger + n_style] = 0.1
    read_as[: n_trigger + n_style] = 1
    positions[:n_trigger] = (0, 0)
    positions[style] = (3, 3)
    medians = class_medians(X, labels, keep, 2)
    return X, labels, keep, (lowest, positions, read_as), medians


def _groups(X, labels, keep, readings, medians, **thresholds):
    thresholds = {
        "min_carriers": 8,
        "min_deviation": 5.0,
        "tolerance": 0.05,
        **thresholds,
    }
    return patch_groups(X, labels, keep, readings, medians, 2, **thresholds)


def test_a_group_far_from_its_class_at_its_patch_is_removed_and_a_near_one_is_not():
    X, labels, keep, readings, medians = _grouped_samples()
    groups = _groups(X, labels, keep, readings, medians)
    assert [(g.row, g.col, len(g.members)) for g in groups] == [(0, 0, 10), (3, 3, 10)]
    trigger, style = groups
    np.testing.assert_array_equal(trigger.members, np.arange(10))
    assert trigger.deviation_ratio == np.inf and trigger.carriers == 10
    assert trigger.removed and trigger.read_as == 1
    # The flipped strokes are as far from the median as the class's others.
    assert style.deviation_ratio < 5.0 and not style.removed


def test_a_group_under_min_carriers_or_min_deviation_stays():
    X, labels, keep, readings, medians = _grouped_samples(n_trigger=7, n_style=0)
    kept_all = _groups(X, labels, keep, readings, medians)
    assert len(kept_all) == 1 and kept_all[0].carriers == 7
    assert not kept_all[0].removed
    removed = _groups(X, labels, keep, readings, medians, min_carriers=7)
    assert removed[0].removed
    strict = _groups(
        X, labels, keep, readings, medians, min_carriers=7, min_deviation=1e9
    )
    assert strict[0].removed  # an infinite ratio meets any threshold


def test_one_kept_sample_is_removed_when_removed_samples_carry_its_patch():
    """The vote removed nine of ten triggered samples; the tenth flips alone,
    and the nine still count as carriers of its patch."""
    X, labels, keep, readings, medians = _grouped_samples(n_style=0)
    keep = keep.copy()
    keep[1:10] = False
    (group,) = _groups(X, labels, keep, readings, medians)
    np.testing.assert_array_equal(group.members, [0])
    assert group.carriers == 10 and group.removed


def test_flipped_samples_with_different_patches_are_not_carriers_of_one_another():
    """Ten samples bright in the corner, each in its own way: far from the
    class, but no copy of one patch."""
    X, labels, keep, readings, medians = _grouped_samples(n_style=0)
    X = X.clone()
    X[:10, :, :2, :2] = torch.linspace(0.1, 1.0, 10).reshape(-1, 1, 1, 1)
    (group,) = _groups(X, labels, keep, readings, medians)
    assert group.deviation_ratio == np.inf
    assert group.carriers == 1 and not group.removed


def test_patch_carriers_counts_the_samples_within_tolerance_of_the_best_member():
    patches = torch.tensor([[0.0], [1.0], [1.0], [1.05], [1.2], [3.0]]).reshape(
        6, 1, 1, 1
    )
    median = torch.zeros(1, 1, 1)
    rows = np.arange(6)
    # Members 1, 4 and 5 are 1.0, 1.2 and 3.0 from the median (median 1.2):
    # within 0.1 * 1.2 of patch 1 lie 1, 2 and 3 (and not 4, 0.2 away).
    assert patch_carriers(patches, np.array([1, 4, 5]), rows, median, 0.1) == 3
    assert patch_carriers(patches, np.array([5]), rows, median, 0.1) == 1
    assert patch_carriers(patches, np.array([1, 4, 5]), rows, median, 1.0) == 5


def test_samples_not_kept_are_never_grouped():
    X, labels, keep, readings, medians = _grouped_samples()
    keep = keep.copy()
    keep[:10] = False
    groups = _groups(X, labels, keep, readings, medians, min_carriers=1)
    assert all(not np.isin(np.arange(10), g.members).any() for g in groups)


def test_deviation_ratio_of_patches_equal_to_the_median():
    X = torch.zeros(6, 1, 4, 4)
    median = torch.zeros(1, 4, 4)
    assert deviation_ratio(X, np.arange(3), np.arange(3, 6), median, 0, 0, 2) == 0.0
    X[:3, :, :2, :2] = 1.0
    assert deviation_ratio(X, np.arange(3), np.arange(3, 6), median, 0, 0, 2) == np.inf
    X[3:, :, :2, :2] = 0.5
    ratio = deviation_ratio(X, np.arange(3), np.arange(3, 6), median, 0, 0, 2)
    assert ratio == pytest.approx(2.0)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    min_carriers=st.integers(1, 6),
    min_deviation=st.floats(0, 10),
    tolerance=st.floats(0, 2),
)
def test_removed_groups_meet_both_thresholds_and_hold_only_flipped_kept_samples(
    seed, min_carriers, min_deviation, tolerance
):
    rng = np.random.RandomState(seed)
    n = 40
    X = torch.from_numpy(rng.rand(n, 1, 5, 5).astype(np.float32))
    labels = rng.randint(0, 3, n)
    keep = rng.rand(n) < 0.8
    lowest = rng.rand(n)
    read_as = rng.randint(-1, 3, n)
    positions = rng.randint(0, 2, (n, 2))
    medians = class_medians(X, labels, keep, 3)
    groups = patch_groups(
        X,
        labels,
        keep,
        (lowest, positions, read_as),
        medians,
        2,
        min_carriers=min_carriers,
        min_deviation=min_deviation,
        tolerance=tolerance,
    )
    members = np.concatenate([g.members for g in groups] or [np.array([], int)])
    assert len(members) == len(np.unique(members))  # disjoint
    flipped = keep & (lowest < 0.5) & (read_as != labels) & (read_as >= 0)
    np.testing.assert_array_equal(np.sort(members), np.flatnonzero(flipped))
    for g in groups:
        assert (labels[g.members] == g.label).all()
        assert (positions[g.members] == (g.row, g.col)).all()
        # A member carries its own patch; only samples of its label count.
        assert 1 <= g.carriers <= (labels == g.label).sum()
        assert g.removed == (
            g.carriers >= min_carriers and g.deviation_ratio >= min_deviation
        )


def _small_images(n=120, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 2, n)
    X = (rng.rand(n, 8, 8, 1) * 60).astype(np.uint8)
    X[y == 1, 2:6, 4:8] += 150
    X[y == 0, 2:6, 0:4] += 150
    poison = np.flatnonzero(y == 0)[:12]
    X[poison, :2, :2] = 255
    y = y.copy()
    y[poison] = 1
    return X, y


FAST = dict(
    n_components=2,
    n_bags=1,
    warmup_epochs=1,
    epochs_per_iteration=1,
    weak_learner_epochs=2,
    self_training_rounds=2,
    self_training_epochs=2,
    random_state=0,
    device="cpu",
)


def test_the_check_only_removes_what_self_training_kept():
    X, y = _small_images()
    plain = IncompatibilityClustering(**FAST).fit(X, y)
    checked = IncompatibilityClustering(
        patch_check=2, patch_check_min_carriers=1, **FAST
    )
    checked.fit(X, y)
    removed = np.zeros(len(y), dtype=bool)
    for group in checked.patch_groups_:
        if group.removed:
            removed[group.members] = True
    np.testing.assert_array_equal(checked.mask_, plain.mask_ & ~removed)
    assert plain.patch_groups_ is None
    assert "patch_check" in checked.phase_seconds_


@pytest.mark.parametrize(
    "params, X_shape, message",
    [
        ({"self_training": False}, (40, 8, 8, 1), "self_training=True"),
        ({}, (40, 64), "needs images"),
        ({"patch_check": 9}, (40, 8, 8, 1), "larger than the images"),
    ],
)
def test_patch_check_refuses_what_it_cannot_do(params, X_shape, message):
    rng = np.random.RandomState(0)
    X = rng.rand(*X_shape).astype(np.float32)
    y = np.arange(40) % 2
    est = IncompatibilityClustering(**{**FAST, "patch_check": 2, **params})
    with pytest.raises(ValueError, match="patch_check") as info:
        est.fit(X, y)
    assert message in str(info.value)


def test_class_medians_taken_a_slice_of_pixels_at_a_time_are_the_same(monkeypatch):
    rng = np.random.RandomState(1)
    X = torch.from_numpy(rng.normal(size=(25, 3, 4, 4)).astype(np.float32))
    labels = np.arange(25) % 2
    keep = np.ones(25, dtype=bool)
    whole = class_medians(X, labels, keep, 2)
    monkeypatch.setattr("sklearn_backdoor.patch_check.QUANTILE_MAX_ELEMENTS", 40)
    np.testing.assert_array_equal(class_medians(X, labels, keep, 2), whole)


def test_nothing_is_checked_when_self_training_left_no_network():
    est = IncompatibilityClustering(patch_check=2)
    est.final_net_ = None
    keep = np.array([True, False, True])
    kept = est._check_patches(torch.zeros(3, 1, 4, 4), np.zeros(3, dtype=int), keep)
    np.testing.assert_array_equal(kept, keep)
    assert est.patch_groups_ == []
