"""docs/api.rst lists every public name of each module it documents.

An export missing from the page would leave it undocumented; the tests
run before the documentation build, so the omission fails here first.
"""

import importlib
import re
from pathlib import Path

import pytest

import sklearn_backdoor

API = (Path(sklearn_backdoor.__file__).parent.parent / "docs" / "api.rst").read_text(
    encoding="utf-8"
)


def listed_names(text):
    """``{module: {name, ...}}`` of the autosummary entries under each
    ``currentmodule`` directive of ``text``."""
    listed, module = {}, None
    for line in text.splitlines():
        if found := re.fullmatch(r"\.\. currentmodule:: ([\w.]+)", line):
            module = found[1]
            listed.setdefault(module, set())
        elif (found := re.fullmatch(r" {3}(\w+)", line)) and module is not None:
            listed[module].add(found[1])
    return listed


LISTED = listed_names(API)


def test_the_page_documents_the_package_and_its_modules():
    assert "sklearn_backdoor" in LISTED
    assert "SanitizerChain" in LISTED["sklearn_backdoor"]
    assert len(LISTED) >= 4


@pytest.mark.parametrize("module_name", sorted(LISTED))
def test_every_exported_name_is_listed(module_name):
    exported = set(importlib.import_module(module_name).__all__)
    assert exported - LISTED[module_name] == set()


def test_an_unlisted_export_is_found():
    text = ".. currentmodule:: sklearn_backdoor\n\n   Pipeline\n"
    missing = set(sklearn_backdoor.__all__) - listed_names(text)["sklearn_backdoor"]
    assert "SanitizerChain" in missing
