import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sklearn_backdoor.poisoning import (
    BackdoorScenario,
    BlendTrigger,
    CompositeTrigger,
    PatchTrigger,
    PoisonedDataset,
    apply_trigger,
    checkerboard_trigger,
    dirty_label_backdoor,
    ell_trigger,
    label_flip_backdoor,
    make_trigger,
    noise_blend_trigger,
    pattern_trigger,
    pixel_trigger,
    reference_scenarios,
    systematic_label_flip,
    watermark_trigger,
)

SETTINGS = settings(max_examples=40, deadline=None)
REFERENCE_PAIRS = [(0, 2), (1, 3), (3, 5), (7, 4), (2, 5), (8, 6), (9, 2), (3, 7)]


def balanced_data(n_classes=4, per_class=20, shape=(6, 6, 3), dtype=np.uint8):
    X = np.zeros((n_classes * per_class, *shape), dtype=dtype)
    y = np.repeat(np.arange(n_classes), per_class)
    return X, y


# ---------------------------------------------------------------------------
# Patch triggers
# ---------------------------------------------------------------------------


def test_trigger_shapes():
    assert pixel_trigger((2, 3), 1).pixels == ((2, 3),)
    assert pattern_trigger((2, 3), 1).pixels == (
        (2, 3),
        (3, 4),
        (1, 4),
        (3, 2),
        (1, 2),
    )
    assert ell_trigger((2, 3), 1).pixels == ((2, 3), (3, 3), (2, 4))
    assert make_trigger("pattern", (2, 3), 1) == pattern_trigger((2, 3), 1)


def test_pixel_trigger_sets_row_col_on_rgb_uint8():
    X = np.zeros((2, 4, 5, 3), dtype=np.uint8)
    X_new = pixel_trigger((1, 4), (10, 20, 30)).apply(X)
    assert X_new.dtype == np.uint8
    np.testing.assert_array_equal(X_new[:, 1, 4], [[10, 20, 30], [10, 20, 30]])
    assert X_new.sum() == 2 * 60
    assert not X.any()


def test_color_is_rounded_and_clipped_for_uint8():
    X = np.zeros((1, 2, 2, 2), dtype=np.uint8)
    X_new = pixel_trigger((0, 0), (300.0, 7.6)).apply(X)
    np.testing.assert_array_equal(X_new[0, 0, 0], [255, 8])


def test_triggers_are_hashable_and_compare_by_value():
    assert hash(ell_trigger((1, 1), (1, 2, 3))) == hash(ell_trigger((1, 1), (1, 2, 3)))
    assert pixel_trigger((1, 1), 5) != pixel_trigger((1, 2), 5)


@st.composite
def images_and_patch(draw):
    height = draw(st.integers(3, 10))
    width = draw(st.integers(3, 10))
    channels = draw(st.sampled_from([1, 3]))
    dtype = draw(st.sampled_from([np.uint8, np.float32, np.float64]))
    n = draw(st.integers(1, 3))
    method = draw(st.sampled_from(["pixel", "pattern", "ell"]))
    row = draw(st.integers(1, height - 2))
    col = draw(st.integers(1, width - 2))
    color = draw(
        st.one_of(
            st.integers(0, 255),
            st.tuples(*[st.integers(0, 255)] * channels),
        )
    )
    seed = draw(st.integers(0, 2**16))
    values = np.random.RandomState(seed).randint(0, 256, (n, height, width, channels))
    return values.astype(dtype), method, (row, col), color


@SETTINGS
@given(images_and_patch())
def test_patch_changes_exactly_its_pixels(case):
    X, method, position, color = case
    X_before = X.copy()
    trigger = make_trigger(method, position, color)
    X_new = trigger.apply(X)

    np.testing.assert_array_equal(X, X_before)
    assert X_new.dtype == X.dtype and X_new.shape == X.shape
    in_trigger = np.zeros(X.shape[1:3], dtype=bool)
    for row, col in trigger.pixels:
        in_trigger[row, col] = True
    np.testing.assert_array_equal(X_new[:, ~in_trigger], X[:, ~in_trigger])
    expected = np.broadcast_to(np.asarray(color, dtype=X.dtype), (X.shape[3],))
    assert np.all(X_new[:, in_trigger] == expected)
    assert len(set(trigger.pixels)) == {"pixel": 1, "pattern": 5, "ell": 3}[method]


