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

from tests.helpers.http import get
from tests.helpers.respond import body_of, request
from tests.helpers.servers import MODES, ServerProcess

from reactor_http import facilities, pathrules, responder, rulefiles, website
from reactor_http.config import Config
from reactor_http.facilities import FACTS
from reactor_http.listing import DEFAULT_ORDER
from reactor_http.parser import parse_head
from reactor_http.pathrules import MACOS, POSIX, WINDOWS
from reactor_http.protocol import ParsedHead

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


def test_the_site_takes_the_rules_of_its_root(tmp_path):
    site = website.Site(Config(root=str(tmp_path)).validate())
    # ...and hides the rule files it reads there (rulefiles.NAMES), as those rules fold them
    expected = pathrules.for_root(os.path.realpath(tmp_path))
    assert site.path_rules == dataclasses.replace(
        expected, hidden=frozenset(expected.fold(name) for name in rulefiles.NAMES))
    plain = website.Site(Config(root=str(tmp_path), site_rules=False).validate())
    assert plain.path_rules == expected


# ---- respond() under each rule set ------------------------------------------------------------

SECRET = b"SECRET BYTES\n"


@pytest.fixture
def root(tmp_path):
    """A site holding, besides plain files, names that only NTFS treats specially (created
    where the host allows them)."""
    (tmp_path / "index.html").write_bytes(b"<p>index</p>")
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_bytes(SECRET)
    (tmp_path / ".well-known").mkdir()
    (tmp_path / ".well-known" / "security.txt").write_bytes(b"Contact: x\n")
    if facilities.detect().name != "windows":
        (tmp_path / "trail.").write_bytes(b"trailing dot\n")
        (tmp_path / "a:b.txt").write_bytes(b"colon\n")
        (tmp_path / "nul.txt").write_bytes(b"not a device\n")
        (tmp_path / "GIT~1").mkdir()
        (tmp_path / "GIT~1" / "config").write_bytes(b"a folder named GIT~1\n")
    return tmp_path


def make_site(root, rules, **options):
    return website.Site(Config(root=str(root), **options).validate(), path_rules=rules)


def answer(site, target, method="GET"):
    return responder.respond(request(target, method), site, 1.0)


REFUSED_UNDER_WINDOWS = ["/secret.txt.", "/secret.txt%20", "/secret.txt::$DATA",
                         "/secret.txt:$DATA", "/con", "/NUL.txt", "/Com1.tar.gz", "/aux%20.txt",
                         "/GIT~1/config", "/trail.", "/a:b.txt", "/nul.txt", "/C:secret.txt",
                         "/lpt%C2%B9"]


@pytest.mark.parametrize("target", REFUSED_UNDER_WINDOWS)
def test_windows_rules_answer_404_without_touching_the_disk(root, target, monkeypatch):
    site = make_site(root, WINDOWS)
    touched = []
    for name in ("stat", "lstat", "open", "listdir", "scandir"):
        real = getattr(os, name)

        def spy(path, *args, _real=real, **kwargs):
            touched.append(os.fspath(path))
            return _real(path, *args, **kwargs)

        monkeypatch.setattr(os, name, spy)
    response = answer(site, target)
    monkeypatch.undo()
    assert response.status == 404
    assert SECRET not in body_of(response)
    # Only the custom 404 page is looked for: never the name asked for.
    # (The site's rule files are looked at once per instant, whatever is asked.)
    assert [path for path in touched if os.path.basename(path) not in rulefiles.NAMES] == \
        [os.path.join(site.real_root, "404.html")]


@pytest.mark.parametrize("target, status", [
    ("/con", 200), ("/GIT~1/config", 200), ("/secret.txt.", 404), ("/secret.txt::$DATA", 404)])
def test_with_spa_a_refused_name_is_a_path_that_names_no_file(root, target, status):
    """--spa: the app page for a path without an extension, as for any missing file; never
    the file the name would open."""
    response = answer(make_site(root, WINDOWS, spa=True), target)
    assert response.status == status
    body = body_of(response)
    assert SECRET not in body and b"GIT~1" not in body
    if status == 200:
        assert body == b"<p>index</p>"


