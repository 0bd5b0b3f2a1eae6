"""The files a scan writes, and the self-contained HTML report made from them.

``sklearn-backdoor scan`` (see :mod:`sklearn_backdoor.cli`) writes into its
output folder:

- ``samples.csv``: one row per sample, ``file`` (or ``index`` for data without
  files), ``label``, ``score`` (higher = more suspicious; empty where the
  defense gives none) and ``kept`` (``true`` or ``false``);
- ``mask.npy``: the defense's ``mask_`` (True = keep);
- ``params.json``: the data source, the defense and its parameters, the seed,
  the true poison file (if any) and the library versions;
- ``gallery.npz``: the images the report shows (``indices`` and ``images``);
- ``timings.json``: seconds spent loading, fitting and in each phase of the fit;
- ``report.html``: the report of this module, one file with every image inlined.

Every file but ``timings.json`` depends only on the data, the parameters and
the seed, so two runs write the same bytes; in ``report.html`` only the part
between ``<!-- timings -->`` and ``<!-- /timings -->`` changes.
:func:`load_scan` reads the files back and :func:`render_report` renders the
same report from them.
"""

import base64
import csv
import html
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "GALLERY_SIZE",
    "ScanResult",
    "Truth",
    "TruthMatch",
    "load_scan",
    "match_truth",
    "read_truth",
    "render_report",
    "scan_files",
    "select_gallery",
]

GALLERY_SIZE = 8
"""Images shown per class in each row of the gallery."""

SCAN_FILES = ("samples.csv", "mask.npy", "params.json", "gallery.npz")
TRUTH_COLUMNS = ("original_path", "new_path", "original_label", "new_label")
TIMINGS_START = "<!-- timings -->"
TIMINGS_END = "<!-- /timings -->"
_THUMBNAIL_PIXELS = 72
# A fixed date keeps the zip's bytes the same from run to run.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True, eq=False)
class ScanResult:
    """What a scan found, as its files record it.

    Parameters
    ----------
    params : dict
        The content of ``params.json``.
    name_column : {"file", "index"}
        Whether ``names`` are file paths or row indices.
    names : list of str
        Each sample's file path (relative to the data root) or row index.
    labels : list of str
        Each sample's class name.
    scores : ndarray of float of shape (n_samples,) or None
        Suspicion scores, higher = more suspicious; None if the defense has
        none.
    mask : ndarray of bool of shape (n_samples,)
        True for the samples kept.
    gallery_indices : ndarray of int
        Rows whose images ``gallery_images`` holds.
    gallery_images : ndarray of uint8, shape (n_gallery, height, width, channels)
        The images of the gallery (empty for data without pixels).
    timings : dict
        The content of ``timings.json`` (empty when absent).
    """

    params: dict
    name_column: str
    names: list
    labels: list
    scores: np.ndarray | None
    mask: np.ndarray
    gallery_indices: np.ndarray
    gallery_images: np.ndarray
    timings: dict

    @property
    def class_names(self):
        return list(self.params["data"]["classes"])

    @property
    def seed(self):
        return self.params["seed"]


@dataclass(frozen=True)
class Truth:
    """The poisoned files of a data set, as ``sklearn-backdoor poison`` lists them.

    Parameters
    ----------
    path : str
        The CSV file read.
    rows : list of dict
        One dict per poisoned file with the keys of ``TRUTH_COLUMNS``.
    """

    path: str
    rows: list


