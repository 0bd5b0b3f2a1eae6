"""Cross-fitted weak learners on the core sets an ISPL probe saved.

ISPL+B's vote fails on the cat pairs of the two-class CIFAR-10 tier because a
weak learner trained on one core set of 2,400 images does not generalise to
the other core sets (docs/benchmarks.md). This script replays the vote with
learners trained instead on *the complement* of a core set, so that each
sample is judged only by learners that never saw it (cross-fitting):

- ``complement``: learner ``(bag b, core set c)`` trains on every sample
  outside ``c`` and votes on ``c``'s samples.
- ``cocluster``: the same, minus, in every other bag, the core set that
  shares the most samples with ``c``, so that poison split differently by
  another bag does not reach the learner; it votes on every sample it did not
  train on.
- ``own``: ISPL+B's own learners, retrained on their core sets and voting on
  every sample, the baseline the others are compared with.

``--trim q`` trains every learner as ``weak_learner_trim=q`` does: each
epoch after the first on the lowest-loss ``1 - q`` of each class of its rows.

``--balanced`` trains every learner on its rows with each class drawn up
(with replacement) to the size of its largest class, as
``balanced_self_training`` does for self-training.

It reads the ``.npz`` written by ``ispl_probe.py --save`` (core sets, labels,
which samples are poisoned), trains the learners with the tier's network and
appends one JSON line: the vote's FP/FN and each learner's training poison,
trust (share of the poison it votes on that it calls the target) and accuracy
on the clean samples it votes on::

    python benchmarks/cross_fit_replay.py 3-to-5-ell-0.1-seed100 probe.npz \\
        --rule cocluster --epochs 15 --data PATH/TO/cifar10 \\
        --out benchmarks/results/cifar10-two-class-cross-fit.jsonl
"""

import json
import time

import numpy as np
import torch
from environment import STARTED_AT_COMMIT, cpu_model
from grids import TWO_CLASS_NET
from ispl_probe import load_saved_probe, replay_parser
from weak_learner_contamination import WeakLearner

from sklearn_backdoor.incompatibility import oversample_to_balance, vote_by_mode
from sklearn_backdoor.metrics import removal_counts


def training_rows(component_of, bags, learner, rule):
    """Bool mask of the samples learner ``learner`` trains on."""
    bag = bags[learner]
    own = component_of[bag] == learner
    if rule == "own":
        return own
    train = ~own
    if rule == "complement":
        return train
    for other in np.unique(bags):
        if other == bag:
            continue
        candidates = np.flatnonzero(bags == other)
        overlap = [np.sum(own & (component_of[other] == k)) for k in candidates]
        train &= component_of[other] != candidates[int(np.argmax(overlap))]
    return train


def accuracy(predicted, y):
    return round(float((predicted == y).mean()), 3)


def replay(
    probe, poisoned, X_test, y_test, rule, epochs, seed, balanced=False, trim=0.0
):
    component_of, bags = probe["component_of"], probe["component_bags"]
    y = poisoned.y
    is_poison = poisoned.is_poison
    classes = np.unique(y)
    votes, eligible, learners = [], [], []
    for learner in range(len(bags)):
        train = training_rows(component_of, bags, learner, rule)
        rows = np.flatnonzero(train)
        if balanced:
            rows = oversample_to_balance(rows, y, np.random.RandomState(seed + learner))
        started = time.perf_counter()
        net = WeakLearner(poisoned.X, epochs, trim, seed + learner)
        net.fit(poisoned.X[rows], y[rows])
        seconds = time.perf_counter() - started
        predicted = net.predict(poisoned.X)
        voting = ~train
        if rule == "complement":
            voting = component_of[bags[learner]] == learner
        elif rule == "own":
            voting = np.ones_like(train)
        votes.append(np.searchsorted(classes, predicted))
        eligible.append(voting)
        clean_voted = voting & ~is_poison
        poison_voted = voting & is_poison
        learners.append(
            {
                "train_size": int(train.sum()),
                "train_poison": int((train & is_poison).sum()),
                "votes_on": int(voting.sum()),
                "poison_voted_on": int(poison_voted.sum()),
                "trust": round(
                    float((predicted[poison_voted] == poisoned.target).mean()), 3
                )
                if poison_voted.any()
                else None,
                "clean_acc_voted": round(
                    float((predicted[clean_voted] == y[clean_voted]).mean()), 3
                ),
                "clean_test_acc": accuracy(net.predict(X_test), y_test),
                "seconds": round(seconds, 1),
            }
        )
    votes, eligible = np.array(votes), np.array(eligible)
    rng = np.random.RandomState(seed)
    results = {}
    for min_votes in (1, 2):
        keep, _ = vote_by_mode(
            votes, np.searchsorted(classes, y), min_votes, rng, eligible=eligible
        )
        counts = removal_counts(keep, poisoned.poison_indices)
        results[f"min_votes_{min_votes}"] = {
            "fp": int(counts.false_positives),
            "fn": int(counts.false_negatives),
        }
    results["unanimous"] = unanimous_counts(votes, eligible, y, classes, poisoned)
    return results, learners, votes, eligible


def unanimous_counts(votes, eligible, y, classes, poisoned):
    """FP/FN when a sample is kept only if every learner voting on it agrees
    with its label (and at least one votes)."""
    agree = (votes == np.searchsorted(classes, y)) | ~eligible
    keep = agree.all(axis=0) & eligible.any(axis=0)
    counts = removal_counts(keep, poisoned.poison_indices)
    return {"fp": int(counts.false_positives), "fn": int(counts.false_negatives)}


def main(argv=None):
    parser = replay_parser(__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rule", choices=("complement", "cocluster", "own"), required=True
    )
    parser.add_argument("--balanced", action="store_true")
    parser.add_argument("--trim", type=float, default=0.0)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--save", default=None, help=".npz for the votes")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    probe, poisoned, X_test, y_test, _ = load_saved_probe(
        args.probe, args.scenario, args.data, args.seed
    )
    started = time.perf_counter()
    results, learners, votes, eligible = replay(
        probe,
        poisoned,
        X_test,
        y_test,
        args.rule,
        args.epochs,
        args.seed,
        balanced=args.balanced,
        trim=args.trim,
    )
    record = {
        "scenario": args.scenario,
        "probe": args.probe.rsplit("/", 1)[-1],
        "rule": args.rule,
        "balanced": args.balanced,
        "trim": args.trim,
        "epochs": args.epochs,
        "vote": results,
        "learners": learners,
        "seconds": round(time.perf_counter() - started, 1),
        "net": TWO_CLASS_NET,
        "threads": args.threads,
        "cpu_model": cpu_model(),
        "git_commit": STARTED_AT_COMMIT,
    }
    if args.save:
        np.savez_compressed(args.save, votes=votes, eligible=eligible)
    print(json.dumps(record), flush=True)
    with open(args.out, "a") as file:
        file.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