@pytest.mark.skipif(facilities.detect().name == "windows", reason="names NTFS cannot hold")
@pytest.mark.parametrize("target, body", [
    ("/trail.", b"trailing dot\n"), ("/a:b.txt", b"colon\n"), ("/a%3Ab.txt", b"colon\n"),
    ("/nul.txt", b"not a device\n"), ("/GIT~1/config", b"a folder named GIT~1\n")])
@pytest.mark.parametrize("rules", [POSIX, MACOS], ids=["posix", "macos"])
def test_without_windows_rules_those_names_are_plain_files(root, target, body, rules):
    response = answer(make_site(root, rules), target)
    assert response.status == 200
    assert body_of(response) == body


@pytest.mark.parametrize("rules", list(RULE_SETS.values()), ids=list(RULE_SETS))
@pytest.mark.parametrize("target", ["/.git/config", "/.GIT/config", "/.Git/CONFIG",
                                    "/x/../.git/config", "/%2EGIT/config"])
def test_dotfiles_stay_refused_in_any_case(root, rules, target):
    response = answer(make_site(root, rules), target)
    assert response.status == 404
    assert SECRET not in body_of(response)


def test_well_known_in_another_case_is_public_only_where_names_fold(root):
    site = make_site(root, POSIX)
    assert answer(site, "/.well-known/security.txt").status == 200
    assert answer(site, "/.WELL-KNOWN/security.txt").status == 404
    folding = make_site(root, MACOS)
    assert answer(folding, "/.well-known/security.txt").status == 200
    # (This disk may keep names apart; the answer cache gives the folded path's answer.)
    assert body_of(answer(folding, "/.WELL-KNOWN/security.txt")) == b"Contact: x\n"


@pytest.mark.parametrize("rules", [MACOS, WINDOWS], ids=["macos", "windows"])
def test_spellings_in_another_case_share_one_answer_cache_entry(root, rules):
    site = make_site(root, rules)
    first = answer(site, "/index.html")
    for target in ("/INDEX.HTML", "/Index.Html", "/./INDEX.html?v=1", "/%49ndex.html"):
        again = answer(site, target)
        assert again.status == 200
        assert again.headers == first.headers
        assert body_of(again) == b"<p>index</p>"
    assert list(site._fast) == [("/index.html", None)]


def test_without_folding_each_case_is_its_own_name(root):
    if disk_folds_case(root):
        pytest.skip("this disk folds case")
    site = make_site(root, POSIX)
    assert answer(site, "/index.html").status == 200
    assert answer(site, "/INDEX.HTML").status == 404
    assert list(site._fast) == [("/index.html", None)]


@pytest.mark.parametrize("rules, key", [(POSIX, "/Index.html"), (MACOS, "/index.html")])
def test_the_memoised_head_carries_the_folded_key(root, rules, key):
    site = make_site(root, rules)
    parsed = parse_head(b"GET /Index.html HTTP/1.1\r\nHost: x\r\n\r\n")
    assert ParsedHead(parsed, site).plain_key == (key, None)
    assert ParsedHead(parsed, site).replay_key == (key, None)


def test_small_file_and_listing_caches_key_by_the_folded_path(root):
    site = make_site(root, MACOS, listing=True)
    response = answer(site, "/secret.txt")
    assert body_of(response) == SECRET
    assert list(site._small_files) == [MACOS.fold(os.path.join(site.real_root, "secret.txt"))]
    (root / "sub").mkdir()
    assert answer(site, "/sub/").status == 200
    assert list(site._listings) == [(MACOS.fold(os.path.join(site.real_root, "sub")), False,
                                     DEFAULT_ORDER)]


@pytest.mark.skipif(facilities.detect().name == "windows", reason="names NTFS cannot hold")
def test_a_listing_never_links_to_a_name_the_rules_refuse(root):
    folder = root / "names"
    folder.mkdir()
    refused = ["trail.", "a:b.txt", "nul.txt", "GIT~1"]
    for name in refused + ["plain.txt"]:
        (folder / name).write_text(name)
    posix = body_of(answer(make_site(root, POSIX), "/names/"))
    windows = body_of(answer(make_site(root, WINDOWS), "/names/"))
    assert b">plain.txt<" in posix
    assert b">plain.txt<" in windows
    for name in refused:
        assert f">{name}<".encode() in posix
        assert f">{name}<".encode() not in windows


