"""Files and folders the server may not open or list answer 403; what it may reach is served.

Permissions do not bite a root process, so the servers here run in a child that really lacks
them: as the unprivileged user `nobody` when that user can run this Python, otherwise as root
without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (dropped from the capability bounding set
before exec, so the kernel checks mode bits as for any owner: mode 0 denies even root then).
Tests skip, saying why, only when neither can be arranged. A few pure unit tests check the
mapping of each permission failure to a 403 with a temp folder and a failing syscall.
"""

from __future__ import annotations

import ctypes
import gzip
import io
import os
import shutil
import subprocess
import sys
import tempfile
import types
import zipfile
from pathlib import Path

import pytest

from tests.helpers.http import get
from tests.helpers.respond import body_of, make_site, respond
from tests.helpers.servers import MODES, REPO, ServerProcess

from reactor_http import filesystem, responder

# POSIX users and file modes: the module is skipped where there are none (Windows).
pwd = pytest.importorskip("pwd", reason="POSIX users and file permissions (not on Windows)")

ROOT_INDEX = b"<p>root</p>"
# Linux capability numbers (linux/capability.h) and the prctl that drops one from the bounding set.
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2
PR_CAPBSET_DROP = 24
# Bigger than responder.SMALL_FILE_MAX (bytes), so it is opened for sendfile, not read to memory.
BIG_SIZE = 100_000
# A script worth compressing on the fly (over content_coding.MIN_BYTES, inline-sized).
LONG_SCRIPT = b"console.log('long');\n" * 200


