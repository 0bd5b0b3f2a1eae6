"""Run a grid of (data set, attack, defense, network, seed) and record each run.

Every run appends one JSON line to the output file with its key, the scenario
and defense parameters, the metrics (clean accuracy, TMR, poison accuracy,
FP, FN), seconds per phase, peak GPU memory, the device, library versions and
the git commit. Runs whose key is already in the file are skipped, so an
interrupted grid resumes where it stopped.

On CPU (digits, about 15 minutes on one core)::

    OMP_NUM_THREADS=1 python benchmarks/run.py --grid digits \\
        --out benchmarks/results/digits.jsonl

On GPUs, one job per GPU (job ``i`` uses ``cuda:{i % n_gpus}``)::

    python benchmarks/run.py --grid dlbd --data /tmp/cifar10-jpg.zip \\
        --out benchmarks/results/cifar10-fast.jsonl

``--backend ray`` runs the jobs through Ray's joblib backend (a local Ray
instance, or the cluster of ``RAY_ADDRESS``), one GPU per job.
"""

import argparse
import datetime
import functools
import importlib
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import joblib
import numpy as np
import torch
from environment import (
    STARTED_AT_COMMIT,
    MachineShare,
    cpu_model,
    device_name,
    library_versions,
)
from grids import (
    ACTIVATION_CLUSTERING,
    CLUSTER_FIRST_ISPL_PARAMS,
    DEFENSES,
    GRIDS,
    ISPL,
    ISPL_CHAIN,
    ITLM,
    MINIMAX_DEFENSES,
    NO_DEFENSE,
    ORACLE,
    SPECTRAL_SIGNATURES,
    TWO_CLASS_DATASET,
    attacker_for,
    build_grid,
    restrict_to_classes,
    scenario_by_name,
    subsample_poisoned,
)
from sklearn.metrics import recall_score
from sklearn.model_selection import train_test_split

from sklearn_backdoor import (
    ActivationClusteringFilter,
    IncompatibilityClustering,
    ITLMFilter,
    NetworkClassifier,
    NoisyLabelMinimaxTrainer,
    SanitizerChain,
    SpectralSignatureFilter,
)
from sklearn_backdoor.datasets import load_cifar10, load_digits_images
from sklearn_backdoor.metrics import (
    clean_accuracy,
    poison_accuracy,
    removal_counts,
    targeted_misclassification_rate,
)
from sklearn_backdoor.training import Stopwatch


def ispl_chain(net="auto", random_state=None, device="auto", **params):
    """ISPL+B's cluster vote (``CLUSTER_FIRST_ISPL_PARAMS``), then ISPL+B's
    defaults on what it kept, as one sanitizer; ``params`` are the chain's
    (``clusters__<name>``, ``labels__<name>``)."""
    common = dict(net=net, random_state=random_state, device=device)
    chain = SanitizerChain(
        [
            (
                "clusters",
                IncompatibilityClustering(**common, **CLUSTER_FIRST_ISPL_PARAMS),
            ),
            ("labels", IncompatibilityClustering(**common)),
        ]
    )
    return chain.set_params(**params)


SANITIZER_CLASSES = {
    SPECTRAL_SIGNATURES: SpectralSignatureFilter,
    ACTIVATION_CLUSTERING: ActivationClusteringFilter,
    ITLM: ITLMFilter,
    ISPL: IncompatibilityClustering,
    ISPL_CHAIN: ispl_chain,
}


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def load_dataset(dataset, data_path=None):
    """``(X_train, y_train, X_test, y_test)``, cached per worker process.

    Digits are split 70/30, stratified, with seed 0 (as the quickstart).
    """
    if dataset == "digits":
        X, y = load_digits_images()
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=0.3, stratify=y, random_state=0
        )
        return X_train, y_train, X_test, y_test
    if dataset in ("cifar10", TWO_CLASS_DATASET):
        if data_path is None:
            raise ValueError("the CIFAR-10 grids need --data PATH")
        return load_cifar10(data_path)
    raise ValueError(f"unknown data set {dataset!r}")


# ---------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------


