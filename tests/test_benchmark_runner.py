"""The benchmark runner and report of ``benchmarks/`` (loaded by path)."""

import ast
import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from sklearn_backdoor import IncompatibilityClustering

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
REQUIRED_FIELDS = {
    "key",
    "grid",
    "dataset",
    "scenario",
    "scenario_params",
    "defense",
    "defense_params",
    "net",
    "final_epochs",
    "seed",
    "clean_accuracy",
    "tmr",
    "tmr_targeted",
    "poison_accuracy",
    "fp",
    "fn",
    "seconds",
    "peak_gpu_memory_bytes",
    "device",
    "device_name",
    "versions",
    "git_commit",
    "fp_by_label",
    "machine",
}


def load_script(name):
    # run.py imports its sibling grids.py as a top-level module.
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(
        f"benchmark_{name}", BENCHMARKS / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runner():
    return load_script("run")


@pytest.fixture(scope="module")
def report():
    return load_script("report")


@pytest.fixture(scope="module")
def grids(runner):
    # The module run.py imports, so that its classes are the runner's.
    return importlib.import_module("grids")


@pytest.mark.parametrize("preset", ["default", "paper"])
@pytest.mark.parametrize(
    "grid",
    [
        "digits",
        "smoke",
        "dlbd",
        "all-to-one",
        "all-to-all",
        "watermark",
        "paper002",
        "digits-threats",
        "clbd",
        "adaptive",
        "cifar10-two-class-threats",
    ],
)
def test_run_keys_are_stable_and_unique(runner, grid, preset):
    keys = [run.key for run in runner.build_grid(grid, preset=preset)]
    assert len(keys) == len(set(keys))
    assert keys == [run.key for run in runner.build_grid(grid, preset=preset)]


def test_grid_sizes(runner):
    # 9 digits scenarios x 7 defenses (paper 001's six and ISPL+B chained
    # after its cluster vote) + 5 minimax variants on the label flip.
    assert len(runner.build_grid("digits")) == 68
    # 120 scenarios x none, ISPL+B and the chain.
    assert len(runner.build_grid("digits-robust")) == 360
    # 24 reference scenarios x 3 seeds x 6 defenses.
    assert len(runner.build_grid("dlbd")) == 432
    paper = runner.build_grid("paper002", preset="paper")
    assert {run.net for run in paper} == {"resnet32"}
    assert {run.final_epochs for run in paper} == {100}
    dlbd = runner.build_grid("dlbd", preset="paper")
    assert {run.net for run in dlbd} == {"preact_resnet18"}


def test_every_cifar_scenario_poisons_a_small_fake_set(runner, grids):
    rng = np.random.RandomState(0)
    X = rng.randint(0, 256, size=(1000, 32, 32, 3), dtype=np.uint8)
    y = np.repeat(np.arange(10), 100)
    scenarios = sorted(
        {(run.scenario, run.seed) for run in runner.build_grid("cifar10")}
    )
    assert len(scenarios) == 114
    for scenario, seed in scenarios:
        poisoned, params = grids.make_poisoned(scenario, X, y, seed)
        assert len(poisoned.poison_indices) > 0
        assert params["poison_fraction"] in (0.05, 0.1, 0.15, 0.2, 0.35)


def test_every_registered_scenario_is_found_by_its_name(grids):
    scenarios = grids.registered_scenarios()
    for scenario in scenarios:
        assert grids.scenario_by_name(scenario.name) == scenario
    # Two different scenarios never share a name.
    assert len({s.name for s in scenarios}) == len(set(scenarios))


def test_an_unknown_scenario_name_is_an_error_naming_it(grids):
    with pytest.raises(ValueError, match="unknown scenario 'digits-0-to-7-0.3'"):
        grids.scenario_by_name("digits-0-to-7-0.3")
    with pytest.raises(ValueError, match="unknown scenario 'x'"):
        grids.make_poisoned("x", np.zeros((4, 8, 8)), np.arange(4), 0)


@pytest.mark.parametrize("preset", ["default", "paper"])
def test_every_run_names_a_registered_scenario_and_defense(runner, grids, preset):
    for grid in grids.GRIDS:
        seeds = grids.REFERENCE_SEEDS if grid == "adaptive" else None
        for run in runner.build_grid(grid, preset=preset, seeds=seeds):
            assert grids.scenario_by_name(run.scenario).name == run.scenario
            assert run.defense in grids.DEFENSES


def test_runner_and_report_know_every_defense(runner, report, grids):
    assert set(runner.SANITIZER_CLASSES) == {*grids.SANITIZERS, grids.ISPL_CHAIN}
    assert set(report.DEFENSE_ORDER) == set(grids.DEFENSES)
    assert set(report.DEFENSE_LABELS) == {*grids.PAPER001_DEFENSES, grids.ISPL_CHAIN}
    with pytest.raises(SystemExit):
        runner.parse_arguments(
            ["--grid", "digits", "--out", "x", "--defenses", "ispl", "spectral"]
        )


def test_key_does_not_depend_on_field_order(runner):
    run = runner.build_grid("smoke")[1]
    key = json.loads(run.key)
    assert key["defense"] == "ss"
    assert key["defense_params"] == [["epochs", 1]]
    assert list(key) == sorted(key)


def test_keys_of_runs_on_the_whole_training_set_did_not_change(runner):
    # The CPU results written before ``n_train`` existed still resume.
    done = runner.completed_keys(BENCHMARKS / "results" / "digits.jsonl")
    assert {run.key for run in runner.build_grid("digits")} == done


def test_scaling_grid_trains_ispl_on_three_sizes(runner):
    runs = runner.build_grid("scaling")
    assert [(run.n_train, run.defense) for run in runs] == [
        (10_000, "none"),
        (10_000, "ispl"),
        (25_000, "none"),
        (25_000, "ispl"),
        (None, "none"),
        (None, "ispl"),
    ]
    assert json.loads(runs[0].key)["n_train"] == 10_000
    assert "n_train" not in json.loads(runs[-1].key)


def test_subsample_keeps_the_poison_fraction_and_the_poisoned_rows(runner, grids):
    rng = np.random.RandomState(0)
    X = rng.randint(0, 256, size=(2000, 32, 32, 3), dtype=np.uint8)
    y = np.repeat(np.arange(10), 200)
    poisoned, _ = grids.make_poisoned("0-to-2-pixel-0.2-seed100", X, y, 100)
    small = runner.subsample_poisoned(poisoned, 500, seed=0)
    assert len(small.y) == 500
    assert len(small.poison_indices) == round(500 * poisoned.is_poison.mean())
    np.testing.assert_array_equal(np.bincount(small.y), np.bincount(poisoned.y) // 4)
    # Each kept row, poisoned or not, is the same image and label as before.
    rows = [
        np.flatnonzero((poisoned.X == image).all(axis=(1, 2, 3)))[0]
        for image in small.X[:50]
    ]
    np.testing.assert_array_equal(poisoned.y[rows], small.y[:50])
    np.testing.assert_array_equal(poisoned.is_poison[rows], small.is_poison[:50])
    assert small.poison_indices.tolist() == sorted(small.poison_indices.tolist())
    with pytest.raises(ValueError, match="n_train must be in"):
        runner.subsample_poisoned(poisoned, 0, seed=0)


def test_two_class_tier_runs_the_judged_scenarios_first(runner):
    runs = runner.build_grid("cifar10-two-class")
    # 24 reference scenarios x 3 seeds x 6 defenses.
    assert len(runs) == 432
    assert len({run.key for run in runs}) == 432
    first = runs[:48]
    assert {run.seed for run in first} == {100}
    assert {run.scenario.split("-")[-2] for run in first} == {"0.1"}
    assert {run.defense for run in first} == {
        "none",
        "oracle",
        "ss",
        "ac",
        "itlm",
        "ispl",
    }
    assert {(run.net, run.dataset) for run in runs} == {
        ("fast_cpu", "cifar10-two-class")
    }


def test_two_class_split_keeps_exactly_the_scenario_poison(runner, grids):
    rng = np.random.RandomState(0)
    X = rng.randint(0, 256, size=(2000, 32, 32, 3), dtype=np.uint8)
    y = np.repeat(np.arange(10), 200)
    X_test = rng.randint(0, 256, size=(300, 32, 32, 3), dtype=np.uint8)
    y_test = np.repeat(np.arange(10), 30)
    poisoned, _ = grids.make_poisoned("7-to-4-pixel-0.1-seed100", X, y, 100)
    two, X_two_test, y_two_test = runner.two_class_split(poisoned, X_test, y_test)
    assert sorted(set(two.y_true.tolist())) == [4, 7]
    assert len(two.y) == 400
    assert len(two.poison_indices) == len(poisoned.poison_indices) == 20
    assert (two.y[two.poison_indices] == 4).all()
    assert (two.y_true[two.poison_indices] == 7).all()
    # The poisoned rows are the very images the scenario poisoned.
    kept = np.flatnonzero(np.isin(poisoned.y_true, [4, 7]))
    np.testing.assert_array_equal(two.X, poisoned.X[kept])
    assert sorted(set(y_two_test.tolist())) == [4, 7] and len(X_two_test) == 60


@pytest.mark.parametrize(
    ("corner", "pixels"),
    [("tl", [(0, 0), (0, 1), (1, 0)]), ("br", [(7, 7), (7, 6), (6, 7)])],
)
def test_digits_robust_grid_puts_the_trigger_in_each_corner(
    runner, grids, corner, pixels
):
    runs = runner.build_grid("digits-robust")
    scenarios = {run.scenario for run in runs}
    assert len(scenarios) == 120 and len(runs) == 360
    assert {s.split("-")[1] for s in scenarios} == {"tl", "tr", "bl", "br"}
    X, y = runner.load_digits_images()
    poisoned, params = grids.make_poisoned(f"digits-{corner}-9-to-6-0.2", X, y, 0)
    assert params["trigger"] == f"corner-3px-{corner}"
    rows, cols = zip(*pixels, strict=True)
    assert (poisoned.X[poisoned.poison_indices][:, rows, cols] == 255).all()
    assert (poisoned.y[poisoned.poison_indices] == 6).all()


def test_params_reach_only_the_defenses_that_take_them(runner):
    runs = runner.build_grid("dlbd", seeds=[100])[:6]
    updated = runner.with_defense_params(runs, {"augment_scoring": False})
    changed = {
        run.defense: dict(run.defense_params) for run in updated if run.defense_params
    }
    assert changed == {"ispl": {"augment_scoring": False}}
    with pytest.raises(ValueError, match="no selected defense takes"):
        runner.with_defense_params(runs, {"augment_scorign": False})
    with pytest.raises(ValueError, match="must be a JSON object"):
        runner.with_defense_params(runs, [1])


def test_an_ispl_run_records_where_the_poison_went(runner):
    short = {
        "n_components": 2,
        "n_bags": 1,
        "warmup_epochs": 5,
        "epochs_per_iteration": 2,
        "weak_learner_epochs": 10,
        "self_training_rounds": 2,
        "self_training_epochs": 2,
        "vote_rounds": 2,
    }
    run = runner.build_grid("smoke")[0]
    run = runner.with_defense_params(
        [runner.replace(run, defense="ispl", n_train=400)], short
    )[0]
    record = runner.run_one(run, device="cpu")
    diagnostics = record["diagnostics"]
    assert record["scenario_params"]["n_train"] == 400
    assert set(diagnostics["phase_seconds"]) == {
        "clustering",
        "voting",
        "self_training",
    }
    assert len(diagnostics["component_sizes"]) == 2
    assert all(
        0 <= poison <= size
        for poison, size in zip(
            diagnostics["component_poison"], diagnostics["component_sizes"], strict=True
        )
    )
    assert len(diagnostics["component_seconds"]) == 2
    assert [sum(c) for c in diagnostics["component_label_counts"]] == diagnostics[
        "component_sizes"
    ]
    assert len(diagnostics["learner_poison_trust"]) == 2
    assert all(0 <= v <= 1 for v in diagnostics["learner_clean_agreement"])
    n_poisoned = record["scenario_params"]["n_poisoned"]
    assert 0 <= diagnostics["boosting_fn"] <= n_poisoned
    assert len(diagnostics["votes_fp_fn"]) == 2
    assert diagnostics["votes_fp_fn"][-1] == [
        diagnostics["boosting_fp"],
        diagnostics["boosting_fn"],
    ]
    assert "poison per core set" in runner.summary_line(record)
    json.dumps(record)


def test_final_on_vote_trains_the_final_model_on_the_vote(runner):
    short = {
        "n_components": 2,
        "n_bags": 1,
        "warmup_epochs": 5,
        "epochs_per_iteration": 2,
        "weak_learner_epochs": 10,
        "self_training": False,
    }
    run = runner.build_grid("smoke")[0]
    run = runner.with_defense_params(
        [runner.replace(run, defense="ispl", n_train=400)], short
    )[0]
    record = runner.run_one(run, device="cpu", final_on_vote=True)
    assert record["tmr"] is not None, record.get("note")
    # Without self-training the vote's keep is the defense's: the same model.
    assert record["diagnostics"]["vote_final"] == {
        name: record[name] for name in ("clean_accuracy", "tmr", "tmr_targeted")
    }
    assert record["seconds"]["vote_final_fit"] > 0
    without = runner.run_one(run, device="cpu")
    assert "vote_final" not in without["diagnostics"]
    assert "vote_final_fit" not in without["seconds"]


def test_loop_overhead_times_both_loops(tmp_path):
    overhead = load_script("loop_overhead")
    out = tmp_path / "overhead.json"
    arguments = "--net mlp --input-shape 1 8 8 --n 64 --batch-size 8 --epochs 1"
    overhead.main(
        [*arguments.split(), "--repeats", "2", "--device", "cpu", "--out", str(out)]
    )
    result = json.loads(out.read_text())
    assert len(result["engine_ms_per_batch_all"]) == 2
    assert result["engine_ms_per_batch"] == min(result["engine_ms_per_batch_all"])
    assert result["bare_loop_ms_per_batch"] > 0
    assert result["skorch_overhead_ms_per_batch"] == pytest.approx(
        result["engine_ms_per_batch"] - result["bare_loop_ms_per_batch"]
    )


def test_commit_comes_from_git_or_from_the_environment(tmp_path, monkeypatch):
    environment = load_script("environment")
    monkeypatch.delenv(environment.COMMIT_VARIABLE, raising=False)
    assert environment.git_commit(tmp_path) is None
    monkeypatch.setenv(environment.COMMIT_VARIABLE, "abc123")
    assert environment.git_commit(tmp_path) == "abc123"
    git = tmp_path / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs" / "heads" / "main").write_text("f" * 40 + "\n")
    assert environment.git_commit(tmp_path) == "f" * 40


def fake_record(run, data_path, job_index, device):
    return {
        "key": run.key,
        "scenario": run.scenario,
        "defense": run.defense,
        "tmr": 0.0,
        "clean_accuracy": 1.0,
        "fp": 0,
        "fn": 0,
        "seconds": {"total": 0.0},
    }


def test_resume_skips_runs_already_in_the_file(runner, tmp_path):
    out = tmp_path / "results.jsonl"
    runs = runner.build_grid("digits")[:5]
    runner.append_record(out, fake_record(runs[2], None, 0, "cpu"))
    calls = []

    def counting_run(run, data_path, job_index, device):
        calls.append(run.key)
        return fake_record(run, data_path, job_index, device)

    assert runner.run_grid(runs, out, run_function=counting_run) == 4
    assert runs[2].key not in calls
    assert runner.run_grid(runs, out, run_function=counting_run) == 0
    assert len(calls) == 4
    assert runner.completed_keys(out) == {run.key for run in runs}


def test_shared_fields_reach_every_record(runner, tmp_path):
    out = tmp_path / "results.jsonl"
    runs = runner.build_grid("digits")[:2]
    shared = {"reference_epoch_seconds": 9.5}
    runner.run_grid(runs, out, run_function=fake_record, shared_fields=shared)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["reference_epoch_seconds"] for r in records] == [9.5, 9.5]


def test_every_record_says_how_many_runs_shared_the_machine(runner, monkeypatch):
    seen = {}

    def capture(runs, out, n_jobs, data, device, job, shared):
        seen.update(shared, n_jobs=n_jobs)

    monkeypatch.setattr(runner, "run_grid", capture)
    runner.main(["--grid", "digits", "--out", "x.jsonl", "--n-jobs", "3"])
    assert seen == {"concurrent_jobs": 3, "n_jobs": 3}


def test_reference_epoch_needs_cifar10(runner):
    args = runner.parse_arguments(
        ["--grid", "dlbd", "--out", "x.jsonl", "--reference-epoch"]
    )
    with pytest.raises(ValueError, match="needs --data"):
        runner.reference_epoch_fields(args)


def test_reference_epoch_is_timed_on_the_grid_data(runner, monkeypatch):
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, size=(32, 32, 32, 3), dtype=np.uint8)
    labels = rng.randint(0, 10, size=32)
    monkeypatch.setattr(
        runner, "load_dataset", lambda name, path: (images, labels, None, None)
    )
    args = runner.parse_arguments(
        ["--grid", "dlbd", "--out", "x", "--data", "fake", "--device", "cpu"]
    )
    fields = runner.reference_epoch_fields(args, workers=0)
    assert fields["reference_epoch_seconds"] > 0
    assert "0 workers, batch 128, fp32, 32 images" in fields["reference_epoch_setup"]


