"""Which vote would have removed the poison: ISPL+B's votes replayed on digits.

The two-class CIFAR-10 tier's cluster vote removes at least 90% of the
poison in only 74 of the 120 scenarios of the digits robustness grid
(docs/benchmarks.md). This script refits ISPL+B once per scenario of
``run.py --grid digits-robust`` with the same parameters (by default the
tier's vote parameters that the grid's records used), saves what a vote
needs (every weak learner's predictions, core sets and 2-means clusters with
their silhouettes) in ``--cache``, and applies every rule of :data:`RULES`
to the same weak learners, so rules differ only in how they vote. One JSON
line per scenario and rule: the share of the poison the rule removes and the
clean samples it removes. Each scenario's line for ``"cluster vote"`` also
says whether the replay reproduced the fitted estimator's own mask
(``"reproduces_fit"``). ::

    python benchmarks/vote_rules_replay.py --cache /tmp/vote-rules \\
        --out benchmarks/results/digits-vote-rules.jsonl

``--probe FILE.npz`` replays the rules instead on a CIFAR-10 probe saved by
``ispl_probe.py --save`` (with ``vote="clusters"``: it stores each weak
learner's representations), clustering the representations as the
estimator does (seed 0), with the cluster vote's rules only (the label
votes need more than one bag); saliency maps are not stored there.

``--seed-offset K`` fits ISPL+B with ``random_state`` the run's seed plus
``K`` (the poisoned data unchanged): whether a rule's findings hold beyond
the one draw of core sets and learners that it was chosen on (a cache of
its own).

A fit takes 10-20 s at one torch thread; ``--shard i/k`` fits every
``k``-th scenario from the ``i``-th, so ``k`` processes can share the
cache; an existing cache file is not refitted.
"""

import argparse
import json
import os

import numpy as np
import torch
from environment import STARTED_AT_COMMIT, cpu_model
from grids import TWO_CLASS_ISPL_PARAMS
from run import append_record, make_sanitizer, parse_arguments, poisoned_data
from run import select_runs as grid_runs

from sklearn_backdoor.cluster_vote import flag_poison_clusters
from sklearn_backdoor.incompatibility import in_core_sets, vote_by_mode

# The tier's parameters that the digits grid's cluster-vote records used (the
# digits keep their own schedules).
TIER_VOTE_PARAMS = {
    key: TWO_CLASS_ISPL_PARAMS[key]
    for key in (
        "n_components",
        "trim_per_class",
        "vote",
        "cluster_features",
        "min_votes",
        "min_misread",
        "self_training",
    )
}
FINDINGS = ("clusters", "candidates", "silhouettes", "confirmed")


def digits_runs(params, grid="digits-robust"):
    """The ISPL+B runs of a digits grid with ``params``."""
    argv = ["--grid", grid, "--defenses", "ispl", "--out", os.devnull]
    return grid_runs(parse_arguments([*argv, "--params", json.dumps(params)]))


def fit_and_save(run, path, seed_offset=0):
    """Fit ``run``'s ISPL+B (seeded ``run.seed + seed_offset``) and save
    what the rules need in ``path``."""

    def untimed(_, function, *args):
        return function(*args)

    poisoned, _, _, _ = poisoned_data(run, None, "cpu", untimed)
    ispl = make_sanitizer(run, "cpu").set_params(random_state=run.seed + seed_offset)
    ispl.fit(poisoned.X, poisoned.y)
    saved = {
        "y": np.searchsorted(ispl.classes_, poisoned.y),
        "is_poison": poisoned.is_poison,
        "votes": np.searchsorted(ispl.classes_, ispl.votes_),
        "bags": ispl.component_bags_,
        "cores": in_core_sets(ispl.components_, len(poisoned.y)),
        "mask": ispl.mask_,
    }
    for learner, findings in enumerate(ispl.cluster_findings_):
        for features, found in findings.items():
            for name in FINDINGS:
                saved[f"{learner}:{features}:{name}"] = getattr(found, name)
    np.savez_compressed(path, **saved)


def load_fit(path):
    """A saved fit: arrays, plus ``"findings"`` keyed by (learner, features)."""
    with np.load(path) as saved:
        fit = {key: saved[key] for key in saved.files if ":" not in key}
        findings = {}
        for key in saved.files:
            if ":" in key:
                learner, features, name = key.split(":")
                findings.setdefault((int(learner), features), {})[name] = saved[key]
    fit["findings"] = findings
    return fit


