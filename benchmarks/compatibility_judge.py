"""Would paper 001's compatibility test judge the undecided bags' clusters?

``IncompatibilityClustering(exclusionary_retraining=True)`` lets one network,
trained on every sample outside every candidate cluster, judge the
candidates of a bag whose learners confirmed none; on the two-class tier it
also confirmed clean sub-styles of hard pairs (docs/benchmarks.md). Paper
001 (sec. 3.3) names the test it replaced by its vote: measure whether
training on one subset improves performance on another, clean data being
compatible with itself and poison not (its Property 3.3: a network trained
on one set errs on more than half of an incompatible one). This script
applies it to each candidate cluster ``C`` of label ``c`` of every judged
bag: a fresh network, trained as a weak learner on ``C`` and every sample
of the other classes outside every candidate (classes balanced by
oversampling), reads every sample of class ``c`` outside every candidate.
A clean sub-style of ``c`` should teach ``c`` (most of the rest read as
``c``); a poisoned cluster, the source class's images with the trigger,
should teach the trigger only. It refits the tier's ISPL+B with
``exclusionary_retraining=True`` (the option's mask is unchanged: the test
only reads) and appends one JSON line per scenario with the fit's FP and
FN and, per candidate, its size, poisoned members, the judge's misread
share and confirmation, and the share of the rest of its class read as
its label::

    python benchmarks/compatibility_judge.py 8-to-6-pattern-0.2-seed1000 \\
        --data PATH/TO/cifar10-jpg.zip \\
        --out benchmarks/results/cifar10-two-class-compatibility-judge.jsonl

A fit takes the tier's (about 6 minutes at two threads) and every
candidate 30-76 s more.
"""

import argparse
import json
import time

import numpy as np
import torch
from environment import STARTED_AT_COMMIT, cpu_model
from grids import TWO_CLASS_ISPL_PARAMS, TWO_CLASS_NET, make_poisoned
from run import two_class_split

from sklearn_backdoor import IncompatibilityClustering
from sklearn_backdoor.cluster_vote import candidate_members
from sklearn_backdoor.datasets import load_cifar10
from sklearn_backdoor.incompatibility import oversample_to_balance


class CompatibilityProbe(IncompatibilityClustering):
    """The tier's ISPL+B that, after the exclusionary judge, tests every
    candidate of the judged bags for compatibility with the rest of its
    class (``compatibility_rows_``). ``is_poison`` is set before ``fit``."""

    is_poison = None

    def _judge_unconfirmed_bags(self, X_t, y_t, y, findings, rng):
        findings = super()._judge_unconfirmed_bags(X_t, y_t, y, findings, rng)
        self.compatibility_rows_ = []
        every = [found for learner in findings for found in learner.values()]
        excluded = candidate_members(every, y)
        for bag, index, name, found, label, cluster in self._judged_candidates(
            findings
        ):
            members = (found.clusters == cluster) & (y == label)
            row = self._compatibility_row(X_t, y_t, y, members, excluded, label, rng)
            row.update(
                bag=int(bag),
                learner=int(index),
                feature=name,
                judge_misread=round(float(found.misread[label, cluster]), 3),
                judge_confirmed=bool(found.confirmed[label, cluster]),
            )
            self.compatibility_rows_.append(row)
            print(row, flush=True)
        return findings

    def _judged_candidates(self, findings):
        """``(bag, learner, feature, findings, label, cluster)`` of every
        candidate cluster of the bags the exclusionary judge decided."""
        for bag in np.flatnonzero(self.exclusion_judged_bags_):
            for index in np.flatnonzero(self.component_bags_ == bag):
                for name, found in findings[index].items():
                    for label, cluster in np.argwhere(found.candidates):
                        yield bag, index, name, found, label, cluster

    def _compatibility_row(self, X_t, y_t, y, members, excluded, label, rng):
        """Train on ``members`` and the other classes outside ``excluded``;
        read the rest of ``label`` outside ``excluded``."""
        started = time.perf_counter()
        rows = np.flatnonzero(members | (~excluded & (y != label)))
        rows = oversample_to_balance(rows, y, rng)
        net = self._train_weak_learner(X_t, y_t, y, rows, rng, "compatibility")
        read = self._predict(net, X_t)
        rest = ~excluded & (y == label)
        return {
            "label": int(label),
            "size": int(members.sum()),
            "poisoned": int((members & self.is_poison).sum()),
            "rest_read_as_label": round(float((read[rest] == label).mean()), 3),
            "members_read_as_label": round(float((read[members] == label).mean()), 3),
            "n_rest": int(rest.sum()),
            "seconds": round(time.perf_counter() - started, 1),
        }


def scenario_record(scenario, data, threads):
    """Fit the probe on ``scenario`` and return its JSON record."""
    seed = int(scenario.rsplit("seed", 1)[1])
    X, y, X_test, y_test = load_cifar10(data)
    poisoned, _ = make_poisoned(scenario, X, y, seed)
    poisoned, _, _ = two_class_split(poisoned, X_test, y_test)
    CompatibilityProbe.is_poison = poisoned.is_poison
    params = dict(TWO_CLASS_ISPL_PARAMS, exclusionary_retraining=True)
    probe = CompatibilityProbe(net=TWO_CLASS_NET, random_state=seed, **params)
    started = time.perf_counter()
    probe.fit(poisoned.X, poisoned.y)
    return {
        "scenario": scenario,
        "params": params,
        "fp": int((~probe.mask_ & ~poisoned.is_poison).sum()),
        "fn": int((probe.mask_ & poisoned.is_poison).sum()),
        "judged_bags": probe.exclusion_judged_bags_.tolist(),
        "candidates": getattr(probe, "compatibility_rows_", []),
        "seconds": round(time.perf_counter() - started),
        "threads": threads,
        "cpu_model": cpu_model(),
        "git_commit": STARTED_AT_COMMIT,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenarios", nargs="+", help="tier scenarios")
    parser.add_argument("--data", required=True, help="CIFAR-10 folder or zip")
    parser.add_argument("--out", required=True, help="JSON lines file to append to")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for scenario in args.scenarios:
        record = scenario_record(scenario, args.data, args.threads)
        with open(args.out, "a") as out:
            out.write(json.dumps(record) + "\n")
        print(scenario, "FP", record["fp"], "FN", record["fn"], flush=True)


if __name__ == "__main__":
    main()
