"""How many samples an attack poisons, and which."""

import numpy as np


def rounded_count(poison_fraction, n):
    """``round(poison_fraction * n)``, at least 1: the count an attack poisons."""
    return max(1, int(round(poison_fraction * n)))


def choose_from_class(y, label, count, rng, name="source"):
    """``count`` indices of class ``label`` drawn without replacement by ``rng``.

    Raises ``ValueError`` naming the class (as ``name``) when it has fewer.
    """
    candidates = np.flatnonzero(y == label)
    if count > candidates.size:
        raise ValueError(
            f"{name} class {label} has {candidates.size} samples, fewer than the "
            f"{count} that poison_fraction asks to poison"
        )
    return rng.choice(candidates, size=count, replace=False)


def split_total(total, sizes):
    """Split ``total`` proportionally to ``sizes`` (largest remainders first)."""
    shares = total * sizes / sizes.sum()
    counts = np.floor(shares).astype(int)
    remainders = shares - counts
    leftover = total - counts.sum()
    counts[np.argsort(-remainders, kind="stable")[:leftover]] += 1
    return counts