def test_positions_outside_the_image_raise():
    X = np.zeros((1, 4, 4, 1))
    with pytest.raises(ValueError, match="position"):
        pixel_trigger((4, 0), 1.0).apply(X)
    with pytest.raises(ValueError, match="position"):
        ell_trigger((0, 3), 1.0).apply(X)
    with pytest.raises(ValueError, match="position"):
        pattern_trigger((0, 2), 1.0)
    with pytest.raises(ValueError, match="position"):
        pixel_trigger((-1, 2), 1.0)


def test_bad_trigger_arguments_raise():
    with pytest.raises(
        ValueError,
        match="'method' parameter of make_trigger must be a str among .* Got 'star'",
    ):
        make_trigger("star", (1, 1), 1)
    with pytest.raises(ValueError, match="color"):
        pixel_trigger((0, 0), (1, 2)).apply(np.zeros((1, 2, 2, 3)))
    with pytest.raises(ValueError, match="X must be a 4-d array"):
        pixel_trigger((0, 0), 1).apply(np.zeros((2, 2)))
    with pytest.raises(TypeError, match="trigger"):
        apply_trigger(np.zeros((1, 2, 2, 1)), "pixel")


def test_apply_trigger_matches_method():
    X = np.arange(2 * 3 * 3 * 1, dtype=float).reshape(2, 3, 3, 1)
    trigger = ell_trigger((0, 0), -1.0)
    np.testing.assert_array_equal(apply_trigger(X, trigger), trigger.apply(X))
    assert trigger(X)[0, 1, 0, 0] == -1.0


def test_checkerboard_bottom_right_corner_is_high():
    X = np.full((2, 5, 6, 3), 9, dtype=np.uint8)
    trigger = checkerboard_trigger((5, 6, 3), low=0, high=255)
    assert isinstance(trigger, CompositeTrigger)
    X_new = trigger.apply(X)
    expected = np.array([[255, 0, 255], [0, 255, 0], [255, 0, 255]])
    for channel in range(3):
        np.testing.assert_array_equal(X_new[1, 2:, 3:, channel], expected)
    np.testing.assert_array_equal(X_new[:, :2], X[:, :2])
    np.testing.assert_array_equal(X_new[:, :, :3], X[:, :, :3])
    assert (X == 9).all()


def test_checkerboard_needs_three_by_three():
    with pytest.raises(ValueError, match="image_shape"):
        checkerboard_trigger((2, 5))


# ---------------------------------------------------------------------------
# Blend triggers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["peace", "letter_a", "bullet_holes", "colorful_patch"]
)
@pytest.mark.parametrize("channels", [1, 3])
def test_watermark_only_changes_upper_left_8x8(name, channels):
    rng = np.random.RandomState(0)
    X = rng.randint(0, 256, size=(3, 12, 10, channels)).astype(np.uint8)
    X_before = X.copy()
    X_new = watermark_trigger(name).apply(X)
    np.testing.assert_array_equal(X, X_before)
    assert X_new.dtype == np.uint8
    np.testing.assert_array_equal(X_new[:, 8:], X[:, 8:])
    np.testing.assert_array_equal(X_new[:, :, 8:], X[:, :, 8:])
    assert (X_new[:, :8, :8] != X[:, :8, :8]).any()


@pytest.mark.parametrize(
    "name", ["peace", "letter_a", "bullet_holes", "colorful_patch"]
)
def test_watermark_with_zero_opacity_is_identity(name):
    X = np.random.RandomState(1).rand(2, 9, 9, 3)
    np.testing.assert_array_equal(watermark_trigger(name, opacity=0).apply(X), X)


def test_watermark_masks():
    assert watermark_trigger("colorful_patch").mask.min() == 1
    for name in ["peace", "letter_a", "bullet_holes"]:
        mask = watermark_trigger(name).mask
        assert mask.shape == (8, 8)
        assert 0 < mask.sum() < 64
    assert watermark_trigger("letter_a").mask[0].tolist() == [0, 0, 0, 1, 1, 0, 0, 0]


