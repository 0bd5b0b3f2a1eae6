"""The files a user reads speak to users.

README, the benchmarks' README, the examples and the documentation pages name
none of the tools the project is developed with and no path of the machines
it is developed on, and cite papers by authors and title: a page may call a
paper "paper 001" only once it has said which paper that is.
"""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
USER_FACING = sorted(
    [
        REPO / "README.md",
        REPO / "benchmarks" / "README.md",
        *(REPO / "examples").glob("*.py"),
        *(REPO / "examples").glob("*.rst"),
        *(REPO / "docs").glob("*.md"),
        *(REPO / "docs").glob("*.rst"),
    ]
)
# Pages that benchmarks/report.py writes; their wording is fixed there.

FORBIDDEN = {
    "a development tool": r"\bissues (?:show|list|new)\b|\bduplicates --|"
    r"\bdevice-prep\b|\bdevice (?:tool|call)s?\b",
    "a development session": r"\bsessions?\b",
    "a development helper": r"\bhelpers?\b",
    "the project's issue tracker": r"\bissue's\b|\bissue \d+\b|\bproject's issues\b",
    "a path of the project's machines": r"/work/|\.\./shared\b|/tmp/|"
    r"\bshared/(?:papers|tools|data|hooks)\b",
    "the file name of a paper's copy": r"\b\d{3}_[0-9a-f]{16}\b",
}
# Words of each paper's title that a page must give before (or right after)
# it first calls the paper by number.
PAPER_TITLES = {
    "000": "Defending Against Backdoor Attacks Using Ensembles of Weak Learners",
    "001": "Incompatibility Clustering as a Defense Against Backdoor Poisoning",
    "002": "Defending Backdoor Data Poisoning Attacks Using Noisy Label Defense",
}
# How far after the first "paper 001" its title may come: "paper 001 (Jin,
# Sun & Rinard, *Incompatibility ...*)".
TITLE_WINDOW = 120


def _relative(path):
    return path.relative_to(REPO).as_posix()


def _prose(path):
    """The file's text with every run of white space as one space."""
    return " ".join(path.read_text(encoding="utf-8").split())


def forbidden_mentions(text):
    """``(what, mention)`` for each forbidden mention in ``text``."""
    return [
        (what, match.group(0))
        for what, pattern in FORBIDDEN.items()
        for match in re.finditer(pattern, text, flags=re.IGNORECASE)
    ]


def undefined_paper_numbers(text):
    """The paper numbers ``text`` uses before saying which paper they are."""
    text = text.replace("*", "")
    undefined = []
    for number, title in PAPER_TITLES.items():
        first = re.search(rf"\bpaper {number}\b", text, flags=re.IGNORECASE)
        if first is None:
            continue
        title_at = text.lower().find(title.lower())
        if title_at < 0 or title_at > first.end() + TITLE_WINDOW:
            undefined.append(number)
    return undefined


def test_the_user_facing_files_are_found():
    names = {_relative(path) for path in USER_FACING}
    assert {"README.md", "benchmarks/README.md", "examples/quickstart.py"} <= names
    assert {"docs/defenses.md", "docs/index.rst"} <= names


@pytest.mark.parametrize("path", USER_FACING, ids=_relative)
def test_names_no_development_tool_or_machine_path(path):
    assert forbidden_mentions(_prose(path)) == []


@pytest.mark.parametrize("path", USER_FACING, ids=_relative)
def test_says_which_paper_a_number_is_before_using_it(path):
    assert undefined_paper_numbers(_prose(path)) == []


@pytest.mark.parametrize(
    ("text", "found"),
    [
        (
            "copy cifar10 from ../shared/data first",
            ["a path of the project's machines"],
        ),
        ("see /work/main/README.md", ["a path of the project's machines"]),
        ("write it to /tmp/out.json", ["a path of the project's machines"]),
        ("prepare with device-prep", ["a development tool"]),
        ("no GPU session so far", ["a development session"]),
        ("as the issue's probe showed", ["the project's issue tracker"]),
        ("read 001_daa0ceeb33549350.txt", ["the file name of a paper's copy"]),
        ("benchmarks/gpu_session.sh holds the stages", []),
        ("python examples/cifar10.py path/to/cifar10.zip", []),
    ],
)
def test_forbidden_mentions_are_recognised(text, found):
    assert [what for what, _ in forbidden_mentions(text)] == found


@pytest.mark.parametrize(
    ("text", "undefined"),
    [
        ("TMR as in paper 001 (eq. 7).", ["001"]),
        (
            "TMR as in paper 001 (Jin, Sun & Rinard, *Incompatibility Clustering "
            "as a Defense Against Backdoor Poisoning Attacks*, eq. 7).",
            [],
        ),
        (
            "Paper 002 is Defending Backdoor Data Poisoning Attacks Using Noisy "
            "Label Defense Algorithm. Later, paper 002 and paper 000 again.",
            ["000"],
        ),
        ("No paper is cited by number here.", []),
    ],
)
def test_paper_numbers_need_their_title_first(text, undefined):
    assert undefined_paper_numbers(text) == undefined
