"""The HTML report of a scan, rendered from synthetic scan results (no training)."""

import base64
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest

from sklearn_backdoor.report import (
    GALLERY_SIZE,
    TIMINGS_END,
    TIMINGS_START,
    ScanResult,
    Truth,
    load_scan,
    parse_scan_files,
    read_truth,
    render_report,
    scan_files,
    select_gallery,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASSES = ["cat", "dog", "frog"]
PER_CLASS = 20
POISONED = [3, 7, 11]  # rows of class "dog", which hold the highest scores


def make_result(*, scores=True, pixels=True, timings=None):
    rng = np.random.RandomState(0)
    n = len(CLASSES) * PER_CLASS
    labels = [name for name in CLASSES for _ in range(PER_CLASS)]
    order = [labels.index("dog") + i for i in POISONED]
    score_values = rng.rand(n)
    score_values[order] += 10
    mask = np.ones(n, dtype=bool)
    mask[order[:2]] = False
    mask[0] = False
    names = [f"{label}/img{i:02d}.png" for i, label in enumerate(labels)]
    gallery = select_gallery(labels, score_values, mask, CLASSES, seed=0)
    indices = np.unique(np.concatenate([np.concatenate(g) for g in gallery.values()]))
    images = rng.randint(0, 255, size=(n, 8, 8, 3)).astype(np.uint8)
    params = {
        "command": "scan",
        "data": {
            "source": "pets/<poisoned>",
            "resolved": "/nowhere/pets",
            "kind": "image-folder",
            "n_samples": n,
            "shape": [8, 8, 3],
            "classes": CLASSES,
            "resize": None,
            "fingerprint": "0" * 32,
        },
        "defense": {
            "name": "ss",
            "estimator": "SpectralSignatureFilter",
            "params": {"epochs": 5, "layer": None},
            "device": "cpu",
        },
        "seed": 0,
        "truth": None,
        "versions": {"python": "3", "torch": "2"},
    }
    return ScanResult(
        params=params,
        name_column="file",
        names=names,
        labels=labels,
        scores=score_values if scores else None,
        mask=mask,
        gallery_indices=indices.astype(np.int64),
        gallery_images=images[indices] if pixels else np.zeros((0,), np.uint8),
        timings={"load": 0.5, "fit": 2.0} if timings is None else timings,
    )


def make_truth(result, rows=POISONED):
    entries = []
    for i in rows:
        name = result.names[result.labels.index("dog") + i]
        entries.append(
            {
                "original_path": name.replace("dog/", "cat/"),
                "new_path": name,
                "original_label": "cat",
                "new_label": "dog",
            }
        )
    return Truth(path="poisoned.csv", rows=entries)


class PageParser(HTMLParser):
    """Images, links, thumbnails and the text of each table class."""

    def __init__(self):
        super().__init__()
        self.images, self.links, self.thumbs = [], [], []
        self.tables, self._table = {}, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if "href" in attrs or (tag in ("script", "link") and "src" in attrs):
            self.links.append(attrs)
        if tag == "figure" and "thumb" in attrs.get("class", ""):
            self.thumbs.append(attrs)
        if tag == "table":
            self._table = attrs.get("class", "")
            self.tables.setdefault(self._table, [])

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._table is not None and data.strip():
            self.tables[self._table].append(data.strip())


def parse(page):
    parser = PageParser()
    parser.feed(page)
    parser.close()
    return parser


def decoded_png(src):
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:40]
    return base64.b64decode(src.removeprefix(prefix), validate=True)


def test_every_image_is_an_inline_png_and_nothing_is_fetched():
    page = parse(render_report(make_result()))
    assert page.links == []
    assert len(page.images) == 1 + len(page.thumbs)
    for image in page.images:
        assert decoded_png(image["src"]).startswith(PNG_SIGNATURE)


def test_gallery_shows_the_most_suspicious_and_kept_samples_per_class():
    result = make_result()
    thumbs = parse(render_report(result)).thumbs
    for name in CLASSES:
        suspicious = [
            t["data-file"]
            for t in thumbs
            if t["data-class"] == name and t["data-group"] == "suspicious"
        ]
        kept = [
            t["data-file"]
            for t in thumbs
            if t["data-class"] == name and t["data-group"] == "kept"
        ]
        members = [i for i, label in enumerate(result.labels) if label == name]
        ranked = sorted(members, key=lambda i: -result.scores[i])
        assert suspicious == [result.names[i] for i in ranked[:GALLERY_SIZE]]
        assert len(kept) == GALLERY_SIZE
        assert not set(kept) & set(suspicious)
        assert all(result.mask[result.names.index(f)] for f in kept)


def test_truth_lists_the_poisoned_files_and_counts_errors():
    result = make_result()
    truth = make_truth(result)
    page = parse(render_report(result, truth))
    poisoned = [row["new_path"] for row in truth.rows]
    listed = [cell for cell in page.tables["poisoned"] if cell.endswith(".png")]
    assert listed == poisoned
    summary = page.tables["keyvalue"]
    # Two of the three poisoned rows are removed, and so is row 0 (clean).
    for key, value in [
        ("poisoned files", "3"),
        ("poisoned removed (TP)", "2"),
        ("poisoned kept (FN)", "1"),
        ("clean removed (FP)", "1"),
    ]:
        assert summary[summary.index(key) + 1] == value
    assert "3 of 3 rank among the n most suspicious" in " ".join(summary)
    marked = {t["data-file"] for t in page.thumbs if t["data-poisoned"] == "true"}
    assert marked == set(poisoned)


