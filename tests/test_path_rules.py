"""Name rules of the root's filesystem: NTFS names (trailing dot or space, `:` streams, devices,
8.3 aliases) refused before any disk access, and names compared without case where the
filesystem does (the `.well-known` exception, the containment check, the cache keys).

The table of cases runs under every rule set on every platform (pathrules.check_segments takes
the rules); then respond() with each rule set over a temporary folder; then real sockets in
both engines, expecting what the rules of the platform the server runs as say (CI runs them
again as Windows and as macOS, REACTOR_HTTP_SIMULATE).
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from reactor_http import facilities, pathrules
from reactor_http.facilities import FACTS
from reactor_http.pathrules import MACOS, POSIX, WINDOWS

RULE_SETS = {"posix": POSIX, "macos": MACOS, "windows": WINDOWS}
DOT = "dotfile"
TRAIL = "trailing dot or space"
STREAM = "stream, drive or wildcard character"
DEVICE = "device name"
SHORT = "8.3 short-name alias"

# (segments, verdict under POSIX, under MACOS, under WINDOWS), dotfiles denied (the default).
CASES = [
    (["index.html"], None, None, None),
    (["docs", "a b.txt"], None, None, None),
    (["café.txt"], None, None, None),
    ([".git", "config"], DOT, DOT, DOT),
    ([".GIT", "config"], DOT, DOT, DOT),
    (["a", ".env"], DOT, DOT, DOT),
    ([".well-known", "security.txt"], None, None, None),
    ([".WELL-KNOWN", "security.txt"], DOT, None, None),
    ([".Well-Known"], DOT, None, None),
    # KELVIN SIGN folds to k in Unicode, but NTFS keeps it apart from K: not the public folder.
    ([".well-\u212anown"], DOT, DOT, DOT),
    # trailing dot or space: Win32 strips them, so these would open secret.txt or a folder
    (["secret.txt."], None, None, TRAIL),
    (["secret.txt "], None, None, TRAIL),
    (["secret.txt. . "], None, None, TRAIL),
    (["dir.", "a.txt"], None, None, TRAIL),
    (["..."], DOT, DOT, DOT),
    (["a..."], None, None, TRAIL),
    (["a..b"], None, None, None),
    # streams, drives, wildcards
    (["file.txt::$DATA"], None, None, STREAM),
    (["file.txt:secret"], None, None, STREAM),
    (["dir", "index.html::$DATA"], None, None, STREAM),
    (["dir::$INDEX_ALLOCATION", "x"], None, None, STREAM),
    (["C:x"], None, None, STREAM),
    (["a*b"], None, None, STREAM),
    (["a?b"], None, None, STREAM),
    (['a"b'], None, None, STREAM),
    (["a<b"], None, None, STREAM),
    (["a>b"], None, None, STREAM),
    (["a|b"], None, None, STREAM),
    # device names: any case, with or without an extension, spaces before the dot ignored
    (["con"], None, None, DEVICE),
    (["CON"], None, None, DEVICE),
    (["nul.txt"], None, None, DEVICE),
    (["Com1.tar.gz"], None, None, DEVICE),
    (["lpt9"], None, None, DEVICE),
    (["aux .txt"], None, None, DEVICE),
    (["prn.html"], None, None, DEVICE),
    (["conin$"], None, None, DEVICE),
    (["CONOUT$.log"], None, None, DEVICE),
    (["com\u00b9"], None, None, DEVICE),
    (["LPT\u00b3.txt"], None, None, DEVICE),
    (["dir", "nul", "x.txt"], None, None, DEVICE),
    # ... and names that only look like them
    (["com10"], None, None, None),
    (["com0.txt"], None, None, None),
    (["lpt0"], None, None, None),
    (["console.txt"], None, None, None),
    (["nul-x.txt"], None, None, None),
    (["auxiliary"], None, None, None),
    (["com1x.txt"], None, None, None),
    # 8.3 short-name aliases (GIT~1 is .git where short names are made)
    (["GIT~1", "config"], None, None, SHORT),
    (["git~1", "config"], None, None, SHORT),
    (["PROGRA~1"], None, None, SHORT),
    (["AB12~3.TXT"], None, None, SHORT),
    (["index~12.htm"], None, None, SHORT),
    (["file~name.txt"], None, None, None),
    (["notes.txt~"], None, None, None),
    (["backup~"], None, None, None),
    (["verylongname~1.txt"], None, None, None),  # a base of more than 8: not a short name
    (["a~1.html"], None, None, None),            # an extension of 4: not a short name
    (["a~1.b.c"], None, None, None),
]


def case_id(case) -> str:
    return "/".join(case[0]).encode("ascii", "backslashreplace").decode()


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("rules_name", list(RULE_SETS))
def test_the_table_of_cases(case, rules_name):
    segments = case[0]
    expected = dict(zip(RULE_SETS, case[1:], strict=True))[rules_name]
    assert pathrules.check_segments(segments, RULE_SETS[rules_name], False) == expected


# The same with --dotfiles allow: dot names are plain names, the Windows rules still apply.
ALLOWED_DOTFILE_CASES = [
    ([".git", "config"], None, None, None),
    ([".GIT"], None, None, None),
    ([".well-known"], None, None, None),
    (["..."], None, None, TRAIL),
    ([".git.", "config"], None, None, TRAIL),
    ([".env "], None, None, TRAIL),
    ([".env::$DATA"], None, None, STREAM),
    ([".htaccess:x"], None, None, STREAM),
    (["GIT~1", "config"], None, None, SHORT),
    (["nul"], None, None, DEVICE),
]


@pytest.mark.parametrize("case", ALLOWED_DOTFILE_CASES, ids=case_id)
@pytest.mark.parametrize("rules_name", list(RULE_SETS))
def test_the_table_with_dotfiles_allowed(case, rules_name):
    segments = case[0]
    expected = dict(zip(RULE_SETS, case[1:], strict=True))[rules_name]
    assert pathrules.check_segments(segments, RULE_SETS[rules_name], True) == expected


def swap_ascii_case(text: str) -> str:
    return "".join(ch.swapcase() if ch.isascii() else ch for ch in text)


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("rules", [MACOS, WINDOWS], ids=["macos", "windows"])
def test_every_spelling_one_cache_key_holds_gets_one_verdict(case, rules):
    """The answer cache keys by the folded path: a refused spelling must never share a key with
    an allowed one, or it could replay that one's answer."""
    segments = case[0]
    verdict = pathrules.check_segments(segments, rules, False)
    for variant in ([s.upper() if s.isascii() else s for s in segments],
                    [swap_ascii_case(s) for s in segments], [rules.fold(s) for s in segments]):
        assert [rules.fold(s) for s in variant] == [rules.fold(s) for s in segments]
        assert pathrules.check_segments(variant, rules, False) == verdict


