"""--archives: folders as zip, tar and tar.gz, over real sockets in both engines.

What is checked: the archive holds exactly what the listings show (read back with zipfile and
tarfile), the chunked framing is valid (h11 parses every response, and the connection serves
the next request), HTTP/1.0 gets a close-delimited body, HEAD the head only, the name in
Content-Disposition, the bounds (413), that it is off by default, and that a client that stops
reading neither stalls the others nor keeps its producer (and its files) after the send timeout.
Files that may not be read are in tests/test_permissions.py (they need a server for which
permissions bite).
"""

from __future__ import annotations

import calendar
import io
import json
import os
import re
import socket
import ssl
import tarfile
import threading
import zipfile
from pathlib import Path

import h11
import pytest

from tests.helpers.http import get
from tests.helpers.polling import wait_until
from tests.helpers.servers import MODES, ServerProcess

from reactor_http import archive, filesystem, messages, pathrules

BIG = os.urandom(300_000)
FILES = {
    "a.txt": b"hello a\n",
    "empty.txt": b"",
    "sub/big.bin": BIG,
    "sub/deeper/c.txt": b"c\n",
    "Ünïcode/f.txt": b"f\n",
}
FOLDERS = {"sub", "sub/deeper", "Ünïcode", "nothing-here"}
# Send timeout of the servers that meet a client that stops reading (seconds).
SEND_TIMEOUT = 2.0


def build_folder(root: Path, outside: Path) -> None:
    """FILES and FOLDERS, plus what the listing leaves out: a dotfile, a symlink out of the root,
    and a symlink loop; and one symlink inside the root, which it shows."""
    for name, data in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "nothing-here").mkdir()
    (root / ".secret").write_bytes(b"dotfile\n")
    (root / "sub" / ".git").mkdir()
    (root / "sub" / ".git" / "config").write_bytes(b"dotfolder\n")
    outside.write_bytes(b"outside the root\n")
    (root / "leak.txt").symlink_to(outside)
    (root / "sub" / "loop").symlink_to(root)
    (root / "inside-link.txt").symlink_to(root / "a.txt")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("archives")
    root = base / "photos"
    root.mkdir()
    build_folder(root, base / "outside.txt")
    return root


@pytest.fixture(scope="module", params=MODES)
def server(request, folder):
    srv = ServerProcess(folder, request.param, "--quiet", "--archives")
    yield srv
    srv.stop()


def expected_contents(top: str) -> tuple[dict, set]:
    """The files (name -> bytes) and folders an archive of the whole folder holds."""
    files = {f"{top}/{name}": data for name, data in FILES.items()}
    files[f"{top}/inside-link.txt"] = FILES["a.txt"]
    folders = {top} | {f"{top}/{name}" for name in FOLDERS}
    return files, folders


def fetch(server, target: str, method: str = "GET", sock: socket.socket | None = None,
          conn: h11.Connection | None = None):
    """One request parsed by h11 (the oracle of the framing): (h11 Response, body bytes)."""
    own = sock is None
    if own:
        sock = server.connect(timeout=30)
        conn = h11.Connection(h11.CLIENT)
    assert sock is not None and conn is not None
    try:
        sock.sendall(conn.send(h11.Request(method=method, target=target,
                                           headers=[("Host", "127.0.0.1")])))
        sock.sendall(conn.send(h11.EndOfMessage()))
        response, body = None, bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(1 << 20))
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return response, bytes(body)
            else:
                raise AssertionError(f"unexpected {event!r}")
    finally:
        if own:
            sock.close()


def fields(response) -> dict:
    return {name.decode().lower(): value.decode("latin-1") for name, value in response.headers}


def read_back(kind: str, data: bytes) -> tuple[dict, set]:
    """The files (name -> bytes) and folders an archive holds, as the stdlib reads it."""
    files, folders = {}, set()
    if kind == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            assert archive.testzip() is None
            for info in archive.infolist():
                if info.is_dir():
                    folders.add(info.filename.rstrip("/"))
                else:
                    files[info.filename] = archive.read(info)
        return files, folders
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz" if kind == "tar_gz" else "r:") \
            as archive:
        for member in archive.getmembers():
            if member.isdir():
                folders.add(member.name)
            else:
                extracted = archive.extractfile(member)
                assert extracted is not None
                files[member.name] = extracted.read()
    return files, folders


