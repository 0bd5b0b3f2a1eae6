import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import FunctionTransformer

from sklearn_backdoor import (
    BackdoorWarning,
    IncompatibilityClustering,
    Pipeline,
    incompatibility,
)
from sklearn_backdoor.datasets import load_digits_images
from sklearn_backdoor.incompatibility import (
    in_core_sets,
    ispl_iterations,
    oversample_to_balance,
    trim_by_loss,
    vote_by_mode,
)
from sklearn_backdoor.metrics import removal_counts, targeted_misclassification_rate
from sklearn_backdoor.poisoning import PatchTrigger, dirty_label_backdoor
from sklearn_backdoor.pooling import block_mean
from sklearn_backdoor.training import predict_logits

TINY = {
    "n_components": 2,
    "n_bags": 1,
    "warmup_epochs": 1,
    "epochs_per_iteration": 1,
    "weak_learner_epochs": 2,
    "self_training_rounds": 2,
    "self_training_epochs": 1,
    "device": "cpu",
}


@pytest.mark.parametrize(
    ("target", "expected"), [(0.12, 5), (0.16, 5), (0.3, 5), (0.5, 4), (0.75, 3)]
)
def test_ispl_iterations_follow_the_reference_schedule(target, expected):
    assert ispl_iterations(target) == expected


def test_ispl_takes_the_whole_active_set_when_the_target_is_all_of_it():
    assert ispl_iterations(1.0) == 0


def test_trim_fraction_anneals_from_three_times_p_to_p():
    ic = IncompatibilityClustering()
    schedule = [ic._trim_fraction(t, 5, 0.12) for t in range(5)]
    np.testing.assert_allclose(schedule, [0.36, 0.24, 0.12, 0.12, 0.12])


@settings(max_examples=50, deadline=None)
@given(
    losses=arrays(np.float64, st.integers(4, 80), elements=st.floats(0, 10)),
    beta=st.floats(0.05, 1.0),
    class_floor=st.floats(0, 1),
    seed=st.integers(0, 2**16),
)
def test_trim_keeps_the_beta_quantile_and_a_floor_in_every_class(
    losses, beta, class_floor, seed
):
    labels = np.random.RandomState(seed).randint(0, 3, len(losses))
    keep = trim_by_loss(losses, labels, beta, class_floor)
    global_cut = np.quantile(losses, beta)
    assert keep[losses <= global_cut].all()
    for label in np.unique(labels):
        in_class = labels == label
        cut = np.quantile(losses[in_class], beta * class_floor)
        assert keep[in_class & (losses <= cut)].all()
        assert keep[in_class].any()
    dropped_losses = losses[~keep]
    assert (dropped_losses > global_cut).all()
    assert keep.sum() >= np.floor(beta * (len(losses) - 1)) + 1


@settings(max_examples=50, deadline=None)
@given(
    losses=arrays(np.float64, st.integers(4, 80), elements=st.floats(0, 10)),
    beta=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**16),
)
def test_trim_per_class_keeps_each_class_at_its_own_quantile(losses, beta, seed):
    labels = np.random.RandomState(seed).randint(0, 3, len(losses))
    keep = trim_by_loss(losses, labels, beta, 0.125, per_class=True)
    for label in np.unique(labels):
        in_class = labels == label
        cut = np.quantile(losses[in_class], beta)
        np.testing.assert_array_equal(keep[in_class], losses[in_class] <= cut)
        n_class = in_class.sum()
        assert keep[in_class].sum() >= np.floor(beta * (n_class - 1)) + 1