def test_truth_that_matches_no_file_is_refused():
    result = make_result()
    truth = make_truth(result)
    wrong = Truth(path="x.csv", rows=[{**truth.rows[0], "new_path": "dog/other.png"}])
    with pytest.raises(ValueError, match="None of the 1 files"):
        render_report(result, wrong)


def test_read_truth_needs_its_columns(tmp_path):
    path = tmp_path / "poisoned.csv"
    path.write_text("original_path,new_path\na,b\n")
    with pytest.raises(ValueError, match="lacks the columns"):
        read_truth(path)
    path.write_text("original_path,new_path,original_label,new_label\na,b,c,d\n")
    assert read_truth(path).rows == [
        {"original_path": "a", "new_path": "b", "original_label": "c", "new_label": "d"}
    ]


def test_without_matplotlib_scores_are_a_table(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    result = make_result()
    page = parse(render_report(result, make_truth(result)))
    assert not [i for i in page.images if i.get("class") == "figure"]
    cells = page.tables["scores"]
    assert cells[:6] == ["class", "min", "25%", "median", "75%", "max"]
    assert "cat" in cells and "median of poisoned" in cells


def test_without_scores_the_removed_come_first():
    result = make_result(scores=False)
    text = render_report(result)
    assert "gives no per-sample score" in text
    thumbs = parse(text).thumbs
    first_cat = next(t for t in thumbs if t["data-class"] == "cat")
    assert first_cat["data-file"] == result.names[0]
    assert "removed" in first_cat["class"]


def test_features_without_pixels_have_no_gallery():
    page = render_report(make_result(pixels=False))
    assert "The data has no pixels to show." in page
    assert parse(page).thumbs == []


def _with_patch_groups(groups):
    result = make_result()
    defense = {**result.params["defense"], "patch_groups": groups}
    params = {**result.params, "defense": defense}
    return ScanResult(**{**result.__dict__, "params": params})


def test_the_groups_the_patch_check_removed_are_listed():
    group = {
        "class": "dog",
        "patch": [0, 6],
        "size": 2,
        "samples": 12,
        "carriers": 30,
        "deviation_ratio": None,
        "read_as": "cat",
    }
    page = render_report(
        _with_patch_groups([group, {**group, "deviation_ratio": 4.25}])
    )
    cells = parse(page).tables["patch-groups"]
    assert cells[6:] == ["dog", "(0, 6; 2)", "12", "30", "inf", "cat"] + [
        "dog",
        "(0, 6; 2)",
        "12",
        "30",
        "4.2",
        "cat",
    ]
    assert "removed no group" in render_report(_with_patch_groups([]))
    assert "Patch check" not in render_report(make_result())


def test_text_is_escaped():
    page = render_report(make_result())
    assert "pets/&lt;poisoned&gt;" in page and "<poisoned>" not in page


def test_only_the_timings_change_between_runs():
    first = render_report(make_result(timings={"fit": 1.0}))
    second = render_report(make_result(timings={"fit": 2.5}))
    assert first != second

    def strip(page):
        return re.sub(
            re.escape(TIMINGS_START) + ".*" + re.escape(TIMINGS_END),
            "",
            page,
            flags=re.S,
        )

    assert strip(first) == strip(second)
    assert "2.50" in second


def test_files_round_trip_to_the_same_report(tmp_path):
    result = make_result()
    files = scan_files(result)
    assert scan_files(result) == files
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    loaded = load_scan(tmp_path)
    np.testing.assert_array_equal(loaded.scores, result.scores)
    assert render_report(loaded) == render_report(result)
    assert render_report(parse_scan_files(files)) == render_report(result)
    assert json.loads(files["params.json"]) == result.params


def find_browser():
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    return None


# Injected into a copy of the report: records page errors and failed images
# into the title, which --dump-dom prints.
PROBE = """<script>
window.probeErrors = [];
window.addEventListener("error", e => window.probeErrors.push(
  String(e.message || (e.target && e.target.outerHTML.slice(0, 80)))), true);
console.error = (...args) => { window.probeErrors.push(args.join(" ")); };
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  document.title = JSON.stringify({
    images: images.length,
    broken: images.filter(i => !i.complete || i.naturalWidth === 0).length,
    errors: window.probeErrors,
  });
});
</script>"""


# A broken image shows that the probe can fail.
BROKEN_IMAGE = "<img alt='broken' src='data:image/png;base64,AAAA'>"


@pytest.mark.parametrize("extra, broken", [("", 0), (BROKEN_IMAGE, 1)])
def test_report_renders_in_a_headless_browser(tmp_path, extra, broken):
    browser = find_browser()
    if browser is None:
        pytest.skip(
            "no headless browser: install chromium (apt-get install chromium) to "
            "check that the report renders"
        )
    result = make_result()
    page = render_report(result, make_truth(result)).replace(
        "</body>", extra + "</body>"
    )
    probe = tmp_path / "report.html"
    probe.write_text(page.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    completed = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    title = re.search(r"<title>(.*?)</title>", completed.stdout, re.S)
    assert title is not None, completed.stdout[:2000]
    state = json.loads(title.group(1).replace("&quot;", '"'))
    assert state["images"] == len(parse(page).images)
    assert state["broken"] == broken
    assert len(state["errors"]) == broken, state["errors"]
    assert "Uncaught" not in completed.stderr