def test_report_gives_seconds_in_reference_epochs_where_timed(report):
    record = report_record("a", "ispl", 0.0)
    record["seconds"] = {"defense_fit": 50.0, "final_fit": 10.0, "total": 80.0}
    record["reference_epoch_seconds"] = 10.0
    table = report.seconds_table([record], ["ispl"])
    assert "total in reference epochs" in table
    assert table.splitlines()[-1] == "| ISPL+B | 1 | 50.0 | 10.0 | 80.0 | 80.0 | 8.0 |"
    assert "reference epochs" not in report.seconds_table(
        [report_record("a", "ispl", 0.0)], ["ispl"]
    )


def test_a_defense_that_keeps_nothing_is_recorded_not_fatal(
    runner, report, monkeypatch
):
    def keeps_nothing(run, poisoned, device, timer):
        return np.zeros(len(poisoned.y), dtype=bool), None

    monkeypatch.setattr(runner, "defended_mask", keeps_nothing)
    run = runner.replace(runner.build_grid("smoke")[0], defense="ispl")
    record = runner.run_one(run, device="cpu")
    assert record["clean_accuracy"] is None and record["tmr"] is None
    assert record["fn"] == 0 and record["fp"] == record["n_removed"] - 25
    assert "kept no sample" in runner.summary_line(record)
    assert report.success_counts([record], ["ispl"]) == {"ispl": (0, 1)}
    json.dumps(record)