TYPES = {"zip": "application/zip", "tar": "application/x-tar", "tar_gz": "application/gzip"}
SUFFIXES = {"zip": ".zip", "tar": ".tar", "tar_gz": ".tar.gz"}


@pytest.mark.parametrize("kind", ["zip", "tar", "tar_gz"])
def test_an_archive_holds_what_the_listings_show(server, kind):
    response, body = fetch(server, f"/?download={kind}")
    assert response.status_code == 200
    head = fields(response)
    assert head["content-type"] == TYPES[kind]
    assert head["transfer-encoding"] == "chunked"
    assert head["content-disposition"] == f'attachment; filename="photos{SUFFIXES[kind]}"'
    assert head["cache-control"] == "no-store"
    for absent in ("content-length", "etag", "last-modified", "accept-ranges"):
        assert absent not in head
    # No dotfile or dotfolder, no symlink out of the root, the loop walked once (not at all
    # below sub/: the root was walked already), the symlink inside kept.
    assert read_back(kind, body) == expected_contents("photos")


def test_a_subfolder_downloads_under_its_own_name_and_a_loop_is_walked_once(server):
    response, body = fetch(server, "/sub/?download=zip")
    assert fields(response)["content-disposition"] == 'attachment; filename="sub.zip"'
    files, folders = read_back("zip", body)
    # sub/loop leads to the root, inside it: walked, but sub/loop/sub (sub again) is not.
    assert files == {"sub/big.bin": BIG, "sub/deeper/c.txt": b"c\n",
                     "sub/loop/a.txt": FILES["a.txt"], "sub/loop/empty.txt": b"",
                     "sub/loop/inside-link.txt": FILES["a.txt"], "sub/loop/Ünïcode/f.txt": b"f\n"}
    assert folders == {"sub", "sub/deeper", "sub/loop", "sub/loop/Ünïcode",
                       "sub/loop/nothing-here"}


def test_a_name_that_is_not_ascii_is_encoded(server):
    response, body = fetch(server, "/%C3%9Cn%C3%AFcode/?download=tar")
    assert fields(response)["content-disposition"] == (
        "attachment; filename=\"_n_code.tar\"; filename*=UTF-8''%C3%9Cn%C3%AFcode.tar")
    assert read_back("tar", body)[0] == {"Ünïcode/f.txt": b"f\n"}


def test_a_percent_sign_stays_out_of_the_ascii_name(make_server, tmp_path, mode):
    # RFC 6266 appendix D: some browsers percent-decode `filename` ("100%41" saved as "100A"),
    # so a name with `%` gets `_` there and the exact name in `filename*` (REDbot warns).
    (tmp_path / "100%41").mkdir()
    (tmp_path / "100%41" / "f.txt").write_bytes(b"f\n")
    srv = make_server(tmp_path, mode, "--quiet", "--archives")
    response, _ = fetch(srv, "/100%2541/?download=zip", method="HEAD")
    assert response.status_code == 200
    assert fields(response)["content-disposition"] == (
        "attachment; filename=\"100_41.zip\"; filename*=UTF-8''100%2541.zip")


def test_the_connection_serves_on_after_a_chunked_archive(server):
    conn = h11.Connection(h11.CLIENT)
    with server.connect(timeout=30) as sock:
        for target in ("/?download=tar_gz", "/a.txt", "/sub/?download=zip", "/a.txt"):
            response, body = fetch(server, target, sock=sock, conn=conn)
            assert response.status_code == 200
            if target == "/a.txt":
                assert body == FILES["a.txt"]
            conn.start_next_cycle()


