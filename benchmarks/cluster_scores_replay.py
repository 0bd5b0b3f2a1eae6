"""Does any score single out the poison's cluster? Digits, the defaults' learners.

At eps 20% ISPL+B's defaults keep most of the poison in 19 of the 40
digits-robust scenarios (docs/benchmarks.md). This script refits ISPL+B
once per scenario of ``run.py --grid digits-robust`` with the defaults'
weak learners (8 core sets a bag) and the cluster vote's candidate search
(``vote="clusters"``, ``min_misread=0``, both features), saves every
candidate cluster of every learner with its members, each learner's
predictions and core set in ``--cache``, and scores each candidate in
several ways:

- ``misread_by_bag``: the share of its members' labels the bag's other
  learners misread (what ``min_misread`` thresholds);
- ``misread_untrained``: the same over every learner of every bag whose core
  set does not hold the member;
- ``silhouette``: the cohesion of its class's 2-means split;
- ``recurrence``: how many other learners found a cluster with Jaccard
  similarity of at least 0.6 to it;
- ``misread_concentration``: the share of its misread votes that go to the
  single most voted other class (a poisoned digit should be read as its
  source class), and ``concentration_x_misread``, the product of the two.

- ``incompatibility`` (with ``--compatibility``): paper 001's test, one
  minus the share of the rest of its class that a network trained on the
  candidate and every sample of the other classes (classes balanced by
  oversampling; ``--compatibility-epochs``) reads as the candidate's label.
  Near-duplicate candidates (Jaccard at least 0.8) share one network.

A candidate is *pure poison* if it holds at least 90% of the poisoned
samples and at least 80% of its members are poisoned. One JSON line per
scenario: whether a pure poison candidate exists, and for each score
whether the top-scoring candidate is pure poison (``top``) and whether a
pure poison candidate outscores every candidate without poison
(``separates``). ::

    python benchmarks/cluster_scores_replay.py --cache /tmp/cluster-scores \\
        --fractions 0.2 --out benchmarks/results/digits-cluster-scores.jsonl

A fit takes 28-54 s at one torch thread; an existing cache file is not
refitted. ``--compatibility`` trains one more network per group of
near-duplicate candidates (about 2-4 s each on digits) and adds, per
scenario, the pure poison candidates' readings and how many groups without
poison the rest of their class reads as their label less than half the
time (``clean_groups_incompatible``, of ``n_clean_groups``).
"""

import argparse
import json
import os

import numpy as np
import torch
from environment import STARTED_AT_COMMIT, cpu_model
from run import make_sanitizer, poisoned_data
from vote_rules_replay import digits_runs

from sklearn_backdoor import NetworkClassifier
from sklearn_backdoor.incompatibility import in_core_sets, oversample_to_balance

CANDIDATE_SEARCH = dict(
    vote="clusters",
    min_votes=1,
    min_misread=0.0,
    cluster_features="both",
    self_training=False,
)
KINDS = ("representations", "saliency")
RECURRENCE_JACCARD = 0.6
NEAR_DUPLICATE_JACCARD = 0.8


def cache_candidates(run, path):
    """Fit the defaults' learners on ``run`` and save every candidate."""
    poisoned, _, _, _ = poisoned_data(run, None, "cpu", lambda _, f, *a: f(*a))
    estimator = make_sanitizer(run, "cpu")
    estimator.fit(poisoned.X, poisoned.y)
    y = np.searchsorted(estimator.classes_, poisoned.y)
    meta, members = [], []
    for learner, findings in enumerate(estimator.cluster_findings_):
        for kind, found in findings.items():
            for label, cluster in zip(*np.nonzero(found.candidates), strict=True):
                meta.append(
                    [
                        learner,
                        int(estimator.component_bags_[learner]),
                        KINDS.index(kind),
                        int(label),
                        float(found.misread[label, cluster]),
                        float(found.silhouettes[label]),
                    ]
                )
                members.append((y == label) & (found.clusters == cluster))
    np.savez_compressed(
        path,
        meta=np.array(meta),
        members=np.array(members),
        core=in_core_sets(estimator.components_, len(y)),
        votes=np.searchsorted(estimator.classes_, estimator.votes_),
        y=y,
        poison=np.asarray(poisoned.is_poison),
    )


def jaccard_similarities(members):
    """``(n, n)``: the Jaccard similarity of every pair of member masks."""
    overlap = members.astype(np.int32) @ members.T.astype(np.int32)
    sizes = members.sum(axis=1)
    return overlap / (sizes[:, None] + sizes[None, :] - overlap)


def candidate_scores(cache):
    """Each score of each candidate, and which candidates are pure poison or
    hold no poison at all."""
    meta, members = cache["meta"], cache["members"]
    core, votes, y, poison = cache["core"], cache["votes"], cache["y"], cache["poison"]
    wrong = votes != y[None, :]
    jaccard = jaccard_similarities(members)
    learners = meta[:, 0].astype(int)
    scores = {name: np.zeros(len(meta)) for name in SCORES}
    scores["misread_by_bag"] = meta[:, 4]
    scores["silhouette"] = meta[:, 5]
    for index, cluster in enumerate(members):
        untrained = ~core[:, cluster]
        misread_votes = wrong[:, cluster]
        scores["misread_untrained"][index] = (misread_votes & untrained).sum() / max(
            untrained.sum(), 1
        )
        similar = (jaccard[index] >= RECURRENCE_JACCARD) & (learners != learners[index])
        scores["recurrence"][index] = len(np.unique(learners[similar]))
        read_as = votes[:, cluster][misread_votes]
        concentration = (
            np.bincount(read_as).max() / len(read_as) if len(read_as) else 0.0
        )
        scores["misread_concentration"][index] = concentration
        scores["concentration_x_misread"][index] = concentration * misread_votes.mean()
    held = (members & poison[None, :]).sum(axis=1)
    pure = (held >= 0.9 * poison.sum()) & (held >= 0.8 * members.sum(axis=1))
    return scores, pure, held == 0