def test_a_defense_that_keeps_one_class_is_recorded_not_fatal(runner, monkeypatch):
    def keeps_one_class(run, poisoned, device, timer):
        return poisoned.y == poisoned.target, None

    monkeypatch.setattr(runner, "defended_mask", keeps_one_class)
    run = runner.replace(runner.build_grid("smoke")[0], defense="ispl")
    record = runner.run_one(run, device="cpu")
    assert record["tmr"] is None and record["fn"] == 25
    assert record["note"].startswith("the defense kept only class 7 (")


def test_a_real_run_records_every_field(runner):
    run = next(r for r in runner.build_grid("smoke") if r.defense == "ss")
    record = runner.run_one(run, device="cpu")
    assert REQUIRED_FIELDS <= set(record)
    assert record["key"] == run.key
    assert record["scenario_params"]["n_poisoned"] == 25
    assert record["defense_params"]["epochs"] == 1
    assert {"load", "poison", "defense_fit", "final_fit", "total"} <= set(
        record["seconds"]
    )
    assert 0.0 <= record["tmr"] <= 1.0
    assert record["fp"] + 25 - record["fn"] == record["n_removed"]
    assert sum(record["fp_by_label"].values()) == record["fp"]
    assert set(record["clean_accuracy_by_class"]) <= {str(c) for c in range(10)}
    assert record["machine"]["process_cpu_seconds"] > 0
    json.dumps(record)


