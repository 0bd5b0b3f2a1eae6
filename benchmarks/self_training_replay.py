"""ISPL+B's self-training replayed from a saved vote, then the final model.

Where ISPL+B defends a pair of the two-class CIFAR-10 tier it still removes
too many clean images (0-to-2: 1,114, and 5 points of clean accuracy). The
vote decides most of that and self-training (App. C) is meant to win the
clean images back. This script starts from the vote an ``ispl_probe.py
--save`` file holds (``boosting_mask``), runs the estimator's own
self-training with the given parameters, trains the tier's final model on
what it keeps and appends one JSON line: FP/FN of the vote and after
self-training (per class too), clean accuracy and TMR. ``--vote
not-own-core`` starts instead from the vote recomputed from the saved
learners' logits without each learner's vote on its own core set
(``vote_on_own_core=False``); ``--start agreement`` starts self-training's
smoothed correctness at the share of the voting learners that agree with
each label instead of 0.5::

    python benchmarks/self_training_replay.py 0-to-2-pixel-0.1-seed100 \\
        probe.npz '{"self_training_rounds": 20, "self_training_epochs": 5}' \\
        --data PATH/TO/cifar10 \\
        --out benchmarks/results/cifar10-two-class-self-training.jsonl
"""

import json
import time

import numpy as np
import torch
from environment import STARTED_AT_COMMIT, cpu_model
from grids import TWO_CLASS_FINAL_EPOCHS, TWO_CLASS_ISPL_PARAMS, TWO_CLASS_NET
from ispl_probe import load_saved_probe, replay_parser
from run import attack_metrics, removed_clean_by_label
from vote_replay import load_probe, own_core_sets

from sklearn_backdoor import IncompatibilityClustering, NetworkClassifier
from sklearn_backdoor.incompatibility import vote_by_mode
from sklearn_backdoor.metrics import removal_counts


class StartedISPL(IncompatibilityClustering):
    """ISPL+B whose self-training starts from a given smoothed correctness."""

    def __init__(self, start=None, **params):
        super().__init__(**params)
        self.start = start

    def _initial_correctness(self, keep, y):
        if self.start is None:
            return super()._initial_correctness(keep, y)
        return self.start.copy()


def self_train_from_vote(
    poisoned, boosting_mask, params, seed, start=None, disagreement=None
):
    """The estimator's self-training, seeded with a saved vote; ``start``
    (if given) replaces the paper's starting correctness of 0.5, and
    ``disagreement`` is the vote's, as the estimator passes it."""
    ispl = StartedISPL(
        start=start,
        net=TWO_CLASS_NET,
        random_state=seed,
        **{**TWO_CLASS_ISPL_PARAMS, **params},
    )
    X, y = ispl._validate_training_data(poisoned.X, poisoned.y)
    X_t = ispl._training_tensor(X)
    y_t = torch.as_tensor(y, dtype=torch.long, device=X_t.device)
    rng = np.random.RandomState(seed)
    return ispl._self_train(
        X_t, y_t, y, boosting_mask.copy(), rng, disagreement=disagreement
    )


def saved_vote(path, rule, seed):
    """The vote a probe saved (``"saved"``) or, for ``"not-own-core"``, the
    estimator's vote recomputed from the saved logits without each learner's
    vote on its own core set; and the share of the voting learners that
    agree with each label."""
    probe = load_probe(path)
    eligible = None if rule == "saved" else ~own_core_sets(probe)
    keep, disagreement = vote_by_mode(
        probe["votes"],
        probe["y"],
        IncompatibilityClustering().min_votes,
        np.random.RandomState(seed),
        eligible=eligible,
    )
    if rule == "saved":
        keep = np.load(path)["boosting_mask"]
    return keep, 1 - disagreement


def counts(keep, poisoned):
    """FP/FN of ``keep``, and the clean samples removed per class."""
    removed = removal_counts(keep, poisoned.poison_indices)
    return {
        "fp": int(removed.false_positives),
        "fn": int(removed.false_negatives),
        "fp_per_class": removed_clean_by_label(keep, poisoned),
    }


def main(argv=None):
    parser = replay_parser(__doc__.split("\n\n")[0])
    parser.add_argument("params", type=json.loads, help="self-training parameters")
    parser.add_argument(
        "--replay-seed",
        type=int,
        default=None,
        help="seeds self-training and the final model (default: --seed), to "
        "measure their own variance from one vote",
    )
    parser.add_argument("--vote", choices=("saved", "not-own-core"), default="saved")
    parser.add_argument(
        "--start",
        choices=("paper", "agreement"),
        default="paper",
        help="self-training's starting correctness: 0.5 (paper) or the share "
        "of voting learners that agree with the label",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    probe, poisoned, X_test, y_test, scenario_params = load_saved_probe(
        args.probe, args.scenario, args.data, args.seed
    )
    replay_seed = args.seed if args.replay_seed is None else args.replay_seed
    started = time.perf_counter()
    vote, agreement = saved_vote(args.probe, args.vote, replay_seed)
    start = agreement if args.start == "agreement" else None
    keep = self_train_from_vote(
        poisoned, vote, args.params, replay_seed, start, disagreement=1 - agreement
    )
    self_training_seconds = time.perf_counter() - started
    final = NetworkClassifier(
        TWO_CLASS_NET, epochs=TWO_CLASS_FINAL_EPOCHS, random_state=replay_seed
    ).fit(poisoned.X[keep], poisoned.y[keep])
    metrics = attack_metrics(final, X_test, y_test, poisoned.trigger, scenario_params)
    record = {
        "scenario": args.scenario,
        "probe": args.probe.rsplit("/", 1)[-1],
        "params": args.params,
        "replay_seed": replay_seed,
        "vote_rule": args.vote,
        "start": args.start,
        "vote": counts(vote, poisoned),
        "self_trained": counts(keep, poisoned),
        "clean_accuracy": round(metrics["clean_accuracy"], 4),
        "tmr": round(metrics["tmr"], 4),
        "self_training_seconds": round(self_training_seconds, 1),
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
