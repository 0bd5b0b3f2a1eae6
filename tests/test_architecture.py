"""docs/architecture.md stays true: every dotted name it cites imports from the
module it names, every arrow of its module graph is an import in the code,
every module is on the map, and the layers it calls torch-free are."""

import ast
import importlib
import re
from pathlib import Path

import pytest

import sklearn_backdoor

PACKAGE = Path(sklearn_backdoor.__file__).parent
MAP = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
CITED = sorted(set(re.findall(r"`(sklearn_backdoor(?:\.\w+)+)`", MAP)))
GRAPH = re.search(r"```mermaid\n(.*?)```", MAP, re.S).group(1)
ARROWS = re.findall(r"^\s*(\w+)\s*-->\s*(\w+)\s*$", GRAPH, re.M)
NODES = set(re.findall(r"^\s*(\w+)\s*$", GRAPH, re.M)) - {"end"}
# The layers the map calls torch-free.
TORCH_FREE = (
    "constraints",
    "contract",
    "datasets",
    "docstrings",
    "inputs",
    "metrics",
    "pipeline",
    "poisoning",
    "report",
)
TORCH = {"torch", "skorch", "torchvision"}


def _resolve(dotted):
    """``(module, object, attributes)``: the longest importable prefix of
    ``dotted``, the object the rest of the name reaches from it, and that
    rest."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:end]))
        except ModuleNotFoundError:
            continue
        obj = module
        for attribute in parts[end:]:
            obj = getattr(obj, attribute)
        return module, obj, parts[end:]
    raise ModuleNotFoundError(dotted)


def test_the_map_cites_names_and_draws_a_graph():
    assert len(CITED) > 50
    assert len(ARROWS) > 20


@pytest.mark.parametrize("dotted", CITED)
def test_every_cited_name_imports_from_where_it_lives(dotted):
    module, obj, attributes = _resolve(dotted)
    if attributes:
        owner = getattr(module, attributes[0])
        defined_in = getattr(owner, "__module__", module.__name__)
        assert defined_in == module.__name__, (
            f"{dotted} is defined in {defined_in}: cite it there"
        )


def _files(name):
    path = PACKAGE / name
    return sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


def _imported_modules(name, top_level_only=False):
    """Dotted names of the modules that module (or package) ``name`` imports."""
    found = set()
    for file in _files(name):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        for node in tree.body if top_level_only else ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
    return found


def _package_module(dotted):
    """``"poisoning"`` for ``sklearn_backdoor.poisoning.checks``, else None."""
    parts = dotted.split(".")
    return parts[1] if parts[0] == "sklearn_backdoor" and len(parts) > 1 else None


@pytest.mark.parametrize(
    "source, target", [pytest.param(*arrow, id="->".join(arrow)) for arrow in ARROWS]
)
def test_every_arrow_is_an_import(source, target):
    imported = {_package_module(name) for name in _imported_modules(source)}
    assert target in imported, f"{source} does not import {target}: fix the graph"


def _top_level_modules():
    return sorted(
        path.stem if path.suffix else path.name
        for path in PACKAGE.iterdir()
        if not path.name.startswith("_")
        and (path.suffix == ".py" or (path / "__init__.py").exists())
    )


@pytest.mark.parametrize("name", _top_level_modules())
def test_every_module_is_on_the_map(name):
    module = f"sklearn_backdoor.{name}"
    cited = any(dotted == module or dotted.startswith(module + ".") for dotted in CITED)
    assert name in NODES or cited, (
        f"sklearn_backdoor.{name} is missing from docs/architecture.md"
    )


def _torch_imports(name, seen):
    """The torch-like modules ``name`` imports at module level, directly or
    through the package's other modules."""
    if name in seen:
        return set()
    seen.add(name)
    found = set()
    for dotted in _imported_modules(name, top_level_only=True):
        if dotted.split(".")[0] in TORCH:
            found.add(f"{name} imports {dotted}")
        inner = _package_module(dotted)
        if inner is not None:
            found |= _torch_imports(inner, seen)
    return found


@pytest.mark.parametrize("name", TORCH_FREE)
def test_torch_free_layers_import_no_torch(name):
    assert not _torch_imports(name, set())