def test_fp_and_accuracy_are_broken_down_by_class(runner):
    poisoned = types.SimpleNamespace(
        y=np.array([0, 0, 1, 1, 1, 2]),
        is_poison=np.array([False, False, False, True, False, False]),
    )
    keep = np.array([False, True, False, False, True, True])
    assert runner.removed_clean_by_label(keep, poisoned) == {"0": 1, "1": 1, "2": 0}
    accuracy = runner.accuracy_by_class(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    assert accuracy == {"0": 0.5, "1": 1.0}


def test_steal_fraction_is_the_stolen_share_between_two_readings(tmp_path):
    environment = load_script("environment")
    cpu_jiffies, steal_fraction = environment.cpu_jiffies, environment.steal_fraction

    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 50 800 10 0 0 40 7 0\ncpu0 1 2 3\n")
    assert cpu_jiffies(stat) == (40, 1000)
    assert steal_fraction((40, 1000), (90, 1200)) == 0.25
    assert steal_fraction((40, 1000), (40, 1000)) is None
    assert steal_fraction(None, (40, 1000)) is None
    assert cpu_jiffies(tmp_path / "missing") is None


def report_record(scenario, defense, tmr, source=0, target=7, fraction=0.05):
    return {
        "dataset": "digits",
        "scenario": scenario,
        "defense": defense,
        "scenario_params": {
            "attack": "dlbd-1-to-1",
            "source": source,
            "target": target,
            "poison_fraction": fraction,
            "n_poisoned": 100,
        },
        "defense_params": {},
        "clean_accuracy": 0.95,
        "tmr": tmr,
        "tmr_targeted": tmr,
        "poison_accuracy": 1 - tmr,
        "fp": 10,
        "fn": 0 if tmr < 0.01 else 5,
        "seconds": {"total": 1.0, "final_fit": 1.0},
        "device": "cpu",
        "device_name": "x86_64",
        "git_commit": "abc",
        "versions": {"torch": "x"},
    }


def test_report_counts_successes(report, tmp_path):
    records = [
        report_record("a", "none", 0.9),
        report_record("a", "ispl", 0.0),
        report_record("b", "none", 0.5, source=3, target=8),
        report_record("b", "ispl", 0.005, source=3, target=8),
        report_record("c", "ispl", 0.2, source=5, target=2),
    ]
    assert report.success_counts(records, ["none", "ispl"]) == {
        "none": (0, 2),
        "ispl": (2, 3),
    }
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    markdown = report.build_report(report.read_records(path), "fake")
    assert "| ISPL+B | 2 | 2 | 3 |" in markdown
    assert "| 0 / 7 | 5 |" in markdown


def test_report_tables_fit_time_against_n_for_a_scaling_file(report):
    records = []
    for n, seconds in ((10_000, 20.0), (50_000, 90.0)):
        record = report_record("s", "ispl", 0.0)
        record["scenario_params"]["n_train"] = n
        record["seconds"] = {"defense_fit": seconds, "final_fit": 5.0, "total": 99.0}
        records.append(record)
    assert report.is_scaling(records)
    assert not report.is_scaling(records[:1])
    markdown = report.build_report(records, "fake")
    assert "## Fit time against the training-set size" in markdown
    assert "| s | 10000 | ISPL+B | 20.0 | 5.0 | 99.0 | 0.0 |" in markdown
    assert "| s | 50000 | ISPL+B | 90.0 |" in markdown
    assert "Per scenario" not in markdown


def test_report_says_where_the_poison_went_in_ispl_runs(report):
    record = report_record("a", "ispl", 0.3)
    record["seed"] = 100
    record["scenario_params"].update(n_train=1000, n_poisoned=25)
    record["diagnostics"] = {
        "phase_seconds": {"clustering": 10.0, "voting": 1.0, "self_training": 4.0},
        "component_poison": [0, 21, 4],
        "boosting_fn": 25,
    }
    markdown = report.build_report([record], "fake")
    assert "| a | 100 | 1000 | 25 | 0 21 4 | 25 | 5 | 10.0 | 1.0 | 4.0 |" in markdown
    assert "| ISPL+B | 1 | clustering 10.0, voting 1.0, self_training 4.0 |" in markdown


def run_record(run, tmr, source, target, fraction):
    """A report record of ``run`` with the run's own key, grid and data set."""
    record = report_record(run.scenario, run.defense, tmr, source, target, fraction)
    record.update(
        key=run.key,
        grid=run.grid,
        dataset=run.dataset,
        seed=run.seed,
        final_epochs=run.final_epochs,
        finished_at="2026-12-01",
    )
    return record


def test_report_lists_other_tier_configurations_apart(report, runner):
    configured = runner.build_grid("cifar10-two-class")[0]
    variant = runner.with_defense_params([configured], {"n_components": 8})[0]
    records = []
    for run, tmr in ((configured, 0.0), (variant, 0.4)):
        records.append(run_record(run, tmr, 0, 2, 0.1))
    markdown = report.build_report(records, "fake")
    table, others = markdown.split("## Other configurations tried")
    assert "| ISPL+B | 1 | 1 | 1 |" in table
    assert "n_components=8, self_training=False, self_training_epochs=3" in others
    assert "final 20 epochs | 40.0 |" in others


def test_report_summarises_other_digits_configurations_apart(report, runner):
    grid = runner.build_grid("digits-robust")
    configured = [run for run in grid if run.defense == "ispl"][:2]
    variants = runner.with_defense_params(configured, {"self_training_trim": 0.3})
    records = []
    for run, tmr, fn in zip(
        configured + variants, (0.3, 0.0, 0.0, 0.0), (5, 0, 1, 0), strict=True
    ):
        record = run_record(run, tmr, 0, 7, 0.05)
        record["scenario_params"]["n_poisoned"] = 6
        record.update(fn=fn, fp=10 + fn)
        records.append(record)
    markdown = report.build_report(records, "fake")
    table, others = markdown.split("## Other configurations tried")
    assert "| ISPL+B | 1 | 1 | 2 |" in table  # the grid's own runs only
    assert (
        "| ISPL+B | self_training_trim=0.3; final 40 epochs | 2 | 2 | 1 | 10.5 | 11 |"
        in others
    )


def test_report_puts_paper_numbers_beside_ours(report):
    paper = report.load_paper_table()
    assert len(paper) == 24
    record = report_record("0-to-2-pixel-0.05-seed100", "ispl", 0.0, 0, 2, 0.05)
    record["dataset"] = "cifar10"
    markdown = report.build_report([record], "fake", paper)
    # Paper 001 Table 2, 0 / 2 at 5%: ISPL+B C 90.9, A 0.0, FP 3761, FN 23.
    assert "| 0 / 2 | 5 | 95.0 (90.9) | 0.0 (0) | 10 (3761) | 0 (23) |" in markdown


# ---------------------------------------------------------------------------
# The threat grids: the clean-label backdoor and the adaptive attacker
# ---------------------------------------------------------------------------

TINY_ISPL = (("epochs_per_iteration", 1), ("n_components", 2), ("warmup_epochs", 1))


def test_two_class_threat_grid_runs_the_attacks_on_the_tier(runner, grids):
    runs = runner.build_grid("cifar10-two-class-threats")
    # 8 CLBD and 24 adaptive scenarios of seed 100, six defenses each.
    assert len(runs) == 192 and len({run.key for run in runs}) == 192
    scenarios = list(dict.fromkeys(run.scenario for run in runs))
    assert scenarios[:4] == [
        "clbd-linf-16-0-to-2-0.2",
        "clbd-l2-600-0-to-2-0.2",
        "clbd-linf-16-7-to-4-0.2",
        "clbd-l2-600-7-to-4-0.2",
    ]
    assert sum(s.startswith("clbd-") for s in scenarios) == 8
    assert {s for s in scenarios if s.startswith("adaptive-")} == {
        f"adaptive-{s.name}" for s in grids.reference_scenarios(100)
    }
    # ISPL+B, ND and the oracle on every scenario before the baselines.
    assert {run.defense for run in runs[:96]} == {"ispl", "none", "oracle"}
    assert {run.defense for run in runs[96:]} == {"ss", "ac", "itlm"}
    assert {(run.net, run.final_epochs, run.dataset, run.seed) for run in runs} == {
        ("fast_cpu", 20, "cifar10-two-class", 100)
    }
    ispl = {dict(run.defense_params) == grids.TWO_CLASS_ISPL_PARAMS for run in runs}
    assert ispl == {True, False}
    attacker = runner.attacker_for(runs[0])
    assert dict(attacker.ispl_params) == grids.TWO_CLASS_ISPL_PARAMS
    assert (attacker.net, attacker.reference_epochs) == ("fast_cpu", 10)


def test_readme_gives_the_tiers_ispl_configuration(grids):
    """The README's code for small networks on real images is the tier's
    configuration, so that what users copy is what was measured."""
    readme = (BENCHMARKS.parent / "README.md").read_text()
    start = readme.index('IncompatibilityClustering(\n    net="fast_cpu"')
    call = ast.parse(readme[start : readme.index("\n)", start) + 2]).body[0].value
    given = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    assert given.pop("net") == grids.TWO_CLASS_NET
    measured = {
        name: value
        for name, value in grids.TWO_CLASS_ISPL_PARAMS.items()
        if not name.startswith("self_training_")  # unused with self_training off
    }
    assert given == measured


@pytest.mark.parametrize("preset", ["default", "paper"])
def test_cifar_threat_grids_follow_tables_6_and_10(runner, grids, preset):
    clbd = runner.build_grid("clbd", preset=preset)
    scenarios = {run.scenario for run in clbd}
    assert scenarios == {
        f"clbd-{norm}-all-to-{target}-{fraction}"
        for norm in ("linf-16", "l2-600")
        for target in (0, 2, 4, 7, 9)
        for fraction in (0.05, 0.1, 0.2)
    }
    adaptive = runner.build_grid("adaptive", preset=preset, seeds=[100, 1000])
    assert len({run.scenario for run in adaptive}) == 48
    assert {run.scenario.split("-")[-1] for run in adaptive} == {
        "seed100",
        "seed1000",
    }
    net = "preact_resnet18" if preset == "paper" else "fast"
    assert {(run.net, run.dataset) for run in clbd + adaptive} == {(net, "cifar10")}
    itlm = next(run for run in clbd if run.defense == "itlm")
    assert (dict(itlm.defense_params).get("keep_fraction") is not None) == (
        preset == "paper"
    )
    assert runner.attacker_for(clbd[0]) == grids.Attacker(net=net)
    # The aggregate "cifar10" grid is unchanged by them.
    assert not any(
        run.scenario.startswith(("clbd-", "adaptive-"))
        for run in runner.build_grid("cifar10")
    )


def test_list_prints_the_threat_grid(runner, capsys):
    runner.main(["--grid", "cifar10-two-class-threats", "--out", "x", "--list"])
    keys = capsys.readouterr().out.splitlines()
    assert len(keys) == 192
    assert json.loads(keys[0])["grid"] == "cifar10-two-class-threats"


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("clbd-linf-16-all-to-2-0.1", ("clbd", None, 2, 0.1, "linf", 16)),
        ("clbd-l2-600-7-to-4-0.2", ("clbd", 7, 4, 0.2, "l2", 600)),
        ("digits-clbd-l2-600-all-to-8-0.2", ("clbd", None, 8, 0.2, "l2", 600)),
        ("adaptive-9-to-2-ell-0.05-seed1000", ("adaptive", 9, 2, 0.05, None, None)),
        ("digits-adaptive-3-to-8-0.1", ("adaptive", 3, 8, 0.1, None, None)),
        ("0-to-2-pixel-0.1-seed100", None),
        ("digits-tl-0-to-7-0.05", None),
        ("watermark-0-to-2-0.1", None),
    ],
)
def test_threat_scenarios_are_found_by_name(grids, scenario, expected):
    attack = grids.scenario_by_name(scenario)
    assert attack.name == scenario
    if expected is None:
        assert not attack.trains_networks
        return
    assert attack.trains_networks
    fields = (attack_kind(grids, attack), attack.source, attack.target)
    norm, budget = getattr(attack, "norm", None), getattr(attack, "budget", None)
    assert (*fields, attack.fraction, norm, budget) == expected


