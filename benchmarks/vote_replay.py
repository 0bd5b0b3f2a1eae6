"""Replay ISPL+B's vote offline from a probe's saved weak learners.

``ispl_probe.py --save FILE.npz`` stores every core set and every weak
learner's logits on the training and test images. This script reads such a
file and writes one JSON line per learner (its core set's size, class counts
and poison, its accuracy on the clean training samples outside its core set
and on the clean test images, and its "trust": the share of the poisoned
samples outside its core set that it predicts as the target) and one per vote
rule (FP and FN of the reference's modal vote, of the vote without a
learner's own core set, of stricter agreement thresholds, and, as an upper
bound no defender can reach, of the vote of only the learners whose core
sets hold at most :data:`NEARLY_CLEAN` poisoned samples, chosen knowing the
poison)::

    python benchmarks/vote_replay.py FILE.npz --scenario 3-to-5-ell-0.1-seed100 \\
        --out benchmarks/results/cifar10-two-class-vote-replay.jsonl
"""

import argparse
import json

import numpy as np

from sklearn_backdoor.incompatibility import in_core_sets, vote_by_mode

AGREEMENT_THRESHOLDS = (0.5, 0.6, 0.67, 0.75)
NEARLY_CLEAN = 30


def load_probe(path):
    """The saved probe, labels encoded as the learners' class indices."""
    saved = np.load(path)
    classes = saved["classes"]
    return {
        "y": np.searchsorted(classes, saved["y"]),
        "y_test": np.searchsorted(classes, saved["y_test"]),
        "is_poison": saved["is_poison"],
        "component_of": saved["component_of"],
        "bags": saved["component_bags"],
        "votes": saved["train_logits"].argmax(-1),
        "test_votes": saved["test_logits"].argmax(-1),
    }


def own_core_sets(probe):
    """``(n_learners, n_samples)``: whether a sample is in a learner's core set."""
    n_learners, n_samples = len(probe["bags"]), len(probe["y"])
    cores = [
        np.flatnonzero(probe["component_of"][bag] == learner)
        for learner, bag in zip(range(n_learners), probe["bags"], strict=True)
    ]
    return in_core_sets(cores, n_samples)


def learner_rows(probe):
    y, poison = probe["y"], probe["is_poison"]
    target = int(np.bincount(y[poison]).argmax())
    own = own_core_sets(probe)
    rows = []
    for index, (votes, core) in enumerate(zip(probe["votes"], own, strict=True)):
        outside_clean = ~core & ~poison
        outside_poison = ~core & poison
        rows.append(
            {
                "learner": index,
                "bag": int(probe["bags"][index]),
                "core_size": int(core.sum()),
                "core_clean_per_class": np.bincount(
                    y[core & ~poison], minlength=int(y.max()) + 1
                ).tolist(),
                "core_poison": int((core & poison).sum()),
                "acc_clean_outside_core": _share(
                    votes[outside_clean] == y[outside_clean]
                ),
                "acc_clean_test": _share(probe["test_votes"][index] == probe["y_test"]),
                "trust_poison_outside_core": _share(votes[outside_poison] == target),
            }
        )
    return rows


def vote_rows(probe, seed=0):
    """FP and FN of the library's modal vote (every learner, or not on its own
    core set) and of stricter shares of agreeing votes."""
    y, poison = probe["y"], probe["is_poison"]
    own = own_core_sets(probe)
    rows = []
    core_poison = (own & poison).sum(axis=1)
    nearly_clean = np.broadcast_to((core_poison <= NEARLY_CLEAN)[:, None], own.shape)
    for name, eligible in (
        ("every learner", None),
        ("not own core", ~own),
        (f"only learners with <= {NEARLY_CLEAN} poisoned (oracle)", nearly_clean),
    ):
        keep, disagreement = vote_by_mode(
            probe["votes"], y, 1, np.random.RandomState(seed), eligible=eligible
        )
        rows.append(_counts(f"mode, {name}", keep, poison))
        for threshold in AGREEMENT_THRESHOLDS[1:]:
            agree = 1 - disagreement > threshold
            rows.append(_counts(f"agreement > {threshold}, {name}", agree, poison))
    return rows


def _counts(rule, keep, poison):
    return {
        "rule": rule,
        "fp": int((~keep & ~poison).sum()),
        "fn": int((keep & poison).sum()),
    }


def _share(hits):
    return round(float(hits.mean()), 3) if hits.size else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("probe", help=".npz written by ispl_probe.py --save")
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--params", type=json.loads, default={})
    parser.add_argument("--out", required=True, help="JSON-lines file to append to")
    args = parser.parse_args(argv)
    probe = load_probe(args.probe)
    records = [{"kind": "learner", **row} for row in learner_rows(probe)]
    records += [{"kind": "vote", **row} for row in vote_rows(probe)]
    with open(args.out, "a") as file:
        for record in records:
            record.update(scenario=args.scenario, params=args.params)
            print(json.dumps(record))
            file.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
