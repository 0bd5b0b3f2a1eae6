"""Where ISPL+B's clean accuracy goes: the final model on variants of a saved vote.

On the two-class CIFAR-10 tier ISPL+B's final model stays 4-6 points under
the oracle even where the attack is defeated (0-to-2, 7-to-4). Its kept set
differs from the oracle's in two ways: it keeps some poison (FN) and it
removes clean images (FP), mostly of one class. This script trains the tier's
final model on the oracle's set and on the vote an ``ispl_probe.py --save``
file holds (``boosting_mask``), split into those two effects:

- ``oracle``: every clean image;
- ``vote``: the vote's kept set as it is;
- ``vote_without_poison``: the vote's kept set minus its poisoned images
  (what the removed clean images alone cost);
- ``random_removal``: every clean image minus as many random clean images of
  each class as the vote removed (what the *number* removed costs, whichever
  images they are).

It appends one JSON line with clean accuracy, TMR and the set sizes of each::

    python benchmarks/kept_set_replay.py 0-to-2-pixel-0.1-seed100 probe.npz \\
        --data PATH/TO/cifar10 \\
        --out benchmarks/results/cifar10-two-class-kept-sets.jsonl
"""

import json
import time

import numpy as np
import torch
from environment import STARTED_AT_COMMIT, cpu_model
from grids import TWO_CLASS_FINAL_EPOCHS, TWO_CLASS_NET
from ispl_probe import load_saved_probe, replay_parser
from run import attack_metrics

from sklearn_backdoor import NetworkClassifier


def random_removal(vote, is_poison, y, rng):
    """Every clean sample minus, in each class, as many random clean samples
    as ``vote`` removed there."""
    clean = ~is_poison
    keep = clean.copy()
    for label in np.unique(y):
        in_class = clean & (y == label)
        removed = int(np.sum(in_class & ~vote))
        keep[rng.choice(np.flatnonzero(in_class), removed, replace=False)] = False
    return keep


def kept_sets(vote, is_poison, y, seed):
    """Boolean keep mask of each variant of the module docstring, by name."""
    return {
        "oracle": ~is_poison,
        "vote": vote,
        "vote_without_poison": vote & ~is_poison,
        "random_removal": random_removal(
            vote, is_poison, y, np.random.RandomState(seed)
        ),
    }


def main(argv=None):
    parser = replay_parser(__doc__.split("\n\n")[0])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    probe, poisoned, X_test, y_test, scenario_params = load_saved_probe(
        args.probe, args.scenario, args.data, args.seed
    )
    started = time.perf_counter()
    sets = kept_sets(probe["boosting_mask"], poisoned.is_poison, poisoned.y, args.seed)
    results = {}
    for name, keep in sets.items():
        final = NetworkClassifier(
            TWO_CLASS_NET, epochs=TWO_CLASS_FINAL_EPOCHS, random_state=args.seed
        ).fit(poisoned.X[keep], poisoned.y[keep])
        metrics = attack_metrics(
            final, X_test, y_test, poisoned.trigger, scenario_params
        )
        results[name] = {
            "kept": int(keep.sum()),
            "kept_poison": int(np.sum(keep & poisoned.is_poison)),
            "clean_accuracy": round(metrics["clean_accuracy"], 4),
            "tmr": round(metrics["tmr"], 4),
        }
        print(name, results[name], flush=True)
    record = {
        "scenario": args.scenario,
        "probe": args.probe.rsplit("/", 1)[-1],
        "final_models": results,
        "seconds": round(time.perf_counter() - started, 1),
        "net": TWO_CLASS_NET,
        "threads": args.threads,
        "cpu_model": cpu_model(),
        "git_commit": STARTED_AT_COMMIT,
    }
    with open(args.out, "a") as file:
        file.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
