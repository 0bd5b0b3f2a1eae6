"""The reference CIFAR-10 scenarios: the authors' generator of paper 001,
reproduced draw for draw."""

from dataclasses import dataclass
from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import StrOptions, validate_params

from sklearn_backdoor.constraints import StrictInterval
from sklearn_backdoor.poisoning.checks import (
    check_attack_data,
    check_fraction,
    image_batch,
)
from sklearn_backdoor.poisoning.dataset import poison_rows, poisoned_in_layout
from sklearn_backdoor.poisoning.patches import TRIGGER_METHODS, make_trigger

# Pairs and fractions of the authors' generator (data/cifar10_backdoor.py of
# charlesjin/compatibility_clustering).
REFERENCE_PAIRS = ((0, 2), (1, 3), (3, 5), (7, 4), (2, 5), (8, 6), (9, 2), (3, 7))
REFERENCE_FRACTIONS = (0.05, 0.1, 0.2)


@dataclass(frozen=True)
class BackdoorScenario:
    """One backdoor scenario of the reference CIFAR-10 benchmark.

    Parameters
    ----------
    source : int
        Attacked class.
    target : int
        Label given to the poisoned samples.
    method : {"pixel", "pattern", "ell"}
        Trigger shape.
    position : (int, int)
        (row, col) of the trigger; the reference indexes ``image[p[0], p[1]]``
        on (height, width, channel) images.
    color : (int, int, int)
        RGB colour in 0-254.
    poison_fraction : float
        Fraction of the source class that is poisoned.
    selection_seed : int
        Seed that selects the poisoned samples.
    seed : int
        Seed of the generator that produced the scenario.

    Examples
    --------
    >>> from sklearn_backdoor.poisoning import reference_scenarios
    >>> scenario = reference_scenarios(100, poison_fractions=(0.1,))[0]
    >>> scenario.name, scenario.position, scenario.selection_seed
    ('0-to-2-pixel-0.1-seed100', (24, 3), 112)
    """

    source: int
    target: int
    method: str
    position: tuple
    color: tuple
    poison_fraction: float
    selection_seed: int
    seed: int

    @property
    def name(self):
        """A readable id such as ``"0-to-2-pixel-0.1-seed100"``."""
        return (
            f"{self.source}-to-{self.target}-{self.method}-"
            f"{self.poison_fraction}-seed{self.seed}"
        )

    def trigger(self):
        """Return the scenario's :class:`PatchTrigger`."""
        return make_trigger(self.method, self.position, self.color)

    def poison(self, X, y):
        """Poison a training set exactly as the reference does.

        The poisoned rows are ``np.random.RandomState(selection_seed).choice(
        np.flatnonzero(y == source), size=int(poison_fraction * n_source),
        replace=False)``: the reference's count (truncation, not rounding) and
        the same RNG calls as its ``np.random.seed`` + ``np.random.choice``.
        At test time the reference triggers every source-class test image:
        ``scenario.trigger().apply(X_test[y_test == scenario.source])``.

        Parameters
        ----------
        X : ndarray of shape (n_samples, height, width, channels) or \
(n_samples, height, width)
            Training images (CIFAR-10 in the reference); left unchanged.
        y : ndarray of shape (n_samples,)
            Integer labels; left unchanged.

        Returns
        -------
        poisoned : PoisonedDataset

        Raises
        ------
        ValueError
            If ``source`` equals ``target``, or ``poison_fraction`` of the
            source class truncates to no sample.
        """
        X, grey = image_batch(X)
        X, y = check_attack_data(X, y)
        if self.source == self.target:
            raise ValueError(f"source must differ from target, got {self.source}")
        candidates = np.flatnonzero(y == self.source)
        count = int(self.poison_fraction * candidates.size)
        if count == 0:
            raise ValueError(
                f"poison_fraction={self.poison_fraction} of the {candidates.size} "
                f"samples of source class {self.source} truncates to no sample "
                "to poison"
            )
        # A local RandomState gives the stream of the reference's global seed.
        rng = np.random.RandomState(self.selection_seed)
        indices = rng.choice(candidates, size=count, replace=False)
        poisoned = poison_rows(
            X,
            y,
            self.trigger(),
            indices,
            np.full(count, self.target),
            source=self.source,
            target=self.target,
        )
        return poisoned_in_layout(poisoned, grey)