def test_trim_per_class_keeps_a_class_the_global_trim_drops():
    # Class 1 has every high loss: a global trim at 50% keeps only its
    # floor (the quantile 0 of the class, its lowest loss).
    losses = np.array([0.1, 0.2, 0.3, 0.4, 5.0, 6.0, 7.0, 8.0])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    globally = trim_by_loss(losses, labels, 0.5, 0.0)
    by_class = trim_by_loss(losses, labels, 0.5, 0.0, per_class=True)
    np.testing.assert_array_equal(globally, [1, 1, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(by_class, [1, 1, 0, 0, 1, 1, 0, 0])


@settings(max_examples=60, deadline=None)
@given(
    n_learners=st.integers(1, 9),
    n_samples=st.integers(1, 30),
    min_votes=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    some_abstain=st.booleans(),
)
def test_vote_by_mode_matches_brute_force_counting(
    n_learners, n_samples, min_votes, seed, some_abstain
):
    rng = np.random.RandomState(seed)
    votes = rng.randint(0, 3, (n_learners, n_samples))
    labels = rng.randint(0, 3, n_samples)
    eligible = np.ones(votes.shape, dtype=bool)
    if some_abstain:
        eligible = rng.rand(n_learners, n_samples) < 0.6
    keep, disagreement = vote_by_mode(
        votes, labels, min_votes, rng, eligible=eligible if some_abstain else None
    )
    for i in range(n_samples):
        counts = np.bincount(votes[eligible[:, i], i], minlength=3)
        top = counts.max()
        winners = set(np.flatnonzero(counts == top))
        if keep[i]:
            assert labels[i] in winners and top >= min_votes
        elif len(winners) == 1 and top >= min_votes:
            assert labels[i] not in winners
        n_voting = eligible[:, i].sum()
        expected = 1 - counts[labels[i]] / n_voting if n_voting else 1.0
        assert disagreement[i] == pytest.approx(expected)


def test_vote_by_mode_breaks_ties_at_random():
    votes = np.array([[0] * 400, [1] * 400])
    keep, _ = vote_by_mode(votes, np.zeros(400, dtype=int), 1, np.random.RandomState(0))
    assert 150 < keep.sum() < 250


def test_learners_do_not_vouch_for_their_own_core_sets():
    # Learners 0 and 4 fitted samples 0-1 (their core sets) and vouch for
    # their labels; of the others, two disagree there. Every label is 1.
    votes = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1], [1] * 4])
    labels = np.ones(4, dtype=int)
    cores = [np.array([0, 1]), np.array([2]), np.array([3]), np.array([], int)]
    member = in_core_sets([*cores, np.array([0, 1])], 4)
    everyone, _ = vote_by_mode(votes, labels, 1, np.random.RandomState(0))
    others, disagreement = vote_by_mode(
        votes, labels, 1, np.random.RandomState(0), eligible=~member
    )
    np.testing.assert_array_equal(everyone, [True, True, True, True])
    np.testing.assert_array_equal(others, [False, False, True, True])
    np.testing.assert_allclose(disagreement, [2 / 3, 2 / 3, 0.0, 0.0])


@settings(max_examples=40, deadline=None)
@given(
    labels=arrays(np.int64, st.integers(1, 60), elements=st.integers(0, 3)),
    seed=st.integers(0, 2**16),
)
def test_oversampling_balances_the_kept_classes_with_their_own_rows(labels, seed):
    rng = np.random.RandomState(seed)
    rows = np.flatnonzero(rng.rand(len(labels)) < 0.7)
    balanced = oversample_to_balance(rows, labels, rng)
    np.testing.assert_array_equal(balanced[: len(rows)], rows)
    assert set(balanced) == set(rows)
    _, counts = np.unique(labels[balanced], return_counts=True)
    assert len(set(counts)) <= 1
    if len(rows):
        assert counts.max() == np.unique(labels[rows], return_counts=True)[1].max()


def test_balanced_self_training_trains_on_equal_classes(monkeypatch):
    # 150 dark images of class 0, 50 bright ones of class 1: easy to learn.
    y = np.where(np.arange(200) < 150, 0, 1)
    X = (
        np.random.RandomState(0).randint(0, 100, (200, 8, 8, 1))
        + 155 * y[:, None, None, None]
    )
    X = X.astype(np.uint8)
    seen = []
    ic = IncompatibilityClustering(
        random_state=0,
        balanced_self_training=True,
        **{**TINY, "trim_per_class": True},
    )
    original = incompatibility.train_net

    def recording_train_net(net, X_t, y_t, **kwargs):
        seen.append(np.bincount(y_t.cpu().numpy(), minlength=2))
        return original(net, X_t, y_t, **kwargs)

    monkeypatch.setattr(incompatibility, "train_net", recording_train_net)
    ic.fit(X, y)
    self_training = seen[-TINY["self_training_rounds"] :]
    assert all(counts[0] == counts[1] > 0 for counts in self_training)


