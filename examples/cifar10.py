"""ISPL+B on a reference CIFAR-10 dirty-label scenario
===================================================

Loads CIFAR-10 (a ``cifar-10-batches-py`` folder, an image folder or a zip
such as ``cifar10-jpg.zip``), poisons it with one of the 24 scenarios of the
authors' generator, then trains the same network three ways and prints TMR,
clean accuracy, FP, FN and seconds per phase:

- no defense: on the poisoned data;
- oracle: on the clean part only (what a perfect defense would give);
- ISPL+B: on the samples ``IncompatibilityClustering`` keeps.

Scenario 0 at seed 100 and eps 10% is airplane -> bird with a single pixel::

    python examples/cifar10.py path/to/cifar10-jpg.zip --scenario 0

A GPU is strongly recommended: the fast network trains CIFAR-10 in seconds
there and in tens of minutes on a CPU. ``--json-out FILE`` appends the
results as one JSON line.
"""

import argparse
import json
import platform
import subprocess

import numpy as np
import torch

from sklearn_backdoor import IncompatibilityClustering, NetworkClassifier
from sklearn_backdoor.datasets import load_cifar10, stratified_subset
from sklearn_backdoor.metrics import (
    clean_accuracy,
    removal_counts,
    targeted_misclassification_rate,
)
from sklearn_backdoor.poisoning import reference_scenarios
from sklearn_backdoor.training import (
    Stopwatch,
    resolve_device,
)

FINAL_EPOCHS = {"fast": 40, "preact_resnet18": 200, "resnet32": 200}


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="CIFAR-10 folder or zip")
    parser.add_argument("--scenario", type=int, default=0, help="pair index 0-7")
    parser.add_argument("--seed", type=int, default=100, choices=(100, 1000, 10000))
    parser.add_argument("--eps", type=float, default=0.1, choices=(0.05, 0.1, 0.2))
    parser.add_argument("--net", default="fast", choices=sorted(FINAL_EPOCHS))
    parser.add_argument("--final-epochs", type=int, default=None)
    parser.add_argument(
        "--ispl",
        default="{}",
        help="JSON dict of IncompatibilityClustering parameters, e.g. "
        "'{\"weak_learner_epochs\": 20}'",
    )
    parser.add_argument(
        "--n-train",
        type=int,
        default=None,
        help="use a shuffled subset of this many training images, every class "
        "in its share (smoke tests, fit time against n)",
    )
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json-out", default=None)
    return parser.parse_args()


def evaluate(model, X_test, y_test, scenario, trigger):
    source = y_test == scenario.source
    predicted = model.predict(X_test)
    tmr = targeted_misclassification_rate(
        y_test[source],
        predicted[source],
        model.predict(trigger.apply(X_test[source])),
    )
    return {"tmr": tmr, "clean_accuracy": clean_accuracy(y_test, predicted)}


def timed(device, function, *args):
    """``function(*args)`` and its seconds, the device work queued in it included."""
    with Stopwatch(device) as watch:
        result = function(*args)
    return result, watch.seconds


def git_commit():
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main():
    args = parse_arguments()
    device = resolve_device(args.device)
    final_epochs = args.final_epochs or FINAL_EPOCHS[args.net]
    seconds = {}
    (X_train, y_train, X_test, y_test), seconds["load"] = timed(
        device, load_cifar10, args.path
    )
    if args.n_train is not None:
        X_train, y_train = stratified_subset(
            X_train, y_train, args.n_train, random_state=args.random_state
        )
    scenario = reference_scenarios(args.seed, poison_fractions=(args.eps,))[
        args.scenario
    ]
    poisoned = scenario.poison(X_train, y_train)
    trigger = scenario.trigger()
    print(
        f"{scenario.name}: {len(poisoned.poison_indices)} poisoned of "
        f"{len(poisoned.y)}, net {args.net}, device {device}"
    )

    def final_model():
        return NetworkClassifier(
            args.net,
            epochs=final_epochs,
            random_state=args.random_state,
            device=device,
        )

    ispl = IncompatibilityClustering(
        net=args.net,
        random_state=args.random_state,
        device=device,
        **json.loads(args.ispl),
    )
    _, seconds["ispl_fit"] = timed(device, ispl.fit, poisoned.X, poisoned.y)
    clean = ~poisoned.is_poison
    training_sets = {
        "no defense": np.ones(len(poisoned.y), dtype=bool),
        "oracle": clean,
        "ISPL+B": ispl.mask_,
    }
    rows = {}
    for name, keep in training_sets.items():
        classes = np.unique(poisoned.y[keep])
        if len(classes) < 2:
            print(
                f"{name} kept {keep.sum()} samples of {len(classes)} class(es): "
                "no final model to train (a classifier needs two classes)"
            )
            continue
        model, seconds[f"{name} final"] = timed(
            device, final_model().fit, poisoned.X[keep], poisoned.y[keep]
        )
        counts = removal_counts(keep, poisoned.poison_indices)
        rows[name] = {
            **evaluate(model, X_test, y_test, scenario, trigger),
            "fp": counts.false_positives,
            "fn": counts.false_negatives,
        }

    print(f"{'defense':<12}{'TMR':>8}{'clean acc':>11}{'FP':>7}{'FN':>6}")
    for name, row in rows.items():
        print(
            f"{name:<12}{row['tmr']:>8.1%}{row['clean_accuracy']:>11.1%}"
            f"{row['fp']:>7d}{row['fn']:>6d}"
        )
    print("seconds:", {k: round(v, 1) for k, v in seconds.items()})
    poison_per_core_set = [int(poisoned.is_poison[c].sum()) for c in ispl.components_]
    vote_fn = int((ispl.boosting_mask_ & poisoned.is_poison).sum())
    print(
        f"ISPL+B: poisoned samples per core set {poison_per_core_set}; "
        f"kept by the vote {vote_fn}, after self-training "
        f"{int((ispl.mask_ & poisoned.is_poison).sum())}; "
        f"phases (s) { ({k: round(v, 1) for k, v in ispl.phase_seconds_.items()}) }"
    )
    if args.json_out:
        record = {
            "scenario": scenario.name,
            "net": args.net,
            "final_epochs": final_epochs,
            "ispl_params": ispl.get_params(deep=False) | {"net": args.net},
            "results": rows,
            "seconds": seconds,
            "ispl_phase_seconds": ispl.phase_seconds_,
            "poison_per_core_set": poison_per_core_set,
            "poison_kept_by_vote": vote_fn,
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "host": platform.node(),
            "torch": torch.__version__,
            "commit": git_commit(),
        }
        with open(args.json_out, "a") as file:
            file.write(json.dumps(record, default=str) + "\n")


if __name__ == "__main__":
    main()