def test_watermark_blend_on_constant_image():
    trigger = watermark_trigger("letter_a", opacity=0.8)
    X = np.full((1, 8, 8, 3), 100, dtype=np.uint8)
    X_new = trigger.apply(X)
    # Red picture pixel: 0.2 * 100 + 0.8 * (255, 0, 0).
    np.testing.assert_array_equal(X_new[0, 0, 3], [224, 20, 20])
    np.testing.assert_array_equal(X_new[0, 0, 0], [100, 100, 100])
    X_float = np.full((1, 8, 8, 3), 0.5)
    np.testing.assert_allclose(
        trigger.apply(X_float)[0, 0, 3], [0.2 * 0.5 + 0.8, 0.1, 0.1]
    )


def test_watermark_greyscale_uses_luma():
    X = np.zeros((1, 8, 8, 1))
    X_new = watermark_trigger("letter_a", opacity=1.0).apply(X)
    assert X_new[0, 0, 3, 0] == pytest.approx(0.299)


def test_unknown_watermark_raises():
    with pytest.raises(
        ValueError,
        match="'name' parameter of watermark_trigger .* Got 'smiley'",
    ):
        watermark_trigger("smiley")


@SETTINGS
@given(
    alpha=st.floats(0, 1),
    value=st.floats(0, 1),
    background=st.floats(0, 1),
    anchor=st.tuples(st.integers(0, 3), st.integers(0, 3)),
)
def test_blend_math(alpha, value, background, anchor):
    X = np.full((1, 6, 6, 2), background)
    trigger = BlendTrigger(pattern=np.full((2, 3), value), alpha=alpha, anchor=anchor)
    X_new = trigger.apply(X)
    row, col = anchor
    region = np.zeros((6, 6), dtype=bool)
    region[row : row + 2, col : col + 3] = True
    np.testing.assert_allclose(
        X_new[0, region], (1 - alpha) * background + alpha * value
    )
    np.testing.assert_array_equal(X_new[0, ~region], X[0, ~region])


def test_blend_rejects_bad_arguments():
    with pytest.raises(ValueError, match="alpha must be in \\[0, 1\\], got 1.5"):
        BlendTrigger(pattern=np.ones((2, 2)), alpha=1.5)
    with pytest.raises(ValueError, match="mask"):
        BlendTrigger(pattern=np.ones((2, 2)), alpha=0.5, mask=np.ones((3, 3)))
    with pytest.raises(ValueError, match="anchor"):
        BlendTrigger(pattern=np.ones((2, 2)), alpha=0.5, anchor=(3, 0)).apply(
            np.zeros((1, 4, 4, 1))
        )


def test_noise_blend_is_fixed_and_whole_image():
    shape = (5, 4, 3)
    first = noise_blend_trigger(shape, random_state=3)
    second = noise_blend_trigger(shape, random_state=3)
    np.testing.assert_array_equal(first.pattern, second.pattern)
    z = np.random.RandomState(3).standard_normal(shape)
    np.testing.assert_allclose(first.pattern, np.clip(0.5 + 0.25 * z, 0, 1))
    assert first.alpha == 0.1
    X = np.full((2, 5, 4, 3), 100, dtype=np.uint8)
    X_new = first.apply(X)
    expected = np.rint(0.9 * 100 + 0.1 * 255 * first.pattern).astype(np.uint8)
    np.testing.assert_array_equal(X_new[0], expected)
    np.testing.assert_array_equal(X_new[0], X_new[1])
    assert (X == 100).all()


# ---------------------------------------------------------------------------
# Dirty-label backdoor
# ---------------------------------------------------------------------------


