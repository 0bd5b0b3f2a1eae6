"""Public functions validated by scikit-learn's validate_params still refuse
bools where they take a number, naming the parameter."""

from numbers import Integral, Real

import numpy as np
import pytest

from sklearn_backdoor.constraints import StrictInterval
from sklearn_backdoor.metrics import mean_of_last_epochs
from sklearn_backdoor.poisoning import (
    dirty_label_backdoor,
    pixel_trigger,
    reference_scenarios,
    systematic_label_flip,
    watermark_trigger,
)

X = np.zeros((4, 3, 3, 1), dtype=np.uint8)
y = np.array([0, 0, 1, 1])


@pytest.mark.parametrize(
    "call, name",
    [
        (
            lambda: dirty_label_backdoor(
                X,
                y,
                pixel_trigger((0, 0), 255),
                target=1,
                source=0,
                poison_fraction=True,
            ),
            "poison_fraction",
        ),
        (lambda: systematic_label_flip(y, True), "poison_fraction"),
        (lambda: reference_scenarios(seed=False), "seed"),
        (lambda: watermark_trigger("peace", opacity=True), "opacity"),
        (lambda: mean_of_last_epochs([1.0, 2.0], n_last=True), "n_last"),
    ],
)
def test_bools_are_refused_by_name(call, name):
    with pytest.raises(TypeError, match=rf"'{name}' parameter .* Got (True|False)"):
        call()


@pytest.mark.parametrize(
    "interval, value, satisfied",
    [
        (StrictInterval(Real, 0, 1, closed="right"), 1, True),
        (StrictInterval(Real, 0, 1, closed="right"), 0.5, True),
        (StrictInterval(Real, 0, 1, closed="right"), np.float32(1.0), True),
        (StrictInterval(Real, 0, 1, closed="right"), 0, False),
        (StrictInterval(Real, 0, 1, closed="right"), True, False),
        (StrictInterval(Integral, 1, None, closed="left"), np.int64(3), True),
        (StrictInterval(Integral, 1, None, closed="left"), True, False),
        (StrictInterval(Integral, 1, None, closed="left"), np.True_, False),
    ],
)
def test_strict_interval_is_an_interval_without_bools(interval, value, satisfied):
    assert interval.is_satisfied_by(value) is satisfied