def read_truth(path):
    """Read a ``poisoned.csv`` written by ``sklearn-backdoor poison``.

    Parameters
    ----------
    path : str or path-like
        CSV file with the columns ``original_path``, ``new_path``,
        ``original_label`` and ``new_label``.

    Returns
    -------
    truth : Truth

    Raises
    ------
    ValueError
        If the file cannot be read or lacks a column.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{str(path)!r} cannot be read: {error}") from error
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in TRUTH_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(
            f"{str(path)!r} lacks the columns {missing}; expected the columns "
            f"{list(TRUTH_COLUMNS)} that 'sklearn-backdoor poison' writes."
        )
    return Truth(
        path=str(path), rows=[{c: row[c] for c in TRUTH_COLUMNS} for row in reader]
    )


def select_gallery(labels, scores, mask, class_names, *, seed, size=GALLERY_SIZE):
    """Choose the images the report shows for each class.

    Parameters
    ----------
    labels : sequence of str
        Each sample's class name.
    scores : ndarray of float or None
        Suspicion scores; without them the removed samples come first.
    mask : ndarray of bool
        True for the samples kept.
    class_names : sequence of str
        The classes, in the order the report lists them.
    seed : int
        Seeds the sample of kept images.
    size : int, default=GALLERY_SIZE
        Images per class and row.

    Returns
    -------
    gallery : dict of str to (ndarray, ndarray)
        For each class, the indices of its ``size`` most suspicious samples,
        most suspicious first, and of a sample of its other kept samples, in
        index order.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.report import select_gallery
    >>> gallery = select_gallery(
    ...     ["a", "a", "a", "b"], np.array([0.1, 0.9, 0.5, 0.2]),
    ...     np.array([True, False, True, True]), ["a", "b"], seed=0, size=1,
    ... )
    >>> [(c, s.tolist(), k.tolist()) for c, (s, k) in gallery.items()]
    [('a', [1], [2]), ('b', [3], [])]
    """
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)
    gallery = {}
    for name in class_names:
        members = np.flatnonzero(labels == name)
        suspicious = _by_suspicion(members, scores, mask)[:size]
        others = np.setdiff1d(members[mask[members]], suspicious)
        kept = np.sort(rng.choice(others, min(size, others.size), replace=False))
        gallery[name] = (suspicious, kept.astype(np.int64))
    return gallery


def _by_suspicion(members, scores, mask):
    """``members`` from the most to the least suspicious; ties by index."""
    if scores is None:
        return members[np.argsort(mask[members], kind="stable")]
    return members[np.argsort(-scores[members], kind="stable")]


def scan_files(result):
    """The bytes of each file of a scan but ``report.html``.

    Parameters
    ----------
    result : ScanResult

    Returns
    -------
    files : dict of str to bytes
        ``samples.csv``, ``mask.npy``, ``params.json``, ``gallery.npz`` and
        ``timings.json``.
    """
    return {
        "samples.csv": _samples_csv(result),
        "mask.npy": _npy_bytes(np.asarray(result.mask, dtype=bool)),
        "params.json": _json_bytes(result.params, sort_keys=True),
        "gallery.npz": _gallery_npz(result.gallery_indices, result.gallery_images),
        "timings.json": _json_bytes(result.timings, sort_keys=False),
    }


def load_scan(folder):
    """Read the files a scan wrote into ``folder``.

    Parameters
    ----------
    folder : str or path-like
        A scan's output folder.

    Returns
    -------
    result : ScanResult

    Raises
    ------
    ValueError
        If a file is missing or cannot be read.
    """
    folder = Path(folder)
    files = {}
    for name in (*SCAN_FILES, "timings.json"):
        try:
            files[name] = (folder / name).read_bytes()
        except FileNotFoundError:
            if name == "timings.json":
                continue
            raise ValueError(
                f"{str(folder)!r} has no {name}; it is not the output of "
                "'sklearn-backdoor scan'."
            ) from None
    return parse_scan_files(files)


def parse_scan_files(files):
    """The :class:`ScanResult` that :func:`scan_files` wrote as ``files``.

    Raises
    ------
    ValueError
        If a file cannot be read or the files disagree on the samples.
    """
    try:
        params = json.loads(files["params.json"])
        name_column, names, labels, scores = _parse_samples_csv(files["samples.csv"])
        mask = np.load(io.BytesIO(files["mask.npy"]), allow_pickle=False)
        with np.load(io.BytesIO(files["gallery.npz"]), allow_pickle=False) as gallery:
            gallery_indices, gallery_images = gallery["indices"], gallery["images"]
        timings = json.loads(files.get("timings.json", b"{}"))
    except (ValueError, KeyError, OSError, zipfile.BadZipFile) as error:
        raise ValueError(f"The scan's files cannot be read: {error}") from error
    if len(names) != mask.shape[0]:
        raise ValueError(
            f"samples.csv has {len(names)} rows but mask.npy {mask.shape[0]} entries."
        )
    return ScanResult(
        params=params,
        name_column=name_column,
        names=names,
        labels=labels,
        scores=scores,
        mask=mask.astype(bool),
        gallery_indices=gallery_indices,
        gallery_images=gallery_images,
        timings=timings,
    )


def _parse_samples_csv(content):
    """``(name_column, names, labels, scores)`` of ``samples.csv``."""
    header, *rows = csv.reader(io.StringIO(content.decode("utf-8")))
    if header[1:] != ["label", "score", "kept"] or any(len(r) != 4 for r in rows):
        raise ValueError("samples.csv must have the columns NAME, label, score, kept")
    names, labels, scores = ([row[k] for row in rows] for k in range(3))
    if "" in scores:
        return header[0], names, labels, None
    return header[0], names, labels, np.array(scores, dtype=np.float64)


def _samples_csv(result):
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow([result.name_column, "label", "score", "kept"])
    scores = (
        [""] * len(result.names)
        if result.scores is None
        else [repr(float(s)) for s in result.scores]
    )
    for name, label, score, kept in zip(
        result.names, result.labels, scores, result.mask, strict=True
    ):
        writer.writerow([name, label, score, "true" if kept else "false"])
    return stream.getvalue().encode("utf-8")


def _npy_bytes(array):
    stream = io.BytesIO()
    np.lib.format.write_array(stream, np.ascontiguousarray(array), allow_pickle=False)
    return stream.getvalue()


def _json_bytes(value, sort_keys):
    return (json.dumps(value, indent=2, sort_keys=sort_keys) + "\n").encode("utf-8")


def _gallery_npz(indices, images):
    """An ``.npz`` of ``indices`` and ``images`` whose bytes depend on them only.

    ``np.savez`` stamps each member with the current time.
    """
    stream = io.BytesIO()
    with zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in (("indices", indices), ("images", images)):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, _npy_bytes(array))
    return stream.getvalue()


# ---------------------------------------------------------------------------
# The HTML report
# ---------------------------------------------------------------------------


def render_report(result, truth=None):
    """Render a scan as one self-contained HTML page.

    The page shows the data set and the defense's parameters, the samples kept
    and removed per class, the score distribution of each class (a matplotlib
    figure, or a table of quantiles without matplotlib), a gallery of each
    class's most suspicious images next to a sample of its kept ones and the
    timings. With ``truth``, it also counts the clean samples removed (FP) and
    the poisoned samples kept (FN), how many poisoned files are among the most
    suspicious of their class, and lists the poisoned files.

    Images are inlined as base64 PNG, so the page opens offline.

    Parameters
    ----------
    result : ScanResult
        From :func:`load_scan`.
    truth : Truth, default=None
        The true poison, from :func:`read_truth`.

    Returns
    -------
    html : str
    """
    poison = (
        None if truth is None else match_truth(result.name_column, result.names, truth)
    )
    gallery = select_gallery(
        result.labels, result.scores, result.mask, result.class_names, seed=result.seed
    )
    data = result.params["data"]
    defense = result.params["defense"]
    n_kept = int(result.mask.sum())
    sections = [
        f"<h1>Backdoor scan of {_e(Path(data['source']).name or data['source'])}</h1>",
        f"<p class='summary'>{_e(defense['estimator'])} kept {n_kept} of "
        f"{result.mask.size} samples and removed {result.mask.size - n_kept}.</p>",
        _data_section(data, result.params),
        _defense_section(defense),
        _class_section(result, poison),
    ]
    if poison is not None:
        sections.append(_truth_section(result, poison, gallery))
    sections += [
        _scores_section(result, poison),
        _gallery_section(result, gallery, poison),
        _timings_section(result.timings),
        _versions_section(result.params.get("versions", {})),
    ]
    return _PAGE.format(
        title=_e(f"sklearn-backdoor scan: {data['source']}"),
        body="\n".join(sections),
    )


@dataclass(frozen=True)
class TruthMatch:
    """The true poison matched to the rows of a scan.

    Parameters
    ----------
    path : str
        The truth file.
    is_poison : ndarray of bool of shape (n_samples,)
        True for the rows the truth file lists.
    original_label : dict of int to str
        The label each poisoned row had before poisoning.
    unmatched : list of str
        Files the truth file lists that are not in the data.
    """

    path: str
    is_poison: np.ndarray
    original_label: dict
    unmatched: list


def match_truth(name_column, names, truth):
    """Find the files of ``truth`` among the samples of a data set.

    Parameters
    ----------
    name_column : {"file", "index"}
        How the samples are named; only files can match.
    names : sequence of str
        The samples' files, relative to the data root.
    truth : Truth

    Returns
    -------
    match : TruthMatch

    Raises
    ------
    ValueError
        If the samples have no files, or none of the files of ``truth`` is
        among them.
    """
    if name_column != "file":
        raise ValueError(
            f"{truth.path!r} lists files, but the scanned data has no files "
            "(its rows are named by index)."
        )
    row_of = {name: i for i, name in enumerate(names)}
    is_poison = np.zeros(len(names), dtype=bool)
    original, unmatched = {}, []
    for entry in truth.rows:
        row = row_of.get(entry["new_path"])
        if row is None:
            unmatched.append(entry["new_path"])
            continue
        is_poison[row] = True
        original[row] = entry["original_label"]
    if truth.rows and not is_poison.any():
        raise ValueError(
            f"None of the {len(truth.rows)} files that {truth.path!r} lists is in "
            f"the scanned data (e.g. {truth.rows[0]['new_path']!r})."
        )
    return TruthMatch(truth.path, is_poison, original, unmatched)


def _e(value):
    return html.escape(str(value), quote=True)


def _table(header, rows, css_class=""):
    """A table; ``header`` None for a two-column table of names and values."""
    head = (
        ""
        if header is None
        else "<thead><tr>"
        + "".join(f"<th>{_e(h)}</th>" for h in header)
        + "</tr></thead>"
    )
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table class='{css_class}'>{head}<tbody>{body}</tbody></table>"


def _data_section(data, params):
    rows = [
        ("source", data["source"]),
        ("kind", data["kind"]),
        ("samples", data["n_samples"]),
        ("sample shape", "x".join(map(str, data["shape"]))),
        ("classes", f"{len(data['classes'])}: {', '.join(data['classes'])}"),
        ("resized to", data.get("resize") or "no"),
        ("fingerprint (blake2b)", data["fingerprint"]),
        ("seed", params["seed"]),
        ("true poison", params.get("truth") or "not given"),
    ]
    return "<h2>Data set</h2>" + _table(None, rows, "keyvalue")


def _defense_section(defense):
    rows = sorted(defense["params"].items())
    return (
        f"<h2>Defense: {_e(defense['estimator'])}</h2>"
        f"<p>Ran on {_e(defense.get('device', '?'))}.</p>"
        + _table(("parameter", "value"), [(k, json.dumps(v)) for k, v in rows])
        + _patch_check_section(defense.get("patch_groups"))
    )


def _ratio_text(ratio):
    return "inf" if ratio is None else f"{ratio:.1f}"


def _patch_check_section(groups):
    """What ``patch_check`` removed and why; nothing when it did not run."""
    if groups is None:
        return ""
    if not groups:
        return "<h3>Patch check</h3><p>The patch check removed no group.</p>"
    header = (
        "class",
        "patch (row, column; side)",
        "samples removed",
        "samples of the class carrying the patch",
        "distance from the class median, over the rest of the class's",
        "read as, with the patch replaced",
    )
    rows = [
        (
            group["class"],
            f"({group['patch'][0]}, {group['patch'][1]}; {group['size']})",
            group["samples"],
            group["carriers"],
            _ratio_text(group["deviation_ratio"]),
            group["read_as"],
        )
        for group in groups
    ]
    return (
        "<h3>Patch check</h3><p>Each group below was read as another class once "
        "one patch of its samples was replaced by their class's median there; "
        "the patch is far from the rest of the class and is a copy that several "
        "samples of the class carry, as a pasted trigger is.</p>"
        + _table(header, rows, "patch-groups")
    )


def _class_section(result, poison):
    labels = np.asarray(result.labels)
    header = ["class", "samples", "kept", "removed"]
    if poison is not None:
        header += ["poisoned", "poisoned removed", "FP (clean removed)", "FN"]
    rows = []
    for name in result.class_names:
        members = labels == name
        kept = result.mask & members
        removed = ~result.mask & members
        row = [name, int(members.sum()), int(kept.sum()), int(removed.sum())]
        if poison is not None:
            bad = poison.is_poison & members
            row += [
                int(bad.sum()),
                int((bad & removed).sum()),
                int((removed & ~bad).sum()),
                int((bad & kept).sum()),
            ]
        rows.append(row)
    return "<h2>Kept and removed per class</h2>" + _table(header, rows, "counts")


def _truth_section(result, poison, gallery):
    is_poison, mask = poison.is_poison, result.mask
    n_poison = int(is_poison.sum())
    labels = np.asarray(result.labels)
    ranks = _class_ranks(result)
    top_hits = 0
    for name in result.class_names:
        members = np.flatnonzero(labels == name)
        in_class = int(is_poison[members].sum())
        ranked = _by_suspicion(members, result.scores, mask)[:in_class]
        top_hits += int(is_poison[ranked].sum())
    in_gallery = sum(int(is_poison[s].sum()) for s, _ in gallery.values())
    summary = [
        ("poisoned files", n_poison),
        ("poisoned removed (TP)", int((is_poison & ~mask).sum())),
        ("poisoned kept (FN)", int((is_poison & mask).sum())),
        ("clean removed (FP)", int((~is_poison & ~mask).sum())),
        (
            "poisoned among the most suspicious",
            f"{top_hits} of {n_poison} rank among the n most suspicious samples "
            "of their class, n being the number of poisoned files in it",
        ),
        (
            "poisoned in the gallery",
            f"{in_gallery} of {n_poison} are among the {GALLERY_SIZE} most "
            "suspicious images the gallery shows per class",
        ),
    ]
    if poison.unmatched:
        summary.append(
            (
                "listed but not in the data",
                f"{len(poison.unmatched)}, e.g. {poison.unmatched[0]}",
            )
        )
    rows = [
        (
            result.names[i],
            poison.original_label[i],
            result.labels[i],
            _score_text(result.scores, i),
            ranks[i],
            "kept" if mask[i] else "removed",
        )
        for i in np.flatnonzero(is_poison)
    ]
    header = ("file", "original label", "label", "score", "rank in class", "decision")
    return (
        f"<h2>Against the true poison ({_e(poison.path)})</h2>"
        + _table(None, summary, "keyvalue")
        + "<h3>The poisoned files</h3>"
        + _table(header, rows, "poisoned")
    )


def _class_ranks(result):
    """Each sample's rank by suspicion within its class, 1 the most suspicious."""
    labels = np.asarray(result.labels)
    ranks = np.zeros(labels.size, dtype=np.int64)
    for name in result.class_names:
        ordered = _by_suspicion(
            np.flatnonzero(labels == name), result.scores, result.mask
        )
        ranks[ordered] = np.arange(1, ordered.size + 1)
    return ranks