@SETTINGS
@given(
    fraction=st.floats(0.01, 1.0),
    per_class=st.integers(2, 30),
    source=st.integers(0, 3),
    seed=st.integers(0, 1000),
)
def test_one_to_one_properties(fraction, per_class, source, seed):
    X, y = balanced_data(per_class=per_class)
    X_before, y_before = X.copy(), y.copy()
    target = (source + 1) % 4
    trigger = pixel_trigger((0, 0), 255)
    data = dirty_label_backdoor(
        X,
        y,
        trigger,
        target=target,
        source=source,
        poison_fraction=fraction,
        random_state=seed,
    )
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(y, y_before)
    count = max(1, int(round(fraction * per_class)))
    idx = data.poison_indices
    assert idx.dtype == np.int64 and len(idx) == count
    assert np.all(np.diff(idx) > 0)
    assert np.all(y[idx] == source)
    assert np.all(data.y[idx] == target)
    np.testing.assert_array_equal(data.y[~data.is_poison], y[~data.is_poison])
    np.testing.assert_array_equal(data.y_true, y)
    assert (data.X[idx, 0, 0] == 255).all()
    assert not data.X[~data.is_poison].any()
    assert data.source == source and data.target == target
    assert data.trigger is trigger

    again = dirty_label_backdoor(
        X,
        y,
        trigger,
        target=target,
        source=source,
        poison_fraction=fraction,
        random_state=seed,
    )
    np.testing.assert_array_equal(again.poison_indices, idx)


def test_one_to_one_concrete_selection():
    X, y = balanced_data(n_classes=2, per_class=10)
    data = dirty_label_backdoor(
        X,
        y,
        pixel_trigger((1, 1), 7),
        target=1,
        source=0,
        poison_fraction=0.3,
        random_state=0,
    )
    expected = np.sort(np.random.RandomState(0).choice(10, size=3, replace=False))
    np.testing.assert_array_equal(data.poison_indices, expected)
    assert isinstance(data, PoisonedDataset)


def test_all_to_one_counts():
    X, y = balanced_data(n_classes=5, per_class=20)
    data = dirty_label_backdoor(
        X,
        y,
        pixel_trigger((0, 0), 255),
        target=2,
        poison_fraction=0.4,
        mode="all-to-one",
        random_state=0,
    )
    # 0.4 * mean class size 20 = 8 poisons, 2 from each of the 4 other classes.
    assert len(data.poison_indices) == 8
    assert np.bincount(y[data.poison_indices], minlength=5).tolist() == [2, 2, 0, 2, 2]
    assert (data.y[data.poison_indices] == 2).all()
    np.testing.assert_array_equal(data.source, [0, 1, 3, 4])


def test_all_to_one_uneven_split_is_exact():
    X, y = balanced_data(n_classes=4, per_class=10)
    data = dirty_label_backdoor(
        X,
        y,
        pixel_trigger((0, 0), 255),
        target=0,
        poison_fraction=0.5,
        mode="all-to-one",
        random_state=1,
    )
    assert len(data.poison_indices) == 5
    assert sorted(np.bincount(y[data.poison_indices], minlength=4)[1:]) == [1, 2, 2]


def test_all_to_all_counts_and_permutation():
    X, y = balanced_data(n_classes=3, per_class=10)
    data = dirty_label_backdoor(
        X,
        y,
        pixel_trigger((0, 0), 255),
        target=None,
        poison_fraction=0.2,
        mode="all-to-all",
        random_state=0,
    )
    idx = data.poison_indices
    assert np.bincount(y[idx]).tolist() == [2, 2, 2]
    np.testing.assert_array_equal(data.y[idx], (y[idx] + 1) % 3)
    assert data.target is None


