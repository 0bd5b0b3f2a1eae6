"""Screenshot of the HTML report, taken in a headless browser, for the docs.

Writes the digits as PNG files in class folders, poisons 20% of the zeros
with the corner trigger (labelled 7) with ``sklearn-backdoor poison``, scans
them with ISPL+B with ``sklearn-backdoor scan``, given the poison command's list
of poisoned files so that the report shows where the poison went, and photographs
``report.html`` with headless Chromium::

    python benchmarks/report_screenshot.py --out docs/report-screenshot.png

Needs a Chromium or Chrome executable (``--browser``, found on the PATH by
default).
"""

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

from sklearn_backdoor.cli import main as sklearn_backdoor
from sklearn_backdoor.datasets import load_digits_images

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def write_digits_folder(folder):
    """The digits as ``folder/<class>/<index>.png``."""
    X, y = load_digits_images()
    for index, (image, label) in enumerate(zip(X, y, strict=True)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.squeeze()).save(folder / str(label) / f"{index:04d}.png")


def run_cli(*arguments):
    status = sklearn_backdoor([str(argument) for argument in arguments])
    if status != 0:
        raise RuntimeError(f"sklearn-backdoor {arguments[0]} exited with {status}")


def screenshot(browser, page, out, width, height):
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--virtual-time-budget=5000",
            f"--window-size={width},{height}",
            f"--screenshot={out.resolve()}",
            page.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="PNG to write")
    parser.add_argument("--browser", default=None)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2000)
    args = parser.parse_args(argv)
    browser = args.browser or next(filter(None, map(shutil.which, BROWSERS)), None)
    if browser is None:
        parser.error("no Chromium or Chrome found; pass --browser")
    out = args.out.resolve()
    home = Path.cwd()
    with tempfile.TemporaryDirectory() as workspace:
        # Relative paths, so that the report names no folder of this machine.
        os.chdir(workspace)
        try:
            write_digits_folder(Path("digits"))
            run_cli(
                "poison", "digits", "--out", "poisoned", "--quiet",
                "--source", "0", "--target", "7", "--fraction", "0.2",
                "--trigger", "corner",
            )  # fmt: skip
            run_cli(
                "scan", "poisoned", "--out", "scan", "--quiet",
                "--seed", "0", "--truth", "poisoned/poisoned.csv",
            )  # fmt: skip
            screenshot(browser, Path("scan/report.html"), out, args.width,
                       args.height)  # fmt: skip
        finally:
            os.chdir(home)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