def job_device(job_index, device="auto"):
    """``cuda:{job_index % n_gpus}`` when CUDA is visible, else ``device`` or cpu."""
    if device != "auto":
        return device
    n_gpus = torch.cuda.device_count()
    return f"cuda:{job_index % n_gpus}" if n_gpus else "cpu"


class PhaseTimer:
    """Seconds per named phase, the device work queued in it included."""

    def __init__(self, device):
        self.device = device
        self.seconds = {}

    def __call__(self, phase, function, *args, **kwargs):
        with Stopwatch(self.device) as watch:
            result = function(*args, **kwargs)
        self.seconds[phase] = watch.seconds
        return result


# ---------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------


def attacked_test_rows(y_test, scenario_params):
    """Test rows whose triggered copies the attack aims at (not the target class)."""
    source = scenario_params.get("source")
    if source is not None:
        return y_test == source
    target = scenario_params.get("target")
    if target is not None:
        return y_test != target
    return np.ones(len(y_test), dtype=bool)


def attack_metrics(model, X_test, y_test, trigger, scenario_params):
    """Clean accuracy on the whole test set; TMR and poison accuracy on the
    attacked test rows.

    ``tmr`` is paper 001's eq. 7 (any flip counts); ``tmr_targeted`` counts
    only flips to the attack's target, as the authors' evaluation code does
    (None for attacks without a single target).
    """
    rows = attacked_test_rows(y_test, scenario_params)
    y_attacked = y_test[rows]
    pred_test = model.predict(X_test)
    pred_clean = pred_test[rows]
    pred_triggered = model.predict(trigger.apply(X_test[rows]))
    target = scenario_params.get("target")
    tmr_targeted = None
    if target is not None:
        tmr_targeted = targeted_misclassification_rate(
            y_attacked, pred_clean, pred_triggered, target=target
        )
    return {
        "clean_accuracy": float(clean_accuracy(y_test, pred_test)),
        "clean_accuracy_by_class": accuracy_by_class(y_test, pred_test),
        "tmr": float(
            targeted_misclassification_rate(y_attacked, pred_clean, pred_triggered)
        ),
        "tmr_targeted": None if tmr_targeted is None else float(tmr_targeted),
        "poison_accuracy": float(poison_accuracy(y_attacked, pred_triggered)),
        "n_test_attacked": int(rows.sum()),
    }


def accuracy_by_class(y_true, y_pred):
    """``{label: accuracy on its test rows}`` (each class's recall; labels as
    strings, for JSON): which class a final model gave up when the defense
    removed clean samples."""
    labels = np.unique(y_true)
    recalls = recall_score(y_true, y_pred, labels=labels, average=None)
    return {str(label): float(r) for label, r in zip(labels, recalls, strict=True)}


def removed_clean_by_label(keep, poisoned):
    """``{label: clean samples of that label the defense removed}`` for every
    label of the training set (the FP per class; labels as strings, for
    JSON)."""
    removed = ~keep & ~poisoned.is_poison
    return {
        str(label): int(np.sum(removed & (poisoned.y == label)))
        for label in np.unique(poisoned.y)
    }


def make_sanitizer(run, device):
    params = dict(run.defense_params)
    return SANITIZER_CLASSES[run.defense](
        net=run.net, random_state=run.seed, device=device, **params
    )


def defended_mask(run, poisoned, device, timer):
    """Which training samples the final model sees, and the fitted defense."""
    n = len(poisoned.y)
    if run.defense == NO_DEFENSE:
        return np.ones(n, dtype=bool), None
    if run.defense == ORACLE:
        return ~poisoned.is_poison, None
    sanitizer = make_sanitizer(run, device)
    timer("defense_fit", sanitizer.fit, poisoned.X, poisoned.y)
    return sanitizer.mask_, sanitizer


def no_model_reason(y_kept):
    """Why no final model can be trained on the kept labels, or None."""
    classes = np.unique(y_kept)
    if len(classes) == 0:
        return "the defense kept no sample; no final model"
    if len(classes) < 2:
        return (
            f"the defense kept only class {classes[0]} ({len(y_kept)} samples); "
            "no final model"
        )
    return None