def test_attack_argument_errors():
    X, y = balanced_data(n_classes=2, per_class=3)
    trigger = pixel_trigger((0, 0), 255)
    with pytest.raises(
        ValueError,
        match=r"'poison_fraction' parameter .* range \(0.0, 1.0\]. Got 1.5",
    ):
        dirty_label_backdoor(X, y, trigger, target=1, source=0, poison_fraction=1.5)
    with pytest.raises(
        ValueError, match="'mode' parameter of dirty_label_backdoor must be a str among"
    ):
        dirty_label_backdoor(X, y, trigger, target=1, source=0, mode="some")
    with pytest.raises(ValueError, match="source must be given"):
        dirty_label_backdoor(X, y, trigger, target=1)
    with pytest.raises(ValueError, match="target must be one of the labels"):
        dirty_label_backdoor(X, y, trigger, target=5, source=0)
    with pytest.raises(ValueError, match="source must differ"):
        dirty_label_backdoor(X, y, trigger, target=1, source=1)
    with pytest.raises(ValueError, match="source must be None"):
        dirty_label_backdoor(X, y, trigger, target=1, source=0, mode="all-to-one")
    with pytest.raises(ValueError, match="target must be None"):
        dirty_label_backdoor(X, y, trigger, target=1, mode="all-to-all")
    with pytest.raises(ValueError, match="y must have one label per sample"):
        dirty_label_backdoor(X, y[:-1], trigger, target=1, source=0)
    with pytest.raises(TypeError, match="y must have an integer dtype"):
        dirty_label_backdoor(X, y.astype(float), trigger, target=1, source=0)
    with pytest.raises(
        TypeError,
        match="'trigger' parameter of dirty_label_backdoor must be an instance of",
    ):
        dirty_label_backdoor(X, y, "pixel", target=1, source=0)
    X_small, y_small = X[:4], np.array([0, 0, 0, 1])
    with pytest.raises(ValueError, match="fewer than"):
        dirty_label_backdoor(
            X_small, y_small, trigger, target=0, poison_fraction=1.0, mode="all-to-one"
        )


# ---------------------------------------------------------------------------
# Label flip
# ---------------------------------------------------------------------------


@SETTINGS
@given(
    fraction=st.floats(0.01, 1.0),
    sizes=st.lists(st.integers(1, 15), min_size=2, max_size=5),
    seed=st.integers(0, 1000),
)
def test_systematic_label_flip_properties(fraction, sizes, seed):
    y = np.repeat(np.arange(len(sizes)), sizes)
    y_before = y.copy()
    y_new, flipped = systematic_label_flip(y, fraction, random_state=seed)
    np.testing.assert_array_equal(y, y_before)
    expected_counts = [max(1, int(round(fraction * n))) for n in sizes]
    assert np.bincount(y[flipped], minlength=len(sizes)).tolist() == expected_counts
    np.testing.assert_array_equal(y_new[flipped], (y[flipped] + 1) % len(sizes))
    kept = np.setdiff1d(np.arange(len(y)), flipped)
    np.testing.assert_array_equal(y_new[kept], y[kept])
    assert np.all(np.diff(flipped) > 0)


def test_label_flip_backdoor_with_checkerboard():
    X, y = balanced_data(n_classes=3, per_class=10, shape=(5, 5, 1))
    trigger = checkerboard_trigger((5, 5), high=255)
    data = label_flip_backdoor(X, y, trigger, poison_fraction=0.3, random_state=4)
    y_new, flipped = systematic_label_flip(y, 0.3, random_state=4)
    np.testing.assert_array_equal(data.poison_indices, flipped)
    np.testing.assert_array_equal(data.y, y_new)
    assert (data.X[flipped, 4, 4, 0] == 255).all()
    assert not data.X[~data.is_poison].any()


# ---------------------------------------------------------------------------
# Reference scenarios
# ---------------------------------------------------------------------------


def draw_reference_by_hand(seed):
    """The authors' generator's RNG calls, written out."""
    rng = np.random.RandomState(seed)
    drawn = []
    for _ in REFERENCE_PAIRS:
        method = ["pixel", "pattern", "ell"][rng.randint(3)]
        low, high = {"pixel": (0, 31), "pattern": (1, 30), "ell": (0, 30)}[method]
        position = tuple(rng.randint(low, high, size=(2,)).tolist())
        color = tuple(rng.randint(255, size=(3,)).tolist())
        drawn.append((method, position, color))
    return drawn