def attack_kind(grids, attack):
    return {grids.CleanLabel: "clbd", grids.Adaptive: "adaptive"}[type(attack)]


def test_clbd_budgets_are_turner_s_in_pixel_units(grids):
    assert grids.clbd_eps("linf", 16, (32, 32, 3)) == pytest.approx(16 / 255)
    assert grids.clbd_eps("linf", 16, (8, 8, 1)) == pytest.approx(16 / 255)
    assert grids.clbd_eps("l2", 600, (32, 32, 3)) == pytest.approx(600 / 255)
    # An L2 budget keeps its root-mean-square change per value on 8x8x1.
    small = grids.clbd_eps("l2", 600, (8, 8, 1))
    assert small == pytest.approx(600 / 255 * (64 / 3072) ** 0.5)


def fake_cifar(n_per_class=16, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randint(0, 256, size=(10 * n_per_class, 32, 32, 3), dtype=np.uint8)
    return X, np.repeat(np.arange(10), n_per_class)


TINY_ATTACKER_FIELDS = {"net": "mlp", "ispl_params": TINY_ISPL, "reference_epochs": 1}


@pytest.mark.parametrize(
    "scenario",
    [
        "clbd-linf-16-all-to-2-0.2",
        "clbd-l2-600-0-to-2-0.2",
        "adaptive-7-to-4-pixel-0.2-seed100",
    ],
)
def test_threat_ids_round_trip_through_make_poisoned(runner, grids, scenario):
    X, y = fake_cifar()
    attacker = grids.Attacker(**TINY_ATTACKER_FIELDS)
    poisoned, params = grids.make_poisoned(scenario, X, y, 100, attacker, "cpu")
    attack = grids.scenario_by_name(scenario)
    assert params["target"] == attack.target
    assert params.get("source") == attack.source
    assert params["poison_fraction"] == attack.fraction
    # The poison is a fifth of the class the attack poisons (16 images).
    assert len(poisoned.poison_indices) == round(0.2 * 16)
    changed = np.flatnonzero((poisoned.X != X).any(axis=(1, 2, 3)))
    np.testing.assert_array_equal(changed, poisoned.poison_indices)
    if attack_kind(grids, attack) == "clbd":
        assert params["attack"] == f"clbd-{attack.norm}"
        assert params["eps"] == pytest.approx(attack.budget / 255)
        np.testing.assert_array_equal(poisoned.y, y)
        assert (y[poisoned.poison_indices] == attack.target).all()
    else:
        assert params["attack"] == "adaptive-dlbd-1-to-1"
        assert params["attacker_ispl_params"] == dict(TINY_ISPL)
        assert (poisoned.y[poisoned.poison_indices] == 4).all()
        assert (y[poisoned.poison_indices] == 7).all()
        assert sum(params["partition_sizes"]) == len(y)
        assert sum(params["partition_poison"]) == len(poisoned.poison_indices)
    json.dumps(params)


def test_tier_attacks_see_only_the_pair_and_are_computed_once(
    runner, grids, monkeypatch
):
    X, y = fake_cifar()
    X_test, y_test = fake_cifar(4, seed=1)
    monkeypatch.setattr(
        runner, "load_dataset", lambda name, path: (X, y, X_test, y_test)
    )
    runner.network_attack.cache_clear()
    attacker = grids.Attacker(**TINY_ATTACKER_FIELDS)
    scenario = grids.scenario_by_name("clbd-linf-16-7-to-4-0.2")
    arguments = ("cifar10-two-class", None, scenario, 100, attacker)
    poisoned, params, X_two, y_two = runner.network_attack(*arguments, "cpu")
    assert set(poisoned.y_true.tolist()) == {4, 7} and len(poisoned.y) == 32
    assert set(y_two.tolist()) == {4, 7} and len(X_two) == 8
    assert params["source"] == 7 and params["attack_seconds"] > 0
    again = runner.network_attack(*arguments, "cpu")
    assert again[0] is poisoned
    runner.network_attack.cache_clear()
    every_class = grids.scenario_by_name("clbd-linf-16-all-to-4-0.2")
    with pytest.raises(ValueError, match="needs a source class"):
        runner.network_attack(
            "cifar10-two-class", None, every_class, 100, attacker, "cpu"
        )


def test_a_digits_threat_run_reuses_its_attack(runner):
    runner.network_attack.cache_clear()
    runs = [
        runner.replace(run, final_epochs=1)
        for run in runner.build_grid("digits-threats")
        if run.scenario == "digits-clbd-linf-16-all-to-7-0.2"
        and run.defense in ("none", "oracle")
    ]
    first, second = (runner.run_one(run, device="cpu") for run in runs)
    assert REQUIRED_FIELDS <= set(first)
    params = first["scenario_params"]
    assert params["attack"] == "clbd-linf" and params["n_poisoned"] == 25
    assert second["scenario_params"] == params
    assert second["seconds"]["poison"] < params["attack_seconds"]
    # Every class but the target is attacked; the oracle removes all poison.
    assert first["n_test_attacked"] == 540 - 54
    assert (first["fn"], second["fn"], second["fp"]) == (25, 0, 0)
    json.dumps(first)


def threat_record(run, tmr):
    grids = importlib.import_module("grids")
    attack = grids.scenario_by_name(run.scenario)
    kind = attack_kind(grids, attack)
    name = f"clbd-{attack.norm}" if kind == "clbd" else "adaptive-dlbd-1-to-1"
    record = run_record(run, tmr, attack.source, attack.target, attack.fraction)
    record["scenario_params"]["attack"] = name
    if attack.source is None:
        del record["scenario_params"]["source"]
    return record


def test_report_shows_the_threats_beside_tables_6_and_10(report, runner):
    wanted = {"clbd-l2-600-0-to-2-0.2", "adaptive-2-to-5-pixel-0.1-seed100"}
    runs = [
        run
        for run in runner.build_grid("cifar10-two-class-threats")
        if run.scenario in wanted and run.defense in ("none", "ispl")
    ]
    records = [
        threat_record(run, 0.6 if run.defense == "none" else 0.0) for run in runs
    ]
    markdown = report.build_report(records, "fake", report.load_paper_tables())
    assert "### Clean-label backdoor, L2 perturbation" in markdown
    assert "### Adaptive attacker" in markdown
    assert "Paper 001's Table 6 and Table 10 values follow ours" in markdown
    # Table 6, L2, target 2 at 20%: ND C 93.1 A 76.4; ISPL+B 90.6 20.3 3716 633.
    assert (
        "| 0 / 2 | 20 | 95.0 (93.1) | 60.0 (76.4) | 10 | 5 "
        "| 95.0 (90.6) | 0.0 (20.3) | 10 (3716) | 0 (633) |"
    ) in markdown
    # Table 10, 2 / 5 at 10%: ISPL+B only, C 90.8 A 64.5 FP 3656 FN 336.
    assert (
        "| 2 / 5 | 10 | 95.0 | 60.0 | 10 | 5 "
        "| 95.0 (90.8) | 0.0 (64.5) | 10 (3656) | 0 (336) |"
    ) in markdown
    # The paper lost both scenarios that ISPL+B won here.
    assert markdown.count("| ISPL+B | 1 | 1 | 1 | 0 of 1 |") == 2
    assert "Other configurations tried" not in markdown


def test_report_says_where_a_clbd_without_source_is_measured(report, runner):
    run = runner.build_grid("clbd")[0]
    markdown = report.build_report([threat_record(run, 0.0)], "fake")
    assert "every class but the target" in markdown
    assert "| all / 0 | 5 |" in markdown


def test_paper_tables_6_and_10_load_with_their_summaries(report):
    paper = report.load_paper_tables()
    assert len(paper) == 24 + 45 + 24
    table6 = [row for row in paper.values() if row["table"] == "Table 6"]
    assert {(row["attack"], row["target"], row["eps_percent"]) for row in table6} == {
        (f"clbd-{m}", t, e)
        for m in ("gan", "l2", "linf")
        for t in (0, 2, 4, 7, 9)
        for e in (5, 10, 20)
    }
    assert paper["clbd-linf", None, 2, 0.1]["none"] == {"C": 93.3, "A": 52.9}
    assert paper["adaptive-dlbd-1-to-1", 3, 5, 0.2]["ispl"] == {
        "C": 90.4,
        "A": 69.4,
        "FP": 4162,
        "FN": 731,
    }

    def defended(attack):
        rows = [row for row in paper.values() if row["attack"] == attack]
        return sum(report.paper_defended(row, "ispl") for row in rows), len(rows)

    # Table 1 and App. D.2.3: 41 of 45 CLBD, 22 and 20 of 24 DLBD scenarios.
    assert [defended(f"clbd-{m}") for m in ("gan", "l2", "linf")] == [
        (14, 15),
        (12, 15),
        (15, 15),
    ]
    assert defended("dlbd-1-to-1") == (22, 24)
    assert defended("adaptive-dlbd-1-to-1") == (20, 24)


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="ray is not installed"
)
@pytest.mark.slow
def test_ray_backend_runs_the_smoke_grid(tmp_path):
    out = tmp_path / "ray.jsonl"
    command = [
        sys.executable,
        str(BENCHMARKS / "run.py"),
        "--grid",
        "smoke",
        "--backend",
        "ray",
        "--n-jobs",
        "2",
        "--out",
        str(out),
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1", "RAY_ADDRESS": "local"}
    subprocess.run(command, check=True, env=env, timeout=300, cwd=tmp_path)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["defense"] for r in records) == ["none", "ss"]