def test_in_core_sets_marks_membership():
    member = in_core_sets([np.array([0, 2]), np.array([1])], 4)
    np.testing.assert_array_equal(
        member, [[True, False, True, False], [False, True, False, False]]
    )


def test_not_voting_on_own_core_needs_two_core_sets():
    X, y = _small_images()
    ic = IncompatibilityClustering(
        n_components=1, vote_on_own_core=False, n_bags=1, device="cpu"
    )
    with pytest.raises(ValueError, match="n_components=1"):
        ic.fit(X, y)


def _small_images(n=160, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randint(0, 256, (n, 8, 8, 1)).astype(np.uint8)
    y = rng.randint(0, 3, n)
    return X, y


def test_fit_exposes_the_documented_attributes():
    X, y = _small_images()
    ic = IncompatibilityClustering(random_state=0, **TINY).fit(X, y)
    assert ic.mask_.dtype == bool and ic.mask_.shape == (160,)
    np.testing.assert_array_equal(ic.sample_indices_, np.flatnonzero(ic.mask_))
    assert ic.scores_.shape == (160,)
    assert ((ic.scores_ >= 0) & (ic.scores_ <= 1)).all()
    assert ic.votes_.shape == (2, 160)
    assert set(np.unique(ic.votes_)) <= set(ic.classes_)
    assert len(ic.components_) == len(ic.weak_learners_) == 2
    assert np.intersect1d(ic.components_[0], ic.components_[1]).size == 0
    np.testing.assert_array_equal(ic.component_bags_, [0, 0])
    assert ic.n_features_in_ == 64
    assert ic.self_training_correctness_.shape == (160,)


def test_components_cover_the_target_fraction_of_the_data():
    X, y = _small_images(400)
    ic = IncompatibilityClustering(
        random_state=0, **{**TINY, "n_components": 4, "component_fraction": 0.2}
    ).fit(X, y)
    sizes = [len(c) for c in ic.components_]
    assert all(70 <= size <= 130 for size in sizes), sizes


def test_same_random_state_gives_the_same_decision_and_input_is_untouched():
    X, y = _small_images()
    X_before, y_before = X.copy(), y.copy()
    first = IncompatibilityClustering(random_state=3, **TINY).fit(X, y)
    second = IncompatibilityClustering(random_state=3, **TINY).fit(X, y)
    np.testing.assert_array_equal(first.mask_, second.mask_)
    np.testing.assert_array_equal(first.votes_, second.votes_)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(y, y_before)


def test_parallel_bags_give_the_same_result_as_sequential_ones():
    X, y = _small_images()
    params = {**TINY, "n_bags": 2, "self_training": False}
    sequential = IncompatibilityClustering(random_state=1, n_jobs=1, **params)
    parallel = IncompatibilityClustering(random_state=1, n_jobs=2, **params)
    np.testing.assert_array_equal(
        sequential.fit(X, y).votes_, parallel.fit(X, y).votes_
    )


def test_phase_and_component_seconds_account_for_the_fit():
    X, y = _small_images()
    params = {**TINY, "n_bags": 2}
    ic = IncompatibilityClustering(random_state=0, n_jobs=1, **params).fit(X, y)
    assert set(ic.phase_seconds_) == {"clustering", "voting", "self_training"}
    assert all(seconds > 0 for seconds in ic.phase_seconds_.values())
    assert ic.component_seconds_.shape == (len(ic.components_), 2)
    assert (ic.component_seconds_ > 0).all()
    # Sequential bags: the components are timed inside the clustering phase.
    assert ic.component_seconds_.sum() <= ic.phase_seconds_["clustering"]


def test_without_self_training_its_phase_takes_no_time_to_speak_of():
    X, y = _small_images()
    params = {**TINY, "self_training": False}
    ic = IncompatibilityClustering(random_state=0, **params).fit(X, y)
    assert ic.phase_seconds_["self_training"] < 0.01
    assert ic.self_training_correctness_ is None


def test_transform_returns_the_mask_only_for_the_fit_data():
    X, y = _small_images()
    ic = IncompatibilityClustering(random_state=0, **TINY).fit(X, y)
    np.testing.assert_array_equal(ic.transform(X), ic.mask_)
    other = X.copy()
    other[0, 0, 0, 0] ^= 1
    with pytest.raises(ValueError, match="only accepts the data seen in fit"):
        ic.transform(other)


def test_string_labels_are_kept_in_their_own_label_space():
    X, y = _small_images()
    names = np.array(["cat", "dog", "emu"])[y]
    ic = IncompatibilityClustering(random_state=0, **TINY).fit(X, names)
    np.testing.assert_array_equal(ic.classes_, ["cat", "dog", "emu"])
    assert set(np.unique(ic.votes_)) <= {"cat", "dog", "emu"}


def test_tiny_data_sets_warn_instead_of_silently_doing_nothing():
    X, y = _small_images(12)
    with pytest.warns(BackdoorWarning, match="ISPL stopped after"):
        ic = IncompatibilityClustering(
            random_state=0, **{**TINY, "n_components": 8, "component_fraction": 0.5}
        ).fit(X, y)
    assert 1 <= len(ic.components_) < 8


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_components": 0}, "n_components"),
        ({"expansion": 1.5}, "expansion"),
        ({"net": "resnet9000"}, "net"),
        ({"component_fraction": 0.0}, "component_fraction"),
        ({"vote_rounds": 0}, "vote_rounds"),
        ({"later_vote_trim": 1.0}, "later_vote_trim"),
        ({"self_training_on_vote": "yes"}, "self_training_on_vote"),
    ],
)
def test_invalid_parameters_are_named(params, match):
    X, y = _small_images(20)
    with pytest.raises(ValueError, match=match):
        IncompatibilityClustering(**params).fit(X, y)


