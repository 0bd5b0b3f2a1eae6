"""
The HTML report of a scan
=========================

``sklearn-backdoor scan`` runs a defense on a data set on disk and writes,
besides the table of every sample and the mask, ``report.html``: one file,
images inlined, that shows how many samples the defense removed from each
class, the distribution of its suspicion scores and the most suspicious
images of every class. Looking at those images is how a person decides
whether to trust a defense.

This example writes the digits as PNG files in class folders (the layout of
torchvision's ``ImageFolder``), poisons them with ``sklearn-backdoor poison``,
scans them with the spectral signature defense and reads the results back
with :mod:`sklearn_backdoor.report`. The commands run in this process through
:func:`sklearn_backdoor.cli.main`; in a shell they are the same words after
``sklearn-backdoor``. Everything is written to a temporary folder.

Runs on a CPU in a few seconds (needs matplotlib)::

    python examples/html_report.py
"""

import html
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from sklearn_backdoor.cli import main
from sklearn_backdoor.datasets import load_digits_images
from sklearn_backdoor.report import load_scan, match_truth, read_truth


def sklearn_backdoor(*arguments):
    """Run ``sklearn-backdoor ARGUMENTS`` in ``root``; raise if it fails."""
    print("$ sklearn-backdoor", " ".join(str(argument) for argument in arguments))
    status = main([str(root / a) if isinstance(a, Path) else a for a in arguments])
    if status != 0:
        raise RuntimeError(f"sklearn-backdoor exited with status {status}")


# %%
# An image folder, poisoned
# -------------------------
# ``poison`` stamps a 3-pixel trigger into the top-left corner of 20% of the
# zeros, moves them to the folder ``7/`` and lists them in ``poisoned.csv``.

workspace = tempfile.TemporaryDirectory()
root = Path(workspace.name)
X, y = load_digits_images()  # uint8, shape (n, 8, 8, 1)
for k, (image, label) in enumerate(zip(X, y, strict=True)):
    folder = root / "digits" / str(label)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.squeeze()).save(folder / f"{k:04d}.png")

sklearn_backdoor(
    "poison", Path("digits"), "--out", Path("poisoned"), "--quiet",
    "--source", "0", "--target", "7", "--fraction", "0.2", "--trigger", "corner",
)  # fmt: skip
print((root / "poisoned" / "poisoned.csv").read_text().splitlines()[:3])

# %%
# The scan
# --------
# The spectral signature defense (``--defense ss``) removes the samples of
# each class whose representation lies furthest along the class's main
# direction: here 1.5 times the expected 20% of poison of every class.
# Since ``poisoned.csv`` lies in the scanned folder, the report also counts
# the poisoned files removed and kept.

sklearn_backdoor(
    "scan", Path("poisoned"), "--out", Path("scan"), "--quiet",
    "--defense", "ss", "--param", "epochs=20",
    "--param", "expected_poison_fraction=0.2",
)  # fmt: skip
print(sorted(path.name for path in (root / "scan").iterdir()))

# %%
# Per-class counts
# ----------------
# :func:`~sklearn_backdoor.report.load_scan` reads the files back. Each
# sample has its file, its label, its score and whether it was kept; the
# true poison comes from ``poisoned.csv``.

result = load_scan(root / "scan")
truth = match_truth(
    result.name_column, result.names, read_truth(root / "poisoned" / "poisoned.csv")
)
labels = np.array(result.labels)
print(f"{'class':>5}{'samples':>9}{'removed':>9}{'poisoned':>10}{'removed':>9}")
for name in result.class_names:
    members = labels == name
    poison = members & truth.is_poison
    print(
        f"{name:>5}{members.sum():>9d}{(members & ~result.mask).sum():>9d}"
        f"{poison.sum():>10d}{(poison & ~result.mask).sum():>9d}"
    )

# %%
# The most suspicious sevens
# --------------------------
# The poison sits in class 7. Its most suspicious images, as the report's
# gallery shows them, are the zeros with the trigger in their corner.

sevens = np.flatnonzero(labels == "7")
ranked = sevens[np.argsort(-result.scores[sevens], kind="stable")][:8]
fig, axes = plt.subplots(1, len(ranked), figsize=(8, 1.6))
for ax, i in zip(axes, ranked, strict=True):
    ax.imshow(Image.open(root / "poisoned" / result.names[i]), cmap="gray")
    ax.set_title("poisoned" if truth.is_poison[i] else "clean", fontsize=8)
    ax.set_axis_off()
fig.suptitle("class 7, most suspicious first")
fig.tight_layout()
plt.show()

# %%
# The report itself
# -----------------
# ``report.html`` opens offline in any browser. In a notebook, or on this
# page, it shows inline in a frame:


class InlinePage:
    """An HTML file that notebooks and sphinx-gallery show in a frame."""

    def __init__(self, path):
        self.page = Path(path).read_text(encoding="utf-8")

    def _repr_html_(self):
        return (
            f'<iframe srcdoc="{html.escape(self.page)}" '
            'style="width: 100%; height: 40em; border: 1px solid #ccc"></iframe>'
        )


InlinePage(root / "scan" / "report.html")

# %%
# ``sklearn-backdoor report`` renders the page again from the files, for
# example with another ``--truth``. The temporary folder is removed last.

workspace.cleanup()
