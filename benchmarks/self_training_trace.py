"""Where ISPL+B's self-training takes poison back, round by round (digits).

On the digits-robust grid at eps 20% the vote keeps only a few poisoned
images, and in half of the scenarios self-training then keeps all of them
(docs/benchmarks.md). This script refits ISPL+B (its defaults, seed 0) on
some of those scenarios and records, for every self-training round, how
many poisoned samples the round's network predicts with their (poisoned)
label and how many clean samples it gets wrong. ``--init`` replays
self-training with another start for the smoothed correctness:

- ``paper``: 0.5 for every sample (App. C and the reference code), so one
  correct prediction admits a sample;
- ``agreement``: the share of weak learners whose vote agreed with the
  label, so a sample the vote rejected needs several correct rounds;
- ``binary``: 1 for the samples the vote kept, 0 for the others.

::

    python benchmarks/self_training_trace.py --init paper \\
        --out benchmarks/results/digits-self-training-trace.jsonl

``--all`` runs every eps-20% scenario of the grid instead of the four
(``--fraction 0.05``: every eps-5% one);
``--params '{"self_training_trim": 0.3, "self_training_trim_rounds": 10}'``
passes further parameters of the estimator (recorded with each line).
Each record also says, of the samples the final mask removes, how the
last round's network, on the images without augmentation (the estimator
scores augmented ones with its default ``augment_scoring=True``), ranks
their label (``removed_label_rank``: counts of
rank 0, 1, 2 and 3 or more, poisoned and clean apart) and whether the vote
had kept them (``removed_vote_kept``), and what FN and FP would be if the
removed samples whose label the network gives at least ``p`` were kept
again (``reclaimed_fn_fp``): whether its confidence can tell the poison
it keeps out from the clean samples it loses with it.
Records with ``"trim_schedule": "linear"`` or ``"half"`` were written by an
earlier version of this script whose own schedule is now the estimator's
``self_training_trim_rounds`` (19 and 10 of 20 rounds).
"""

import argparse
import json

import numpy as np
import torch
from environment import STARTED_AT_COMMIT, cpu_model
from grids import CORNER_TRIGGERS, DIGITS_ROBUST_PAIRS, CornerPatch
from run import append_record, load_dataset

from sklearn_backdoor import IncompatibilityClustering
from sklearn_backdoor.training import predict_logits

# Failures (FN 24-25 after a vote FN of 2-9) and one success of the grid.
SCENARIOS = (("tl", 2, 9), ("tr", 0, 7), ("tl", 6, 0), ("tr", 1, 4))


class TracedISPL(IncompatibilityClustering):
    """ISPL+B recording each self-training round, with a chosen start."""

    def __init__(self, init="paper", is_poison=None, **params):
        super().__init__(**params)
        self.init = init
        self.is_poison = is_poison

    def _self_train(self, X_t, y_t, y, keep, rng, disagreement=None):
        self.rounds_, self._labels = [], y
        try:
            return super()._self_train(X_t, y_t, y, keep, rng, disagreement)
        finally:
            del self._labels

    def _initial_correctness(self, keep, y):
        if self.init == "agreement":
            # Share of the weak learners whose vote agrees with the label.
            return (self.votes_ == self.classes_[y]).mean(axis=0)
        if self.init == "binary":
            return keep.astype(float)
        return super()._initial_correctness(keep, y)

    def _self_training_predictions(self, nets, X_t, folds):
        """Each self-training round's predictions, counted."""
        self.last_round_ = (nets, X_t, self._labels)
        predicted = super()._self_training_predictions(nets, X_t, folds)
        correct = predicted == self._labels
        self.rounds_.append(
            [
                int(correct[self.is_poison].sum()),
                int((~correct[~self.is_poison]).sum()),
            ]
        )
        return predicted


RECLAIM_PROBABILITIES = (0.05, 0.2, 0.5)