def run_paper001_defense(run, poisoned, test, device, timer):
    """The final model trained on what the defense kept (None if it kept fewer
    than two classes)."""
    keep, sanitizer = defended_mask(run, poisoned, device, timer)
    if no_model_reason(poisoned.y[keep]):
        return None, keep, sanitizer
    final = NetworkClassifier(
        run.net, epochs=run.final_epochs, random_state=run.seed, device=device
    )
    timer("final_fit", final.fit, poisoned.X[keep], poisoned.y[keep])
    return final, keep, sanitizer


def run_minimax_defense(run, poisoned, test, device, timer):
    X_test, y_test, X_test_triggered = test
    trainer = NoisyLabelMinimaxTrainer(
        run.net,
        epochs=run.final_epochs,
        random_state=run.seed,
        device=device,
        **dict(run.defense_params),
    )
    timer(
        "final_fit",
        trainer.fit,
        poisoned.X,
        poisoned.y,
        eval_set=(X_test, y_test, X_test_triggered),
    )
    return trainer, trainer.mask_, trainer


def cluster_candidates(findings, labels, is_poison):
    """One weak learner's candidate poison clusters (see
    ``IncompatibilityClustering.cluster_findings_``, a ClusterFindings per
    clustered feature): what they were found in, class, size, poisoned
    members, the other learners' misread share, the class's silhouette and
    whether the cluster stood."""
    return [
        {"features": name, **row}
        for name, found in findings.items()
        for row in feature_candidates(found, labels, is_poison)
    ]


def feature_candidates(findings, labels, is_poison):
    """The candidate clusters of one ClusterFindings (see
    :func:`cluster_candidates`)."""
    rows = []
    for label, cluster in zip(*np.nonzero(findings.candidates), strict=True):
        members = (findings.clusters == cluster) & (labels == label)
        misread = float(findings.misread[label, cluster])
        rows.append(
            {
                "class": int(label),
                "size": int(members.sum()),
                "poisoned": int((members & is_poison).sum()),
                "misread": None if np.isnan(misread) else round(misread, 3),
                "silhouette": round(float(findings.silhouettes[label]), 3),
                "stood": bool(findings.confirmed[label, cluster]),
            }
        )
    return rows


def learner_agreement(votes, poisoned):
    """Per weak learner (rows of ``votes``, the last vote's): the share of
    the poisoned samples it predicts as labelled, i.e. whose vote it gives
    to the attacker, and the share of the clean samples it predicts as
    labelled."""
    agrees = votes == poisoned.y
    is_poison = poisoned.is_poison
    return {
        "learner_poison_trust": agrees[:, is_poison].mean(axis=1).round(3).tolist(),
        "learner_clean_agreement": agrees[:, ~is_poison].mean(axis=1).round(3).tolist(),
    }


