"""Later votes replayed from a saved ISPL probe (``vote_rounds``).

ISPL+B's vote keeps poison on the strong-trigger pairs of the two-class
CIFAR-10 tier because a weak learner whose core set holds a few poisoned
images learns the trigger and vouches for the rest (docs/benchmarks.md).
``IncompatibilityClustering(vote_rounds=k)`` retrains every weak learner on
what the previous vote kept of its core set and votes again. This script
replays that from the vote an ``ispl_probe.py --save`` file holds
(``boosting_mask``) and its core sets, with the tier's weak learner (the
preset's network, ``--epochs`` epochs, trained on clean images), and appends
one JSON line per later vote: its FP/FN and, per learner, its training rows,
the poison among them, its trust (the share of all poisoned images it calls
the target) and its clean test accuracy::

    python benchmarks/vote_rounds_replay.py 9-to-2-ell-0.1-seed1000 probe.npz \\
        --rounds 3 --data PATH/TO/cifar10 \\
        --out benchmarks/results/cifar10-two-class-vote-rounds.jsonl
"""

import json
import time

import numpy as np
import torch
from environment import STARTED_AT_COMMIT, cpu_model
from grids import TWO_CLASS_NET
from ispl_probe import load_saved_probe, replay_parser
from run import append_record
from weak_learner_contamination import WeakLearner

from sklearn_backdoor.incompatibility import vote_by_mode
from sklearn_backdoor.metrics import removal_counts


def retrained_vote(probe, poisoned, X_test, y_test, keep, epochs, seed, rng):
    """Every learner retrained on ``keep`` within its core set, then the
    paper's vote (mode, at least two votes). Returns ``(keep, learners)``."""
    component_of, bags = probe["component_of"], probe["component_bags"]
    classes = probe["classes"]
    is_poison = poisoned.is_poison
    votes, learners = [], []
    for learner in range(len(bags)):
        core = component_of[bags[learner]] == learner
        rows = np.flatnonzero(core & keep)
        started = time.perf_counter()
        net = WeakLearner(poisoned.X, epochs, 0.0, seed + learner)
        net.fit(poisoned.X[rows], poisoned.y[rows])
        seconds = time.perf_counter() - started
        predicted = net.predict(poisoned.X)
        votes.append(np.searchsorted(classes, predicted))
        learners.append(
            {
                "core_size": int(core.sum()),
                "core_poison": int((core & is_poison).sum()),
                "train_size": int(len(rows)),
                "train_poison": int(is_poison[rows].sum()),
                "trust": round(
                    float((predicted[is_poison] == poisoned.target).mean()), 3
                ),
                "clean_test_acc": round(
                    float((net.predict(X_test) == y_test).mean()), 3
                ),
                "seconds": round(seconds, 1),
            }
        )
    labels = np.searchsorted(classes, poisoned.y)
    keep, _ = vote_by_mode(np.array(votes), labels, 2, rng)
    return keep, learners


def fp_fn(keep, poisoned):
    counts = removal_counts(keep, poisoned.poison_indices)
    return int(counts.false_positives), int(counts.false_negatives)


def main(argv=None):
    parser = replay_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="later votes")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    probe, poisoned, X_test, y_test, _ = load_saved_probe(
        args.probe, args.scenario, args.data, args.seed
    )
    keep = probe["boosting_mask"].copy()
    rng = np.random.RandomState(0)
    first = fp_fn(keep, poisoned)
    for vote in range(2, args.rounds + 2):
        started = time.perf_counter()
        keep, learners = retrained_vote(
            probe, poisoned, X_test, y_test, keep, args.epochs, 100, rng
        )
        record = {
            "scenario": args.scenario,
            "probe": args.probe.rsplit("/", 1)[-1],
            "vote": vote,
            "first_vote_fp_fn": first,
            "fp_fn": fp_fn(keep, poisoned),
            "epochs": args.epochs,
            "learners": learners,
            "seconds": round(time.perf_counter() - started, 1),
            "net": TWO_CLASS_NET,
            "threads": args.threads,
            "cpu_model": cpu_model(),
            "git_commit": STARTED_AT_COMMIT,
        }
        print(json.dumps(record), flush=True)
        append_record(args.out, record)


if __name__ == "__main__":
    main()
