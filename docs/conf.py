"""Sphinx configuration of the sklearn_backdoor documentation.

Build it from the repository root with::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import contextlib
import io
import os
import re
import sys
from pathlib import Path
from unittest import mock

import sklearn_backdoor
from sklearn_backdoor.cli import build_parser

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "sphinxext"))

project = "sklearn_backdoor"
copyright = "the sklearn_backdoor developers"
release = sklearn_backdoor.__version__
version = release

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx_gallery.gen_gallery",
    "sphinxcontrib.mermaid",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
templates_path = ["_templates"]
exclude_patterns = ["_build", "_generated/*.txt"]
html_theme = "pydata_sphinx_theme"
html_title = f"sklearn_backdoor {release}"
html_theme_options = {"show_toc_level": 2}

autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": True}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_validation_checks = set()
myst_heading_anchors = 3
# The module graph of architecture.md is a mermaid diagram, drawn in the
# browser.
myst_fence_as_directive = ["mermaid"]

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "doc_module": ("sklearn_backdoor",),
    "backreferences_dir": "generated/backreferences",
    # cifar10.py and compatibility_figure.py need CIFAR-10 or minutes of
    # compute: they are shown, not run.
    "filename_pattern": r"/(quickstart|pipeline_grid_search|html_report)\.py$",
    "download_all_examples": False,
    "within_subsection_order": "gallery_order.ExampleOrder",
}

# ``--help`` of the command line, regenerated at every build so that the CLI
# page cannot drift from the code.
CLI_COMMANDS = ("", "scan", "poison", "report")


def write_cli_help(folder):
    """Write ``sklearn-backdoor [COMMAND] --help`` to ``folder/cli-*.txt``."""
    folder.mkdir(exist_ok=True)
    for command in CLI_COMMANDS:
        output = io.StringIO()
        with (
            mock.patch.dict(os.environ, {"COLUMNS": "88"}),
            contextlib.redirect_stdout(output),
            contextlib.suppress(SystemExit),
        ):
            build_parser().parse_args([command, "--help"] if command else ["--help"])
        name = f"cli-{command or 'main'}.txt"
        (folder / name).write_text(output.getvalue(), encoding="utf-8")


write_cli_help(DOCS / "_generated")


def skip_foreign_member(app, what, name, obj, skip, options):
    """Document only the members that this package defines.

    Inherited members of scikit-learn and skorch classes (``get_params``,
    ``set_fit_request``, ...) are documented there, and their docstrings refer
    to those projects' own pages.
    """
    module = getattr(getattr(obj, "fget", obj), "__module__", None) or ""
    if module and not module.startswith("sklearn_backdoor"):
        return True
    return skip


# What an example printed, as sphinx-gallery writes it into a page.
SCRIPT_OUTPUT = re.compile(
    r"^\.\. rst-class:: sphx-glr-script-out\n\n \.\. code-block:: none\n\n"
    r"(?P<body>(?: +[^\n]*\n|\n)*)",
    re.MULTILINE,
)
# One state of a tqdm bar on a line of its own, as Sphinx reads a page (its
# carriage returns turned into line ends): "  title:  40%|####  | 2/5 [...]".
TQDM_BAR = re.compile(r"^ +[^\n]*\d+%\|[^\n]*\| *\d+/\d+ \[[^\n]*\n", re.MULTILINE)


def drop_progress_bars(app, docname, source):
    """Drop from a gallery page the progress bars its example drew on stderr.

    sphinx-gallery shows stderr with stdout, and tqdm redraws a bar with
    carriage returns: the page would list every state of every bar (the
    quickstart's ISPL+B draws about fifty) before the example's own output.
    An output block left with nothing else is dropped.
    """
    if docname.startswith("auto_examples/"):
        source[0] = SCRIPT_OUTPUT.sub(_output_without_bars, source[0])


def _output_without_bars(match):
    body = TQDM_BAR.sub("", match["body"])
    if not body.strip():
        return ""
    return match[0][: match.start("body") - match.start()] + body


def setup(app):
    app.connect("source-read", drop_progress_bars)
    app.connect("autodoc-skip-member", skip_foreign_member)