def defense_diagnostics(defense, poisoned):
    """What a fitted defense's attributes say about where poison went.

    Every defense with ``phase_seconds_`` gives its phases. ISPL+B also gives
    the size, poison count and seconds (search, weak learner) of each core
    set, and FP/FN of the vote before self-training (of every vote, with
    ``vote_rounds > 1``; with ``vote="clusters"`` each bag's poison-rich
    core set and the clean and poisoned samples its learner flags): enough
    to tell a run
    whose core sets mix poison with clean data from one whose vote or
    self-training lets the poison back in.
    """
    if defense is None:
        return {}
    if hasattr(defense, "removed_by_"):
        return chain_diagnostics(defense, poisoned)
    diagnostics = {}
    if hasattr(defense, "phase_seconds_"):
        diagnostics["phase_seconds"] = dict(defense.phase_seconds_)
    if hasattr(defense, "components_"):
        is_poison = poisoned.is_poison
        diagnostics["component_sizes"] = [int(len(c)) for c in defense.components_]
        diagnostics["component_poison"] = [
            int(is_poison[c].sum()) for c in defense.components_
        ]
        diagnostics["component_seconds"] = defense.component_seconds_.round(3).tolist()
        diagnostics["component_label_counts"] = [
            np.bincount(
                np.searchsorted(defense.classes_, poisoned.y[c]),
                minlength=len(defense.classes_),
            ).tolist()
            for c in defense.components_
        ]
    if getattr(defense, "votes_", None) is not None:
        diagnostics.update(learner_agreement(defense.votes_, poisoned))
    if getattr(defense, "boosting_mask_", None) is not None:
        counts = removal_counts(defense.boosting_mask_, poisoned.poison_indices)
        diagnostics["boosting_fp"] = int(counts.false_positives)
        diagnostics["boosting_fn"] = int(counts.false_negatives)
    flags = getattr(defense, "cluster_flags_", None)
    if flags is not None:
        diagnostics["cluster_cohesion"] = [
            round(float(c), 3) if np.isfinite(c) else None
            for c in defense.cluster_cohesion_
        ]
        diagnostics["poison_rich_components"] = defense.poison_rich_components_.tolist()
        diagnostics["poison_rich_features"] = defense.poison_rich_features_.tolist()
        diagnostics["cluster_flags_fp_tp"] = [
            [int((f & ~poisoned.is_poison).sum()), int((f & poisoned.is_poison).sum())]
            for f in flags
        ]
        n_flagging = flags.sum(axis=0)
        diagnostics["flagged_by_at_least_k_bags_fp_tp"] = [
            [
                int(((n_flagging >= k) & ~poisoned.is_poison).sum()),
                int(((n_flagging >= k) & poisoned.is_poison).sum()),
            ]
            for k in range(1, len(flags) + 1)
        ]
        diagnostics["cluster_candidates"] = [
            cluster_candidates(
                findings,
                np.searchsorted(defense.classes_, poisoned.y),
                poisoned.is_poison,
            )
            for findings in defense.cluster_findings_
        ]
        judged = getattr(defense, "pasted_judged_bags_", None)
        if judged is not None and judged.any():
            diagnostics["pasted_judged_bags"] = judged.tolist()
    groups = getattr(defense, "patch_groups_", None)
    if groups is not None:
        diagnostics["patch_groups"] = patch_group_records(groups, poisoned)
    masks = getattr(defense, "boosting_masks_", None) or []
    if len(masks) > 1:
        diagnostics["votes_fp_fn"] = [
            [int(c.false_positives), int(c.false_negatives)]
            for c in (removal_counts(m, poisoned.poison_indices) for m in masks)
        ]
    return diagnostics


def patch_group_records(groups, poisoned):
    """``patch_check``'s groups of at least two samples, and those removed:
    label, patch corner, class read, clean and poisoned members, deviation
    ratio (None for inf), carriers and whether the group was removed."""
    return [
        {
            "label": int(group.label),
            "patch": [int(group.row), int(group.col)],
            "read_as": int(group.read_as),
            "clean": int((~poisoned.is_poison[group.members]).sum()),
            "poisoned": int(poisoned.is_poison[group.members].sum()),
            "deviation_ratio": (
                round(float(group.deviation_ratio), 2)
                if np.isfinite(group.deviation_ratio)
                else None
            ),
            "carriers": int(group.carriers),
            "removed": bool(group.removed),
        }
        for group in groups
        if len(group.members) >= 2 or group.removed
    ]


def chain_diagnostics(chain, poisoned):
    """A :class:`SanitizerChain`'s clean and poisoned samples removed by each
    step (``steps_fp_tp``), and each step's phase seconds."""
    is_poison = poisoned.is_poison
    return {
        "steps": [name for name, _ in chain.steps_],
        "steps_fp_tp": [
            [
                int(((chain.removed_by_ == index) & ~is_poison).sum()),
                int(((chain.removed_by_ == index) & is_poison).sum()),
            ]
            for index in range(len(chain.steps_))
        ],
        "phase_seconds": {
            f"{name}_{phase}": seconds
            for name, step in chain.steps_
            for phase, seconds in getattr(step, "phase_seconds_", {}).items()
        },
    }


def estimator_params(estimator):
    """The estimator's parameters as JSON values; a chain's are its steps'
    (``<step>__<name>``)."""
    if estimator is None:
        return {}
    if isinstance(estimator, SanitizerChain):
        params = {
            name: value
            for name, value in estimator.get_params(deep=True).items()
            if "__" in name
        }
    else:
        params = estimator.get_params(deep=False)
    return {
        name: value
        if isinstance(value, (int, float, str, bool, type(None)))
        else repr(value)
        for name, value in params.items()
    }


