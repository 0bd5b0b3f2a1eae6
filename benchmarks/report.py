"""Turn benchmark results (JSON lines of ``benchmarks/run.py``) into markdown.

Writes, for one results file:

- a table per attack family in the shape of paper 001's Table 2: one row per
  scenario (source / target, eps), for each defense C (clean accuracy), A
  (TMR), FP and FN; runs that differ only by seed are summarised by their
  median, as the paper does over its 3 seeds. Where paper 001 has the same
  CIFAR-10 scenario (Table 2: DLBD 1-to-1; Table 6: the clean-label backdoor;
  Table 10: the adaptive attacker) its number follows ours in brackets;
- success counts (A < 1%) per defense, and the paper's on the same scenarios;
- paper 002's label-flip setting: clean and poison accuracy per variant;
- seconds per defense, and box plots of A and of seconds per defense as PNG.

Example::

    python benchmarks/report.py benchmarks/results/digits.jsonl \\
        --out docs/benchmarks-digits.md --plots docs
"""

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from grids import (
    ACTIVATION_CLUSTERING,
    ISPL,
    ISPL_CHAIN,
    ITLM,
    MINIMAX_DEFENSES,
    MINIMAX_PREFIX,
    NO_DEFENSE,
    ORACLE,
    REFERENCE_SEEDS,
    SANITIZERS,
    SPECTRAL_SIGNATURES,
    TWO_CLASS_GRID,
    TWO_CLASS_THREATS_GRID,
    build_grid,
)

PAPER_TABLE = Path(__file__).resolve().parent / "paper001_table2.json"
PAPER_TABLES = tuple(
    PAPER_TABLE.with_name(f"paper001_table{number}.json") for number in (2, 6, 10)
)
# The CPU tiers: runs with settings other than their grids' are listed apart.
TIER_GRIDS = (TWO_CLASS_GRID, TWO_CLASS_THREATS_GRID)
# Grids whose results files also hold runs with other settings than the
# grid's own: those are reported apart, under "Other configurations tried".
VARIANT_GRIDS = (*TIER_GRIDS, "digits", "digits-robust")
ATTACK_TITLES = {
    "dlbd-1-to-1": "Dirty-label backdoor, 1-to-1",
    "clbd-linf": "Clean-label backdoor, L-infinity perturbation",
    "clbd-l2": "Clean-label backdoor, L2 perturbation",
    "adaptive-dlbd-1-to-1": "Adaptive attacker (dirty-label 1-to-1, poison spread "
    "over ISPL's partition)",
}
DEFENSE_ORDER = (ORACLE, NO_DEFENSE, *SANITIZERS, ISPL_CHAIN, *MINIMAX_DEFENSES)
# Paper 001's names; the minimax variants keep theirs.
DEFENSE_LABELS = {
    ORACLE: "Oracle",
    NO_DEFENSE: "ND",
    SPECTRAL_SIGNATURES: "SS",
    ACTIVATION_CLUSTERING: "AC",
    ITLM: "ITLM",
    ISPL: "ISPL+B",
    ISPL_CHAIN: "ISPL+B, cluster vote first",
}
SUCCESS_THRESHOLD = 0.01


def read_records(path):
    """The records of a JSON-lines file, blank lines skipped."""
    lines = Path(path).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def attack_rate(record, metric="targeted"):
    """The record's A: the targeted TMR (the authors' evaluation code) when the
    attack has one target and ``metric="targeted"``, else paper 001's eq. 7."""
    if metric == "targeted" and record.get("tmr_targeted") is not None:
        return record["tmr_targeted"]
    return record["tmr"]


def ordered_defenses(records):
    present = {r["defense"] for r in records}
    known = [d for d in DEFENSE_ORDER if d in present]
    return known + sorted(present - set(known))


def label(defense):
    return DEFENSE_LABELS.get(defense, defense)


