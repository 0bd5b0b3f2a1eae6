"""Time ISPL+B's cluster vote with and without the shared inference pass.

Since 4103890 the cluster vote reads each weak learner's votes and
representations from one forward pass (``augment_scoring=False``), and a
convolutional network on a CPU infers in batches of 256 instead of 1,024.
This fits the two-class tier's ISPL+B once on a tier scenario (with short
schedules: the learners only need to exist, the vote's work does not depend
on how well they learned), then runs the vote on the same learners the old
way (separate passes, batch 1,024) and the new way, alternately, and records
each vote's seconds and how many samples it removed, so that the speed-up is
judged by what the vote decides as well as by the clock::

    python benchmarks/vote_speed.py --data ../shared/data/cifar10-jpg.zip \\
        --out benchmarks/results/vote_speed-cpu.json
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from environment import STARTED_AT_COMMIT, cpu_model, library_versions
from grids import TWO_CLASS_ISPL_PARAMS, TWO_CLASS_NET, make_poisoned
from run import two_class_split

import sklearn_backdoor.representations
import sklearn_backdoor.saliency
import sklearn_backdoor.training
from sklearn_backdoor import IncompatibilityClustering
from sklearn_backdoor.datasets import load_cifar10

# The modules that read the inference batch size.
INFERENCE_MODULES = (
    sklearn_backdoor.training,
    sklearn_backdoor.representations,
    sklearn_backdoor.saliency,
)
CURRENT_INFERENCE_BATCH_SIZE = sklearn_backdoor.training.inference_batch_size
SHORT_SCHEDULES = {
    "warmup_epochs": 1,
    "epochs_per_iteration": 1,
    "weak_learner_epochs": 3,
}


class KeepsItsInputs(IncompatibilityClustering):
    """ISPL+B that keeps the standardised images its learners saw."""

    def _fit_mask(self, X_t, y_t, rng):
        self.X_t_ = X_t
        return super()._fit_mask(X_t, y_t, rng)


def old_inference_batch_size(net, batch_size=None):
    """The batch size of every inference pass before 4103890."""
    return batch_size or max(1024, 4 * int(getattr(net, "batch_size", 256)))


def use_the_old_passes(old):
    """Switch the vote between the old passes and the current ones."""
    for module in INFERENCE_MODULES:
        module.inference_batch_size = (
            old_inference_batch_size if old else CURRENT_INFERENCE_BATCH_SIZE
        )
    if old:
        KeepsItsInputs._vote_reads_representations = lambda self: False
    elif "_vote_reads_representations" in KeepsItsInputs.__dict__:
        del KeepsItsInputs._vote_reads_representations


def timed_vote(ispl, labels, old):
    """Seconds of one vote on ``ispl``'s learners, and how many it removed."""
    use_the_old_passes(old)
    try:
        start = time.perf_counter()
        keep, _ = ispl._vote(ispl.X_t_, labels, np.random.RandomState(0))
        seconds = time.perf_counter() - start
    finally:
        use_the_old_passes(False)
    return {"seconds": seconds, "removed": int((~keep).sum())}


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 (zip or folder)")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--scenario", default="9-to-2-pixel-0.1-seed100")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--note", default="", help="what else ran on the machine meanwhile"
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(argv)
    torch.set_num_threads(args.threads)
    X, y, X_test, y_test = load_cifar10(args.data)
    seed = int(args.scenario.rsplit("seed", 1)[1])
    poisoned, _ = make_poisoned(args.scenario, X, y, seed)
    poisoned, _, _ = two_class_split(poisoned, X_test, y_test)
    params = dict(TWO_CLASS_ISPL_PARAMS, **SHORT_SCHEDULES)
    ispl = KeepsItsInputs(net=TWO_CLASS_NET, random_state=seed, **params)
    ispl.fit(poisoned.X, poisoned.y)
    labels = np.searchsorted(ispl.classes_, poisoned.y)
    votes = []
    for repeat in range(args.repeats):
        for old in (True, False):
            vote = timed_vote(ispl, labels, old)
            vote.update(passes="separate, batch 1024" if old else "shared, batch 256")
            vote["repeat"] = repeat
            votes.append(vote)
            print(json.dumps(vote), flush=True)
    result = {
        "benchmark": "vote_speed",
        "scenario": args.scenario,
        "n_train": int(len(poisoned.y)),
        "n_learners": len(ispl.weak_learners_),
        "params": params,
        "votes": votes,
        "threads": args.threads,
        "note": args.note,
        "cpu_model": cpu_model(),
        "versions": library_versions(),
        "git_commit": STARTED_AT_COMMIT,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