def two_class_split(poisoned, X_test, y_test):
    """Training and test rows of the scenario's source and target classes only."""
    classes = [poisoned.source, poisoned.target]
    test_rows = np.isin(y_test, classes)
    return restrict_to_classes(poisoned, classes), X_test[test_rows], y_test[test_rows]


def rows_of_classes(classes, X, y):
    rows = np.isin(y, classes)
    return X[rows], y[rows]


@functools.lru_cache(maxsize=1)
def network_attack(dataset, data_path, scenario, seed, attacker, device):
    """``(poisoned, params, X_test, y_test)`` of ``scenario``, an attack that
    trains networks.

    On the two-class tier the attacker sees only the scenario's two classes,
    the data the defender trains on. Cached for the last scenario: the runs
    of a scenario follow each other in the grids, so a process trains the
    attacker's networks once for all its defenses (``params["attack_seconds"]``
    is what that took; ``seconds["poison"]`` of a later run is the lookup).
    """
    X_train, y_train, X_test, y_test = load_dataset(dataset, data_path)
    if dataset == TWO_CLASS_DATASET:
        if scenario.source is None:
            raise ValueError(
                f"scenario {scenario.name!r} attacks every class but the target; "
                "the two-class tier needs a source class"
            )
        classes = [scenario.source, scenario.target]
        X_train, y_train = rows_of_classes(classes, X_train, y_train)
        X_test, y_test = rows_of_classes(classes, X_test, y_test)
    with Stopwatch(device) as watch:
        poisoned, params = scenario.poison(X_train, y_train, seed, attacker, device)
    return poisoned, params | {"attack_seconds": watch.seconds}, X_test, y_test


def poisoned_data(run, data_path, device, timer):
    """``(poisoned, scenario_params, X_test, y_test)`` of ``run``.

    The two-class tier restricts a reference scenario, poisoned on the whole
    training set as its generator does, to its two classes; the attacks that
    train networks attack the two classes alone (:func:`network_attack`).
    """
    X_train, y_train, X_test, y_test = timer(
        "load", load_dataset, run.dataset, data_path
    )
    scenario = scenario_by_name(run.scenario)
    if scenario.trains_networks:
        return timer(
            "poison",
            network_attack,
            run.dataset,
            data_path,
            scenario,
            run.seed,
            attacker_for(run),
            device,
        )
    poisoned, scenario_params = timer(
        "poison", scenario.poison, X_train, y_train, run.seed
    )
    if run.dataset == TWO_CLASS_DATASET:
        poisoned, X_test, y_test = two_class_split(poisoned, X_test, y_test)
    return poisoned, scenario_params, X_test, y_test


def vote_final_metrics(run, poisoned, defense, test, device, timer):
    """Clean accuracy and TMR of the final model trained on what ISPL+B's
    (last) vote kept, before self-training, or None where there is no vote
    or it kept fewer than two classes: what self-training added or cost."""
    vote = getattr(defense, "boosting_mask_", None)
    if vote is None or no_model_reason(poisoned.y[vote]):
        return None
    X_test, y_test, trigger, scenario_params = test
    final = NetworkClassifier(
        run.net, epochs=run.final_epochs, random_state=run.seed, device=device
    )
    timer("vote_final_fit", final.fit, poisoned.X[vote], poisoned.y[vote])
    metrics = attack_metrics(final, X_test, y_test, trigger, scenario_params)
    return {name: metrics[name] for name in ("clean_accuracy", "tmr", "tmr_targeted")}


def run_one(
    run, data_path=None, job_index=0, device="auto", threads=1, final_on_vote=False
):
    """Run ``run`` and return its JSON-serialisable record.

    On the CPU, torch uses ``threads`` threads (one per job by default, so
    that parallel jobs do not oversubscribe the cores). ``final_on_vote``
    also trains the final model on ISPL+B's vote (``vote_final`` in the
    diagnostics, its seconds as ``vote_final_fit``, outside ``total``).
    ``machine`` records what the machine gave the run (steal, CPU seconds),
    so that a slow run can be told from a busy machine.
    """
    device = job_device(job_index, device)
    if device == "cpu":
        torch.set_num_threads(threads)
    elif device.startswith("cuda"):
        # Resetting the peak needs an initialised CUDA context.
        torch.cuda.init()
        torch.cuda.reset_peak_memory_stats(torch.device(device))
    timer = PhaseTimer(device)
    with MachineShare() as machine:
        record = _run_one_measured(run, data_path, device, timer, final_on_vote)
    record["machine"] = machine.record()
    return record


