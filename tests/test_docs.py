"""The map is true: README.md's module table and state list match the code, and the published
Markdown speaks in facts (no "this round", no "the issue") and names no path of this machine.

Which modules need a row: every `reactor_http/*.py` except the package's own plumbing, whose
names start with an underscore (`__init__.py`, `__main__.py`, `_version.py`): they hold no
design of their own. A row may name several modules in its first cell (`` `logs.py`,
`stats.py` ``); every name there must be a module that exists. Self-contained: no conftest.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reactor_http.protocol import ConnState

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
PACKAGE = REPO / "reactor_http"
#: Every Markdown file the project publishes as a statement of what is.
PUBLISHED_MD = [README, REPO / "bench" / "README.md", REPO / "bench" / "RESULTS.md",
                *sorted((REPO / "bench" / "results").glob("*.md"))]
#: Published results: figures and the Markdown around them.
PUBLISHED_RESULTS = [REPO / "bench" / "RESULTS.md",
                     *sorted((REPO / "bench" / "results").glob("*.md")),
                     *sorted((REPO / "bench" / "results").glob("*.json"))]
#: Wording that dates a text to a piece of work instead of stating what is.
ROUNDS_AND_ISSUES = re.compile(
    r"\bthis round\b|\bthe round before\b|\bround (?:one|two|three|\d+)\b|\bthe issue\b|"
    r"\bthis issue\b|\bissue #?\d+\b|\bthe \w+ issue\b", re.IGNORECASE)
#: An absolute path of the machine a result was made on (not /dev/null or /proc/PID/stat).
MACHINE_PATH = re.compile(r"(?<![\w.:/~$])/(?:tmp|var|work|home|root|usr|opt|srv|mnt|Users|"
                          r"private)/")


def section(text: str, heading: str) -> str:
    """The body of the `## heading` section (up to the next `## `)."""
    match = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README.md has no '## {heading}' section"
    return match.group(1)


def module_table_rows(text: str) -> list[str]:
    """The first cells of the module table ("| module | owns | never does |")."""
    body = section(text, "How it works")
    lines = body.splitlines()
    start = next((i for i, line in enumerate(lines)
                  if re.match(r"\|\s*module\s*\|\s*owns\s*\|", line)), None)
    assert start is not None, "the module table (| module | owns | never does |) is missing"
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(line.split("|")[1])
    return rows


def documented_modules(text: str) -> list[str]:
    return [name for cell in module_table_rows(text)
            for name in re.findall(r"`([\w]+\.py)`", cell)]


def code_modules() -> set[str]:
    return {path.name for path in PACKAGE.glob("*.py") if not path.name.startswith("_")}


# ---------------------------------------------------------------- the helpers, on made-up text

SAMPLE = """# x

## How it works

| module | owns | never does |
| --- | --- | --- |
| `a.py` | a | b |
| `b.py`, `c.py` → `d.py` | c | |

Then prose: `IDLE`.

## Next
"""


def test_the_table_reader_finds_every_name_of_every_row():
    assert documented_modules(SAMPLE) == ["a.py", "b.py", "c.py", "d.py"]
    with pytest.raises(AssertionError):
        documented_modules(SAMPLE.replace("| module | owns", "| file | owns"))


@pytest.mark.parametrize("text", ["what this round removed", "This round (reuse)",
                                  "the round before", "round two", "the issue's rule",
                                  "see issue #12", "issue 4 says", "The performance issue's"])
def test_rounds_and_issues_are_caught(text):
    assert ROUNDS_AND_ISSUES.search(text)


@pytest.mark.parametrize("text", ["bound by the round trip", "round-trip bound",
                                  "5 interleaved rounds", "rounded down", "issued a 408",
                                  "an issue with the clock"])
def test_plain_words_are_not_caught(text):
    assert not ROUNDS_AND_ISSUES.search(text)


@pytest.mark.parametrize("text,found", [("`/tmp/reactor-http-x/www`", True),
                                        ("from /work/venv/lib", True), ("/usr/bin/taskset", True),
                                        ("/home/ann/site", True), ("stdout to /dev/null", False),
                                        ("`/proc/PID/stat`", False), ("--root $WORK/www", False),
                                        ("http://127.0.0.1:8000/tmp/x", False)])
def test_machine_paths_are_caught(text, found):
    assert bool(MACHINE_PATH.search(text)) is found


# ---------------------------------------------------------------- the real documents

def test_every_module_has_a_row_in_the_module_table():
    documented = set(documented_modules(README.read_text()))
    missing = sorted(code_modules() - documented)
    assert not missing, f"README.md's module table has no row for {missing}"


def test_every_module_the_table_names_exists():
    named = documented_modules(README.read_text())
    stale = sorted(set(named) - code_modules())
    assert not stale, f"README.md's module table names modules that do not exist: {stale}"
    assert len(named) == len(set(named)), "a module has two rows"


def test_every_connection_state_is_in_how_it_works():
    body = section(README.read_text(), "How it works")
    missing = [state.name for state in ConnState if not re.search(rf"\b{state.name}\b", body)]
    assert not missing, f"README.md's 'How it works' does not name the states {missing}"


def lines_matching(path, pattern) -> list[str]:
    """`number: line` for each line of the file at `path` that `pattern` finds something in."""
    return [f"{number}: {line.strip()[:160]}"
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if pattern.search(line)]


@pytest.mark.parametrize("path", PUBLISHED_MD, ids=lambda p: str(p.relative_to(REPO)))
def test_published_markdown_states_facts_not_rounds_or_issues(path):
    found = lines_matching(path, ROUNDS_AND_ISSUES)
    assert not found, "\n".join(found)


@pytest.mark.parametrize("path", PUBLISHED_RESULTS, ids=lambda p: str(p.relative_to(REPO)))
def test_published_results_name_no_path_of_this_machine(path):
    found = lines_matching(path, MACHINE_PATH)
    assert not found, "\n".join(found)


def test_results_md_embeds_the_published_plots_by_relative_links():
    text = (REPO / "bench" / "RESULTS.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    pngs = sorted(p.name for p in (REPO / "bench" / "results").glob("*.png"))
    assert pngs, "bench/results/ holds no plot"
    assert sorted(Path(link).name for link in links) == pngs
    for link in links:
        assert not link.startswith("/") and (REPO / "bench" / link).is_file(), link