def label_probability(net, X_t, labels):
    """The softmax probability ``net`` gives each sample's label, and the
    label's rank among the classes (0: predicted)."""
    probabilities = torch.softmax(predict_logits(net, X_t).float(), dim=1)
    probabilities = probabilities.cpu().numpy()
    own = probabilities[np.arange(len(labels)), labels]
    rank = (probabilities > own[:, None]).sum(axis=1)
    return own, rank


def removed_sample_record(ispl, is_poison):
    """What the last round's network says of the samples the mask removes
    (nothing with several self-training folds, whose networks each judge
    only their own fold)."""
    nets, X_t, labels = ispl.last_round_
    if len(nets) > 1:
        return {}
    own, rank = label_probability(nets[0], X_t, labels)
    removed = ~ispl.mask_
    record = {"removed_label_rank": {}, "removed_vote_kept": {}}
    for name, rows in (("poisoned", is_poison), ("clean", ~is_poison)):
        ranks = np.minimum(rank[removed & rows], 3)
        record["removed_label_rank"][name] = np.bincount(ranks, minlength=4).tolist()
        record["removed_vote_kept"][name] = int(
            (removed & rows & ispl.boosting_mask_).sum()
        )
    record["reclaimed_fn_fp"] = {
        str(p): fn_fp(ispl.mask_ | (own >= p), is_poison) for p in RECLAIM_PROBABILITIES
    }
    return record


def poisoned_digits(scenario, X, y, seed):
    """``scenario``'s poisoned training set and which of its samples are
    poisoned."""
    poisoned, _ = scenario.poison(X, y, seed, None, "cpu")
    is_poison = np.zeros(len(poisoned.y), dtype=bool)
    is_poison[poisoned.poison_indices] = True
    return poisoned, is_poison


def fn_fp(keep, is_poison):
    """Poisoned samples kept and clean samples removed by ``keep``."""
    return [int((keep & is_poison).sum()), int((~keep & ~is_poison).sum())]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--init", choices=("paper", "agreement", "binary"))
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--all",
        action="store_true",
        help="every scenario of the digits-robust grid at --fraction (40 fits)",
    )
    parser.add_argument(
        "--fraction",
        type=float,
        default=0.2,
        help="poisoned share of the source class (default 0.2)",
    )
    parser.add_argument(
        "--params",
        type=json.loads,
        default={},
        help="JSON object of further IncompatibilityClustering parameters",
    )
    args = parser.parse_args(argv)
    scenarios = SCENARIOS
    if args.all:
        scenarios = [
            (corner, source, target)
            for source, target in DIGITS_ROBUST_PAIRS
            for corner in CORNER_TRIGGERS
        ]
    torch.set_num_threads(1)
    X, y, _, _ = load_dataset("digits")
    for corner, source, target in scenarios:
        scenario = CornerPatch(source, target, args.fraction, corner)
        poisoned, is_poison = poisoned_digits(scenario, X, y, seed=0)
        ispl = TracedISPL(
            init=args.init,
            is_poison=is_poison,
            random_state=0,
            **args.params,
        )
        ispl.fit(poisoned.X, poisoned.y)
        record = {
            "scenario": scenario.name,
            "fraction": args.fraction,
            "init": args.init,
            "params": args.params,
            "vote_fn": int((ispl.boosting_mask_ & is_poison).sum()),
            "vote_fp": int((~ispl.boosting_mask_ & ~is_poison).sum()),
            "fn": int((ispl.mask_ & is_poison).sum()),
            "fp": int((~ispl.mask_ & ~is_poison).sum()),
            "rounds_poison_with_label_clean_wrong": ispl.rounds_,
            **removed_sample_record(ispl, is_poison),
            "cpu_model": cpu_model(),
            "git_commit": STARTED_AT_COMMIT,
        }
        print(json.dumps(record), flush=True)
        append_record(args.out, record)


if __name__ == "__main__":
    main()