def test_cross_fit_training_rows_per_rule():
    """Learner 0 of bag 0 trains on its own core set (``own``), on everything
    else (``complement``), or on everything else but the core set of bag 1
    that shares most samples with its own (``cocluster``)."""
    cross_fit = load_script("cross_fit_replay")
    component_of = np.array(
        [
            [0, 0, 0, 1, 1, 1, -1, -1],
            [2, 2, 3, 3, 3, 2, 3, -1],
        ]
    )
    bags = np.array([0, 0, 1, 1])
    rows = {
        rule: np.flatnonzero(cross_fit.training_rows(component_of, bags, 0, rule))
        for rule in ("own", "complement", "cocluster")
    }
    assert rows["own"].tolist() == [0, 1, 2]
    assert rows["complement"].tolist() == [3, 4, 5, 6, 7]
    assert rows["cocluster"].tolist() == [3, 4, 6, 7]


def test_kept_set_replay_variants():
    """The random-removal control removes as many clean samples of each class
    as the vote did, and no variant but the vote keeps poison."""
    replay = load_script("kept_set_replay")
    y = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    is_poison = np.zeros(10, dtype=bool)
    is_poison[[4, 9]] = True
    vote = np.array([False, False, True, True, True, True, True, False, True, True])
    sets = replay.kept_sets(vote, is_poison, y, seed=0)
    assert sets["vote"] is vote
    assert np.array_equal(sets["vote_without_poison"], vote & ~is_poison)
    assert not (sets["oracle"] & is_poison).any()
    control = sets["random_removal"]
    assert not (control & is_poison).any()
    clean_removed = ~vote & ~is_poison
    for label in (0, 1):
        in_class = (y == label) & ~is_poison
        assert np.sum(in_class & ~control) == np.sum(in_class & clean_removed)