def test_reference_scenarios_seed_100_pinned():
    scenarios = reference_scenarios(100)
    assert len(scenarios) == 24
    first = scenarios[0]
    assert first == BackdoorScenario(
        source=0,
        target=2,
        method="pixel",
        position=(24, 3),
        color=(103, 87, 79),
        poison_fraction=0.05,
        selection_seed=107,
        seed=100,
    )
    assert first.name == "0-to-2-pixel-0.05-seed100"
    expected = [
        ((1, 3), "pixel", (10, 30), (180, 98, 53)),
        ((3, 5), "ell", (2, 14), (34, 241, 240)),
        ((7, 4), "pixel", (15, 4), (107, 60, 58)),
        ((3, 7), "pattern", (16, 2), (61, 14, 183)),
    ]
    by_pair = {(s.source, s.target): s for s in scenarios}
    for pair, method, position, color in expected:
        scenario = by_pair[pair]
        assert (scenario.method, scenario.position, scenario.color) == (
            method,
            position,
            color,
        )
    assert [s.selection_seed for s in scenarios[:3]] == [107, 112, 122]


@pytest.mark.parametrize("seed", [100, 1000, 10000])
def test_reference_scenarios_match_hand_drawn_generator(seed):
    scenarios = reference_scenarios(seed)
    drawn = draw_reference_by_hand(seed)
    for k, scenario in enumerate(scenarios):
        pair_index, fraction_index = divmod(k, 3)
        source, target = REFERENCE_PAIRS[pair_index]
        fraction = (0.05, 0.1, 0.2)[fraction_index]
        assert (scenario.source, scenario.target) == (source, target)
        assert scenario.poison_fraction == fraction
        assert (scenario.method, scenario.position, scenario.color) == drawn[pair_index]
        assert scenario.selection_seed == (
            seed + int(fraction * 100) + source * 10 + target
        )
        assert scenario.seed == seed


def test_reference_scenarios_orders_and_subsets():
    by_fraction = reference_scenarios(100, order="fraction")
    assert [(s.source, s.target) for s in by_fraction[:8]] == REFERENCE_PAIRS
    assert {s.poison_fraction for s in by_fraction[8:16]} == {0.1}
    only_ten = reference_scenarios(100, poison_fractions=(0.1,))
    assert len(only_ten) == 8
    assert only_ten[0] == reference_scenarios(100)[1]
    assert only_ten[0].name == "0-to-2-pixel-0.1-seed100"


def test_reference_scenario_trigger_and_poison():
    scenario = reference_scenarios(100, poison_fractions=(0.1,))[0]
    assert scenario.trigger() == pixel_trigger((24, 3), (103, 87, 79))
    X = np.zeros((200, 32, 32, 3), dtype=np.uint8)
    y = np.repeat(np.arange(10), 20)
    data = scenario.poison(X, y)
    # int(0.1 * 20) = 2 draws from RandomState(112) over the source rows 0..19.
    np.testing.assert_array_equal(data.poison_indices, [2, 6])
    expected = np.sort(np.random.RandomState(112).choice(20, size=2, replace=False))
    np.testing.assert_array_equal(data.poison_indices, expected)
    np.testing.assert_array_equal(data.X[[2, 6], 24, 3], [[103, 87, 79]] * 2)
    assert (data.y[[2, 6]] == 2).all()
    assert data.X.sum() == 2 * (103 + 87 + 79)
    assert not X.any()

    ell = reference_scenarios(100, poison_fractions=(0.2,))[2]
    assert ell.method == "ell"
    assert ell.poison(X, y).poison_indices.tolist() == [67, 76, 77, 78]


def test_reference_scenario_count_truncates_like_the_reference():
    scenario = reference_scenarios(100, poison_fractions=(0.1,))[0]
    X = np.zeros((29, 32, 32, 3), dtype=np.uint8)
    y = np.zeros(29, dtype=int)
    assert len(scenario.poison(X, y).poison_indices) == 2


def test_reference_scenarios_bad_arguments():
    with pytest.raises(TypeError, match="seed"):
        reference_scenarios(1.5)
    with pytest.raises(ValueError, match="order"):
        reference_scenarios(100, order="random")
    with pytest.raises(ValueError, match="poison_fraction"):
        reference_scenarios(100, poison_fractions=(0.0,))


def test_patch_trigger_requires_pixels():
    with pytest.raises(ValueError, match="pixels"):
        PatchTrigger(pixels=(), color=1)