def _drop_dac_capabilities() -> None:
    """preexec_fn: drop the capabilities that bypass file permission checks, for good."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _probe(popen_kwargs: dict, denied: Path) -> bool:
    """Can a child started with `popen_kwargs` import the server but not read `denied`?"""
    code = ("import sys, reactor_http\n"
            "try:\n    open(sys.argv[1], 'rb').close()\nexcept PermissionError:\n    sys.exit(7)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    try:
        result = subprocess.run([sys.executable, "-c", code, str(denied)], env=env, cwd="/",
                                capture_output=True, timeout=30, **popen_kwargs)
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 7


@pytest.fixture(scope="module")
def unprivileged():
    """Popen kwargs that start a server for which permissions bite; skip if none can."""
    scratch = Path(tempfile.mkdtemp(prefix="perm-probe-"))
    try:
        os.chmod(scratch, 0o755)
        denied = scratch / "denied"
        denied.write_text("x")
        os.chmod(denied, 0)
        candidates = []
        if os.geteuid() == 0:
            try:
                nobody = pwd.getpwnam("nobody")
                candidates.append(("user nobody", {"user": nobody.pw_uid, "group": nobody.pw_gid,
                                                   "extra_groups": []}))
            except KeyError:
                pass
            candidates.append(("root without DAC capabilities",
                               {"preexec_fn": _drop_dac_capabilities}))
        else:
            candidates.append(("this unprivileged user", {}))
        for name, kwargs in candidates:
            if _probe(kwargs, denied):
                return types.SimpleNamespace(name=name, kwargs=kwargs)
        pytest.skip("cannot start a child that lacks file permissions: not root with "
                    "CAP_SETPCAP, no usable unprivileged user, and permissions do not bite here")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.write_bytes(data)
    os.chmod(path, mode)


@pytest.fixture(scope="module")
def perm_site():
    """A world-searchable site (so `nobody` can reach it) with modes set per case."""
    root = Path(tempfile.mkdtemp(prefix="perm-site-"))
    os.chmod(root, 0o755)
    _write(root / "index.html", ROOT_INDEX)
    _write(root / "ok.txt", b"ok\n")
    _write(root / "secret.txt", b"SECRET small\n", 0)
    _write(root / "secret.bin", b"S" * BIG_SIZE, 0)
    _write(root / "404.html", b"<p>custom 404 SECRET</p>", 0)
    _write(root / "app.js", b"console.log('identity');\n")
    _write(root / "app.js.gz", b"GZ SECRET", 0)
    st = os.stat(root / "app.js")
    os.utime(root / "app.js.gz", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a fresh sibling
    # Large enough to be compressed on the fly, with a fresh sibling the server may not read.
    _write(root / "long.js", LONG_SCRIPT)
    _write(root / "long.js.gz", b"GZ SECRET", 0)
    st = os.stat(root / "long.js")
    os.utime(root / "long.js.gz", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    for name, mode in (("locked", 0), ("searchable", 0o111), ("searchable-index", 0o111),
                       ("listable", 0o755)):
        (root / name).mkdir()
        _write(root / name / "file.txt", f"{name} file\n".encode())
        if name == "searchable-index":
            _write(root / name / "index.html", b"<p>index in a 0111 folder</p>")
        os.chmod(root / name, mode)
    yield root
    for folder in root.iterdir():
        if folder.is_dir():
            os.chmod(folder, 0o755)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module", params=MODES)
def perm_server(request, perm_site, unprivileged):
    server = ServerProcess(perm_site, request.param, "--quiet", cwd="/",
                           popen_kwargs=unprivileged.kwargs)
    yield server
    server.stop()


@pytest.mark.parametrize("path", ["/secret.txt", "/secret.bin", "/locked/", "/locked/file.txt",
                                  "/locked/nope.txt", "/searchable/", "/locked/../secret.txt"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_what_may_not_be_opened_or_listed_is_403(perm_server, path, method):
    response = get(perm_server, path, method=method)
    assert response.status == 403, response
    assert b"SECRET" not in response.body and b"file" not in response.body


@pytest.mark.parametrize("path, body", [
    ("/searchable/file.txt", b"searchable file\n"),
    ("/searchable-index/", b"<p>index in a 0111 folder</p>"),
    ("/searchable-index/file.txt", b"searchable-index file\n"),
    ("/ok.txt", b"ok\n"), ("/", ROOT_INDEX)])
def test_what_may_be_reached_is_served(perm_server, path, body):
    response = get(perm_server, path)
    assert response.status == 200
    assert response.body == body


def test_folder_that_may_be_listed_still_lists(perm_server):
    response = get(perm_server, "/listable/")
    assert response.status == 200
    assert b'href="file.txt"' in response.body


def test_missing_file_in_a_readable_folder_is_still_404(perm_server):
    response = get(perm_server, "/searchable/nope.txt")
    assert response.status == 404
    # 404.html may not be read: the built-in page, never an error about it.
    assert b"SECRET" not in response.body and b"404" in response.body


def test_unreadable_precompressed_sibling_is_skipped(perm_server):
    response = get(perm_server, "/app.js", {"Accept-Encoding": "gzip"})
    assert response.status == 200
    assert "content-encoding" not in response.headers
    assert response.body == b"console.log('identity');\n"


def test_unreadable_sibling_is_skipped_and_the_file_compressed_on_the_fly(perm_server):
    """A .gz sibling the server may not read is skipped, as the README says: the file is then
    compressed on the fly like any other, not sent as identity."""
    for _ in range(2):  # the general route, then the answer cache
        response = get(perm_server, "/long.js", {"Accept-Encoding": "gzip"})
        assert response.status == 200
        assert response.headers.get("content-encoding") == "gzip"
        assert gzip.decompress(response.body) == LONG_SCRIPT
        assert response.headers["vary"] == "Accept-Encoding"


def test_permissions_taken_away_after_caching_are_noticed(perm_server, perm_site):
    target = perm_site / f"later-{perm_server.mode}.txt"
    folder = perm_site / f"later-{perm_server.mode}"
    _write(target, b"readable for now\n")
    folder.mkdir()
    _write(folder / "file.txt", b"x")
    try:
        assert get(perm_server, f"/{target.name}").body == b"readable for now\n"
        assert get(perm_server, f"/{folder.name}/").status == 200
        os.chmod(target, 0)
        os.chmod(folder, 0)
        assert get(perm_server, f"/{target.name}").status == 403
        assert get(perm_server, f"/{folder.name}/").status == 403
    finally:
        os.chmod(folder, 0o755)


def test_no_listing_folder_that_may_not_be_searched_is_403(make_server, perm_site, unprivileged,
                                                            mode):
    server = make_server(perm_site, mode, "--quiet", "--no-listing", cwd="/",
                         popen_kwargs=unprivileged.kwargs)
    assert get(server, "/locked/").status == 403
    assert get(server, "/searchable/").status == 404  # searchable, no index, listings off


# ---- the mapping, unit by unit ----------------------------------------------------------------

@pytest.fixture
def root(tmp_path):
    (tmp_path / "index.html").write_bytes(ROOT_INDEX)
    (tmp_path / "f.txt").write_text("f")
    (tmp_path / "big.bin").write_bytes(b"b" * BIG_SIZE)
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "x.txt").write_text("x")
    return tmp_path


def _deny(monkeypatch, function_name: str, suffix: str) -> None:
    """Make os.<function_name> raise PermissionError for paths ending in `suffix`."""
    real = getattr(os, function_name)

    def guarded(path, *args, **kwargs):
        if str(path).endswith(suffix):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)
    monkeypatch.setattr(os, function_name, guarded)


@pytest.mark.parametrize("target", ["/f.txt", "/big.bin"])
def test_open_refused_is_403(root, monkeypatch, target):
    site = make_site(root)
    _deny(monkeypatch, "open", target)
    response = respond(site, target)
    assert response.status == 403 and response.fd is None


def test_listdir_refused_is_403_not_an_empty_listing(root, monkeypatch):
    site = make_site(root)
    _deny(monkeypatch, "listdir", "/list")
    assert respond(site, "/list/").status == 403
    assert site._listings == {}  # nothing cached: a later chmod back is seen at once


def test_stat_refused_below_a_folder_is_403(root, monkeypatch):
    site = make_site(root)
    _deny(monkeypatch, "stat", "/list/x.txt")
    assert respond(site, "/list/x.txt").status == 403
    _deny(monkeypatch, "stat", "/list/index.html")
    assert respond(site, "/list/").status == 403


def test_open_regular_raises_forbidden_only_for_permissions(root, monkeypatch):
    assert filesystem.open_regular(str(root / "gone.txt")) is None
    _deny(monkeypatch, "open", "f.txt")
    with pytest.raises(filesystem.Forbidden):
        filesystem.open_regular(str(root / "f.txt"))


def test_listing_of_a_vanished_folder_is_not_found(root):
    with pytest.raises(filesystem.NotFound):
        filesystem.listing_entries(str(root), str(root / "gone"), allow_dotfiles=False,
                                   follow_symlinks=False)


def test_spa_index_that_may_not_be_opened_is_403(root, monkeypatch):
    site = make_site(root, spa=True)
    _deny(monkeypatch, "open", "/index.html")
    response = respond(site, "/some/route")
    assert response.status == 403
    assert body_of(response) == responder.error_page(403)


@pytest.mark.parametrize("log_dir", [False, True], ids=["error-log", "connection-log"])
@pytest.mark.parametrize("mode", MODES)
def test_an_archive_leaves_out_what_may_not_be_read_and_names_it(mode, log_dir, unprivileged):
    """--archives: a file that may not be read is not in the archive, nor is a folder that may
    not be listed filled; each is named in the connection log (--log-dir), else the error log."""
    site = Path(tempfile.mkdtemp(prefix="perm-archive-"))
    try:
        os.chmod(site, 0o755)
        _write(site / "ok.txt", b"ok\n")
        _write(site / "secret.txt", b"SECRET\n", 0)
        (site / "listable").mkdir(mode=0o755)
        _write(site / "listable" / "file.txt", b"listable\n")
        (site / "locked").mkdir()
        _write(site / "locked" / "file.txt", b"SECRET locked\n")
        os.chmod(site / "locked", 0)
        logs = Path(tempfile.mkdtemp(prefix="perm-archive-logs-"))
        os.chmod(logs, 0o777)
        options = ["--quiet", "--archives", *(["--log-dir", str(logs)] if log_dir else [])]
        server = ServerProcess(site, mode, *options, cwd="/", popen_kwargs=unprivileged.kwargs)
        try:
            with server.connect() as sock:
                sock.sendall(b"GET /?download=zip HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
        finally:
            _, _, err = server.stop()
        top = site.name
        with zipfile.ZipFile(io.BytesIO(data.partition(b"\r\n\r\n")[2])) as archive:
            assert sorted(archive.namelist()) == sorted(
                [f"{top}/", f"{top}/ok.txt", f"{top}/listable/", f"{top}/listable/file.txt",
                 f"{top}/locked/"])
            assert archive.read(f"{top}/ok.txt") == b"ok\n"
        if log_dir:
            err = "".join(path.read_text() for path in logs.iterdir())
        assert f"'{top}/secret.txt' (may not be read)" in err, err
        assert f"'{top}/locked' (folder may not be listed)" in err, err
        shutil.rmtree(logs, ignore_errors=True)
    finally:
        os.chmod(site / "locked", 0o755)
        shutil.rmtree(site, ignore_errors=True)
