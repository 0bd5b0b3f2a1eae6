"""The sklearn-backdoor command line, run in-process through ``main``."""

import csv
import json
import pickle
import subprocess
import sys
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from sklearn_backdoor import cli
from sklearn_backdoor.cli import _write_files, main
from sklearn_backdoor.datasets import CIFAR10_CLASSES, load_digits_images
from sklearn_backdoor.patch_check import PatchGroup
from sklearn_backdoor.poisoning import reference_scenarios
from sklearn_backdoor.report import TIMINGS_END, TIMINGS_START

CLASSES = ("0", "1", "2")
PER_CLASS = 60
# The spectral signature defense finds a 20% corner trigger on digits after a
# few epochs of its MLP, in well under a second.
FAST_SCAN = [
    "--defense",
    "ss",
    "--param",
    "epochs=5",
    "--param",
    "expected_poison_fraction=0.2",
    "--device",
    "cpu",
    "--quiet",
]
# ISPL+B's schedules cut to a few epochs, for runs that test the command.
FAST_ISPL = [
    "warmup_epochs=1",
    "epochs_per_iteration=1",
    "weak_learner_epochs=2",
    "self_training_rounds=1",
    "self_training_epochs=1",
    "n_bags=1",
    "min_votes=1",
]
DETERMINISTIC_FILES = ("samples.csv", "mask.npy", "params.json", "gallery.npz")


def write_image_folder(root, images, labels):
    """Write uint8 images as ``root/<label>/img<k>.png``."""
    for k, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.squeeze()).save(folder / f"img{k:03d}.png")
    return root


def read_png(path):
    return np.asarray(Image.open(path).convert("RGB"))


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory):
    """3 digit classes of 60 grey 8x8 images in class folders."""
    X, y = load_digits_images()
    rows = np.concatenate([np.flatnonzero(y == int(c))[:PER_CLASS] for c in CLASSES])
    return write_image_folder(
        tmp_path_factory.mktemp("data") / "digits", X[rows], y[rows]
    )


@pytest.fixture(scope="module")
def poisoned_folder(digits_folder):
    out = digits_folder.parent / "poisoned"
    status = main(
        [
            "poison",
            str(digits_folder),
            "--out",
            str(out),
            "--source",
            "0",
            "--target",
            "2",
            "--fraction",
            "0.2",
            "--seed",
            "0",
            "--quiet",
        ]
    )
    assert status == 0
    return out


@pytest.fixture(scope="module")
def scan_folder(poisoned_folder):
    out = poisoned_folder.parent / "scan"
    assert main(["scan", str(poisoned_folder), "--out", str(out), *FAST_SCAN]) == 0
    return out


def run_failing(capsys, argv):
    """Run ``main(argv)``, expect status 2 and return its one error line, which
    ends stderr (progress lines may come before it)."""
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if "error:" in line]
    assert errors == lines[-1:], lines
    return errors[0]


class GalleryParser(HTMLParser):
    """The attributes of the gallery's thumbnails."""

    def __init__(self):
        super().__init__()
        self.thumbs = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figure" and "thumb" in attrs.get("class", ""):
            self.thumbs.append(attrs)


def gallery_of(report):
    parser = GalleryParser()
    parser.feed(Path(report).read_text(encoding="utf-8"))
    return parser.thumbs


def without_timings(report):
    text = Path(report).read_text(encoding="utf-8")
    start, end = text.index(TIMINGS_START), text.index(TIMINGS_END)
    return text[:start] + text[end:]


# ---------------------------------------------------------------------------
# help
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["scan"], ["poison"], ["report"]])
def test_help_shows_examples(command, capsys):
    assert main([*command, "--help"]) == 0
    text = capsys.readouterr().out
    assert "examples:" in text
    assert "sklearn-backdoor poison" in text and "sklearn-backdoor scan" in text


