"""The ``sklearn-backdoor`` command line: scan, poison and report.

``sklearn-backdoor scan DATA --out FOLDER`` runs a defense on a data set and
writes which samples it keeps, with an HTML report (see
:mod:`sklearn_backdoor.report` for the files); ``sklearn-backdoor poison``
writes a poisoned copy of an image folder to try a defense on;
``sklearn-backdoor report`` renders a scan's report again. Run
``sklearn-backdoor --help`` (or ``python -m sklearn_backdoor --help``) for the
options and examples.

Every error in the user's input ends the command with status 2 and one line
that names the argument; nothing is written then.
"""

import argparse
import csv
import dataclasses
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import sklearn
import skorch
import torch
from PIL import Image
from sklearn.utils._param_validation import InvalidParameterError

import sklearn_backdoor
from sklearn_backdoor.activation_clustering import ActivationClusteringFilter
from sklearn_backdoor.datasets import CIFAR10_CLASSES, load_cifar10, load_image_folder
from sklearn_backdoor.incompatibility import IncompatibilityClustering
from sklearn_backdoor.inputs import data_fingerprint
from sklearn_backdoor.itlm import ITLMFilter
from sklearn_backdoor.minimax import NoisyLabelMinimaxTrainer
from sklearn_backdoor.poisoning import (
    PatchTrigger,
    checkerboard_trigger,
    dirty_label_backdoor,
    pixel_trigger,
    reference_scenarios,
)
from sklearn_backdoor.report import (
    TRUTH_COLUMNS,
    ScanResult,
    load_scan,
    match_truth,
    parse_scan_files,
    read_truth,
    render_report,
    scan_files,
    select_gallery,
)
from sklearn_backdoor.spectral_signatures import SpectralSignatureFilter
from sklearn_backdoor.training import resolve_device

__all__ = ["main", "parse_param"]

DEFENSES = {
    "ispl": IncompatibilityClustering,
    "ss": SpectralSignatureFilter,
    "ac": ActivationClusteringFilter,
    "itlm": ITLMFilter,
    "minimax": NoisyLabelMinimaxTrainer,
}
TRIGGERS = ("corner", "pixel", "checkerboard")
TRUTH_FILE = "poisoned.csv"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_IMAGE_FORMATS = ("PNG", "JPEG")
_MAX_MEMBER_BYTES = 10 * 2**20
_MAX_ZIP_BYTES = 2 * 2**30
_SCENARIO_NAME = re.compile(
    r"(?P<source>\d+)-to-(?P<target>\d+)-(?P<method>\w+)-(?P<fraction>\d+(\.\d+)?)"
    r"-seed(?P<seed>\d+)"
)

_DESCRIPTION = """\
Find backdoor-poisoned samples in an image data set, or make a poisoned one
to try a defense on.

DATA is one of:
  - an image folder, DATA/<class>/<image>.png|jpg (torchvision's ImageFolder
    layout): any image size, as long as all are equal (else --resize HxW),
    and at least two classes;
  - a zip file holding such a folder, at its root or under one top folder;
  - a cifar-10-batches-py folder (its training split is used);
  - an .npz file with an array X of images (n, height, width[, channels]) or
    features (n, n_features) and an integer array y of labels.
"""

_EPILOG = """\
examples:
  poison 20% of class 'cat' of an image folder, relabelled 'dog':
    sklearn-backdoor poison pets/ --out pets-poisoned/ \\
        --source cat --target dog --fraction 0.2 --trigger corner --seed 0
  scan it with ISPL+B (the default defense); the poisoned.csv that poison
  wrote beside the images scores the result:
    sklearn-backdoor scan pets-poisoned/ --out scan/
  the spectral signature defense with 20 training epochs, on the CPU:
    sklearn-backdoor scan pets-poisoned/ --out scan-ss/ --defense ss \\
        --param epochs=20 --param expected_poison_fraction=0.2 --device cpu
  a reference CIFAR-10 scenario of Jin, Sun & Rinard, then a scan of it:
    sklearn-backdoor poison cifar-10-batches-py/ --out cifar-poisoned/ \\
        --scenario 0-to-2-pixel-0.1-seed100
    sklearn-backdoor scan cifar-poisoned/ --out cifar-scan/ --net fast_cpu
  render a scan's report.html again, scored against the true poison:
    sklearn-backdoor report scan/ --truth pets-poisoned/poisoned.csv

scan writes samples.csv (file, label, score, kept), mask.npy (True = keep),
params.json, gallery.npz, timings.json and report.html into its folder; each
file is replaced whole, and a second run with the same data and seed writes
the same bytes (but for the timings).
"""