def test_vote_replay_nearly_clean_rule_ignores_poisoned_learners():
    """The oracle rule lets only learners whose core sets hold at most
    NEARLY_CLEAN poisoned samples vote: two learners fitted on the poison,
    which outvote the clean one under the modal vote, are left out."""
    replay = load_script("vote_replay")
    half = replay.NEARLY_CLEAN + 1
    y = np.array([0] * 4 + [1] * (4 + 2 * half))
    is_poison = np.zeros(len(y), dtype=bool)
    is_poison[8:] = True
    # Learners 0 and 1 hold half the poison each; learner 2 the clean samples.
    component_of = np.full((3, len(y)), -1)
    component_of[0, 8 : 8 + half] = 0
    component_of[1, 8 + half :] = 1
    component_of[2, :8] = 2
    truth = np.array([0] * 4 + [1] * 4 + [0] * (2 * half))
    probe = {
        "y": y,
        "is_poison": is_poison,
        "component_of": component_of,
        "bags": np.arange(3),
        "votes": np.stack([y, y, truth]),
    }
    rows = {row["rule"]: row for row in replay.vote_rows(probe)}
    oracle = rows[
        f"mode, only learners with <= {replay.NEARLY_CLEAN} poisoned (oracle)"
    ]
    assert (oracle["fp"], oracle["fn"]) == (0, 0)
    assert (rows["mode, every learner"]["fp"], rows["mode, every learner"]["fn"]) == (
        0,
        2 * half,
    )


def test_learner_agreement_is_the_share_of_each_group_voted_as_labelled(runner):
    poisoned = types.SimpleNamespace(
        y=np.array([0, 0, 1, 1, 1]),
        is_poison=np.array([False, False, False, True, True]),
    )
    votes = np.array([[0, 1, 1, 1, 0], [0, 0, 1, 0, 0]])
    agreement = runner.learner_agreement(votes, poisoned)
    assert agreement["learner_poison_trust"] == [0.5, 0.0]
    assert agreement["learner_clean_agreement"] == [0.667, 1.0]


def test_differential_replay_picks_the_core_set_the_other_learner_misreads():
    """The poison-rich core set is the one whose samples the other core set's
    learner gets wrong more often, whichever index it has."""
    replay = load_script("differential_replay")
    y = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    cores = [np.arange(8) < 4, np.arange(8) >= 4]
    # Learner 0 (core set 0) misreads 3 of core set 1; learner 1 misreads
    # 1 of core set 0.
    votes = np.stack(
        [np.array([0, 0, 1, 1, 1, 1, 0, 1]), np.array([1, 0, 1, 1, 0, 0, 1, 1])]
    )
    rich, errors = replay.poison_rich_core(votes, y, cores, np.array([0, 1]))
    assert rich == 1
    assert errors == [0.25, 0.75]
    rich, errors = replay.poison_rich_core(
        votes[::-1], y, cores[::-1], np.array([0, 1])
    )
    assert rich == 0
    with pytest.raises(ValueError, match="two core sets"):
        replay.poison_rich_core(votes, y, cores + cores[:1], np.array([0, 1, 2]))


def test_a_cluster_vote_run_records_what_each_bag_flagged(runner):
    short = {
        "n_components": 2,
        "n_bags": 2,
        "min_votes": 1,
        "warmup_epochs": 2,
        "epochs_per_iteration": 1,
        "weak_learner_epochs": 3,
        "self_training": False,
        "vote": "clusters",
        "cluster_features": "both",
    }
    run = runner.build_grid("smoke")[0]
    run = runner.with_defense_params(
        [runner.replace(run, defense="ispl", n_train=300)], short
    )[0]
    record = runner.run_one(run, device="cpu")
    diagnostics = record["diagnostics"]
    assert len(diagnostics["poison_rich_components"]) == 2
    for component, features in zip(
        diagnostics["poison_rich_components"],
        diagnostics["poison_rich_features"],
        strict=True,
    ):
        assert (features == "") == (component < 0)
        assert features in ("", "representations", "saliency")
    assert len(diagnostics["cluster_cohesion"]) == 2
    flagged = diagnostics["cluster_flags_fp_tp"]
    assert len(flagged) == 2
    n_poisoned = record["scenario_params"]["n_poisoned"]
    assert all(0 <= tp <= n_poisoned and fp >= 0 for fp, tp in flagged)
    # One bag's flag removes a sample (min_votes=1): the vote removes at
    # least what each bag flags.
    removed_poison = n_poisoned - diagnostics["boosting_fn"]
    assert removed_poison >= max(tp for _, tp in flagged)
    assert diagnostics["boosting_fp"] >= max(fp for fp, _ in flagged)
    by_k = diagnostics["flagged_by_at_least_k_bags_fp_tp"]
    assert by_k[0] == [diagnostics["boosting_fp"], removed_poison]
    assert by_k[1][0] <= min(fp for fp, _ in flagged)
    assert by_k[1][1] <= min(tp for _, tp in flagged)
    candidates = diagnostics["cluster_candidates"]
    assert len(candidates) == 4
    for row in (row for learner in candidates for row in learner):
        assert row["features"] in ("representations", "saliency")
        assert 0 <= row["poisoned"] <= row["size"]
        assert row["stood"] == (row["misread"] >= 0.5)


def test_cluster_candidates_describe_each_candidate_cluster(runner):
    from sklearn_backdoor.cluster_vote import ClusterFindings

    findings = ClusterFindings(
        clusters=np.array([0, 0, 1, 1, 0, 1, -1]),
        candidates=np.array([[False, True], [True, False]]),
        silhouettes=np.array([0.6, 0.2]),
        misread=np.array([[0.1, 0.75], [0.25, np.nan]]),
        confirmed=np.array([[False, True], [False, False]]),
    )
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    is_poison = np.array([False, False, True, False, False, False, True])
    rows = runner.cluster_candidates({"saliency": findings}, labels, is_poison)
    assert rows == [
        {
            "features": "saliency",
            "class": 0,
            "size": 2,
            "poisoned": 1,
            "misread": 0.75,
            "silhouette": 0.6,
            "stood": True,
        },
        {
            "features": "saliency",
            "class": 1,
            "size": 1,
            "poisoned": 0,
            "misread": 0.25,
            "silhouette": 0.2,
            "stood": False,
        },
    ]
    unconfirmed = findings._replace(confirmed=findings.candidates)
    both = {"representations": unconfirmed, "saliency": findings}
    rows = runner.cluster_candidates(both, labels, is_poison)
    assert [(row["features"], row["stood"]) for row in rows] == [
        ("representations", True),
        ("representations", True),
        ("saliency", True),
        ("saliency", False),
    ]


def _two_learner_fit():
    """One bag: learner 1's core set holds the poison (0-3) and hard clean
    images of class 1 (4-7) that the clean learner 0 misreads; each learner
    has one candidate cluster in class 1."""
    y = np.array([1] * 8 + [0] * 4 + [1] * 4)
    is_poison = np.arange(16) < 4
    cores = np.zeros((2, 16), dtype=bool)
    cores[1, :8] = True
    cores[0, 8:] = True
    votes = np.stack([np.array([0] * 12 + [1] * 4), y])
    findings = {}
    for learner, members, silhouette in ((1, slice(0, 4), 0.8), (0, slice(4, 8), 0.5)):
        clusters = np.zeros(16, dtype=int)
        clusters[members] = 1
        candidates = np.array([[False, False], [False, True]])
        findings[(learner, "representations")] = {
            "clusters": clusters,
            "candidates": candidates,
            "silhouettes": np.array([0.0, silhouette]),
        }
    return {
        "y": y,
        "is_poison": is_poison,
        "votes": votes,
        "bags": np.zeros(2, dtype=int),
        "cores": cores,
        "mask": ~is_poison,
        "findings": findings,
    }