def test_single_class_is_rejected():
    X, _ = _small_images(20)
    with pytest.raises(ValueError, match="at least 2 classes"):
        IncompatibilityClustering(**TINY).fit(X, np.zeros(20, dtype=int))


CORNER_TRIGGER = PatchTrigger(pixels=((0, 0), (0, 1), (1, 0)), color=255)


def _flatten(X):
    return X.reshape(len(X), -1) / 255.0


def _linear_model():
    return Pipeline(
        [
            ("flatten", FunctionTransformer(_flatten)),
            ("clf", LogisticRegression(max_iter=2000)),
        ]
    )


def _tmr(model, X_test, y_test, source):
    rows = y_test == source
    return targeted_misclassification_rate(
        y_test[rows],
        model.predict(X_test[rows]),
        model.predict(CORNER_TRIGGER.apply(X_test[rows])),
    )


@pytest.mark.slow
@pytest.mark.parametrize("poison_fraction", [0.05, 0.2])
def test_ispl_b_removes_a_digits_backdoor(poison_fraction):
    """The issue's acceptance run: defaults, random_state=0, on a CPU."""
    X, y = load_digits_images()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=0
    )
    poisoned = dirty_label_backdoor(
        X_train,
        y_train,
        CORNER_TRIGGER,
        source=0,
        target=7,
        poison_fraction=poison_fraction,
        random_state=0,
    )
    undefended = _linear_model().fit(poisoned.X, poisoned.y)
    defended = Pipeline(
        [
            ("clean", IncompatibilityClustering(random_state=0)),
            ("model", _linear_model()),
        ]
    ).fit(poisoned.X, poisoned.y)

    counts = removal_counts(
        defended.named_steps["clean"].mask_, poisoned.poison_indices
    )
    n_poison = len(poisoned.poison_indices)
    n_clean = len(poisoned.y) - n_poison
    assert counts.true_positives >= 0.9 * n_poison
    assert counts.true_negatives >= 0.85 * n_clean
    assert _tmr(undefended, X_test, y_test, source=0) > 0.8
    assert _tmr(defended, X_test, y_test, source=0) < 0.05