def test_fold_lowers_ascii_letters_only():
    assert MACOS.fold("/Docs/INDEX.Html") == "/docs/index.html"
    assert MACOS.fold("/É/\u212a/ß") == "/É/\u212a/ß"
    assert MACOS.fold("/Ab/É") == "/ab/É"
    assert POSIX.fold("/Docs/INDEX.Html") == "/Docs/INDEX.Html"


@pytest.mark.parametrize("rules, root, candidate, inside", [
    (POSIX, "/srv/Site", "/srv/Site/a.txt", True),
    (POSIX, "/srv/Site", "/srv/site/a.txt", False),
    (MACOS, "/srv/Site", "/srv/site/a.txt", True),
    (MACOS, "/srv/Site", "/SRV/SITE", True),
    (WINDOWS, "/srv/Site", "/srv/site/a.txt", True),
    (MACOS, "/srv/Site", "/srv/site2/a.txt", False),
    (MACOS, "/srv/Site", "/srv/Sit\u00e9/a.txt", False),
    (MACOS, "/srv/www", "/srv/www2", False),
])
def test_containment_compares_names_as_the_filesystem_does(rules, root, candidate, inside):
    assert pathrules.is_inside(root, candidate, rules) is inside


# ---- which rules a root gets ------------------------------------------------------------------

def facts(**changes) -> facilities.Facilities:
    return dataclasses.replace(FACTS, **changes)


def test_rules_follow_the_platform_facts(tmp_path):
    windows = facts(windows_names=True, case_insensitive_names=True, simulated=True)
    assert pathrules.for_root(str(tmp_path), windows) == WINDOWS
    macos = facts(windows_names=False, case_insensitive_names=True, simulated=True)
    assert pathrules.for_root(str(tmp_path), macos) == MACOS
    linux = facts(windows_names=False, case_insensitive_names=False, simulated=False)
    assert pathrules.for_root(str(tmp_path), linux) == POSIX


def disk_folds_case(folder) -> bool:
    """Whether the disk under `folder` finds a file under another case (asked of the disk)."""
    (folder / "Probe").write_text("x")
    return (folder / "pROBE").exists()


def test_a_root_on_a_case_sensitive_disk_keeps_names_exact(tmp_path):
    """A real (not simulated) case-insensitive platform with a case-sensitive root (a
    case-sensitive APFS volume): folding would make /A.txt and /a.txt one cache entry."""
    root = tmp_path / "Root"
    root.mkdir()
    folds = disk_folds_case(root)
    assert pathrules.folds_case(str(root)) is folds
    real_macos = facts(windows_names=False, case_insensitive_names=True, simulated=False)
    assert pathrules.for_root(str(root), real_macos).case_insensitive is folds


def test_a_root_without_letters_keeps_the_platform_fact():
    assert pathrules.folds_case("/") is None
    real_macos = facts(windows_names=False, case_insensitive_names=True, simulated=False)
    assert pathrules.for_root("/", real_macos) == MACOS