def _draw_reference_trigger(rng):
    """Draw method, position and colour with the reference generator's calls."""
    method = TRIGGER_METHODS[rng.randint(3)]
    if method == "pixel":
        position = rng.randint(31, size=(2,))
    elif method == "pattern":
        position = rng.randint(1, 30, size=(2,))
    else:
        position = rng.randint(0, 30, size=(2,))
    color = rng.randint(255, size=(3,))
    return method, tuple(int(p) for p in position), tuple(int(c) for c in color)


@validate_params(
    {
        "seed": [StrictInterval(Integral, 0, 2**32 - 1, closed="both")],
        "order": [StrOptions({"pair", "fraction"})],
    },
    prefer_skip_nested_validation=True,
)
def reference_scenarios(seed=100, poison_fractions=REFERENCE_FRACTIONS, order="pair"):
    """Regenerate the backdoor scenarios of the reference CIFAR-10 benchmark.

    Reproduces ``generate_backdoor_poison`` of the authors' code
    (charlesjin/compatibility_clustering, data/cifar10_backdoor.py): one RNG
    seeded with ``seed`` draws, for each (source, target) pair in
    ``[(0, 2), (1, 3), (3, 5), (7, 4), (2, 5), (8, 6), (9, 2), (3, 7)]``, the
    method (``randint(3)``), the position (``randint(31, size=2)`` for pixel,
    ``randint(1, 30, size=2)`` for pattern, ``randint(0, 30, size=2)`` for
    ell) and the colour (``randint(255, size=3)``). Every fraction of a pair
    shares these and gets
    ``selection_seed = seed + int(f * 100) + 10 * source + target``. The
    draws do not depend on ``poison_fractions``, so any subset of fractions
    gives the same triggers. See :meth:`BackdoorScenario.poison` for the
    sample selection.

    Parameters
    ----------
    seed : int, default=100
        Generator seed; the paper's scenarios use 100, 1000 and 10000.
    poison_fractions : sequence of float, default=(0.05, 0.1, 0.2)
        Fractions of the source class to poison.
    order : {"pair", "fraction"}, default="pair"
        ``"pair"`` lists by pair, then fraction (the generator's order);
        ``"fraction"`` lists by fraction, then pair (the order of the
        experiment ids in the reference's evaluation/backdoor_tests.py).

    Returns
    -------
    scenarios : list of BackdoorScenario
        ``8 * len(poison_fractions)`` scenarios.

    Examples
    --------
    >>> from sklearn_backdoor.poisoning import reference_scenarios
    >>> scenarios = reference_scenarios(100)
    >>> len(scenarios), scenarios[0].name
    (24, '0-to-2-pixel-0.05-seed100')
    >>> reference_scenarios(100, order="fraction")[1].name
    '1-to-3-pixel-0.05-seed100'
    """
    seed = int(seed)
    fractions = tuple(check_fraction(f) for f in poison_fractions)
    if not fractions:
        raise ValueError("poison_fractions must not be empty")
    # The reference calls np.random.seed(seed); a local RandomState has the
    # same stream.
    rng = np.random.RandomState(seed)
    by_pair = []
    for source, target in REFERENCE_PAIRS:
        method, position, color = _draw_reference_trigger(rng)
        by_pair.append(
            [
                BackdoorScenario(
                    source=source,
                    target=target,
                    method=method,
                    position=position,
                    color=color,
                    poison_fraction=f,
                    selection_seed=seed + int(f * 100) + source * 10 + target,
                    seed=seed,
                )
                for f in fractions
            ]
        )
    if order == "fraction":
        by_pair = list(zip(*by_pair, strict=True))
    return [scenario for group in by_pair for scenario in group]