def test_keeping_nothing_warns():
    X, y = _small_images(40)
    ic = IncompatibilityClustering(random_state=0, **TINY)
    with pytest.warns(BackdoorWarning, match="kept none of the 40 samples"):
        ic._store_decision(np.zeros(40, dtype=bool), None)


def _recording_weak_learner_training(monkeypatch, method="_train_weak_learner"):
    """Record the images and labels of every ``train_net`` call made inside
    ``IncompatibilityClustering.<method>`` (by default the weak learners')."""
    epochs, inside = [], []
    original_train = incompatibility.train_net
    original_weak = getattr(IncompatibilityClustering, method)

    def recording_train_net(net, X_t, y_t, **kwargs):
        if inside:
            epochs.append((X_t.cpu().numpy(), y_t.cpu().numpy()))
        return original_train(net, X_t, y_t, **kwargs)

    def marking_weak_learner(self, *args, **kwargs):
        inside.append(True)
        try:
            return original_weak(self, *args, **kwargs)
        finally:
            inside.pop()

    monkeypatch.setattr(incompatibility, "train_net", recording_train_net)
    monkeypatch.setattr(IncompatibilityClustering, method, marking_weak_learner)
    return epochs


def _dark_and_bright_with_mislabelled(n=240, n_wrong=12, seed=0):
    """Dark images are class 0, bright ones class 1; ``n_wrong`` dark images
    labelled 1 have a pixel of 255 at the top left (every other pixel is at
    most 249), so they can be told apart after standardisation."""
    rng = np.random.RandomState(seed)
    y = np.arange(n) % 2
    X = rng.randint(0, 60, (n, 8, 8, 1)) + 190 * y[:, None, None, None]
    wrong = np.flatnonzero(y == 0)[:n_wrong]
    y = y.copy()
    y[wrong] = 1
    X[wrong, 0, 0, 0] = 255
    return X.astype(np.uint8), y


def _weak_learner_epochs_on_everything(monkeypatch, epochs, trim):
    """The recorded epochs of one weak learner whose core set is the whole
    mislabelled data set (``_dark_and_bright_with_mislabelled``)."""
    X, y = _dark_and_bright_with_mislabelled()
    recorded = _recording_weak_learner_training(monkeypatch)
    params = {**TINY, "n_components": 1, "weak_learner_epochs": epochs}
    params["component_fraction"] = 1.0  # the core set is the whole data set
    IncompatibilityClustering(
        random_state=0, self_training=False, weak_learner_trim=trim, **params
    ).fit(X, y)
    return recorded


def _mislabelled_per_epoch(epochs):
    """How many of the marked (mislabelled) images each recorded epoch saw;
    the first epoch must hold them all."""
    marked = epochs[0][0][:, 0, 0, 0].max()
    return [int((images[:, 0, 0, 0] == marked).sum()) for images, _ in epochs]


def test_weak_learner_trim_trains_later_epochs_on_each_class_low_loss_share(
    monkeypatch,
):
    epochs = _weak_learner_epochs_on_everything(monkeypatch, epochs=4, trim=0.25)
    assert len(epochs) == 4
    first = np.bincount(epochs[0][1], minlength=2)
    for _, labels in epochs[1:]:
        counts = np.bincount(labels, minlength=2)
        assert ((counts >= 0.7 * first) & (counts <= 0.8 * first)).all()


def test_weak_learner_trim_leaves_out_mislabelled_images(monkeypatch):
    epochs = _weak_learner_epochs_on_everything(monkeypatch, epochs=6, trim=0.25)
    wrong_in = _mislabelled_per_epoch(epochs)
    assert wrong_in[0] == 12
    assert wrong_in[-1] == 0, wrong_in