def _run_one_measured(run, data_path, device, timer, final_on_vote):
    started = time.perf_counter()
    poisoned, scenario_params, X_test, y_test = poisoned_data(
        run, data_path, device, timer
    )
    if run.n_train is not None:
        poisoned = subsample_poisoned(poisoned, run.n_train, run.seed)
    trigger = poisoned.trigger
    minimax = run.defense in MINIMAX_DEFENSES
    runner = run_minimax_defense if minimax else run_paper001_defense
    test = (X_test, y_test, trigger.apply(X_test)) if minimax else None
    model, keep, defense = runner(run, poisoned, test, device, timer)
    if model is None:
        # Fewer than two classes left to train on: no model, so no accuracy or
        # attack rate, and the run counts as no successful defense.
        metrics = {
            "clean_accuracy": None,
            "tmr": None,
            "tmr_targeted": None,
            "poison_accuracy": None,
            "note": no_model_reason(poisoned.y[keep]),
        }
    else:
        metrics = timer(
            "evaluate", attack_metrics, model, X_test, y_test, trigger, scenario_params
        )
    if minimax:
        # Paper 002 reports the mean over the last 10 epochs on the whole test set.
        metrics["clean_accuracy_last_epochs"] = float(model.clean_accuracy_)
        metrics["poison_accuracy_last_epochs"] = float(model.poison_accuracy_)
    counts = removal_counts(keep, poisoned.poison_indices)
    timer.seconds["total"] = time.perf_counter() - started
    diagnostics = defense_diagnostics(defense, poisoned)
    if final_on_vote and not minimax:
        test = (X_test, y_test, trigger, scenario_params)
        vote_final = vote_final_metrics(run, poisoned, defense, test, device, timer)
        if vote_final is not None:
            diagnostics["vote_final"] = vote_final
    on_cuda = device.startswith("cuda")
    return {
        "key": run.key,
        **{
            name: getattr(run, name)
            for name in (
                "grid",
                "dataset",
                "scenario",
                "defense",
                "net",
                "final_epochs",
                "seed",
                "n_train",
            )
        },
        "scenario_params": scenario_params
        | {
            "n_train": int(len(poisoned.y)),
            "n_poisoned": int(len(poisoned.poison_indices)),
        },
        "defense_params": estimator_params(defense) or dict(run.defense_params),
        **metrics,
        "fp": int(counts.false_positives),
        "fn": int(counts.false_negatives),
        "n_removed": int(counts.n_removed),
        "fp_by_label": removed_clean_by_label(keep, poisoned),
        "diagnostics": diagnostics,
        "seconds": timer.seconds,
        "peak_gpu_memory_bytes": (
            int(torch.cuda.max_memory_allocated(torch.device(device)))
            if on_cuda
            else None
        ),
        "device": device,
        "device_name": device_name(device),
        "threads": torch.get_num_threads() if device == "cpu" else None,
        "cpu_model": cpu_model(),
        "host": platform.node(),
        "versions": library_versions(),
        "git_commit": STARTED_AT_COMMIT,
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }


# ---------------------------------------------------------------------------
# The grid
# ---------------------------------------------------------------------------


def completed_keys(path):
    """Keys of the runs already recorded in ``path`` (none if it does not exist)."""
    path = Path(path)
    if not path.exists():
        return set()
    keys = set()
    for line in path.read_text().splitlines():
        if line.strip():
            keys.add(json.loads(line)["key"])
    return keys


def pending_runs(runs, path):
    done = completed_keys(path)
    return [run for run in runs if run.key not in done]


def append_record(path, record):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as file:
        file.write(json.dumps(record, default=str) + "\n")