def _score_text(scores, i):
    return "" if scores is None else f"{scores[i]:.4g}"


def _scores_section(result, poison):
    heading = "<h2>Score distributions</h2>"
    if result.scores is None:
        return heading + "<p>This defense gives no per-sample score.</p>"
    try:
        figure = _score_figure(result, poison)
    except ImportError:
        return (
            heading
            + "<p>matplotlib is not installed: quantiles of the scores instead.</p>"
            + _score_table(result, poison)
        )
    return (
        heading
        + "<p>Scores compare within a class only. Higher is more suspicious.</p>"
        + f"<img class='figure' alt='score histograms' src='{_png_uri(figure)}'>"
    )


def _score_figure(result, poison):
    """Per-class histograms of the scores as PNG bytes."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    labels = np.asarray(result.labels)
    names = result.class_names
    columns = min(4, len(names))
    rows = -(-len(names) // columns)
    figure = Figure(figsize=(3.2 * columns, 2.4 * rows), dpi=80, layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, name in zip(axes, names, strict=False):
        members = labels == name
        scores = result.scores[members]
        bins = np.histogram_bin_edges(scores, bins=30)
        kept = result.mask[members]
        axis.hist(
            [scores[kept], scores[~kept]],
            bins=bins,
            stacked=True,
            color=["#8c8c8c", "#e08020"],
        )
        if poison is not None and poison.is_poison[members].any():
            axis.hist(
                scores[poison.is_poison[members]],
                bins=bins,
                histtype="step",
                color="#c00000",
                linewidth=1.5,
            )
        axis.set_title(name, fontsize=10)
        axis.tick_params(labelsize=7)
    for axis in axes[len(names) :]:
        axis.set_visible(False)
    legend = [
        Patch(color="#8c8c8c", label="kept"),
        Patch(color="#e08020", label="removed"),
    ]
    if poison is not None:
        legend.append(Patch(fill=False, edgecolor="#c00000", label="poisoned"))
    figure.legend(handles=legend, loc="outside upper center", ncols=3, fontsize=8)
    stream = io.BytesIO()
    figure.savefig(stream, format="png", metadata={"Software": None})
    return stream.getvalue()


def _score_table(result, poison):
    labels = np.asarray(result.labels)
    header = ["class", "min", "25%", "median", "75%", "max"]
    if poison is not None:
        header += ["median of poisoned", "median of clean"]
    rows = []
    for name in result.class_names:
        members = labels == name
        scores = result.scores[members]
        row = [
            name,
            *(f"{q:.4g}" for q in np.quantile(scores, [0, 0.25, 0.5, 0.75, 1])),
        ]
        if poison is not None:
            bad = poison.is_poison[members]
            row += [
                f"{np.median(scores[part]):.4g}" if part.any() else ""
                for part in (bad, ~bad)
            ]
        rows.append(row)
    return _table(header, rows, "scores")


def _gallery_section(result, gallery, poison):
    heading = (
        "<h2>Gallery</h2><p>Per class, the most suspicious images (most suspicious "
        "first) next to a sample of the kept ones. Grey frame: kept; orange "
        "frame: removed; red dashes: poisoned (when the true poison is known)."
        "</p>"
    )
    if result.gallery_images.ndim != 4:
        return heading + "<p>The data has no pixels to show.</p>"
    image_of = dict(
        zip(result.gallery_indices.tolist(), result.gallery_images, strict=True)
    )
    ranks = _class_ranks(result)
    parts = [heading]
    for name, (suspicious, kept) in gallery.items():
        parts.append(f"<section class='gallery' data-class='{_e(name)}'>")
        parts.append(f"<h3>Class {_e(name)}</h3>")
        for group, title, indices in (
            ("suspicious", "most suspicious", suspicious),
            ("kept", "kept (a sample)", kept),
        ):
            figures = "".join(
                _thumbnail(result, i, image_of.get(i), group, ranks[i], poison)
                for i in indices.tolist()
            )
            parts.append(
                f"<div class='row'><h4>{title}</h4><div class='thumbs'>"
                f"{figures or '<p>none</p>'}</div></div>"
            )
        parts.append("</section>")
    return "".join(parts)


def _thumbnail(result, i, image, group, rank, poison):
    poisoned = poison is not None and bool(poison.is_poison[i])
    decision = "kept" if result.mask[i] else "removed"
    css = f"thumb {decision}" + (" poison" if poisoned else "")
    picture = (
        f"<img alt='{_e(result.names[i])}' src='{_png_uri(_png(image))}'>"
        if image is not None
        else "<div class='missing'>no image</div>"
    )
    caption = (
        f"<span class='name'>{_e(result.names[i])}</span><br>#{rank} score "
        f"{_e(_score_text(result.scores, i))}<br>{decision}"
        + (" <b>poisoned</b>" if poisoned else "")
    )
    return (
        f"<figure class='{css}' data-class='{_e(result.labels[i])}' "
        f"data-group='{group}' data-file='{_e(result.names[i])}' "
        f"data-poisoned='{str(poisoned).lower()}'>{picture}"
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _png(image):
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    stream = io.BytesIO()
    Image.fromarray(image).save(stream, format="PNG")
    return stream.getvalue()


def _png_uri(png):
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _timings_section(timings):
    rows = [(name, f"{seconds:.2f}") for name, seconds in timings.items()]
    return (
        f"{TIMINGS_START}<h2>Timings</h2>"
        + (_table(("phase", "seconds"), rows) if rows else "<p>No timings.</p>")
        + TIMINGS_END
    )


def _versions_section(versions):
    text = ", ".join(f"{name} {version}" for name, version in sorted(versions.items()))
    return f"<footer>Made with {_e(text)}.</footer>"


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em auto; max-width: 72em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }}
th {{ background: #f0f0f0; }}
.summary {{ font-size: 1.2em; }}
img.figure {{ max-width: 100%; }}
.thumbs {{ display: flex; flex-wrap: wrap; gap: 0.5em; }}
figure.thumb {{ margin: 0; width: 7em; font-size: 0.7em; }}
.name {{ overflow-wrap: anywhere; }}
figure.thumb img {{ width: {pixels}px; height: {pixels}px; object-fit: contain;
  image-rendering: pixelated; border: 3px solid #8c8c8c; }}
figure.removed img {{ border-color: #e08020; }}
figure.poison img {{ outline: 3px dashed #c00000; }}
.missing {{ width: {pixels}px; height: {pixels}px; background: #eee; }}
footer {{ margin-top: 2em; color: #666; font-size: 0.8em; }}
</style>
</head>
<body>
{body}
</body>
</html>
""".replace("{pixels}", str(_THUMBNAIL_PIXELS))