def test_no_weak_learner_trim_trains_on_the_whole_core_set(monkeypatch):
    X, y = _dark_and_bright_with_mislabelled()
    epochs = _recording_weak_learner_training(monkeypatch)
    ic = IncompatibilityClustering(
        random_state=0, self_training=False, **{**TINY, "n_components": 1}
    ).fit(X, y)
    assert len(epochs) == 1
    assert len(epochs[0][1]) == len(ic.components_[0])


def test_self_training_trim_leaves_out_mislabelled_images(monkeypatch):
    X, y = _dark_and_bright_with_mislabelled()
    epochs = _recording_weak_learner_training(monkeypatch, method="_self_train")
    ic = IncompatibilityClustering(random_state=0, self_training_trim=0.25, **TINY)
    ic._initial_correctness = lambda keep, y: np.ones(len(y))  # start from all
    monkeypatch.setattr(
        incompatibility,
        "vote_by_mode",
        lambda votes, labels, *a, **k: (
            np.ones(len(labels), dtype=bool),
            np.zeros(len(labels)),
        ),
    )
    ic.set_params(self_training_rounds=3, self_training_epochs=2).fit(X, y)
    wrong_in = _mislabelled_per_epoch(epochs)
    assert len(epochs) == 6
    assert wrong_in[0] == 12
    assert wrong_in[-1] == 0, wrong_in


@pytest.mark.parametrize(
    "trim_rounds, expected",
    [
        (None, [0.3, 0.3, 0.3, 0.3]),
        (2, [0.3, 0.15, 0.0, 0.0]),
        (4, [0.3, 0.225, 0.15, 0.075]),
    ],
)
def test_self_training_trim_falls_linearly_over_trim_rounds(
    monkeypatch, trim_rounds, expected
):
    trims = []
    original = IncompatibilityClustering._train_trimmed

    def recording(self, *args, trim, **kwargs):
        trims.append(trim)
        return original(self, *args, trim=trim, **kwargs)

    monkeypatch.setattr(IncompatibilityClustering, "_train_trimmed", recording)
    X, y = _dark_and_bright_with_mislabelled()
    ic = IncompatibilityClustering(
        random_state=0,
        self_training_trim=0.3,
        self_training_trim_rounds=trim_rounds,
        **{**TINY, "self_training_rounds": 4},
    ).fit(X, y)
    n_learners = len(ic.weak_learners_)
    assert trims[:n_learners] == [0.0] * n_learners  # the weak learners'
    np.testing.assert_allclose(trims[n_learners:], expected)


def test_self_training_folds_judge_each_fold_by_a_network_not_trained_on_it(
    monkeypatch,
):
    calls, assigned = [], []
    original_round = IncompatibilityClustering._self_training_round
    original_folds = IncompatibilityClustering._self_training_folds_of

    def recording_round(self, net, X_t, y_t, y, training, *args):
        calls.append(training.copy())
        return original_round(self, net, X_t, y_t, y, training, *args)

    def recording_folds(self, y, rng):
        assigned.append(original_folds(self, y, rng))
        return assigned[-1]

    monkeypatch.setattr(
        IncompatibilityClustering, "_self_training_round", recording_round
    )
    monkeypatch.setattr(
        IncompatibilityClustering, "_self_training_folds_of", recording_folds
    )
    X, y = _dark_and_bright_with_mislabelled()
    IncompatibilityClustering(
        random_state=0, self_training_folds=3, **{**TINY, "self_training_rounds": 2}
    ).fit(X, y)
    (folds,) = assigned
    for label in (0, 1):  # the folds keep the class proportions
        sizes = np.bincount(folds[y == label], minlength=3)
        assert sizes.max() - sizes.min() <= 1
    assert len(calls) == 2 * 3
    for index, training in enumerate(calls):
        fold = index % 3
        assert training.any()
        assert not (training & (folds == fold)).any()


