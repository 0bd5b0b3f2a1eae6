"""One ISPL+B fit on a two-class reference scenario, with where the poison went.

A probe for tuning ISPL+B on the two-class CIFAR-10 tier without training a
final model: prints and appends one JSON line with the poison count of each
core set, each weak learner's share of poisoned samples it predicts as the
target ("trust") and its accuracy on the clean training samples, the vote's
FP/FN, the final FP/FN and seconds per phase::

    python benchmarks/ispl_probe.py 0-to-2-pixel-0.1-seed100 \\
        '{"n_bags": 1, "self_training": false}' --data PATH/TO/cifar10 \\
        --out benchmarks/results/cifar10-two-class-probes.jsonl
"""

import argparse
import json
import time

import numpy as np
import torch
from environment import STARTED_AT_COMMIT, cpu_model
from grids import TWO_CLASS_NET, make_poisoned
from run import two_class_split

from sklearn_backdoor import IncompatibilityClustering
from sklearn_backdoor.datasets import load_cifar10
from sklearn_backdoor.metrics import removal_counts
from sklearn_backdoor.pooling import block_mean
from sklearn_backdoor.representations import extract_representations
from sklearn_backdoor.training import predict_logits


def probe(scenario, params, data, seed=100, save=None):
    X, y, X_test, y_test = load_cifar10(data)
    poisoned, _ = make_poisoned(scenario, X, y, seed)
    poisoned, X_test, y_test = two_class_split(poisoned, X_test, y_test)
    ispl = IncompatibilityClustering(net=TWO_CLASS_NET, random_state=seed, **params)
    started = time.perf_counter()
    ispl.fit(poisoned.X, poisoned.y)
    seconds = time.perf_counter() - started
    if save:
        save_learners(save, ispl, poisoned, X_test, y_test)
    is_poison = poisoned.is_poison
    clean = ~is_poison
    vote = removal_counts(ispl.boosting_mask_, poisoned.poison_indices)
    final = removal_counts(ispl.mask_, poisoned.poison_indices)
    return {
        "scenario": scenario,
        "params": params,
        "seconds": round(seconds, 1),
        "phases": {k: round(v, 1) for k, v in ispl.phase_seconds_.items()},
        "comp_sizes": [len(c) for c in ispl.components_],
        "comp_poison": [int(is_poison[c].sum()) for c in ispl.components_],
        "learner_poison_trust": [
            round(float((v[is_poison] == poisoned.target).mean()), 3)
            for v in ispl.votes_
        ],
        "learner_clean_acc": [
            round(float((v[clean] == poisoned.y[clean]).mean()), 3) for v in ispl.votes_
        ],
        "vote_fp": int(vote.false_positives),
        "vote_fn": int(vote.false_negatives),
        "final_fp": int(final.false_positives),
        "final_fn": int(final.false_negatives),
        "comp_seconds": np.round(ispl.component_seconds_, 1).tolist(),
    }


def learner_logits(ispl, X):
    """Each weak learner's logits on raw images ``X`` (unaugmented), at the
    resolution the learners saw (``weak_learner_pooling``)."""
    X_t = block_mean(ispl._new_data_tensor(X), ispl.weak_learner_pooling)
    return np.stack(
        [predict_logits(net, X_t).cpu().numpy() for net in ispl.weak_learners_]
    )


def learner_representations(ispl, X):
    """Each weak learner's representations (the layer the cluster vote
    clusters) of raw images ``X``, at the learners' resolution."""
    X_t = block_mean(ispl._new_data_tensor(X), ispl.weak_learner_pooling)
    return np.stack(
        [extract_representations(net, X_t).cpu().numpy() for net in ispl.weak_learners_]
    )


def save_learners(path, ispl, poisoned, X_test, y_test):
    """Everything needed to replay the vote offline: core sets, each weak
    learner's logits on the training and test images (clean and triggered)
    and its representations of the training images, the labels and which
    samples are poisoned; the learners' weights beside it (``.learners.pt``)."""
    attacked = y_test == poisoned.source
    component_of = np.full((ispl.n_bags, len(poisoned.y)), -1)
    for index, (core, bag) in enumerate(
        zip(ispl.components_, ispl.component_bags_, strict=True)
    ):
        component_of[bag, core] = index
    np.savez_compressed(
        path,
        y=poisoned.y,
        y_true=poisoned.y_true,
        is_poison=poisoned.is_poison,
        component_of=component_of,
        component_bags=ispl.component_bags_,
        classes=ispl.classes_,
        train_logits=learner_logits(ispl, poisoned.X),
        train_representations=learner_representations(ispl, poisoned.X),
        test_logits=learner_logits(ispl, X_test),
        triggered_test_logits=learner_logits(
            ispl, poisoned.trigger.apply(X_test[attacked])
        ),
        y_test=y_test,
        boosting_mask=ispl.boosting_mask_,
    )
    torch.save(
        [net.module_.state_dict() for net in ispl.weak_learners_],
        f"{path}.learners.pt",
    )


def replay_parser(description):
    """Command-line arguments shared by the scripts that replay a saved probe:
    the scenario, the ``--save`` file, ``--seed``, ``--data``, ``--out`` and
    ``--threads``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("scenario")
    parser.add_argument("probe", help=".npz written by ispl_probe.py --save")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--data", required=True, help="CIFAR-10 folder or zip")
    parser.add_argument("--out", required=True, help="JSON-lines file to append to")
    parser.add_argument("--threads", type=int, default=2)
    return parser


def load_saved_probe(path, scenario, data, seed=100):
    """A file written by ``--save`` and the scenario it was saved on.

    Returns ``(saved arrays, poisoned two-class training set, X_test, y_test,
    scenario parameters)``; raises ValueError if the file's poison is not the
    scenario's.
    """
    saved = np.load(path)
    X, y, X_test, y_test = load_cifar10(data)
    poisoned, scenario_params = make_poisoned(scenario, X, y, seed)
    poisoned, X_test, y_test = two_class_split(poisoned, X_test, y_test)
    if not np.array_equal(saved["is_poison"], poisoned.is_poison):
        raise ValueError(f"probe={str(path)!r} was not saved on {scenario}")
    return saved, poisoned, X_test, y_test, scenario_params


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario")
    parser.add_argument("params", type=json.loads, help="ISPL+B parameters (JSON)")
    parser.add_argument("--data", required=True, help="CIFAR-10 folder or zip")
    parser.add_argument("--out", required=True, help="JSON-lines file to append to")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--seed", type=int, default=100, help="the defense's random_state"
    )
    parser.add_argument(
        "--save", default=None, help=".npz for the core sets and learners' logits"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    record = probe(
        args.scenario, args.params, args.data, seed=args.seed, save=args.save
    )
    record.update(
        threads=args.threads, cpu_model=cpu_model(), git_commit=STARTED_AT_COMMIT
    )
    print(json.dumps(record))
    with open(args.out, "a") as file:
        file.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