def scenario_row_key(record):
    """(attack, source, target, eps): the scenario without its seed."""
    params = record["scenario_params"]
    return (
        params["attack"],
        params.get("source"),
        params.get("target"),
        params["poison_fraction"],
    )


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(records, metric="targeted"):
    """Median C, A, FP, FN and seconds per (scenario row, defense) over seeds."""
    groups = defaultdict(list)
    for record in records:
        groups[scenario_row_key(record), record["defense"]].append(record)
    summary = {}
    for key, group in groups.items():
        summary[key] = {
            "C": median_or_none([r["clean_accuracy"] for r in group]),
            "A": median_or_none([attack_rate(r, metric) for r in group]),
            "P": median_or_none([r.get("poison_accuracy") for r in group]),
            "FP": median_or_none([r["fp"] for r in group]),
            "FN": median_or_none([r["fn"] for r in group]),
            "seconds": median_or_none([r["seconds"]["total"] for r in group]),
            "n": len(group),
        }
    return summary


def load_paper_table(path=PAPER_TABLE):
    """One of paper 001's tables as {(attack, source, target, eps): row}.

    A row maps each defense it gives to ``{C, A, FP?, FN?}`` and has the
    name of its ``table``; ``attack`` is the row's own or the file's.
    """
    data = json.loads(Path(path).read_text())
    rows = {}
    for row in data["rows"]:
        row = {"table": data["table"], "attack": data.get("attack")} | row
        key = (row["attack"], row["source"], row["target"], row["eps_percent"] / 100)
        rows[key] = row
    return rows


def load_paper_tables(paths=PAPER_TABLES):
    """The rows of several of paper 001's tables (:func:`load_paper_table`)."""
    return {key: row for path in paths for key, row in load_paper_table(path).items()}


def paper_row(paper, row_key, dataset):
    """Paper 001's row for one of our scenario rows on CIFAR-10, or None.

    A CLBD row of the paper attacks every class but the target; it stands
    beside ours with the same target whatever our source class (the
    two-class tier attacks one).
    """
    if paper is None or not dataset.startswith("cifar10"):
        return None
    attack, source, target, fraction = row_key
    if attack.startswith("clbd-"):
        source = None
    return paper.get((attack, source, target, fraction))


def paper_defended(row, defense):
    """Whether the paper counts ``defense`` as successful (A < 1%) on ``row``;
    None where the row does not give the defense.

    ``ispl_defended`` marks a row whose printed A rounds up to 1.0 although
    the paper's summary counts it as defended.
    """
    values = row.get(defense)
    if values is None:
        return None
    if defense == ISPL and "ispl_defended" in row:
        return row["ispl_defended"]
    return values["A"] < 100 * SUCCESS_THRESHOLD


def percent(value):
    return "" if value is None else f"{100 * value:.1f}"


def count(value):
    return "" if value is None else f"{value:g}"


def with_paper(ours, paper):
    return ours if paper is None else f"{ours} ({paper:g})"


def paper_cell(paper_row, defense, column):
    if paper_row is None:
        return None
    return paper_row.get(defense, {}).get(column)


def scenario_label(row_key):
    attack, source, target, fraction = row_key
    pair = f"{source} / {target}" if source is not None else f"all / {target}"
    if target is None:
        pair = "all / next"
    return pair, f"{100 * fraction:g}"


def _row_order(row_key):
    _, source, target, fraction = row_key
    return (
        -1 if source is None else source,
        -1 if target is None else target,
        fraction,
    )