def load_probe(path):
    """An ``ispl_probe.py --save`` file as a saved fit (representations only)."""
    with np.load(path) as saved:
        y = np.searchsorted(saved["classes"], saved["y"])
        votes = saved["train_logits"].argmax(-1)
        bags = saved["component_bags"]
        cores = np.stack(
            [saved["component_of"][bag] == learner for learner, bag in enumerate(bags)]
        )
        representations = saved["train_representations"]
        fit = {"y": y, "is_poison": saved["is_poison"], "votes": votes}
    fit.update(bags=bags, cores=cores, mask=None, findings={})
    for learner, features in enumerate(representations):
        others = votes[(bags == bags[learner]) & (np.arange(len(bags)) != learner)]
        _, _, found = flag_poison_clusters(
            features, y, 0, other_predictions=others, return_findings=True
        )
        fit["findings"][(learner, "representations")] = {
            name: getattr(found, name) for name in FINDINGS
        }
    return fit


def readers(fit, learner, members, confirm_by):
    """Which learners' readings of ``members`` confirm ``learner``'s cluster.

    ``"others"``: the bag's other learners, as the estimator asks;
    ``"untrained"``: for each member, the bag's learners whose core sets do
    not hold it (all of them for a member of no core set); ``"every bag"``:
    every learner of every bag whose core set does not hold it (the
    estimator's ``confirming_learners="untrained"``).
    """
    if confirm_by == "every bag":
        return np.arange(len(fit["bags"])), ~fit["cores"][:, members]
    bag = np.flatnonzero(fit["bags"] == fit["bags"][learner])
    if confirm_by == "others":
        chosen = bag[bag != learner]
        return chosen, np.ones((len(chosen), len(members)), dtype=bool)
    eligible = ~fit["cores"][bag][:, members]
    eligible[:, ~eligible.any(axis=0)] = True
    return bag, eligible


def confirmed(fit, learner, members, label, confirm_by, ratio):
    """Whether the readings of ``members`` confirm their cluster as poison.

    ``ratio="misread"``: at least half the readings miss the label (the
    estimator's ``min_misread=0.5``); ``"chen"``: the most read other class
    is read more often than the label (Chen et al.'s exclusionary
    reclassification with threshold 1); a number ``t``: more than ``t``
    times as often (the estimator's ``min_other_class_ratio=t``).
    """
    chosen, eligible = readers(fit, learner, members, confirm_by)
    readings = fit["votes"][chosen][:, members][eligible]
    if readings.size == 0:
        return False
    own = int((readings == label).sum())
    if ratio == "misread":
        return readings.size - own >= 0.5 * readings.size
    others = np.bincount(readings[readings != label], minlength=1)
    threshold = 1 if ratio == "chen" else ratio
    return int(others.max()) > threshold * own


def bag_cluster_flags(fit, bag, confirm_by="others", ratio="misread", every=False):
    """The samples one bag's cluster vote flags under a confirmation rule.

    The most cohesive learner-and-features with a confirmed cluster flags
    all its confirmed clusters (the estimator's rule); ``every=True`` flags
    every confirmed cluster of every learner of the bag.
    """
    y = fit["y"]
    standing = []
    for (learner, features), found in fit["findings"].items():
        if fit["bags"][learner] != bag:
            continue
        for label, side in zip(*np.nonzero(found["candidates"]), strict=True):
            members = np.flatnonzero((y == label) & (found["clusters"] == side))
            if len(members) and confirmed(
                fit, learner, members, label, confirm_by, ratio
            ):
                cohesion = found["silhouettes"][label]
                standing.append((cohesion, (learner, features), members))
    flags = np.zeros(len(y), dtype=bool)
    if standing and not every:
        source = max(standing, key=lambda found: found[0])[1]
        standing = [found for found in standing if found[1] == source]
    for _, _, members in standing:
        flags[members] = True
    return flags


def cluster_vote(fit, min_votes=1, **rule):
    """Keep mask of the cluster vote under ``rule``: a sample is removed
    when at least ``min_votes`` bags flag it."""
    flags = [bag_cluster_flags(fit, bag, **rule) for bag in np.unique(fit["bags"])]
    return np.sum(flags, axis=0) < min_votes


def label_vote(fit, untrained_only):
    """Keep mask of the paper's modal vote (``min_votes=2``), by every
    learner or only by those whose core sets do not hold the sample
    (Algorithm 2's "votes on the other clusters")."""
    eligible = ~fit["cores"] if untrained_only else None
    keep, _ = vote_by_mode(
        fit["votes"], fit["y"], 2, np.random.RandomState(0), eligible=eligible
    )
    return keep