def _results_as_they_finish(run_function, todo, n_jobs, data_path, device):
    """Yield records as jobs finish, or chunk by chunk where the active joblib
    backend cannot return a generator (Ray's), so that little is lost on a stop."""
    jobs = [
        joblib.delayed(run_function)(run, data_path, index, device)
        for index, run in enumerate(todo)
    ]
    backend, _ = joblib.parallel.get_active_backend()
    if n_jobs == 1 or backend.supports_return_generator:
        parallel = joblib.Parallel(n_jobs=n_jobs, return_as="generator_unordered")
        yield from parallel(jobs)
        return
    for start in range(0, len(jobs), n_jobs):
        yield from joblib.Parallel(n_jobs=n_jobs)(jobs[start : start + n_jobs])


def summary_line(record):
    """One line per finished run for the console."""
    if record["tmr"] is None:
        outcome = record.get("note", "no final model")
    else:
        outcome = f"TMR {record['tmr']:.1%}, clean {record['clean_accuracy']:.1%}"
    line = (
        f"{record['scenario']} {record['defense']}: {outcome}, "
        f"FP {record['fp']}, FN {record['fn']}, "
        f"{record['seconds']['total']:.1f} s"
    )
    diagnostics = record.get("diagnostics") or {}
    if "component_poison" in diagnostics:
        line += (
            f" | poison per core set {diagnostics['component_poison']}, "
            f"vote FN {diagnostics['boosting_fn']}"
        )
    return line


def run_grid(
    runs,
    out,
    n_jobs=1,
    data_path=None,
    device="auto",
    run_function=None,
    shared_fields=None,
):
    """Run the runs not yet in ``out``, appending each record as it finishes.

    Jobs go through ``joblib.Parallel`` under the active
    ``joblib.parallel_config`` (loky processes by default, Ray when the
    caller selected it). ``shared_fields`` are added to every record (e.g.
    the reference epoch timed by this process). Returns the number of runs
    executed.
    """
    run_function = run_function or run_one
    todo = pending_runs(runs, out)
    print(f"{len(runs)} runs in the grid, {len(runs) - len(todo)} already in {out}")
    results = _results_as_they_finish(run_function, todo, n_jobs, data_path, device)
    for finished, record in enumerate(results, start=1):
        record.update(shared_fields or {})
        append_record(out, record)
        print(f"[{finished}/{len(todo)}] {summary_line(record)}", flush=True)
    return len(todo)


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", required=True, choices=GRIDS)
    parser.add_argument("--out", required=True, help="JSON-lines results file")
    parser.add_argument("--data", default=None, help="CIFAR-10 folder or zip")
    parser.add_argument("--net", default="fast", help="network of the CIFAR grids")
    parser.add_argument("--preset", default="default", choices=("default", "paper"))
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument(
        "--defenses", nargs="+", default=None, choices=DEFENSES, help="subset to run"
    )
    parser.add_argument("--scenarios", nargs="+", default=None, help="subset to run")
    parser.add_argument(
        "--final-epochs", type=int, default=None, help="override the final epochs"
    )
    parser.add_argument(
        "--params",
        type=json.loads,
        default=None,
        help="JSON object of defense parameters, given to every selected defense "
        "that takes them, e.g. '{\"augment_scoring\": false}' (part of the key)",
    )
    parser.add_argument(
        "--n-train",
        type=int,
        default=None,
        help="train on a stratified subsample of this many samples",
    )
    parser.add_argument(
        "--n-jobs",
        type=int,
        default=None,
        help="parallel jobs (default: the number of GPUs, else 1)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of each job on the CPU (default 1: one core per job)",
    )
    parser.add_argument("--backend", default="loky", choices=("loky", "ray"))
    parser.add_argument(
        "--gpus-per-job",
        type=float,
        default=None,
        help="Ray only: GPUs each job reserves (default: 1 if CUDA is visible here)",
    )
    parser.add_argument(
        "--reference-epoch",
        action="store_true",
        help="first time one reference-style epoch (PreActResNet18, DataLoader, "
        "batch 128) on this device and CIFAR-10, and record it in every run",
    )
    parser.add_argument(
        "--final-on-vote",
        action="store_true",
        help="ISPL+B: also train the final model on the vote's keep, before "
        "self-training, and record its accuracy and TMR (diagnostics.vote_final)",
    )
    parser.add_argument("--list", action="store_true", help="print the runs and exit")
    return parser.parse_args(argv)