def table2(summary, defenses, paper=None, dataset="digits"):
    """Markdown table: a row per scenario, C A FP FN per defense."""
    rows = sorted({key for key, _ in summary}, key=_row_order)
    header = ["S / T", "eps %"]
    for defense in defenses:
        header += [f"{label(defense)} {c}" for c in ("C", "A", "FP", "FN")]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row_key in rows:
        theirs = paper_row(paper, row_key, dataset)
        cells = list(scenario_label(row_key))
        for defense in defenses:
            values = summary.get((row_key, defense))
            if values is None:
                cells += [""] * 4
                continue
            cells += [
                with_paper(percent(values["C"]), paper_cell(theirs, defense, "C")),
                with_paper(percent(values["A"]), paper_cell(theirs, defense, "A")),
                with_paper(count(values["FP"]), paper_cell(theirs, defense, "FP")),
                with_paper(count(values["FN"]), paper_cell(theirs, defense, "FN")),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def success_counts(records, defenses, metric="targeted"):
    """{defense: (runs with A < 1%, runs)}."""
    counts = {}
    for defense in defenses:
        rates = [attack_rate(r, metric) for r in records if r["defense"] == defense]
        # A run without a final model (the defense kept nothing) is no success.
        successes = sum(a is not None and a < SUCCESS_THRESHOLD for a in rates)
        counts[defense] = (successes, len(rates))
    return counts


def one_flip_note(records):
    """How much one flipped test image weighs in A, which sets what < 1% means."""
    sizes = [r["n_test_attacked"] for r in records if r.get("n_test_attacked")]
    if not sizes:
        return ""
    smallest = min(sizes)
    return (
        f"The smallest attacked test set has {smallest} images, so one flipped "
        f"image is {100 / smallest:.1f}% of A"
        + (": below 100 images A < 1% means no flip at all." if smallest < 100 else ".")
    )


def paper_success_counts(records, defenses, paper, dataset):
    """{defense: (scenarios paper 001 defends, scenarios)} over the paper's
    rows for the scenarios each defense ran on; defenses its tables do not
    give are left out."""
    counts = {}
    for defense in defenses:
        rows = {}
        for record in records:
            row = paper_row(paper, scenario_row_key(record), dataset)
            if record["defense"] == defense and row is not None:
                rows[id(row)] = row
        verdicts = [paper_defended(row, defense) for row in rows.values()]
        verdicts = [v for v in verdicts if v is not None]
        if verdicts:
            counts[defense] = (sum(verdicts), len(verdicts))
    return counts


def success_table(records, defenses, paper_counts=None):
    """Runs with A < 1% per defense; with ``paper_counts``, paper 001's
    successes on the same scenarios beside them."""
    header = "| defense | A < 1% (targeted TMR) | TMR < 1% (eq. 7, any flip) | runs |"
    rule = "| --- | --- | --- | --- |"
    if paper_counts:
        header += " paper 001, same scenarios |"
        rule += " --- |"
    lines = [header, rule]
    targeted = success_counts(records, defenses, "targeted")
    any_flip = success_counts(records, defenses, "any")
    for defense in defenses:
        line = (
            f"| {label(defense)} | {targeted[defense][0]} | {any_flip[defense][0]} "
            f"| {targeted[defense][1]} |"
        )
        if paper_counts:
            theirs = paper_counts.get(defense)
            line += f" {theirs[0]} of {theirs[1]} |" if theirs else "  |"
        lines.append(line)
    return "\n".join(lines)


def attack_title(attack):
    return ATTACK_TITLES.get(attack, attack)


def attack_groups(records):
    """``[(attack, records)]``, the attacks of :data:`ATTACK_TITLES` first."""
    groups = defaultdict(list)
    for record in records:
        groups[record["scenario_params"]["attack"]].append(record)
    order = list(ATTACK_TITLES)
    return sorted(
        groups.items(),
        key=lambda item: (
            order.index(item[0]) if item[0] in order else len(order),
            item[0],
        ),
    )


def paper_note(records, paper, dataset):
    """Which of paper 001's tables stand beside ours, and how they differ."""
    tables = defaultdict(set)
    for row_key in {scenario_row_key(r) for r in records}:
        row = paper_row(paper, row_key, dataset)
        if row is not None:
            tables[row["table"]].add(row_key[0])
    if not tables:
        return None
    names = sorted(tables, key=lambda name: int(name.split()[-1]))
    tier = dataset != "cifar10"
    note = (
        f"Paper 001's {' and '.join(names)} "
        + ("values follow" if len(names) > 1 else "value follows")
        + " ours in brackets (PreActResNet18, 100-epoch final model, median of 3 "
        "seeds"
        + (
            "; all ten classes, so its FP and FN count a data set five times "
            "larger than this tier's two classes)."
            if tier
            else ")."
        )
    )
    attacks = set().union(*tables.values())
    if any(attack.startswith("clbd-") for attack in attacks):
        note += (
            " Table 6 gives Oracle, ND and ISPL+B only. Its clean-label images are "
            "those Turner et al. released (paper 001 does not say with which "
            "budget); ours are perturbed here against a network of our own, so the "
            "attacks are alike, not the same. Its A counts the triggered test "
            "images of every class but the target"
            + (", ours those of the pair's other class." if tier else ".")
        )
    if "adaptive-dlbd-1-to-1" in attacks:
        note += " Table 10 gives ISPL+B only."
    return note


def backdoor_sections(records, paper, dataset):
    """The per-scenario tables and success counts, one of each per attack
    (titled when there are several)."""
    groups = attack_groups(records)
    tables, successes = [], []
    for attack, group in groups:
        heading = [f"### {attack_title(attack)}", ""] if len(groups) > 1 else []
        defenses = ordered_defenses(group)
        counts = paper_success_counts(group, defenses, paper, dataset)
        tables += [*heading, table2(summarise(group), defenses, paper, dataset), ""]
        successes += ["", *heading, success_table(group, defenses, counts)]
    parts = ["", "## Per scenario (the shape of paper 001 Table 2)", ""]
    note = paper_note(records, paper, dataset)
    if note:
        parts += [note, ""]
    if any(
        r["scenario_params"]["attack"].startswith("clbd-")
        and r["scenario_params"].get("source") is None
        for r in records
    ):
        parts += [
            "A clean-label backdoor without a source class is measured on the "
            "test images of every class but the target.",
            "",
        ]
    return [
        *parts,
        *tables,
        "## Successful defenses (A < 1%)",
        "",
        one_flip_note(records),
        *successes,
    ]


def _minimax_order(record):
    return record["scenario"], _defense_rank(record["defense"])


def minimax_table(records):
    """Paper 002's columns: clean and poison accuracy (mean of the last epochs)."""
    lines = [
        "| scenario | variant | tau | clean acc % | poison acc % | TMR % | FP | FN "
        "| seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for record in sorted(records, key=_minimax_order):
        variant = record["defense"].removeprefix(MINIMAX_PREFIX)
        lines.append(
            f"| {record['scenario']} | {variant} "
            f"| {record['defense_params'].get('tau')} "
            f"| {percent(record.get('clean_accuracy_last_epochs'))} "
            f"| {percent(record.get('poison_accuracy_last_epochs'))} "
            f"| {percent(record['tmr'])} | {record['fp']} | {record['fn']} "
            f"| {record['seconds']['total']:.1f} |"
        )
    return "\n".join(lines)


def seconds_cell(value):
    return "" if value is None else f"{value:.1f}"


def seconds_table(records, defenses):
    """Seconds per defense; in reference epochs too where the runs timed one."""
    in_epochs = any(r.get("reference_epoch_seconds") for r in records)
    header = (
        "| defense | runs | defense fit s (median) | final model s (median) "
        "| total s (median) | total s (max) |"
    )
    rule = "| --- | --- | --- | --- | --- | --- |"
    if in_epochs:
        header += " total in reference epochs (median) |"
        rule += " --- |"
    lines = [header, rule]
    for defense in defenses:
        group = [r for r in records if r["defense"] == defense]
        fit = median_or_none([r["seconds"].get("defense_fit") for r in group])
        final = median_or_none([r["seconds"].get("final_fit") for r in group])
        totals = [r["seconds"]["total"] for r in group]
        line = (
            f"| {label(defense)} | {len(group)} | {seconds_cell(fit)} "
            f"| {seconds_cell(final)} "
            f"| {statistics.median(totals):.1f} | {max(totals):.1f} |"
        )
        if in_epochs:
            ratios = [
                r["seconds"]["total"] / r["reference_epoch_seconds"]
                for r in group
                if r.get("reference_epoch_seconds")
            ]
            line += f" {seconds_cell(median_or_none(ratios))} |"
        lines.append(line)
    return "\n".join(lines)


def training_size(record):
    return record["scenario_params"].get("n_train")


def is_scaling(records):
    """True when one scenario was run on several training-set sizes."""
    sizes = defaultdict(set)
    for record in records:
        sizes[record["scenario"]].add(training_size(record))
    return any(len(found) > 1 for found in sizes.values())


def scaling_table(records):
    """Seconds and outcome per training-set size and defense."""
    lines = [
        "| scenario | n | defense | defense fit s | final model s | total s "
        "| A (%) | C (%) | FP | FN |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    order = sorted(
        records,
        key=lambda r: (r["scenario"], training_size(r), _defense_rank(r["defense"])),
    )
    for r in order:
        lines.append(
            f"| {r['scenario']} | {training_size(r)} | {label(r['defense'])} "
            f"| {seconds_cell(r['seconds'].get('defense_fit'))} "
            f"| {seconds_cell(r['seconds'].get('final_fit'))} "
            f"| {r['seconds']['total']:.1f} | {percent(attack_rate(r))} "
            f"| {percent(r['clean_accuracy'])} | {r['fp']} | {r['fn']} |"
        )
    return "\n".join(lines)


def _defense_rank(defense):
    return (
        DEFENSE_ORDER.index(defense) if defense in DEFENSE_ORDER else len(DEFENSE_ORDER)
    )


def ispl_diagnostics_table(records):
    """Where the poison went in each ISPL+B run: core sets, vote, final mask."""
    runs = [r for r in records if (r.get("diagnostics") or {}).get("component_poison")]
    if not runs:
        return None
    lines = [
        "| scenario | seed | n | poisoned | poison per core set | vote FN "
        "| final FN | clustering s | voting s | self-training s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in sorted(runs, key=lambda r: (r["scenario"], r["seed"], training_size(r))):
        d = r["diagnostics"]
        phases = d.get("phase_seconds", {})
        poison = " ".join(str(count) for count in d["component_poison"])
        lines.append(
            f"| {r['scenario']} | {r['seed']} | {training_size(r)} "
            f"| {r['scenario_params']['n_poisoned']} | {poison} "
            f"| {d['boosting_fn']} | {r['fn']} "
            f"| {seconds_cell(phases.get('clustering'))} "
            f"| {seconds_cell(phases.get('voting'))} "
            f"| {seconds_cell(phases.get('self_training'))} |"
        )
    return "\n".join(lines)


def phase_table(records, defenses):
    """Median seconds of each defense's phases (from its ``phase_seconds_``)."""
    lines = []
    for defense in defenses:
        phases = [
            (r.get("diagnostics") or {}).get("phase_seconds")
            for r in records
            if r["defense"] == defense
        ]
        phases = [p for p in phases if p]
        if not phases:
            continue
        names = list(dict.fromkeys(name for p in phases for name in p))
        cells = ", ".join(
            f"{name} {seconds_cell(median_or_none([p.get(name) for p in phases]))}"
            for name in names
        )
        lines.append(f"| {label(defense)} | {len(phases)} | {cells} |")
    if not lines:
        return None
    return "\n".join(
        [
            "| defense | runs | seconds per phase (median) |",
            "| --- | --- | --- |",
            *lines,
        ]
    )


def environment_summary(records):
    devices = sorted(
        {
            f"{r['device']} ({r.get('cpu_model') or r['device_name']}"
            + (f", {r['threads']} torch threads" if r.get("threads") else "")
            + ")"
            for r in records
        }
    )
    commits = sorted({str(r.get("git_commit"))[:12] for r in records})
    versions = records[0]["versions"]
    total = sum(r["seconds"]["total"] for r in records)
    return (
        f"{len(records)} runs, {total / 60:.1f} minutes of run time in all; "
        f"device(s): {', '.join(devices)}; commit(s): {', '.join(commits)}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + "."
    )


def box_plot(groups, ylabel, title, path, log=False):
    """One box per defense, as paper 001's Fig. 3."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(1.1 * len(groups) + 2, 3.6))
    axes.boxplot(list(groups.values()), showfliers=True)
    axes.set_xticks(range(1, len(groups) + 1), list(groups), rotation=30, ha="right")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    if log:
        axes.set_yscale("log")
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_plots(records, defenses, plot_dir, name):
    """TMR and seconds per defense; returns the written paths."""
    plot_dir = Path(plot_dir)
    plot_dir.mkdir(parents=True, exist_ok=True)
    tmr = {
        label(d): [
            100 * attack_rate(r)
            for r in records
            if r["defense"] == d and attack_rate(r) is not None
        ]
        for d in defenses
    }
    seconds = {
        label(d): [r["seconds"]["total"] for r in records if r["defense"] == d]
        for d in defenses
    }
    paths = (
        plot_dir / f"benchmarks-{name}-tmr.png",
        plot_dir / f"benchmarks-{name}-seconds.png",
    )
    box_plot(tmr, "A (TMR) %", f"{name}: TMR per defense", paths[0])
    box_plot(
        seconds, "seconds per run", f"{name}: seconds per defense", paths[1], log=True
    )
    return paths


def split_configured(records):
    """``(configured, variants)``: the runs as their grids now define them
    (network, epochs, defense parameters; the CPU tiers for any of the
    reference seeds, the digits grids for the seeds run), and every other
    configuration tried on them. Other grids are returned whole."""
    tried = [r for r in records if r.get("grid") in VARIANT_GRIDS]
    if not tried:
        return records, []
    keys = set()
    for grid in {r["grid"] for r in tried}:
        seeds = REFERENCE_SEEDS
        if grid not in TIER_GRIDS:
            seeds = sorted({r["seed"] for r in tried if r["grid"] == grid})
        keys |= {run.key for run in build_grid(grid, seeds=seeds)}
    configured = [
        r for r in records if r.get("grid") not in VARIANT_GRIDS or r["key"] in keys
    ]
    variants = [r for r in tried if r["key"] not in keys]
    return configured, variants


def removes_most_poison(record, share=0.9):
    """Whether a run removed at least ``share`` of its poisoned samples."""
    return record["fn"] <= (1 - share) * record["scenario_params"]["n_poisoned"]


def variants_summary(records):
    """Per defense and parameters: runs, successes, poison removed, FP."""
    groups = {}
    for r in records:
        groups.setdefault((label(r["defense"]), params_cell(r)), []).append(r)
    lines = [
        "| defense | parameters | runs | A < 1% | removed >= 90% of the poison "
        "| FP median | FP max |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (defense, params), runs in sorted(groups.items()):
        fp = [r["fp"] for r in runs]
        lines.append(
            f"| {defense} | {params} | {len(runs)} "
            f"| {sum(attack_rate(r) < 0.01 for r in runs)} "
            f"| {sum(removes_most_poison(r) for r in runs)} "
            f"| {statistics.median(fp):g} | {max(fp)} |"
        )
    return "\n".join(lines)


def params_cell(record):
    params = json.loads(record["key"]).get("defense_params") or []
    text = ", ".join(f"{name}={value}" for name, value in params) or "defaults"
    return f"{text}; final {record['final_epochs']} epochs"


def variants_table(records):
    """Every configuration tried beside the configured one, failures included."""
    lines = [
        "| scenario | defense | parameters | A % | C % | FP | FN | vote FN "
        "| poison per core set | defense s | commit |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in sorted(records, key=lambda r: (r["scenario"], r["finished_at"])):
        d = r.get("diagnostics") or {}
        poison = " ".join(str(c) for c in d.get("component_poison", []))
        lines.append(
            f"| {r['scenario']} | {label(r['defense'])} | {params_cell(r)} "
            f"| {percent(attack_rate(r))} | {percent(r['clean_accuracy'])} "
            f"| {r['fp']} | {r['fn']} | {d.get('boosting_fn', '')} | {poison} "
            f"| {seconds_cell(r['seconds'].get('defense_fit'))} "
            f"| {str(r.get('git_commit'))[:7]} |"
        )
    return "\n".join(lines)


def build_report(records, name, paper=None, plot_paths=()):
    """The markdown document for ``records``."""
    records, variants = split_configured(records)
    dataset = records[0]["dataset"]
    minimax = [r for r in records if r["defense"] in MINIMAX_DEFENSES]
    backdoor = [r for r in records if r["defense"] not in MINIMAX_DEFENSES]
    parts = [
        f"# Benchmark results: {name}",
        "",
        f"Generated by `benchmarks/report.py` from `benchmarks/results/{name}.jsonl` "
        "(do not edit by hand). " + environment_summary(records),
        "",
        "Paper 001 is Jin, Sun & Rinard, *Incompatibility Clustering as a "
        "Defense Against Backdoor Poisoning Attacks* (ICLR 2023); paper 002 is "
        "*Defending Backdoor Data Poisoning Attacks Using Noisy Label Defense "
        "Algorithm* (ICLR 2022 submission).",
        "",
        "C: clean accuracy (%) on the whole test set; A: targeted "
        "misclassification rate (%) on the triggered test images of the source "
        "class, counting flips to the target (the authors' evaluation code; "
        "paper 001 eq. 7 counts any flip, see the success counts); FP: clean "
        "training samples removed; FN: poisoned samples kept. Several seeds of "
        "a scenario are summarised by their median.",
    ]
    if backdoor and is_scaling(backdoor):
        parts += ["", "## Fit time against the training-set size", ""]
        parts += [scaling_table(backdoor)]
        backdoor = []
    if backdoor:
        parts += backdoor_sections(backdoor, paper, dataset)
    if minimax:
        parts += [
            "",
            "## Paper 002: noisy-label training with adversarial training",
            "",
            "Clean and poison accuracy (accuracy on triggered test images against "
            "their true labels) are the means over the last 10 epochs, as paper "
            "002 reports; TMR, FP and FN use the final network and the samples "
            "its filter kept in the last epochs.",
            "",
            minimax_table(minimax),
        ]
    diagnostics = ispl_diagnostics_table(records)
    if diagnostics:
        parts += [
            "",
            "## ISPL+B: where the poison went",
            "",
            "Poisoned samples in each core set (bag-major order), poisoned "
            "samples the vote kept (before self-training) and the final mask "
            "kept, and the defense's seconds per phase.",
            "",
            diagnostics,
        ]
    if variants:
        parts += [
            "",
            "## Other configurations tried",
            "",
            "Runs with settings other than those their grid now "
            "defines (in `benchmarks/grids.py`), in the order they were run, "
            "failures included; vote FN is the poison kept by ISPL+B's vote "
            "before self-training.",
            "",
            variants_summary(variants),
            "",
            variants_table(variants),
        ]
    parts += [
        "",
        "## Seconds per defense",
        "",
        seconds_table(records, ordered_defenses(records)),
    ]
    phases = phase_table(records, ordered_defenses(records))
    if phases:
        parts += ["", "Inside the defense fit:", "", phases]
    if plot_paths:
        parts += ["", "## Plots", ""]
        parts += [f"![{Path(p).stem}]({Path(p).name})" for p in plot_paths]
    return "\n".join(parts) + "\n"


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="JSON-lines file of benchmarks/run.py")
    parser.add_argument("--out", required=True, help="markdown file to write")
    parser.add_argument("--plots", default=None, help="folder for the PNG plots")
    parser.add_argument("--name", default=None, help="default: the results file stem")
    parser.add_argument(
        "--paper",
        nargs="*",
        default=[str(path) for path in PAPER_TABLES],
        help="paper 001's tables as JSON (none: leave the paper's numbers out)",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(argv)
    records = read_records(args.results)
    name = args.name or Path(args.results).stem
    plot_paths = ()
    if args.plots:
        defenses = ordered_defenses(records)
        plot_paths = write_plots(records, defenses, args.plots, name)
    paper = load_paper_tables(args.paper) if args.paper else None
    Path(args.out).write_text(build_report(records, name, paper, plot_paths))
    print(f"wrote {args.out}" + "".join(f", {p}" for p in plot_paths))


if __name__ == "__main__":
    main()