def test_python_m_runs_the_command_line():
    completed = subprocess.run(
        [sys.executable, "-m", "sklearn_backdoor", "scan", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "--defense {ispl,ss,ac,itlm,minimax}" in completed.stdout


def test_a_command_is_required(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# poison
# ---------------------------------------------------------------------------


def test_poison_moves_triggered_images_to_the_target(digits_folder, poisoned_folder):
    truth = read_csv(poisoned_folder / "poisoned.csv")
    assert len(truth) == round(0.2 * PER_CLASS)
    for row in truth:
        assert (row["original_label"], row["new_label"]) == ("0", "2")
        assert row["original_path"].startswith("0/")
        assert row["new_path"].startswith("2/")
        before = read_png(digits_folder / row["original_path"])
        after = read_png(poisoned_folder / row["new_path"])
        corner = np.zeros(before.shape[:2], dtype=bool)
        corner[[0, 0, 1], [0, 1, 0]] = True
        assert (after[corner] == 255).all()
        np.testing.assert_array_equal(after[~corner], before[~corner])
    poisoned = {row["original_path"] for row in truth}
    clean = [
        p.relative_to(digits_folder).as_posix() for p in digits_folder.rglob("*.png")
    ]
    for name in clean:
        if name not in poisoned:
            np.testing.assert_array_equal(
                read_png(poisoned_folder / name), read_png(digits_folder / name)
            )
    assert len(list(poisoned_folder.rglob("*.png"))) == len(CLASSES) * PER_CLASS


@pytest.mark.parametrize(
    "trigger, white",
    [
        ("corner", [(0, 0), (0, 1), (1, 0)]),
        ("pixel", [(7, 7)]),
        ("checkerboard", [(7, 7), (7, 5), (6, 6), (5, 7), (5, 5)]),
    ],
)
def test_poison_stamps_the_chosen_trigger(digits_folder, tmp_path, trigger, white):
    out = tmp_path / "out"
    argv = ["poison", str(digits_folder), "--out", str(out), "--quiet"]
    argv += ["--source", "1", "--target", "0", "--fraction", "0.1"]
    assert main([*argv, "--trigger", trigger]) == 0
    (row, *_) = read_csv(out / "poisoned.csv")
    image = read_png(out / row["new_path"])
    rows, cols = zip(*white, strict=True)
    assert (image[rows, cols] == 255).all()
    if trigger == "checkerboard":
        assert (image[[7, 6], [6, 7]] == 0).all()


def test_poison_with_the_same_seed_writes_the_same_images(digits_folder, tmp_path):
    folders = []
    for name in ("a", "b"):
        out = tmp_path / name
        argv = ["poison", str(digits_folder), "--out", str(out), "--quiet"]
        assert main([*argv, "--source", "0", "--target", "1", "--fraction", "0.3"]) == 0
        folders.append(out)
    first, second = (sorted(f.rglob("*")) for f in folders)
    assert [p.relative_to(folders[0]) for p in first] == [
        p.relative_to(folders[1]) for p in second
    ]
    for a, b in zip(first, second, strict=True):
        assert a.is_dir() or a.read_bytes() == b.read_bytes()


def test_poison_a_reference_scenario_on_cifar_classes(tmp_path):
    scenario = reference_scenarios(100, poison_fractions=(0.1,))[0]
    rng = np.random.RandomState(0)
    names = [CIFAR10_CLASSES[scenario.source], CIFAR10_CLASSES[scenario.target]]
    X = rng.randint(0, 255, size=(40, 32, 32, 3)).astype(np.uint8)
    data = write_image_folder(tmp_path / "cifar", X, np.repeat(names, 20))
    out = tmp_path / "out"
    argv = ["poison", str(data), "--out", str(out), "--scenario", scenario.name]
    assert main([*argv, "--quiet"]) == 0
    truth = read_csv(out / "poisoned.csv")
    assert len(truth) == int(0.1 * 20)
    row, col = scenario.position
    for entry in truth:
        assert [entry["original_label"], entry["new_label"]] == names
        image = read_png(out / entry["new_path"])
        assert tuple(image[row, col]) == scenario.color


def test_poison_a_scenario_needs_its_two_classes(tmp_path, capsys):
    X = np.zeros((8, 32, 32, 3), dtype=np.uint8)
    data = write_image_folder(tmp_path / "cifar", X, np.repeat(["airplane", "cat"], 4))
    argv = ["poison", str(data), "--out", str(tmp_path / "out")]
    line = run_failing(capsys, [*argv, "--scenario", "0-to-2-pixel-0.1-seed100"])
    assert "argument --scenario:" in line and "['airplane', 'bird']" in line


def test_poison_a_cifar_batches_folder_by_row(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.RandomState(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.randint(0, 255, size=(4, 3072)).astype(np.uint8),
            b"labels": [0, 0, 3, 3],
        }
        (folder / name).write_bytes(pickle.dumps(batch))
    out = tmp_path / "out"
    argv = ["poison", str(tmp_path), "--out", str(out), "--quiet", "--seed", "1"]
    assert (
        main([*argv, "--source", "cat", "--target", "airplane", "--fraction", "0.5"])
        == 0
    )
    truth = read_csv(out / "poisoned.csv")
    assert len(truth) == 5
    for entry in truth:
        row = int(entry["original_path"].removeprefix("#"))
        assert row % 4 in (2, 3)
        assert entry["new_path"] == f"airplane/{row:02d}.png"


@pytest.mark.parametrize(
    "extra, argument",
    [
        (["--source", "7", "--target", "2", "--fraction", "0.1"], "--source"),
        (["--source", "0", "--target", "8", "--fraction", "0.1"], "--target"),
        (["--source", "0", "--target", "2"], "--fraction"),
        (["--source", "0", "--target", "0", "--fraction", "0.1"], "--source"),
        (["--scenario", "0-to-2-pixel-0.1-seed100", "--source", "0"], "--source"),
        (["--scenario", "0-to-9-pixel-0.1-seed100"], "--scenario"),
        (["--scenario", "0-to-2-pixel-0.1-seed100"], "--scenario"),
    ],
)
def test_poison_names_the_bad_argument(
    digits_folder, tmp_path, capsys, extra, argument
):
    out = tmp_path / "out"
    line = run_failing(
        capsys, ["poison", str(digits_folder), "--out", str(out), *extra]
    )
    assert f"argument {argument}:" in line
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_poison_refuses_a_folder_with_files(digits_folder, tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    argv = ["poison", str(digits_folder), "--out", str(tmp_path)]
    line = run_failing(
        capsys, [*argv, "--source", "0", "--target", "1", "--fraction", "0.1"]
    )
    assert "argument --out:" in line
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


# ---------------------------------------------------------------------------
# scan
# ---------------------------------------------------------------------------


def test_scan_writes_table_mask_params_and_report(poisoned_folder, scan_folder):
    samples = read_csv(scan_folder / "samples.csv")
    mask = np.load(scan_folder / "mask.npy", allow_pickle=False)
    files = sorted(
        p.relative_to(poisoned_folder).as_posix()
        for p in poisoned_folder.rglob("*.png")
    )
    assert [row["file"] for row in samples] == files
    assert [row["label"] for row in samples] == [f.split("/")[0] for f in files]
    assert mask.dtype == bool and mask.shape == (len(files),)
    assert [row["kept"] == "true" for row in samples] == mask.tolist()
    assert all(float(row["score"]) >= 0 for row in samples)

    params = json.loads((scan_folder / "params.json").read_text())
    assert params["defense"]["estimator"] == "SpectralSignatureFilter"
    assert params["defense"]["params"]["epochs"] == 5
    assert params["defense"]["params"]["random_state"] == 0
    assert params["data"]["source"] == str(poisoned_folder)
    assert params["data"]["classes"] == list(CLASSES)
    assert params["seed"] == 0
    assert params["truth"] == str(poisoned_folder / "poisoned.csv")
    assert set(params["versions"]) >= {"python", "torch", "sklearn", "skorch"}
    timings = json.loads((scan_folder / "timings.json").read_text())
    assert timings["fit"] > 0 and "fit: training" in timings


def test_scan_report_shows_poison_among_the_most_suspicious(
    poisoned_folder, scan_folder
):
    poisoned = {row["new_path"] for row in read_csv(poisoned_folder / "poisoned.csv")}
    thumbs = gallery_of(scan_folder / "report.html")
    suspicious = [
        t["data-file"]
        for t in thumbs
        if t["data-class"] == "2" and t["data-group"] == "suspicious"
    ]
    assert len(suspicious) == 8
    hits = poisoned.intersection(suspicious)
    assert len(hits) >= 1
    assert {t["data-file"] for t in thumbs if t["data-poisoned"] == "true"} == hits
    samples = {row["file"]: row for row in read_csv(scan_folder / "samples.csv")}
    assert (
        sum(samples[name]["kept"] == "false" for name in poisoned) >= len(poisoned) // 2
    )


def test_scan_again_writes_the_same_files(poisoned_folder, scan_folder, tmp_path):
    again = tmp_path / "again"
    assert main(["scan", str(poisoned_folder), "--out", str(again), *FAST_SCAN]) == 0
    for name in DETERMINISTIC_FILES:
        assert (again / name).read_bytes() == (scan_folder / name).read_bytes(), name
    assert without_timings(again / "report.html") == without_timings(
        scan_folder / "report.html"
    )


def test_report_renders_the_same_page_again(scan_folder, tmp_path, capsys):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in (*DETERMINISTIC_FILES, "timings.json"):
        (copy / name).write_bytes((scan_folder / name).read_bytes())
    assert main(["report", str(copy), "--quiet"]) == 0
    assert (copy / "report.html").read_bytes() == (
        scan_folder / "report.html"
    ).read_bytes()
    (copy / "samples.csv").unlink()
    line = run_failing(capsys, ["report", str(copy)])
    assert "argument OUTPUT_FOLDER:" in line and "samples.csv" in line


@pytest.mark.parametrize(
    ("quiet", "bars"), [([], [("training", 5, 5, True)]), (["--quiet"], [])]
)
def test_scan_shows_the_training_epochs_unless_quiet(
    poisoned_folder, tmp_path, epoch_bars, quiet, bars
):
    argv = ["scan", str(poisoned_folder), "--out", str(tmp_path / "scan")]
    argv += [arg for arg in FAST_SCAN if arg != "--quiet"]
    assert main([*argv, *quiet]) == 0
    assert epoch_bars() == bars


def test_scan_reads_a_zip_of_the_folder(poisoned_folder, scan_folder, tmp_path):
    archive = tmp_path / "poisoned.zip"
    with zipfile.ZipFile(archive, "w") as stream:
        for path in sorted(poisoned_folder.rglob("*.png")):
            stream.write(path, f"top/{path.relative_to(poisoned_folder).as_posix()}")
    out = tmp_path / "scan"
    truth = str(poisoned_folder / "poisoned.csv")
    assert (
        main(["scan", str(archive), "--out", str(out), "--truth", truth, *FAST_SCAN])
        == 0
    )
    # The same pixels in the same order: the same decisions as from the folder.
    for name in ("samples.csv", "mask.npy"):
        assert (out / name).read_bytes() == (scan_folder / name).read_bytes()
    assert any(t["data-poisoned"] == "true" for t in gallery_of(out / "report.html"))


def test_scan_reads_an_npz_by_row_index(tmp_path):
    X, y = load_digits_images()
    rows = np.flatnonzero(y < 2)[:80]
    data = tmp_path / "digits.npz"
    np.savez(data, X=X[rows], y=y[rows])
    out = tmp_path / "scan"
    argv = ["scan", str(data), "--out", str(out), *FAST_SCAN, "--param", "epochs=1"]
    assert main(argv) == 0
    samples = read_csv(out / "samples.csv")
    assert [row["index"] for row in samples] == [str(i) for i in range(80)]
    assert [row["label"] for row in samples] == [str(v) for v in y[rows]]


@pytest.mark.parametrize(
    "defense, params",
    [
        ("ac", ["epochs=2"]),
        ("itlm", ["first_round_epochs=2", "round_epochs=1", "n_rounds=2"]),
        ("minimax", ["epochs=2", "n_last_epochs=1"]),
        (
            "ispl",
            FAST_ISPL,
        ),
    ],
)
def test_scan_runs_other_defenses(poisoned_folder, tmp_path, defense, params):
    out = tmp_path / "scan"
    argv = ["scan", str(poisoned_folder), "--out", str(out), "--defense", defense]
    argv += [arg for p in params for arg in ("--param", p)]
    assert main([*argv, "--device", "cpu", "--quiet"]) == 0
    params_json = json.loads((out / "params.json").read_text())
    assert params_json["defense"]["name"] == defense
    mask = np.load(out / "mask.npy")
    samples = read_csv(out / "samples.csv")
    assert [row["kept"] == "true" for row in samples] == mask.tolist()


def test_scan_records_and_reports_the_groups_the_patch_check_removed(
    poisoned_folder, tmp_path
):
    out = tmp_path / "scan"
    argv = ["scan", str(poisoned_folder), "--out", str(out), "--device", "cpu"]
    params = [
        *FAST_ISPL,
        "patch_check=2",
        "patch_check_min_carriers=1",
        "patch_check_min_deviation=0",
    ]
    argv += [arg for p in params for arg in ("--param", p)]
    assert main([*argv, "--quiet"]) == 0
    groups = json.loads((out / "params.json").read_text())["defense"]["patch_groups"]
    removed = int((~np.load(out / "mask.npy")).sum())
    assert sum(group["samples"] for group in groups) <= removed
    for group in groups:
        assert group["class"] in CLASSES and group["read_as"] in CLASSES
        assert group["size"] == 2 and group["carriers"] >= 1
    assert "<h3>Patch check</h3>" in (out / "report.html").read_text()


def test_removed_patch_groups_name_the_classes_of_the_encoded_labels():
    estimator = SimpleNamespace(classes_=np.array([3, 7]), patch_check=2)
    data = SimpleNamespace(values=[7, 3], classes=["seven", "three"])
    members = np.array([4, 5])
    groups = [
        PatchGroup(1, 0, 6, 0, members, np.inf, 9, True),
        PatchGroup(0, 2, 2, 1, members, 1.5, 2, False),
    ]
    assert cli._removed_patch_groups(estimator, data, groups) == [
        {
            "class": "seven",
            "patch": [0, 6],
            "size": 2,
            "samples": 2,
            "carriers": 9,
            "deviation_ratio": None,
            "read_as": "three",
        }
    ]


def test_scan_resizes_mixed_sizes_when_asked(digits_folder, tmp_path, capsys):
    data = tmp_path / "mixed"
    X, y = load_digits_images()
    write_image_folder(data, X[:20], y[:20] % 2)
    Image.new("L", (16, 12)).save(data / "1" / "big.png")
    out = tmp_path / "scan"
    line = run_failing(capsys, ["scan", str(data), "--out", str(out)])
    assert "argument DATA:" in line and "8x8 (20 images)" in line
    assert "12x16 (1 image: '1/big.png')" in line and "--resize" in line
    assert not out.exists()
    argv = ["scan", str(data), "--out", str(out), *FAST_SCAN, "--resize", "8x8"]
    assert main([*argv, "--param", "epochs=1"]) == 0
    params = json.loads((out / "params.json").read_text())
    assert params["data"]["shape"] == [8, 8, 3] and params["data"]["resize"] == "8x8"


def make_bad_folder(root, problem):
    X, y = load_digits_images()
    if problem == "no images":
        (root / "a").mkdir(parents=True)
        (root / "a" / "notes.txt").write_text("no image here")
    elif problem == "one class":
        write_image_folder(root, X[:5], np.zeros(5, int))
    elif problem == "empty class":
        write_image_folder(root, X[:5], y[:5] % 2)
        (root / "empty").mkdir()
    elif problem == "unreadable file":
        write_image_folder(root, X[:5], y[:5] % 2)
        (root / "1" / "broken.png").write_bytes(b"not a png at all")
    return root


@pytest.mark.parametrize(
    "problem, words",
    [
        ("no images", "holds no images"),
        ("one class", "at least two"),
        ("empty class", "['empty']"),
        ("unreadable file", "'1/broken.png' is not a readable PNG or JPEG"),
    ],
)
def test_scan_refuses_bad_folders_naming_data(tmp_path, capsys, problem, words):
    data = make_bad_folder(tmp_path / "data", problem)
    out = tmp_path / "scan"
    line = run_failing(capsys, ["scan", str(data), "--out", str(out)])
    assert line.startswith("sklearn-backdoor scan: error: argument DATA:")
    assert words in line
    assert not out.exists()


def test_scan_names_the_zip_it_cannot_read(tmp_path, capsys):
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as stream:
        stream.writestr("top/a/notes.txt", "no image here")
    line = run_failing(capsys, ["scan", str(archive), "--out", str(tmp_path / "o")])
    assert f"argument DATA: {str(archive)!r} holds no images" in line


def test_scan_refuses_pickled_npz(tmp_path, capsys):
    data = tmp_path / "objects.npz"
    np.savez(data, X=np.array([{"a": 1}], dtype=object), y=np.array([0]))
    line = run_failing(capsys, ["scan", str(data), "--out", str(tmp_path / "o")])
    assert "argument DATA:" in line and "allow_pickle" in line


@pytest.mark.parametrize(
    "extra, argument, words",
    [
        (["--param", "colour=red"], "--param", "has no parameter 'colour'"),
        (["--param", "epochs=0"], "--param", "epochs"),
        (["--param", "epochs"], "--param", "expected name=value"),
        (["--truth", "missing.csv"], "--truth", "cannot be read"),
        (["--truth", "elsewhere.csv"], "--truth", "None of the 1 files"),
        (["--defense", "magic"], "--defense", "invalid choice"),
        (["--device", "banana"], "--device", "banana"),
        (["--net", "nonsense"], "--net", "nonsense"),
    ],
)
def test_scan_names_the_bad_argument(
    poisoned_folder, tmp_path, capsys, monkeypatch, extra, argument, words
):
    (tmp_path / "elsewhere.csv").write_text(
        "original_path,new_path,original_label,new_label\n0/a.png,2/a.png,0,2\n"
    )
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "scan"
    argv = ["scan", str(poisoned_folder), "--out", str(out), "--defense", "ss", *extra]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert f"argument {argument}: " in error and words in error
    assert not out.exists()


def test_files_are_written_all_or_none(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"old")
    with pytest.raises(TypeError):
        _write_files(tmp_path, {"a.txt": b"new", "b.txt": "not bytes"})
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    assert (tmp_path / "a.txt").read_bytes() == b"old"
    _write_files(tmp_path, {"a.txt": b"new", "b.txt": b"b"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]
    assert (tmp_path / "a.txt").read_bytes() == b"new"