def test_vote_rules_replay_confirmation_by_untrained_learners_stands_hard_images():
    """The clean learner's cluster of hard images is rejected when the other
    learner confirms it (it trained on them and reads them right), and stands
    when the learners that did not train on them (the clean learner itself)
    confirm it; flagged only when every confirmed cluster is."""
    replay = load_script("vote_rules_replay")
    rows = {
        row["rule"]: row
        for row in replay.rule_records(_two_learner_fit(), "synthetic", {})
    }
    assert rows["cluster vote"]["reproduces_fit"]
    got = {name: (row["fp"], row["fn"]) for name, row in rows.items()}
    assert got["cluster vote"] == (0, 0)
    assert got["cluster vote, every confirmed cluster"] == (0, 0)
    assert got["cluster vote, confirmed by untrained learners"] == (0, 0)
    every = "cluster vote, confirmed by untrained learners, every confirmed cluster"
    assert got[every] == (4, 0)


def test_vote_rules_replay_chen_ratio_needs_one_other_class_to_outnumber_the_label():
    """Half the readings miss the label but split over two other classes:
    the misread share confirms the cluster, Chen's ratio does not."""
    replay = load_script("vote_rules_replay")
    fit = {
        "votes": np.array([[2, 2, 2, 2], [0, 0, 2, 2], [1, 1, 2, 2]]),
        "bags": np.zeros(3, dtype=int),
    }
    members, label = np.arange(4), 2
    assert replay.confirmed(fit, 0, members, label, "others", "misread")
    assert not replay.confirmed(fit, 0, members, label, "others", "chen")
    fit["votes"][2] = [0, 0, 0, 2]
    assert replay.confirmed(fit, 0, members, label, "others", "chen")


def test_vote_rules_replay_every_bag_counts_only_the_learners_untrained_on_a_member():
    """Two bags of one learner each: learner 0 trained on members 0-1 and
    reads them as the label; learner 1 trained on 2-3. Every bag's untrained
    readings are learner 1's of 0-1 and learner 0's of 2-3."""
    replay = load_script("vote_rules_replay")
    fit = {
        "votes": np.array([[2, 2, 0, 0], [0, 0, 2, 2]]),
        "bags": np.array([0, 1]),
        "cores": np.array([[True, True, False, False], [False, False, True, True]]),
    }
    members, label = np.arange(4), 2
    chosen, eligible = replay.readers(fit, 0, members, "every bag")
    assert chosen.tolist() == [0, 1]
    assert eligible.tolist() == [[False, False, True, True], [True, True, False, False]]
    assert replay.confirmed(fit, 0, members, label, "every bag", 5)
    # Counting the trained readings too: two of each, a ratio of 1.
    fit["cores"][:] = False
    assert not replay.confirmed(fit, 0, members, label, "every bag", 1)


def test_final_model_seeds_trains_the_tiers_undefended_run():
    seeds = load_script("final_model_seeds")
    run = seeds.tier_run("7-to-4-pixel-0.1-seed100")
    assert (run.grid, run.defense, run.seed) == ("cifar10-two-class", "none", 100)
    assert (run.net, run.final_epochs) == ("fast_cpu", 20)
    with pytest.raises(ValueError, match="7-to-4-pixel-0.1-seed1000"):
        seeds.tier_run("7-to-4-pixel-0.1-seed1000")


def test_compatibility_judge_reads_the_rest_of_each_judged_candidates_class(
    poisoned_digits, monkeypatch
):
    from sklearn_backdoor import incompatibility

    judge = load_script("compatibility_judge")
    # Judge every bag that has a candidate, confirmed or not.
    monkeypatch.setattr(
        incompatibility,
        "_only_unconfirmed",
        lambda found: any(f.candidates.any() for f in found),
    )
    judge.CompatibilityProbe.is_poison = poisoned_digits.is_poison
    probe = judge.CompatibilityProbe(
        vote="clusters",
        exclusionary_retraining=True,
        n_components=2,
        warmup_epochs=1,
        epochs_per_iteration=1,
        weak_learner_epochs=2,
        self_training=False,
        augment_scoring=False,
        random_state=0,
    ).fit(poisoned_digits.X, poisoned_digits.y)
    rows = probe.compatibility_rows_
    assert rows and probe.exclusion_judged_bags_.any()
    y = poisoned_digits.y
    for row in rows:
        found = probe.cluster_findings_[row["learner"]][row["feature"]]
        assert probe.exclusion_judged_bags_[row["bag"]]
        members = [
            (found.clusters == k) & (y == row["label"])
            for k in np.flatnonzero(found.candidates[row["label"]])
        ]
        match = [m for m in members if m.sum() == row["size"]]
        assert match, row
        assert row["poisoned"] == (match[0] & poisoned_digits.is_poison).sum()
        assert 0 < row["n_rest"] < (y == row["label"]).sum()
        assert 0 <= row["rest_read_as_label"] <= 1


def test_near_duplicate_candidates_share_the_largest_ones_group():
    scores = load_script("cluster_scores_replay")
    members = np.zeros((4, 10), dtype=bool)
    members[0, :5] = True  # the largest
    members[1, :4] = True  # Jaccard 0.8 with the first
    members[2, :3] = True  # 0.6 with the first, 0.75 with the second
    members[3, 5:8] = True  # disjoint
    assert scores.near_duplicate_groups(members).tolist() == [0, 0, 2, 3]


def test_the_chain_defense_runs_the_cluster_vote_then_the_defaults(runner):
    chain = runner.ispl_chain(random_state=3, labels__self_training_trim=0.1)
    clusters, labels = (step for _, step in chain.steps)
    assert clusters.get_params()["min_other_class_ratio"] == 1.0
    assert clusters.random_state == labels.random_state == 3
    assert labels.self_training_trim == 0.1
    assert labels.get_params() == {
        **IncompatibilityClustering(net="auto", random_state=3).get_params(),
        "self_training_trim": 0.1,
    }
    params = runner.estimator_params(chain)
    assert params["clusters__n_components"] == 2 and params["labels__n_components"] == 8


def test_label_free_contrastive_loss_has_its_closed_form():
    admission = load_script("label_free_admission")
    torch = pytest.importorskip("torch")
    n, temperature = 4, 0.5
    views = torch.eye(n).repeat(2, 1)  # both views of image k are e_k
    loss = admission.contrastive_loss(views, temperature).item()
    partner = np.exp(1 / temperature)
    expected = -np.log(partner / (partner + 2 * n - 2))
    assert loss == pytest.approx(expected, rel=1e-5)


def test_label_free_reading_fits_the_vote_keep_and_cross_fits_it():
    admission = load_script("label_free_admission")
    rng = np.random.RandomState(0)
    y = np.repeat([0, 1], 20)
    features = np.c_[y * 4.0 + rng.normal(0, 0.3, 40), rng.normal(0, 1, 40)]
    vote_keep = np.ones(40, dtype=bool)
    vote_keep[[0, 39]] = False
    y_poisoned = y.copy()
    y_poisoned[0] = 1  # rejected by the vote, its features say 0
    read = admission.read_by(features, y_poisoned, vote_keep, 1.0)
    assert read.shape == (40,)
    np.testing.assert_array_equal(read, y)
    assert admission.fn_fp(read == y_poisoned, np.arange(40) == 0) == [0, 0]


def test_label_free_first_core_sets_take_each_bags_first_ones():
    admission = load_script("label_free_admission")
    ispl = types.SimpleNamespace(
        component_bags_=np.array([0, 0, 0, 1, 1, 1]),
        components_=[np.array([i]) for i in range(6)],
        mask_=np.ones(8, dtype=bool),
    )
    assert np.flatnonzero(admission.first_core_sets(ispl, 1)).tolist() == [0, 3]
    assert np.flatnonzero(admission.first_core_sets(ispl, 2)).tolist() == [0, 1, 3, 4]