def test_head_gets_the_head_only(server):
    with server.connect(timeout=30) as sock:
        sock.sendall(b"HEAD /?download=zip HTTP/1.1\r\nHost: x\r\n\r\nGET /a.txt HTTP/1.1\r\n"
                     b"Host: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"Content-Type: application/zip" in head
    assert b"Content-Length" not in head
    assert rest.startswith(b"HTTP/1.1 200 ") and rest.endswith(FILES["a.txt"])


def test_http_1_0_gets_a_body_ended_by_the_close(server):
    with server.connect(timeout=30) as sock:
        sock.sendall(b"GET /sub/deeper/?download=zip HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(1 << 20):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    assert "Connection: close" in lines
    assert not any(line.lower().startswith(("transfer-encoding", "content-length"))
                   for line in lines)
    assert read_back("zip", body)[0] == {"deeper/c.txt": b"c\n"}


@pytest.mark.parametrize("query", ["download=rar", "download=", "downloads=zip", "x=1"])
def test_an_unknown_download_value_answers_the_listing(server, query):
    response = get(server, f"/sub/?{query}")
    assert response.status == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"


def test_the_listing_links_to_the_archives(server):
    body = get(server, "/sub/").body
    for kind in ("zip", "tar", "tar_gz"):
        assert f'href="?download={kind}"'.encode() in body


def test_archives_are_off_by_default(make_server, folder, mode):
    plain = make_server(folder, mode, "--quiet")
    response = get(plain, "/sub/?download=zip")
    assert response.status == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert b"download" not in response.body


@pytest.mark.parametrize("option, value", [("--archive-max-bytes", "300000"),
                                           ("--archive-max-files", "5")])
def test_a_folder_over_a_bound_is_refused_before_anything_is_sent(make_server, folder, mode,
                                                                  option, value):
    capped = make_server(folder, mode, "--quiet", "--archives", option, value)
    for method in ("GET", "HEAD"):
        response = get(capped, "/?download=zip", method=method)
        assert response.status == 413, response
    assert get(capped, "/sub/deeper/?download=zip").status == 200  # a smaller folder still goes


def test_an_index_html_wins_over_the_archive(make_server, tmp_path, mode):
    (tmp_path / "index.html").write_bytes(b"<p>home</p>")
    srv = make_server(tmp_path, mode, "--quiet", "--archives")
    for _ in range(2):  # the second could come from the answer cache: it must not
        response = get(srv, "/?download=zip")
        assert response.status == 200 and response.body == b"<p>home</p>"


def open_into(pid: int, root: Path) -> list[str]:
    """The regular files under `root` that process `pid` holds open (not folders: a walk's
    os.scandir holds one open for a moment, which is not a producer's file)."""
    held = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith(str(root)) and os.path.isfile(target):
            held.append(target)
    return held


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc")
def test_a_client_that_stops_reading_stalls_nobody_and_is_dropped(make_server, tmp_path, mode):
    root = tmp_path / "big"
    root.mkdir()
    for number in range(8):  # 128 MiB of sparse files: far more than any socket buffers
        with open(root / f"part{number}.bin", "wb") as file:
            file.truncate(16 << 20)
    (root / "small.txt").write_bytes(b"small\n")
    srv = make_server(root, mode, "--quiet", "--archives", "--send-timeout", str(SEND_TIMEOUT))
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", srv.port))
    try:
        stalled.sendall(b"GET /?download=zip HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_until(lambda: open_into(srv.pid, root)), "the archive never started"
        for _ in range(20):  # the others are served meanwhile
            assert get(srv, "/small.txt").body == b"small\n"
        # The send timeout drops the client; its producer stops and closes its files.
        assert wait_until(lambda: not open_into(srv.pid, root), timeout=SEND_TIMEOUT + 10), \
            open_into(srv.pid, root)
        assert get(srv, "/?download=tar").status == 200  # its slot came back
    finally:
        stalled.close()


def stalled_download(port: int, target: str = "/?download=zip") -> socket.socket:
    """A client that asks for an archive and reads nothing (a tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


def sparse_folder(root: Path, files: int, size: int) -> None:
    """`files` sparse files of `size` bytes, and small.txt."""
    root.mkdir()
    for number in range(files):
        with open(root / f"part{number}.bin", "wb") as file:
            file.truncate(size)
    (root / "small.txt").write_bytes(b"small\n")


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc")
def test_one_archive_more_than_the_bound_gets_503(make_server, tmp_path, mode):
    root = tmp_path / "big"
    sparse_folder(root, 2, 64 << 20)
    srv = make_server(root, mode, "--quiet", "--archives", "--send-timeout", "30")
    stalled = [stalled_download(srv.port) for _ in range(archive.ARCHIVES_AT_ONCE)]
    try:
        # Each producer holds one file of the folder open while the socket is full.
        assert wait_until(lambda: len(open_into(srv.pid, root)) >= archive.ARCHIVES_AT_ONCE)
        response = get(srv, "/?download=tar")
        assert response.status == 503
        assert response.headers["retry-after"] == str(archive.RETRY_AFTER)
        assert get(srv, "/small.txt").status == 200
    finally:
        for sock in stalled:
            sock.close()
    # Closed clients give their slots back (their producers stop at their next write).
    assert wait_until(lambda: get(srv, "/?download=tar", method="HEAD").status == 200)


def test_an_archive_over_tls(make_server, folder, mode, tls_certificate):
    cert, key = tls_certificate
    srv = make_server(folder, mode, "--quiet", "--archives", "--certfile", str(cert),
                      "--keyfile", str(key), "--tls-port", "0")
    tls_port = int(re.search(r"and https://127\.0\.0\.1:(\d+)/", srv.banner).group(1))
    context = ssl.create_default_context(cafile=str(cert))
    conn = h11.Connection(h11.CLIENT)
    with socket.create_connection(("127.0.0.1", tls_port), timeout=30) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        response, body = fetch(srv, "/?download=tar_gz", sock=sock, conn=conn)
    assert response.status_code == 200
    assert read_back("tar_gz", body) == expected_contents("photos")


def test_a_producer_never_runs_more_than_the_feed_ahead():
    feed = archive.Feed()
    piece = b"x" * archive.CHUNK
    stopped = []

    def produce():
        try:
            while True:
                feed.put(piece)
        except archive.Cancelled:
            stopped.append(True)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    assert wait_until(lambda: feed._size >= archive.FEED_MAX)
    assert producer.is_alive() and feed._size < archive.FEED_MAX + len(piece)
    assert feed.take() == piece  # room for one more piece, no more
    assert wait_until(lambda: feed._size >= archive.FEED_MAX)
    assert feed._size < archive.FEED_MAX + len(piece)
    feed.cancel()
    producer.join(10)
    assert stopped == [True]


def test_a_waiting_loop_is_woken_once_by_the_next_piece():
    feed = archive.Feed()
    woken = []
    assert feed.wait(lambda: woken.append(1))  # nothing yet: a wake-up is armed
    feed.put(b"a")
    feed.put(b"b")
    assert woken == [1]
    assert not feed.wait(lambda: woken.append(2))  # something waits: no wake-up armed
    assert feed.take() == b"a" and feed.take() == b"b" and feed.take() is None
    assert feed.wait(lambda: woken.append(3))
    feed.put(b"last")
    feed.end()
    assert woken == [1, 3]
    assert feed.take() == b"last" and feed.take() == b""  # the last piece, then the end


@pytest.mark.parametrize("allow_dotfiles", [False, True])
@pytest.mark.parametrize("follow_symlinks", [False, True])
@pytest.mark.parametrize("rules", [pathrules.POSIX, pathrules.WINDOWS], ids=["posix", "windows"])
def test_the_walk_lists_a_folder_as_the_listing_does(tmp_path, allow_dotfiles, follow_symlinks,
                                                     rules):
    # The walk's cheaper listing (a real path only for a symlink) against listing_entries, on
    # a folder with every kind of entry either may leave out.
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "file.txt").write_bytes(b"out")
    for name in ("b.txt", "A.txt", "a.txt", ".hidden", "Ünï.txt", "con", "trail.", "x"):
        path = root / "folder" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"1")
    folder = root / "folder"
    for name in ("sub", ".git", "Zeta"):
        (folder / name).mkdir()
    (folder / "out-file").symlink_to(outside / "file.txt")
    (folder / "out-dir").symlink_to(outside / "dir")
    (folder / "in-file").symlink_to(folder / "a.txt")
    (folder / "in-dir").symlink_to(folder / "sub")
    (folder / "up").symlink_to(root)
    (folder / "dangling").symlink_to(tmp_path / "nothing")
    os.mkfifo(folder / "fifo")
    options = dict(allow_dotfiles=allow_dotfiles, follow_symlinks=follow_symlinks, rules=rules)
    real_root = os.path.realpath(root)
    listed = filesystem.listing_entries(real_root, str(folder), **options)
    walked = archive.folder_entries(real_root, str(folder), **options)
    # (the listing's order is listing.py's; the walk's own is folders first, then by name)
    assert sorted((name, is_dir, st.st_ino) for name, is_dir, st in listed) == \
        sorted((name, is_dir, st.st_ino) for name, is_dir, st, _, _ in walked)
    assert len(listed) >= 8  # the comparison is not between two empty lists


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_a_name_that_is_not_utf8(tmp_path, kind):
    # Linux names are bytes: one that is not UTF-8 no request can name, so the listing does
    # not show it (filesystem.nameable) and no archive holds it either (zip could not).
    root = tmp_path / "top"
    root.mkdir()
    (root / "ok.txt").write_bytes(b"ok")
    try:
        fd = os.open(os.path.join(os.fsencode(root), b"bad\xff.txt"), os.O_CREAT | os.O_WRONLY)
    except OSError:
        pytest.skip("this filesystem refuses names that are not UTF-8")
    os.close(fd)
    real = os.path.realpath(root)
    entries = archive.walk(real, real, "top", allow_dotfiles=False, follow_symlinks=False,
                           rules=pathrules.POSIX, max_bytes=1 << 20, max_entries=10)
    body = messages.ProducedBody(kind, entries, False, "GET /top/")
    out, lines = [], []
    archive.produce(body, out.append, lines.append)
    files = read_back(kind, b"".join(out))[0]
    assert files == {"top/ok.txt": b"ok"} and not lines


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_a_date_zip_cannot_write_is_clamped_to_its_range(tmp_path, kind):
    # zip's MS-DOS dates run from 1980 to 2107: a file dated 2150 (a bad clock, an archive
    # extracted with its dates) made every zip of its folder stop before its first byte.
    root = tmp_path / "top"
    root.mkdir()
    for name, year in (("old.txt", 1970), ("future.txt", 2150), ("now.txt", 2026)):
        (root / name).write_bytes(name.encode())
        stamp = calendar.timegm((year, 6, 1, 0, 0, 0))
        os.utime(root / name, (stamp, stamp))
    real = os.path.realpath(root)
    entries = archive.walk(real, real, "top", allow_dotfiles=False, follow_symlinks=False,
                           rules=pathrules.POSIX, max_bytes=1 << 20, max_entries=10)
    out, lines = [], []
    archive.produce(messages.ProducedBody(kind, entries, False, "GET /top/"), out.append,
                    lines.append)
    files = read_back(kind, b"".join(out))[0]
    assert files == {f"top/{name}": name.encode()
                     for name in ("old.txt", "future.txt", "now.txt")} and not lines
    if kind == "zip":
        with zipfile.ZipFile(io.BytesIO(b"".join(out))) as archive_read:
            years = {info.filename: info.date_time[0] for info in archive_read.infolist()}
        assert (years["top/old.txt"], years["top/future.txt"]) == (1980, 2107)
        assert 2025 <= years["top/now.txt"] <= 2027  # local time: a day either side


def test_a_file_past_the_zip64_limit_gets_zip64(tmp_path, monkeypatch):
    # Past 4 GiB a zip member needs ZIP64, decided before its first byte from the walk's size
    # (the stream cannot go back). The limit is lowered here, so a 5,000-byte file is past it.
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 1000)
    root = tmp_path / "top"
    root.mkdir()
    data = os.urandom(5000)
    (root / "big.bin").write_bytes(data)
    real = os.path.realpath(root)
    entries = archive.walk(real, real, "top", allow_dotfiles=False, follow_symlinks=False,
                           rules=pathrules.POSIX, max_bytes=1 << 20, max_entries=10)
    out: list = []
    archive.produce(messages.ProducedBody("zip", entries, True, "GET /top/"), out.append,
                    lambda text: None)
    framed = b"".join(out)
    body, rest = b"", framed
    while True:  # undo the chunked framing (RFC 9112 section 7.1)
        size, _, rest = rest.partition(b"\r\n")
        if int(size, 16) == 0:
            break
        body, rest = body + rest[:int(size, 16)], rest[int(size, 16) + 2:]
    assert rest == b"\r\n"
    with zipfile.ZipFile(io.BytesIO(body)) as archive_read:
        info = archive_read.getinfo("top/big.bin")
        assert archive_read.read(info) == data
        assert b"\x01\x00" in info.extra[:2]  # the ZIP64 extra field (header id 0x0001)


def test_after_a_failed_send_the_archive_writes_nothing_more(tmp_path):
    # A send that fails (a client gone, the send timeout) ends the archive: what zipfile writes
    # as it unwinds (the central directory of every member so far, here several pieces) is not
    # sent, so the threaded engine does not wait out a send timeout per piece.
    root = tmp_path / "top"
    root.mkdir()
    for number in range(2000):
        (root / f"{number:04d}-a-rather-long-name-for-a-file.txt").write_bytes(b"x" * 100)
    real = os.path.realpath(root)
    entries = archive.walk(real, real, "top", allow_dotfiles=False, follow_symlinks=False,
                           rules=pathrules.POSIX, max_bytes=1 << 30, max_entries=5000)
    calls = []

    def emit(data: bytes) -> None:
        calls.append(len(data))
        if len(calls) == 5:  # most members are out: their directory is over two pieces
            raise TimeoutError("send timed out")

    with pytest.raises(TimeoutError):
        archive.produce(messages.ProducedBody("zip", entries, True, "GET /top/"), emit,
                        lambda text: None)
    assert len(calls) == 5


def test_the_root_archive_leaves_out_the_site_rule_files(tmp_path, mode):
    # What the listing does not show is not in the archive: the root's _redirects and
    # _headers are the server's own (404), a sub-folder's are ordinary files.
    root = tmp_path / "site"
    for name, data in {"a.txt": b"a", "_redirects": b"/x /a.txt\n",
                       "_headers": b"/*\n  X-A: 1\n", "sub/_headers": b"plain"}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    srv = ServerProcess(root, mode, "--quiet", "--archives")
    try:
        response, body = fetch(srv, "/?download=zip")
        assert response.status_code == 200
        files, _ = read_back("zip", body)
        assert set(files) == {"site/a.txt", "site/sub/_headers"}
    finally:
        srv.stop()


@pytest.mark.parametrize("cap, method, walks", [
    (1 << 30, "HEAD", 1),   # a HEAD repeated within a second answers from the first walk
    (10, "GET", 1),         # so does a folder found too large (413)
    (1 << 30, "GET", 3),    # a download that goes ahead walks afresh: it holds what it saw
])
def test_a_walk_is_not_repeated_for_a_head_or_a_refusal(tmp_path, monkeypatch, cap, method,
                                                         walks):
    from reactor_http.config import Config
    from reactor_http.parser import parse_head
    from reactor_http.responder import respond
    from reactor_http.website import Site
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.txt").write_bytes(b"x" * 100)
    site = Site(Config(root=str(tmp_path), archives=True, archive_max_bytes=cap).validate())
    real_walk, calls = archive.walk, []

    def counted(*args, **kwargs):
        calls.append(args)
        return real_walk(*args, **kwargs)

    monkeypatch.setattr(archive, "walk", counted)
    head = f"{method} /d/?download=zip HTTP/1.1\r\nHost: t\r\n\r\n".encode()
    statuses = []
    for step in range(3):
        response = respond(parse_head(head)[0], site, 100.0 + step * 0.3)
        statuses.append(response.status)
        for segment in response.segments:  # a download's producer is never started here
            assert not isinstance(segment, bytes) or segment
    assert len(calls) == walks
    assert statuses == [413 if cap == 10 else 200] * 3
    later = respond(parse_head(head)[0], site, 102.0)  # past the second: walked again
    assert later.status == statuses[0] and len(calls) == walks + 1


@pytest.mark.parametrize("mode", MODES)
def test_status_counts_an_archives_body(make_server, folder, mode):
    # Regression: --status counted a produced body as 0 bytes (its plan has no length).
    srv = make_server(folder, mode, "--quiet", "--archives", "--status", "/status")

    def status() -> dict:
        response = get(srv, "/status")
        assert response.status == 200, response
        return {"body": len(response.body), **json.loads(response.body)}

    before = status()
    response, body = fetch(srv, "/?download=tar")
    assert response.status_code == 200 and len(body) > 10_000
    # Read until the archive and every earlier status response are counted (the threaded
    # engine counts a response after its last byte, so the client may ask again first).
    reads = [before]

    def all_counted() -> bool:
        reads.append(status())
        return reads[-1]["requests_total"] == before["requests_total"] + len(reads)

    assert wait_until(all_counted)
    statuses = sum(read["body"] for read in reads[:-1])
    # The chunked framing is part of the message body as sent (as the access log counts it).
    assert reads[-1]["sent_body_bytes_total"] - before["sent_body_bytes_total"] - statuses \
        >= len(body)


@pytest.mark.parametrize(("fields", "status"), [
    ({"If-None-Match": "*"}, 304),  # the archive exists (RFC 9110 section 13.1.2)
    ({"If-None-Match": '"abc"'}, 200),  # it has no entity tag, so no tag matches
    ({"If-Match": '"abc"'}, 412),  # section 13.1.1: a tag that cannot match
    ({"If-Match": "*"}, 200),
    ({"If-Modified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"}, 200),  # no date to compare
])
def test_an_archives_preconditions(server, fields, status):
    response = get(server, "/?download=zip", fields)
    assert response.status == status, response
    if status == 304:
        assert response.headers["cache-control"] == "no-store" and not response.body
