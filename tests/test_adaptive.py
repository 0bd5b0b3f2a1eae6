import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_backdoor import IncompatibilityClustering
from sklearn_backdoor.adaptive import (
    adaptive_backdoor,
    ispl_partition,
    poison_partition,
)
from sklearn_backdoor.datasets import load_digits_images
from sklearn_backdoor.poisoning import PatchTrigger

SETTINGS = settings(max_examples=40, deadline=None)
TRIGGER = PatchTrigger(pixels=((0, 0), (0, 1), (1, 0)), color=255)
SOURCE, TARGET = 3, 5


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits_images()
    return X[:600], y[:600]


def tiny_ispl(**params):
    return IncompatibilityClustering(
        net="mlp",
        n_components=3,
        warmup_epochs=1,
        epochs_per_iteration=1,
        device="cpu",
        **params,
    )


def shares(poisoned, partition, y, source):
    """(poisoned count, source-class size) of each part."""
    return [
        (np.isin(poisoned.poison_indices, part).sum(), np.sum(y[part] == source))
        for part in partition
    ]


def assert_equal_shares(poisoned, partition, y, source, fraction):
    counted = np.array(shares(poisoned, partition, y, source))
    n_source = np.sum(y == source)
    total = max(1, round(fraction * n_source))
    assert counted[:, 0].sum() == total
    exact = total * counted[:, 1] / n_source
    assert np.all(counted[:, 0] >= np.floor(exact))
    assert np.all(counted[:, 0] <= np.ceil(exact))


@st.composite
def labelled_partitions(draw):
    n = draw(st.integers(10, 80))
    n_parts = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 3, size=n)
    y[:2] = [0, 1]
    assignment = rng.randint(0, n_parts, size=n)
    partition = [np.flatnonzero(assignment == part) for part in range(n_parts)]
    return y, partition


@SETTINGS
@given(
    data=labelled_partitions(),
    fraction=st.floats(0.01, 1.0),
    seed=st.integers(0, 2**16),
)
def test_poison_is_spread_in_equal_shares_over_the_parts(data, fraction, seed):
    y, partition = data
    X = np.random.RandomState(seed).randint(0, 200, size=(len(y), 4, 4, 1))
    X = X.astype(np.uint8)
    X_before, y_before = X.copy(), y.copy()
    poisoned = poison_partition(
        X,
        y,
        TRIGGER,
        partition,
        target=1,
        source=0,
        poison_fraction=fraction,
        random_state=seed,
    )
    assert_equal_shares(poisoned, partition, y, 0, fraction)
    indices = poisoned.poison_indices
    assert np.all(y[indices] == 0) and np.all(poisoned.y[indices] == 1)
    clean = ~poisoned.is_poison
    np.testing.assert_array_equal(poisoned.y[clean], y[clean])
    np.testing.assert_array_equal(poisoned.X[clean], X[clean])
    np.testing.assert_array_equal(poisoned.X[indices], TRIGGER.apply(X[indices]))
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(y, y_before)


def test_poison_partition_is_deterministic_under_random_state():
    y = np.repeat([0, 1], 30)
    X = np.zeros((60, 4, 4, 1), dtype=np.uint8)
    partition = [np.arange(0, 60, 3), np.arange(1, 60, 3), np.arange(2, 60, 3)]
    runs = [
        poison_partition(
            X,
            y,
            TRIGGER,
            partition,
            target=1,
            source=0,
            poison_fraction=0.3,
            random_state=seed,
        ).poison_indices
        for seed in (7, 7, 8)
    ]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


@pytest.mark.parametrize(
    "partition",
    [
        [np.arange(0, 10), np.arange(9, 20)],
        [np.arange(0, 10), np.arange(11, 20)],
        [np.arange(0, 21)],
        [np.linspace(0, 19, 20)],
        [],
    ],
)
def test_partition_must_split_every_sample_once(partition):
    X = np.zeros((20, 4, 4, 1), dtype=np.uint8)
    y = np.repeat([0, 1], 10)
    with pytest.raises(ValueError, match="partition must"):
        poison_partition(X, y, TRIGGER, partition, target=1, source=0)


def test_ispl_partition_covers_the_data_and_leaves_the_defender_unchanged(digits):
    X, y = digits
    defender = tiny_ispl()
    params = defender.get_params()
    partition = ispl_partition(defender, X, y, random_state=0)
    assert len(partition) == 3 + 1
    np.testing.assert_array_equal(np.sort(np.concatenate(partition)), np.arange(600))
    assert all(len(core) > 50 for core in partition[:3])
    assert defender.get_params() == params
    assert not hasattr(defender, "components_")
    again = ispl_partition(defender, X, y, random_state=0)
    for first, second in zip(partition, again, strict=True):
        np.testing.assert_array_equal(first, second)


def test_adaptive_backdoor_poisons_each_ispl_part_equally(digits):
    X, y = digits
    X_before = X.copy()
    poisoned, partition = adaptive_backdoor(
        X,
        y,
        TRIGGER,
        clustering=tiny_ispl(),
        target=TARGET,
        source=SOURCE,
        poison_fraction=0.2,
        random_state=0,
    )
    expected = ispl_partition(tiny_ispl(), X, y, random_state=0)
    for part, same in zip(partition, expected, strict=True):
        np.testing.assert_array_equal(part, same)
    assert_equal_shares(poisoned, partition, y, SOURCE, 0.2)
    holding_poison = [count for count, _ in shares(poisoned, partition, y, SOURCE)]
    assert sum(count > 0 for count in holding_poison) >= 3
    assert poisoned.source == SOURCE and poisoned.target == TARGET
    np.testing.assert_array_equal(X, X_before)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"clustering": "ispl"}, InvalidParameterError, "'clustering' parameter"),
        ({"poison_fraction": 1.5}, InvalidParameterError, "'poison_fraction'"),
        ({"source": TARGET}, ValueError, "source must differ from target"),
        ({"source": 11}, ValueError, "source must be one of the labels"),
    ],
)
def test_adaptive_backdoor_validates_before_running_ispl(digits, kwargs, error, match):
    X, y = digits
    kwargs = {
        "clustering": tiny_ispl(),
        "target": TARGET,
        "source": SOURCE,
        **kwargs,
    }
    with pytest.raises(error, match=match):
        adaptive_backdoor(X, y, TRIGGER, **kwargs)
