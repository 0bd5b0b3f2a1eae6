"""Replay a differential vote on the core sets an ISPL probe saved.

Every vote ISPL+B has tried asks whether learners that did not see a sample
agree with its label, and a clean image near the class boundary fails that
test as a poisoned one does (docs/benchmarks.md). This script measures a vote
that asks instead whether a learner that *knows the trigger* and one that
does not *disagree* about a sample:

1. With two core sets per bag (``ispl_probe.py`` with ``n_components=2``),
   the poison-rich core set of a bag is found without labels of poison: it is
   the core set whose samples the other core set's learner gets wrong more
   often (the poison is incompatible with the clean core set, the clean
   samples are not incompatible with the poison-rich one). The record says,
   for each bag, which core set that picks and how much poison each holds.
2. Each core set is split in random halves and a learner is trained on each
   half, so that every sample is judged by a learner of the poison-rich core
   set ("T") and one of the clean core set ("U") that did not train on it.
3. Bag ``b`` calls a sample poisoned when ``T`` agrees with its label and
   ``U`` does not; a sample is removed when most bags call it poisoned
   ("differential"). For comparison, the same held-out learners' plain vote
   ("U disagrees", the rule every vote so far has used) and the share of the
   clean samples ``U`` misreads that ``T`` misreads too.

::

    python benchmarks/differential_replay.py 7-to-4-pixel-0.1-seed100 probe.npz \\
        --data PATH/TO/cifar10 \\
        --out benchmarks/results/cifar10-two-class-differential.jsonl
"""

import json
import time

import numpy as np
import torch
from environment import STARTED_AT_COMMIT, cpu_model
from grids import TWO_CLASS_NET
from ispl_probe import load_saved_probe, replay_parser
from weak_learner_contamination import WeakLearner

from sklearn_backdoor.metrics import removal_counts


def cores_of_bag(component_of, bags, bag):
    """The learner indices and core-set masks of bag ``bag``."""
    learners = np.flatnonzero(bags == bag)
    return learners, [component_of[bag] == learner for learner in learners]


def poison_rich_core(votes, y, cores, learners):
    """Index (0 or 1) of the core set whose samples the other core set's
    learner misreads more often, and the two error rates."""
    if len(cores) != 2:
        raise ValueError(f"needs two core sets per bag, got {len(cores)}")
    errors = [
        float((votes[learners[1 - k]][cores[k]] != y[cores[k]]).mean()) for k in (0, 1)
    ]
    return int(np.argmax(errors)), errors


def held_out_predictions(X, y, core, epochs, seed):
    """Predictions of two learners, each trained on a random half of
    ``core``: a sample in one half is judged by the other half's learner,
    a sample outside ``core`` by the first learner."""
    rng = np.random.RandomState(seed)
    rows = np.flatnonzero(core)
    first = rng.rand(len(rows)) < 0.5
    halves = (rows[first], rows[~first])
    predicted = []
    for k, half in enumerate(halves):
        net = WeakLearner(X, epochs, 0.0, seed + k).fit(X[half], y[half])
        predicted.append(net.predict(X))
    judged = predicted[0].copy()
    judged[halves[0]] = predicted[1][halves[0]]
    return judged


def counts(keep, poisoned):
    found = removal_counts(keep, poisoned.poison_indices)
    return {"fp": int(found.false_positives), "fn": int(found.false_negatives)}


def replay(saved, poisoned, epochs, seed):
    classes = saved["classes"]
    y = poisoned.y
    y_idx = np.searchsorted(classes, y)
    votes = saved["train_logits"].argmax(-1)
    component_of, bags = saved["component_of"], saved["component_bags"]
    is_poison = poisoned.is_poison
    clean = ~is_poison
    per_bag, differential, plain = [], [], []
    for bag in np.unique(bags):
        learners, cores = cores_of_bag(component_of, bags, bag)
        rich, errors = poison_rich_core(votes, y_idx, cores, learners)
        T = held_out_predictions(poisoned.X, y, cores[rich], epochs, seed + 10 * bag)
        U = held_out_predictions(
            poisoned.X, y, cores[1 - rich], epochs, seed + 10 * bag + 5
        )
        u_wrong, t_right = U != y, T == y
        differential.append(t_right & u_wrong)
        plain.append(u_wrong)
        per_bag.append(
            {
                "bag": int(bag),
                "core_poison": [int((c & is_poison).sum()) for c in cores],
                "core_sizes": [int(c.sum()) for c in cores],
                "other_learner_error": [round(e, 3) for e in errors],
                "picked": rich,
                "picked_is_richest": rich
                == int(np.argmax([(c & is_poison).sum() for c in cores])),
                "T_trust": round(float((T[is_poison] == poisoned.target).mean()), 3),
                "U_trust": round(float((U[is_poison] == poisoned.target).mean()), 3),
                "T_clean_acc": round(float(t_right[clean].mean()), 3),
                "U_clean_acc": round(float((~u_wrong)[clean].mean()), 3),
                "clean_U_wrong_T_wrong_too": round(
                    float((~t_right[clean & u_wrong]).mean()), 3
                ),
                "differential": counts(~differential[-1], poisoned),
                "U_disagrees": counts(~u_wrong, poisoned),
            }
        )
    majority = len(per_bag) // 2 + 1
    rules = {
        "differential, most bags": counts(np.sum(differential, 0) < majority, poisoned),
        "differential, any bag": counts(np.sum(differential, 0) == 0, poisoned),
        "U disagrees, most bags": counts(np.sum(plain, 0) < majority, poisoned),
    }
    return per_bag, rules


def main(argv=None):
    parser = replay_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    saved, poisoned, _, _, _ = load_saved_probe(
        args.probe, args.scenario, args.data, args.seed
    )
    started = time.perf_counter()
    per_bag, rules = replay(saved, poisoned, args.epochs, args.seed)
    record = {
        "scenario": args.scenario,
        "probe": args.probe.rsplit("/", 1)[-1],
        "epochs": args.epochs,
        "bags": per_bag,
        "rules": rules,
        "seconds": round(time.perf_counter() - started, 1),
        "net": TWO_CLASS_NET,
        "threads": args.threads,
        "cpu_model": cpu_model(),
        "git_commit": STARTED_AT_COMMIT,
    }
    print(json.dumps(record), flush=True)
    with open(args.out, "a") as file:
        file.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