SCORES = (
    "misread_by_bag",
    "misread_untrained",
    "silhouette",
    "recurrence",
    "misread_concentration",
    "concentration_x_misread",
)


def near_duplicate_groups(members, threshold=NEAR_DUPLICATE_JACCARD):
    """Each candidate's group: the index of the first (largest first) candidate
    whose members it shares with Jaccard similarity at least ``threshold``."""
    sizes = members.sum(axis=1)
    jaccard = jaccard_similarities(members)
    group = np.full(len(members), -1)
    for index in np.argsort(-sizes, kind="stable"):
        if group[index] < 0:
            group[(group < 0) & (jaccard[index] >= threshold)] = index
    return group


def compatibility_readings(run, cache, epochs):
    """Per candidate: the share of the rest of its class read as its label by
    a network trained on it and the other classes (one per group)."""
    poisoned, _, _, _ = poisoned_data(run, None, "cpu", lambda _, f, *a: f(*a))
    members, y = cache["members"], cache["y"]
    labels = cache["meta"][:, 3].astype(int)
    group = near_duplicate_groups(members)
    rng = np.random.RandomState(0)
    readings = np.zeros(len(members))
    for representative in np.unique(group):
        cluster, label = members[representative], labels[representative]
        rows = oversample_to_balance(np.flatnonzero(cluster | (y != label)), y, rng)
        model = NetworkClassifier(run.net, epochs=epochs, random_state=0, device="cpu")
        model.fit(poisoned.X[rows], y[rows])
        rest = (y == label) & ~cluster
        readings[group == representative] = (
            model.predict(poisoned.X[rest]) == label
        ).mean()
    return readings, group


def scenario_record(run, cache, compatibility=None):
    """The JSON line of one scenario; ``compatibility`` is
    :func:`compatibility_readings`' result, or None."""
    scores, pure, clean = candidate_scores(cache)
    if compatibility is not None:
        readings, group = compatibility
        scores["incompatibility"] = 1 - readings
    record = {
        "scenario": run.scenario,
        "n_poisoned": int(cache["poison"].sum()),
        "n_candidates": len(pure),
        "n_pure_poison": int(pure.sum()),
        "n_clean": int(clean.sum()),
    }
    for name, score in scores.items():
        record[f"{name}_top"] = bool(pure[np.argmax(score)])
        record[f"{name}_separates"] = bool(
            pure.any() and score[pure].max() > score[clean].max()
        )
    if compatibility is not None:
        clean_groups = np.unique(group[clean])
        record |= {
            "pure_poison_readings": sorted(set(np.round(readings[pure], 3).tolist())),
            "n_clean_groups": len(clean_groups),
            "clean_groups_incompatible": int((readings[clean_groups] < 0.5).sum()),
            "clean_readings_lowest": np.round(
                np.sort(readings[clean_groups])[:5], 3
            ).tolist(),
        }
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.2])
    parser.add_argument("--scenarios", nargs="+", help="only these scenarios")
    parser.add_argument("--compatibility", action="store_true")
    parser.add_argument("--compatibility-epochs", type=int, default=20)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    os.makedirs(args.cache, exist_ok=True)
    runs = [
        run
        for run in digits_runs(CANDIDATE_SEARCH)
        if any(run.scenario.endswith(f"-{fraction:g}") for fraction in args.fractions)
        and (args.scenarios is None or run.scenario in args.scenarios)
    ]
    with open(args.out, "w") as out:
        for run in runs:
            path = os.path.join(args.cache, f"{run.scenario}.npz")
            if not os.path.exists(path):
                cache_candidates(run, path)
            cache = np.load(path)
            compatibility = None
            if args.compatibility:
                compatibility = compatibility_readings(
                    run, cache, args.compatibility_epochs
                )
            record = scenario_record(run, cache, compatibility)
            record["compatibility_epochs"] = (
                args.compatibility_epochs if args.compatibility else None
            )
            record |= {"commit": STARTED_AT_COMMIT, "cpu_model": cpu_model()}
            out.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)
    summarise(args.out)


def summarise(path):
    """Print how many scenarios each score gets right."""
    records = [json.loads(line) for line in open(path)]
    print(f"{len(records)} scenarios, a pure poison candidate in", end=" ")
    print(sum(r["n_pure_poison"] > 0 for r in records))
    for name in [*SCORES, "incompatibility"]:
        if f"{name}_top" not in records[0]:
            continue
        top = sum(r[f"{name}_top"] for r in records)
        separates = sum(r[f"{name}_separates"] for r in records)
        print(f"{name}: top candidate pure poison {top}, separates {separates}")


if __name__ == "__main__":
    main()