def test_later_votes_retrain_each_learner_on_what_the_previous_vote_kept(
    monkeypatch,
):
    trained = []
    original = IncompatibilityClustering._train_weak_learner

    def recording(self, X_t, y_t, y, core, *args):
        trained.append(np.array(core))
        return original(self, X_t, y_t, y, core, *args)

    monkeypatch.setattr(IncompatibilityClustering, "_train_weak_learner", recording)
    X, y = _dark_and_bright_with_mislabelled()
    ic = IncompatibilityClustering(
        random_state=0, self_training=False, vote_rounds=3, **TINY
    ).fit(X, y)
    assert len(trained) == 3 * 2 and len(ic.boosting_masks_) == 3
    for vote, kept in enumerate(ic.boosting_masks_[:-1]):
        for index, core in enumerate(ic.components_):
            rows = trained[2 * (vote + 1) + index]
            np.testing.assert_array_equal(rows, core[kept[core]])
    assert ic.boosting_masks_[0].sum() < len(y)  # the later votes had less to see
    np.testing.assert_array_equal(ic.boosting_mask_, ic.boosting_masks_[-1])
    np.testing.assert_array_equal(ic.mask_, ic.boosting_mask_)
    assert ic.votes_.shape == (2, len(y))


@pytest.mark.parametrize(
    ("later_vote_trim", "later_calls"),
    [(None, [1, 1, 1]), (0.0, [3])],  # trimmed: one call per epoch
)
def test_later_vote_trim_sets_the_trim_of_the_retrained_learners(
    monkeypatch, later_vote_trim, later_calls
):
    X, y = _dark_and_bright_with_mislabelled()
    epochs = []
    original_train = incompatibility.train_net

    def recording_train_net(net, X_t, y_t, *, epochs=1, **kwargs):
        calls.append(epochs)
        return original_train(net, X_t, y_t, epochs=epochs, **kwargs)

    calls = []
    original_weak = IncompatibilityClustering._train_weak_learner

    def one_learner(self, *args, **kwargs):
        calls.clear()
        try:
            return original_weak(self, *args, **kwargs)
        finally:
            epochs.append(list(calls))

    monkeypatch.setattr(incompatibility, "train_net", recording_train_net)
    monkeypatch.setattr(IncompatibilityClustering, "_train_weak_learner", one_learner)
    params = {**TINY, "n_components": 1, "weak_learner_epochs": 3}
    IncompatibilityClustering(
        random_state=0,
        self_training=False,
        weak_learner_trim=0.25,
        vote_rounds=2,
        later_vote_trim=later_vote_trim,
        **params,
    ).fit(X, y)
    first, later = epochs
    assert first == [1, 1, 1]
    assert later == later_calls


def test_one_vote_round_is_the_papers_single_vote():
    X, y = _small_images()
    ic = IncompatibilityClustering(random_state=0, **TINY).fit(X, y)
    assert len(ic.boosting_masks_) == 1
    assert ic.boosting_masks_[0] is ic.boosting_mask_


def test_self_training_trim_first_epoch_leaves_out_what_the_vote_disputes(
    monkeypatch,
):
    X, y = _dark_and_bright_with_mislabelled()
    wrong = X[:, 0, 0, 0] == 255
    epochs = _recording_weak_learner_training(monkeypatch, method="_self_train")
    monkeypatch.setattr(
        incompatibility,
        "vote_by_mode",
        lambda votes, labels, *a, **k: (
            np.ones(len(labels), dtype=bool),
            wrong.astype(float),  # every learner disputes the mislabelled
        ),
    )
    ic = IncompatibilityClustering(random_state=0, self_training_trim=0.25, **TINY)
    ic.set_params(self_training_rounds=1, self_training_epochs=1).fit(X, y)
    ((images, labels),) = epochs
    assert len(labels) == len(y) - wrong.sum()
    assert np.bincount(labels).tolist() == [120 - 12, 120]