class CommandError(Exception):
    """A bad input to a command; the message names the argument."""

    def __init__(self, argument, message):
        super().__init__(f"argument {argument}: {message}")


def parse_param(text):
    """Split a ``--param name=value``; the value is a JSON literal or a string.

    Examples
    --------
    >>> from sklearn_backdoor.cli import parse_param
    >>> parse_param("epochs=5"), parse_param("net=fast_cpu")
    (('epochs', 5), ('net', 'fast_cpu'))
    >>> parse_param("layer=null"), parse_param("eps=[0.1, 0.2]")
    (('layer', None), ('eps', [0.1, 0.2]))
    """
    name, equals, value = text.partition("=")
    if not equals or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected name=value, got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def _parse_size(text):
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match or 0 in (height := int(match[1]), width := int(match[2])):
        raise argparse.ArgumentTypeError(f"expected HxW such as 32x32, got {text!r}")
    return height, width


def _parse_fraction(text):
    try:
        fraction = float(text)
    except ValueError:
        fraction = None
    if fraction is None or not 0 < fraction <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return fraction


def build_parser():
    """The argument parser of ``sklearn-backdoor``."""
    parser = argparse.ArgumentParser(
        prog="sklearn-backdoor",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=sklearn_backdoor.__version__
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    scan = _add_command(
        commands,
        "scan",
        _scan,
        "run a defense on DATA and write what it keeps, with a report",
        "Run a defense on DATA and write, into --out, which samples it keeps and "
        "an HTML report.\n\n" + _DESCRIPTION.split("\n\n", 1)[1],
    )
    scan.add_argument("data", metavar="DATA", type=Path, help="the data set")
    _add_out(scan, "folder for the results (created if absent)")
    scan.add_argument(
        "--defense",
        choices=DEFENSES,
        default="ispl",
        help="ispl: ISPL+B (IncompatibilityClustering, the default); ss: "
        "SpectralSignatureFilter; ac: ActivationClusteringFilter; itlm: "
        "ITLMFilter; minimax: NoisyLabelMinimaxTrainer",
    )
    scan.add_argument(
        "--param",
        type=parse_param,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter of the defense (repeatable); VALUE is read as JSON "
        "(5, 0.2, true, null, [1, 2]) or else as a string",
    )
    scan.add_argument(
        "--net",
        help="the network: a preset (fast_cpu, preact_resnet18, resnet32, ...); "
        "by default chosen from the image size",
    )
    scan.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    scan.add_argument(
        "--truth",
        type=Path,
        metavar="CSV",
        help=f"the {TRUTH_FILE} of 'sklearn-backdoor poison', to score the "
        f"defense against; by default DATA/{TRUTH_FILE} when it exists",
    )
    _add_common(scan)

    poison = _add_command(
        commands,
        "poison",
        _poison,
        "write a poisoned copy of DATA as an image folder",
        f"Write a poisoned copy of DATA into --out as an image folder of PNG "
        f"files, with {TRUTH_FILE} listing the poisoned files (original path, new "
        "path, original label, new label; the original path of data without "
        "files is # and the row index). A poisoned image moves to the folder of "
        "its new label; the others keep their paths, with a .png suffix.",
    )
    poison.add_argument("data", metavar="DATA", type=Path, help="the data set")
    _add_out(poison, "folder for the poisoned copy; must not exist or be empty")
    poison.add_argument("--source", help="the class (folder name) to poison")
    poison.add_argument("--target", help="the class the poisoned images get")
    poison.add_argument(
        "--fraction",
        type=_parse_fraction,
        help="fraction of the source class to poison, in (0, 1]",
    )
    poison.add_argument(
        "--trigger",
        choices=TRIGGERS,
        default="corner",
        help="corner: 3 white pixels in the top-left corner (default); pixel: "
        "one white pixel in the bottom-right corner; checkerboard: a 3x3 "
        "black-and-white checkerboard in the bottom-right corner",
    )
    poison.add_argument(
        "--scenario",
        metavar="NAME",
        help="a reference CIFAR-10 scenario of Jin, Sun & Rinard (ICLR 2023) "
        "instead of --source, --target, --fraction and --trigger, e.g. "
        "0-to-2-pixel-0.1-seed100 (see "
        "sklearn_backdoor.poisoning.reference_scenarios); DATA must hold "
        "CIFAR-10 classes",
    )
    _add_common(poison)

    report = _add_command(
        commands,
        "report",
        _report,
        "render a scan's report.html again",
        "Render report.html of a scan's output folder again from the files it holds.",
    )
    report.add_argument(
        "folder", metavar="OUTPUT_FOLDER", type=Path, help="a folder scan wrote"
    )
    report.add_argument(
        "--truth",
        type=Path,
        metavar="CSV",
        help=f"the true poison; by default the {TRUTH_FILE} the scan used, or "
        f"the one in its data folder",
    )
    report.add_argument("--quiet", action="store_true", help="print nothing")
    return parser


def _add_command(commands, name, run, summary, description):
    command = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.set_defaults(run=run)
    return command


def _add_out(parser, text):
    parser.add_argument("--out", required=True, type=Path, metavar="FOLDER", help=text)


def _add_common(parser):
    parser.add_argument(
        "--seed", type=int, default=0, help="seeds everything random (default 0)"
    )
    parser.add_argument(
        "--resize",
        type=_parse_size,
        metavar="HxW",
        help="resize every image to H rows by W columns (bilinear); needed when "
        "the images of a folder differ in size",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress, only errors")


def main(argv=None):
    """Run ``sklearn-backdoor`` with the arguments ``argv``.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments; None reads ``sys.argv``.

    Returns
    -------
    status : int
        0 on success, 2 on a bad argument (after one line on stderr).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code
    try:
        args.run(args)
    except CommandError as error:
        print(f"{parser.prog} {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


def _say(args, message):
    if not args.quiet:
        print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Reading data sets
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _DataSet:
    """A data set read from DATA.

    ``y`` holds the label values the defense sees; ``classes`` names them,
    ``values[i]`` being the label of ``classes[i]``. ``names`` are the files,
    relative to the data root, or the row indices.
    """

    X: np.ndarray
    y: np.ndarray
    classes: list
    values: list
    names: list
    kind: str

    @property
    def name_column(self):
        return "file" if self.kind in ("image-folder", "zip") else "index"

    @property
    def labels(self):
        name_of = dict(zip(self.values, self.classes, strict=True))
        return [name_of[v] for v in self.y.tolist()]

    def label_of(self, class_name, argument):
        if class_name not in self.classes:
            raise CommandError(
                argument,
                f"no class {class_name!r} in DATA; its classes are {self.classes}",
            )
        return self.values[self.classes.index(class_name)]


def _read_data(path, resize):
    """The data set at ``path``; errors name the argument DATA."""
    try:
        return _read_any(path, resize)
    except (ValueError, OSError) as error:
        raise CommandError("DATA", str(error)) from error


def _read_any(path, resize):
    if not path.exists():
        raise ValueError(f"{str(path)!r} does not exist.")
    if path.is_dir() and any(
        (folder / "data_batch_1").is_file()
        for folder in (path, path / "cifar-10-batches-py")
    ):
        X, y = load_cifar10(path)[:2]
        return _indexed(_resized(X, resize), y, "cifar-10-batches", CIFAR10_CLASSES)
    if path.is_dir():
        return _read_image_folder(path, resize, "image-folder", where=path)
    if path.suffix.lower() == ".npz":
        return _read_npz(path, resize)
    if zipfile.is_zipfile(path):
        with tempfile.TemporaryDirectory() as folder:
            _extract_image_zip(path, Path(folder))
            return _read_image_folder(Path(folder), resize, "zip", where=path)
    raise ValueError(
        f"{str(path)!r} is neither an image folder, a zip of one, a "
        "cifar-10-batches-py folder nor an .npz file."
    )


def _indexed(X, y, kind, class_names=None):
    """A data set without files; classes named by ``class_names[label]``."""
    values = sorted(set(y.tolist()))
    classes = [str(v) if class_names is None else class_names[v] for v in values]
    _check_two_classes(classes)
    return _DataSet(X, y, classes, values, [str(i) for i in range(len(y))], kind)


def _check_two_classes(classes):
    if len(classes) < 2:
        raise ValueError(
            f"the data holds {len(classes)} class {classes}; a backdoor needs at "
            "least two."
        )


def _read_npz(path, resize):
    with np.load(path, allow_pickle=False) as arrays:
        missing = [key for key in ("X", "y") if key not in arrays.files]
        if missing:
            raise ValueError(
                f"{str(path)!r} lacks the arrays {missing}; expected X and y "
                f"(it holds {arrays.files})."
            )
        X, y = arrays["X"], arrays["y"]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or len(y) != len(X):
        raise ValueError(
            f"{str(path)!r}: y must be 1-d integer labels, one per row of X; got "
            f"{y.dtype} of shape {y.shape} for X of shape {X.shape}."
        )
    return _indexed(_resized(X, resize), y, "npz")


def _resized(X, resize):
    if resize is None or X.shape[1:3] == resize:
        return X
    if X.ndim not in (3, 4) or X.dtype != np.uint8:
        raise ValueError("--resize needs uint8 images (n, height, width[, channels]).")
    grey = X.ndim == 3 or X.shape[3] == 1
    images = X.reshape(X.shape[:3]) if grey else X
    return np.stack([_resize(Image.fromarray(image), resize) for image in images])


def _resize(image, size):
    height, width = size
    resized = image.resize((width, height), Image.Resampling.BILINEAR)
    array = np.asarray(resized)
    return array[..., np.newaxis] if array.ndim == 2 else array


def _image_folder_members(root, where):
    """``(classes, members)``: the class folders and sorted ``class/file`` paths.

    Errors name the folder ``where`` (the zip for an extracted one).
    """
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    members = sorted(
        f"{name}/{entry.name}"
        for name in classes
        for entry in (root / name).iterdir()
        if not entry.is_dir() and entry.name.lower().endswith(_IMAGE_SUFFIXES)
    )
    if not members:
        raise ValueError(
            f"{str(where)!r} holds no images: expected <class>/<image>.png|jpg "
            "files, one sub-folder per class."
        )
    present = {PurePosixPath(m).parts[0] for m in members}
    empty = [name for name in classes if name not in present]
    if empty:
        raise ValueError(
            f"the class folders {empty} of {str(where)!r} hold no .png or .jpg images."
        )
    _check_two_classes(classes)
    return classes, members


def _read_image_folder(root, resize, kind, where):
    classes, members = _image_folder_members(root, where)
    sizes = {}
    for member in members:
        with _open_image(root / member, member) as image:
            sizes.setdefault(image.size, []).append(member)
    y = np.array([classes.index(PurePosixPath(m).parts[0]) for m in members])
    if resize is not None:
        X = np.stack([_decode(root / m, m, resize) for m in members])
    elif len(sizes) > 1:
        raise ValueError(
            f"the images differ in size: {_size_list(sizes)}; pass "
            "--resize HxW to resize them all."
        )
    else:
        try:
            X = load_image_folder(root, class_names=classes)[0]
        except ValueError as error:
            raise ValueError(str(error).replace(str(root), str(where))) from error
    return _DataSet(X, y, classes, list(range(len(classes))), members, kind)


def _size_list(sizes):
    """``"8x8 (170 images), 16x16 (1 image: '2/a.png')"``, the commonest first."""
    parts = []
    for (width, height), members in sorted(sizes.items(), key=lambda s: -len(s[1])):
        count = f"{len(members)} image{'s' if len(members) > 1 else ''}"
        if len(members) <= 3:
            count += ": " + ", ".join(repr(m) for m in members)
        parts.append(f"{height}x{width} ({count})")
    return ", ".join(parts)


def _open_image(path, member):
    """Open a PNG or JPEG image, refusing other formats and decompression bombs."""
    try:
        if path.stat().st_size > _MAX_MEMBER_BYTES:
            raise ValueError(f"larger than {_MAX_MEMBER_BYTES} bytes")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path, formats=_IMAGE_FORMATS)
    except Exception as error:
        raise ValueError(
            f"{member!r} is not a readable PNG or JPEG image "
            f"({type(error).__name__}: {error})."
        ) from error


def _decode(path, member, size):
    with _open_image(path, member) as image:
        try:
            return _resize(image.convert("RGB"), size)
        except Exception as error:
            raise ValueError(
                f"{member!r} cannot be decoded ({type(error).__name__}: {error})."
            ) from error


def _extract_image_zip(file, folder):
    """Extract the ``<class>/<image>`` members of a zip into ``folder``.

    The images may lie under one top-level folder. Only image members are
    written, at paths made from their class folder and file name alone, so no
    member lands outside ``folder``.
    """
    with zipfile.ZipFile(file) as archive:
        images = [
            info
            for info in archive.infolist()
            if not info.is_dir()
            and not info.filename.startswith("__MACOSX/")
            and info.filename.lower().endswith(_IMAGE_SUFFIXES)
        ]
        parts = [PurePosixPath(info.filename).parts for info in images]
        tops = {p[0] for p in parts}
        depth = 2 if any(len(p) == 2 for p in parts) or len(tops) != 1 else 3
        total = 0
        for info, path in zip(images, parts, strict=True):
            if len(path) != depth:
                continue
            class_name, name = path[-2:]
            total += info.file_size
            if class_name in (".", "..") or "\\" in info.filename:
                raise ValueError(f"zip member {info.filename!r} has an unsafe name.")
            if info.file_size > _MAX_MEMBER_BYTES or total > _MAX_ZIP_BYTES:
                raise ValueError(
                    f"zip member {info.filename!r} would bring the bytes read over "
                    f"the caps ({_MAX_MEMBER_BYTES} a file, {_MAX_ZIP_BYTES} in all)."
                )
            target = folder / class_name / name
            target.parent.mkdir(exist_ok=True)
            with archive.open(info) as stream:
                target.write_bytes(stream.read(_MAX_MEMBER_BYTES + 1))


# ---------------------------------------------------------------------------
# poison
# ---------------------------------------------------------------------------


def _poison(args):
    _check_empty_output(args.out)
    data = _read_data(args.data, args.resize)
    if data.X.ndim != 4 or data.X.dtype != np.uint8:
        raise CommandError(
            "DATA",
            f"poison writes PNG images and needs uint8 images, got "
            f"{data.X.dtype} of shape {data.X.shape}.",
        )
    _say(
        args,
        f"read {len(data.y)} images of {len(data.classes)} classes from {args.data}",
    )
    if args.scenario is not None:
        poisoned, description = _poison_scenario(data, args)
    else:
        poisoned, description = _poison_dirty_label(data, args)
    new_names = _poisoned_names(data, poisoned)
    name_of = dict(zip(data.values, data.classes, strict=True))
    rows = [
        (
            data.names[i] if data.name_column == "file" else f"#{data.names[i]}",
            new_names[i],
            name_of[int(data.y[i])],
            name_of[int(poisoned.y[i])],
        )
        for i in poisoned.poison_indices.tolist()
    ]
    _write_folder(args.out, poisoned.X, new_names, rows)
    _say(
        args,
        f"poisoned {len(rows)} images ({description}); wrote {len(new_names)} PNG "
        f"images and {TRUTH_FILE} to {args.out}",
    )


def _check_empty_output(out):
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CommandError("--out", f"{str(out)!r} exists and is not an empty folder.")


def _poison_dirty_label(data, args):
    for option in ("source", "target", "fraction"):
        if getattr(args, option) is None:
            raise CommandError(f"--{option}", "is required (or name a --scenario).")
    source = data.label_of(args.source, "--source")
    target = data.label_of(args.target, "--target")
    trigger = _make_trigger(args.trigger, data.X.shape[1:3])
    try:
        poisoned = dirty_label_backdoor(
            data.X,
            data.y,
            trigger,
            source=source,
            target=target,
            poison_fraction=args.fraction,
            random_state=args.seed,
        )
    except ValueError as error:
        raise CommandError("--source", str(error)) from error
    return poisoned, (
        f"{args.fraction:g} of {args.source!r} relabelled {args.target!r}, "
        f"{args.trigger} trigger"
    )


def _make_trigger(name, shape):
    height, width = shape
    if name == "corner":
        return PatchTrigger(pixels=((0, 0), (0, 1), (1, 0)), color=255)
    if name == "pixel":
        return pixel_trigger((height - 1, width - 1), 255)
    return checkerboard_trigger((height, width))


def _poison_scenario(data, args):
    given = [f"--{o}" for o in ("source", "target", "fraction") if getattr(args, o)]
    if given:
        raise CommandError(given[0], "cannot be combined with --scenario.")
    scenario = _find_scenario(args.scenario)
    unknown = [name for name in data.classes if name not in CIFAR10_CLASSES]
    if unknown:
        raise CommandError(
            "--scenario", f"needs CIFAR-10 classes, but DATA has {unknown}."
        )
    needed = [CIFAR10_CLASSES[c] for c in (scenario.source, scenario.target)]
    if not set(needed) <= set(data.classes):
        raise CommandError(
            "--scenario",
            f"needs the classes {needed} in DATA, which has {data.classes}.",
        )
    cifar_label = {
        value: CIFAR10_CLASSES.index(name)
        for value, name in zip(data.values, data.classes, strict=True)
    }
    y = np.array([cifar_label[v] for v in data.y.tolist()])
    try:
        poisoned = scenario.poison(data.X, y)
    except ValueError as error:
        raise CommandError("--scenario", str(error)) from error
    value_of = {label: value for value, label in cifar_label.items()}
    labels = np.array([value_of[label] for label in poisoned.y.tolist()])
    return (
        dataclasses.replace(poisoned, y=labels),
        f"reference scenario {scenario.name}",
    )


def _find_scenario(name):
    match = _SCENARIO_NAME.fullmatch(name)
    if match:
        seed, fraction = int(match["seed"]), float(match["fraction"])
        if 0 < fraction <= 1 and seed < 2**32:
            for scenario in reference_scenarios(seed, poison_fractions=(fraction,)):
                if scenario.name == name:
                    return scenario
    example = reference_scenarios(100, poison_fractions=(0.1,))
    raise CommandError(
        "--scenario",
        f"no reference scenario is named {name!r}; the names are "
        f"SOURCE-to-TARGET-METHOD-FRACTION-seedSEED, with seed 100 "
        f"{', '.join(s.name for s in example[:3])}, ...",
    )


def _poisoned_names(data, poisoned):
    """The new ``class/file.png`` path of each image; the clean keep their names."""
    name_of = dict(zip(data.values, data.classes, strict=True))
    width = len(str(len(data.y) - 1))
    taken, names = set(), [None] * len(data.y)
    is_poison = np.zeros(len(data.y), dtype=bool)
    is_poison[poisoned.poison_indices] = True
    for i in [*np.flatnonzero(~is_poison), *np.flatnonzero(is_poison)]:
        if data.name_column == "file":
            stem = PurePosixPath(data.names[i]).stem
        else:
            stem = f"{i:0{width}d}"
        folder = name_of[int(poisoned.y[i])]
        name, copy = f"{folder}/{stem}.png", 1
        while name in taken:
            copy += 1
            name = f"{folder}/{stem}-{copy}.png"
        taken.add(name)
        names[i] = name
    return names


def _write_folder(out, X, names, truth_rows):
    """Write the images and the truth file into a new folder, all or nothing."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        partial.chmod(0o777 & ~_umask())
        for image, name in zip(X, names, strict=True):
            path = partial / name
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(
                image.squeeze(axis=2) if image.shape[2] == 1 else image
            ).save(path, format="PNG")
        with (partial / TRUTH_FILE).open("w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream, lineterminator="\n")
            writer.writerow(TRUTH_COLUMNS)
            writer.writerows(truth_rows)
        if out.exists():
            out.rmdir()
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------
# scan
# ---------------------------------------------------------------------------


def _scan(args):
    if args.out.exists() and not args.out.is_dir():
        raise CommandError("--out", f"{str(args.out)!r} is not a folder.")
    estimator = _make_defense(args)
    started = time.perf_counter()
    data = _read_data(args.data, args.resize)
    loaded = time.perf_counter()
    _say(
        args,
        f"read {len(data.y)} samples of shape {data.X.shape[1:]} in "
        f"{len(data.classes)} classes from {args.data}",
    )
    truth_path = _truth_path(args, data)
    truth_argument = "--truth" if args.truth else f"DATA (its {TRUTH_FILE})"
    truth = _read_truth_for(truth_path, truth_argument)
    if truth is not None:
        try:
            match_truth(data.name_column, data.names, truth)
        except ValueError as error:
            raise CommandError(truth_argument, str(error)) from error
    _say(args, f"fitting {type(estimator).__name__} ...")
    fit_started = time.perf_counter()
    try:
        estimator.fit(data.X, data.y)
    except InvalidParameterError as error:
        argument = "--net" if "'net' parameter" in str(error) else "--param"
        raise CommandError(argument, str(error)) from error
    except ValueError as error:
        raise CommandError("DATA", f"{type(estimator).__name__}: {error}") from error
    timings = {
        "load": loaded - started,
        "fit": time.perf_counter() - fit_started,
        **{
            f"fit: {phase}": seconds
            for phase, seconds in getattr(estimator, "phase_seconds_", {}).items()
        },
    }
    result = _scan_result(args, data, estimator, truth_path, timings)
    files = scan_files(result)
    files["report.html"] = render_report(parse_scan_files(files), truth).encode("utf-8")
    _write_files(args.out, files)
    removed = int((~estimator.mask_).sum())
    _say(
        args,
        f"removed {removed} of {len(data.y)} samples; wrote {', '.join(files)} to "
        f"{args.out}",
    )


def _truth_path(args, data):
    if args.truth is not None:
        return args.truth
    beside = args.data / TRUTH_FILE
    if data.kind == "image-folder" and beside.is_file():
        return beside
    return None


def _read_truth_for(path, argument):
    if path is None:
        return None
    try:
        return read_truth(path)
    except ValueError as error:
        raise CommandError(argument, str(error)) from error


def _make_defense(args):
    try:
        resolve_device(args.device)
    except ValueError as error:
        raise CommandError("--device", str(error)) from error
    estimator = DEFENSES[args.defense]()
    settings = {"random_state": args.seed, "device": args.device}
    settings["verbose"] = 0 if args.quiet else 1
    if args.net is not None:
        settings["net"] = args.net
    settings.update(dict(args.param))
    known = estimator.get_params(deep=False)
    for name in settings:
        if name not in known:
            raise CommandError(
                "--param",
                f"{type(estimator).__name__} has no parameter {name!r}; its "
                f"parameters are {sorted(known)}.",
            )
    return estimator.set_params(**settings)


def _scan_result(args, data, estimator, truth_path, timings):
    scores = getattr(estimator, "scores_", None)
    mask = estimator.mask_
    labels = data.labels
    gallery = select_gallery(labels, scores, mask, data.classes, seed=args.seed)
    indices = np.unique(np.concatenate([np.concatenate(g) for g in gallery.values()]))
    images = data.X[indices] if data.X.ndim in (3, 4) else np.zeros((0,), np.uint8)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    defense = {
        "name": args.defense,
        "estimator": type(estimator).__name__,
        "params": _jsonable(estimator.get_params(deep=False)),
        "device": getattr(estimator, "device_", args.device),
    }
    groups = getattr(estimator, "patch_groups_", None)
    if groups is not None:
        defense["patch_groups"] = _removed_patch_groups(estimator, data, groups)
    params = {
        "command": "scan",
        "data": {
            "source": str(args.data),
            "resolved": str(args.data.resolve()),
            "kind": data.kind,
            "n_samples": len(data.y),
            "shape": list(data.X.shape[1:]),
            "classes": data.classes,
            "resize": "x".join(map(str, args.resize)) if args.resize else None,
            "fingerprint": data_fingerprint(data.X),
        },
        "defense": defense,
        "seed": args.seed,
        "truth": None if truth_path is None else str(truth_path.resolve()),
        "versions": _versions(),
    }
    return ScanResult(
        params=params,
        name_column=data.name_column,
        names=data.names,
        labels=labels,
        scores=None if scores is None else np.asarray(scores, dtype=np.float64),
        mask=mask,
        gallery_indices=indices.astype(np.int64),
        gallery_images=np.ascontiguousarray(images.astype(np.uint8)),
        timings=timings,
    )


def _removed_patch_groups(estimator, data, groups):
    """The groups ``patch_check`` removed, for the report: class, patch,
    samples, carriers, deviation ratio (None for inf) and class read."""
    name_of = dict(zip(data.values, data.classes, strict=True))

    def class_name(encoded):
        return name_of[estimator.classes_[encoded].item()]

    return [
        {
            "class": class_name(group.label),
            "patch": [int(group.row), int(group.col)],
            "size": int(estimator.patch_check),
            "samples": len(group.members),
            "carriers": int(group.carriers),
            "deviation_ratio": (
                float(group.deviation_ratio)
                if np.isfinite(group.deviation_ratio)
                else None
            ),
            "read_as": class_name(group.read_as),
        }
        for group in groups
        if group.removed
    ]


def _jsonable(value):
    """``value`` with what JSON cannot hold as a qualified name or ``repr``."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


def _versions():
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "sklearn": sklearn.__version__,
        "skorch": skorch.__version__,
        "sklearn_backdoor": sklearn_backdoor.__version__,
    }


def _write_files(folder, files):
    """Write each of ``files`` (name to bytes) into ``folder``, all or none.

    Every file goes to a temporary file first; only when all are written do
    they replace the old ones, each by an atomic rename.
    """
    folder.mkdir(parents=True, exist_ok=True)
    mode = 0o666 & ~_umask()
    written = {}
    try:
        for name, content in files.items():
            handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
            written[name] = temporary
            with os.fdopen(handle, "wb") as stream:
                stream.write(content)
            # mkstemp makes files only their owner may read.
            os.chmod(temporary, mode)
        for name, temporary in written.items():
            os.replace(temporary, folder / name)
    except BaseException:
        for temporary in written.values():
            Path(temporary).unlink(missing_ok=True)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------


def _report(args):
    try:
        result = load_scan(args.folder)
    except ValueError as error:
        raise CommandError("OUTPUT_FOLDER", str(error)) from error
    path = args.truth
    argument = "--truth"
    if path is None:
        argument = "OUTPUT_FOLDER (the true poison its params.json names)"
        recorded = result.params.get("truth")
        beside = Path(result.params["data"]["resolved"]) / TRUTH_FILE
        if recorded is not None and Path(recorded).is_file():
            path = Path(recorded)
        elif result.params["data"]["kind"] == "image-folder" and beside.is_file():
            path = beside
    truth = _read_truth_for(path, argument)
    try:
        page = render_report(result, truth)
    except ValueError as error:
        raise CommandError(argument, str(error)) from error
    _write_files(args.folder, {"report.html": page.encode("utf-8")})
    _say(args, f"wrote {args.folder / 'report.html'}")