# ---- over real sockets, both engines, as the platform the server runs as ---------------------

@pytest.fixture(scope="module")
def rules_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("rules")
    (root / "index.html").write_bytes(b"<p>index</p>")
    (root / "secret.txt").write_bytes(SECRET)
    (root / ".git").mkdir()
    (root / ".git" / "config").write_bytes(SECRET)
    (root / ".well-known").mkdir()
    (root / ".well-known" / "security.txt").write_bytes(b"Contact: x\n")
    if facilities.detect().name != "windows":
        (root / "trail.").write_bytes(b"trailing dot\n")
        (root / "a:b.txt").write_bytes(b"colon\n")
        (root / "nul.txt").write_bytes(b"not a device\n")
        (root / "Com1.tar.gz").write_bytes(b"not a device either\n")
        (root / "GIT~1").mkdir()
        (root / "GIT~1" / "config").write_bytes(b"a folder named GIT~1\n")
    return root


@pytest.fixture(scope="module", params=MODES)
def rules_server(request, rules_site):
    """A server over rules_site, in this process's environment (so as the platform it is, or
    simulates: REACTOR_HTTP_SIMULATE)."""
    server = ServerProcess(rules_site, request.param, "--quiet")
    yield server
    server.stop()


def server_rules(root) -> pathrules.PathRules:
    """The rules the server picks for `root` (it runs with this process's environment)."""
    return pathrules.for_root(os.path.realpath(root))


@pytest.mark.parametrize("target", ["/secret.txt.", "/secret.txt%20", "/secret.txt::$DATA",
                                    "/secret.txt:$DATA", "/SECRET.TXT::$DATA", "/.git/config",
                                    "/.GIT/config", "/.git./config", "/con", "/NUL", "/lpt1.txt"])
def test_socket_no_spelling_reaches_another_file_or_a_device(rules_server, target):
    response = get(rules_server, target)
    assert response.status == 404
    assert SECRET not in response.body


@pytest.mark.skipif(facilities.detect().name == "windows", reason="names NTFS cannot hold")
@pytest.mark.parametrize("target, body", [
    ("/trail.", b"trailing dot\n"), ("/a:b.txt", b"colon\n"), ("/a%3ab.txt", b"colon\n"),
    ("/nul.txt", b"not a device\n"), ("/Com1.tar.gz", b"not a device either\n"),
    ("/GIT~1/config", b"a folder named GIT~1\n")])
def test_socket_names_only_windows_refuses(rules_server, rules_site, target, body):
    """On Linux (no simulation) a name with `:`, a trailing dot or a device's name is an
    ordinary file; under Windows rules it is a 404 even though the file exists here."""
    response = get(rules_server, target)
    if server_rules(rules_site).windows_names:
        assert response.status == 404
        assert response.body != body
    else:
        assert response.status == 200
        assert response.body == body


def test_socket_well_known_in_another_case(rules_server, rules_site):
    assert get(rules_server, "/.well-known/security.txt").status == 200
    upper = get(rules_server, "/.WELL-KNOWN/security.txt")
    if server_rules(rules_site).case_insensitive:
        # After the first spelling's answer, the same answer (the disk under a simulation may
        # keep the names apart; a real case-insensitive one finds the folder either way).
        assert upper.status == 200
        assert upper.body == b"Contact: x\n"
    else:
        assert upper.status == 404


def test_socket_spellings_in_another_case_answer_alike(rules_server, rules_site):
    first = get(rules_server, "/index.html")
    assert first.status == 200
    for target in ("/INDEX.HTML", "/Index.html"):
        again = get(rules_server, target)
        if server_rules(rules_site).case_insensitive:
            assert again.status == 200
            assert again.headers["etag"] == first.headers["etag"]
            assert again.body == first.body
        else:
            assert again.status == 404