def select_runs(args):
    runs = build_grid(args.grid, net=args.net, preset=args.preset, seeds=args.seeds)
    if args.defenses:
        runs = [run for run in runs if run.defense in args.defenses]
    if args.scenarios:
        runs = [run for run in runs if run.scenario in args.scenarios]
    if args.final_epochs:
        runs = [replace(run, final_epochs=args.final_epochs) for run in runs]
    if args.n_train:
        runs = [replace(run, n_train=args.n_train) for run in runs]
    if args.params:
        runs = with_defense_params(runs, args.params)
    return runs


def defense_class(defense):
    """The estimator class behind a defense name (None for none/oracle)."""
    if defense in MINIMAX_DEFENSES:
        return NoisyLabelMinimaxTrainer
    return SANITIZER_CLASSES.get(defense)


def with_defense_params(runs, params):
    """Add ``params`` to the runs whose defense takes every one of them.

    Raises if ``params`` is not a JSON object or no run's defense takes them
    all, so that a typo cannot silently run the defaults.
    """
    if not isinstance(params, dict):
        raise ValueError(f"--params must be a JSON object, got {params!r}")
    updated = []
    matched = False
    for run in runs:
        cls = defense_class(run.defense)
        if cls is not None and set(params) <= set(cls().get_params()):
            merged = {**dict(run.defense_params), **params}
            run = replace(run, defense_params=tuple(sorted(merged.items())))
            matched = True
        updated.append(run)
    if not matched:
        raise ValueError(
            f"--params {params!r}: no selected defense takes all of {sorted(params)}"
        )
    return updated


def reference_epoch_fields(args, workers=8):
    """Seconds of one reference-style training epoch on this process's device.

    The papers' reference implementation trains PreActResNet18 behind a
    CPU ``DataLoader`` at batch 128 (``engine_speed.time_reference``); timing
    one of its epochs in the same process as the grid makes "ISPL+B end to
    end costs N reference epochs" a ratio measured on one machine. One
    untimed epoch first starts the workers and the kernels.
    """
    from engine_speed import time_reference

    if args.data is None:
        raise ValueError("--reference-epoch needs --data (CIFAR-10)")
    device = job_device(0, args.device)
    X_train, y_train, _, _ = load_dataset("cifar10", args.data)
    seconds = time_reference(
        X_train, y_train, device, epochs=1, warmup_epochs=1, workers=workers, seed=0
    )
    print(f"reference-style epoch: {seconds:.1f} s on {device_name(device)}")
    return {
        "reference_epoch_seconds": seconds,
        "reference_epoch_setup": f"PreActResNet18, DataLoader with {workers} "
        f"workers, batch 128, fp32, {len(y_train)} images, {device_name(device)}",
    }


def main(argv=None):
    args = parse_arguments(argv)
    runs = select_runs(args)
    if args.list:
        for run in runs:
            print(run.key)
        return
    n_jobs = args.n_jobs or max(1, torch.cuda.device_count())
    shared = reference_epoch_fields(args) if args.reference_epoch else {}
    # Runs in parallel share the machine (on one GPU, the GPU too): their
    # seconds are throughput, not one run's time alone.
    shared["concurrent_jobs"] = n_jobs
    # Jobs are pickled by reference: workers (loky's, Ray's) cannot see this
    # script's __main__, so hand them the function of the importable module.
    job = functools.partial(
        importlib.import_module(Path(__file__).stem).run_one,
        threads=args.threads,
        final_on_vote=args.final_on_vote,
    )
    if args.backend == "ray":
        from ray.util.joblib import register_ray

        register_ray()
        # Ray gives each task its own GPU (CUDA_VISIBLE_DEVICES), so every job
        # sees it as cuda:0.
        gpus = args.gpus_per_job
        if gpus is None:
            gpus = 1 if torch.cuda.is_available() else 0
        remote_args = {"num_gpus": gpus} if gpus else {}
        with joblib.parallel_config(backend="ray", ray_remote_args=remote_args):
            run_grid(runs, args.out, n_jobs, args.data, args.device, job, shared)
    else:
        run_grid(runs, args.out, n_jobs, args.data, args.device, job, shared)


if __name__ == "__main__":
    sys.exit(main())