RULES = {
    "cluster vote": lambda fit: cluster_vote(fit),
    "cluster vote, every confirmed cluster": lambda fit: cluster_vote(fit, every=True),
    "cluster vote, confirmed by untrained learners": lambda fit: cluster_vote(
        fit, confirm_by="untrained"
    ),
    "cluster vote, confirmed by untrained learners, every confirmed cluster": (
        lambda fit: cluster_vote(fit, confirm_by="untrained", every=True)
    ),
    "cluster vote, Chen's ratio": lambda fit: cluster_vote(fit, ratio="chen"),
    # The first step of run.py's ispl-chain (min_votes=2,
    # min_other_class_ratio=1), and stricter ratios.
    **{
        f"cluster vote, two bags, other-class ratio over {ratio}": (
            lambda fit, ratio=ratio: cluster_vote(fit, min_votes=2, ratio=ratio)
        )
        for ratio in (1, 2, 3, 5)
    },
    # The same, judged by the learners of every bag that did not train on
    # each member (confirming_learners="untrained").
    **{
        f"cluster vote, two bags, untrained learners of every bag, "
        f"other-class ratio over {ratio}": (
            lambda fit, ratio=ratio: cluster_vote(
                fit, min_votes=2, ratio=ratio, confirm_by="every bag"
            )
        )
        for ratio in (2, 5)
    },
    "label vote": lambda fit: label_vote(fit, untrained_only=False),
    "label vote of untrained learners": lambda fit: label_vote(
        fit, untrained_only=True
    ),
    "cluster vote or label vote of untrained learners": lambda fit: (
        cluster_vote(fit) & label_vote(fit, untrained_only=True)
    ),
}


CLUSTER_RULES = {
    name: rule
    for name, rule in RULES.items()
    if name.startswith("cluster vote") and "label vote" not in name
}


def rule_records(fit, scenario, params, rules=RULES):
    """One record per rule of ``rules`` for one saved fit."""
    poison = fit["is_poison"]
    records = []
    for name, rule in rules.items():
        keep = rule(fit)
        record = {
            "scenario": scenario,
            "rule": name,
            "params": params,
            "poison_removed": float((~keep & poison).sum() / poison.sum()),
            "fp": int((~keep & ~poison).sum()),
            "fn": int((keep & poison).sum()),
        }
        if name == "cluster vote" and fit["mask"] is not None:
            record["reproduces_fit"] = bool(np.array_equal(keep, fit["mask"]))
        records.append(record)
    return records


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", help="folder of the saved digits fits")
    parser.add_argument("--probe", help="an ispl_probe.py --save file instead")
    parser.add_argument("--out", help="JSON-lines results file (omit: fit only)")
    parser.add_argument(
        "--params",
        type=json.loads,
        default=TIER_VOTE_PARAMS,
        help="JSON object of ISPL+B parameters (default: the tier's vote)",
    )
    parser.add_argument("--shard", default="0/1", help="i/k: every k-th from i")
    parser.add_argument(
        "--grid",
        default="digits-robust",
        choices=("digits-robust", "digits"),
        help="the digits grid whose scenarios are refitted",
    )
    parser.add_argument(
        "--seed-offset",
        type=int,
        default=0,
        help="fit ISPL+B with random_state = the run's seed plus this (the "
        "poisoning keeps the run's seed); use a --cache of its own",
    )
    args = parser.parse_args(argv)
    if args.probe:
        name = os.path.basename(args.probe)
        fit = load_probe(args.probe)
        for record in rule_records(fit, name, None, CLUSTER_RULES):
            record.update(cpu_model=cpu_model(), git_commit=STARTED_AT_COMMIT)
            append_record(args.out, record)
        return
    if args.cache is None:
        parser.error("one of --cache and --probe is required")
    start, step = (int(part) for part in args.shard.split("/"))
    torch.set_num_threads(1)
    os.makedirs(args.cache, exist_ok=True)
    for run in digits_runs(args.params, args.grid)[start::step]:
        path = os.path.join(args.cache, f"{run.scenario}.npz")
        if not os.path.exists(path):
            fit_and_save(run, path, args.seed_offset)
        if args.out is None:
            continue
        for record in rule_records(load_fit(path), run.scenario, args.params):
            record.update(
                seed_offset=args.seed_offset,
                cpu_model=cpu_model(),
                git_commit=STARTED_AT_COMMIT,
            )
            append_record(args.out, record)


if __name__ == "__main__":
    main()