@pytest.mark.parametrize("on_vote", [False, True])
def test_self_training_on_vote_never_trains_on_what_the_vote_rejected(
    monkeypatch, on_vote
):
    calls = []
    original_round = IncompatibilityClustering._self_training_round

    def recording_round(self, net, X_t, y_t, y, training, *args):
        calls.append(training.copy())
        return original_round(self, net, X_t, y_t, y, training, *args)

    monkeypatch.setattr(
        IncompatibilityClustering, "_self_training_round", recording_round
    )
    X, y = _dark_and_bright_with_mislabelled()
    ic = IncompatibilityClustering(
        random_state=0,
        self_training_on_vote=on_vote,
        **{**TINY, "self_training_rounds": 4},
    ).fit(X, y)
    rejected = ~ic.boosting_mask_
    assert rejected.any()
    readmitted = rejected & ic.mask_
    assert len(calls) == 4
    trained_on_rejected = [bool((training & rejected).any()) for training in calls]
    if on_vote:
        assert not any(trained_on_rejected)
    else:  # the paper's self-training trains on what it re-admitted
        assert readmitted.any() and any(trained_on_rejected)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"weak_learner_pooling": 3}, "weak_learner_pooling=3 must divide"),
        ({"self_training_pooling": 3}, "self_training_pooling=3 must divide"),
        ({"weak_learner_pooling": 0}, "weak_learner_pooling"),
    ],
)
def test_pooling_that_does_not_fit_the_images_is_refused(params, match):
    X, y = _small_images(20)
    with pytest.raises(ValueError, match=match):
        IncompatibilityClustering(**params, **TINY).fit(X, y)


def test_pooling_of_flat_features_is_refused():
    X, y = _small_images(20)
    with pytest.raises(ValueError, match="weak_learner_pooling=2 needs images"):
        IncompatibilityClustering(weak_learner_pooling=2, **TINY).fit(
            X.reshape(20, -1), y
        )


@pytest.mark.parametrize(
    ("method", "size"), [("_train_weak_learner", 4), ("_self_train", 2)]
)
def test_weak_learners_and_self_training_see_block_means(monkeypatch, method, size):
    X, y = _dark_and_bright_with_mislabelled()
    epochs = _recording_weak_learner_training(monkeypatch, method=method)
    before = X.copy()
    IncompatibilityClustering(
        random_state=0, weak_learner_pooling=4, self_training_pooling=2, **TINY
    ).fit(X, y)
    np.testing.assert_array_equal(X, before)
    assert epochs
    for images, _ in epochs:
        blocks = images.reshape(len(images), 1, 8 // size, size, 8 // size, size)
        spread = blocks.max(axis=(3, 5)) - blocks.min(axis=(3, 5))
        assert spread.max() == 0.0  # constant on every size x size block
    twice = 2 * size  # and not on larger blocks: no more pooled than asked
    images = np.concatenate([images for images, _ in epochs])
    blocks = images.reshape(len(images), 1, 8 // twice, twice, 8 // twice, twice)
    assert (blocks.max(axis=(3, 5)) - blocks.min(axis=(3, 5))).max() > 0


def test_ispl_sees_the_images_at_full_resolution(monkeypatch):
    X, y = _dark_and_bright_with_mislabelled()
    epochs = _recording_weak_learner_training(monkeypatch, method="_grow_core_set")
    IncompatibilityClustering(
        random_state=0, weak_learner_pooling=4, self_training=False, **TINY
    ).fit(X, y)
    images = np.concatenate([images for images, _ in epochs])
    blocks = images.reshape(len(images), 1, 4, 2, 4, 2)
    assert (blocks.max(axis=(3, 5)) - blocks.min(axis=(3, 5))).max() > 0


def test_votes_are_the_weak_learners_predictions_on_block_means():
    X, y = _dark_and_bright_with_mislabelled()
    ic = IncompatibilityClustering(
        random_state=0,
        weak_learner_pooling=2,
        self_training=False,
        augment_scoring=False,
        **TINY,
    ).fit(X, y)
    pooled = block_mean(ic._new_data_tensor(X), 2)
    for net, votes in zip(ic.weak_learners_, ic.votes_, strict=True):
        predicted = ic.classes_[predict_logits(net, pooled).argmax(dim=1).numpy()]
        np.testing.assert_array_equal(predicted, votes)
