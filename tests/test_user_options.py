"""What users add to answers: --header, --mime, --auth (HTTP Basic) and JSON directory listings.

Pure checks of the parsing and the decisions (extras.py, listing.render_json,
responder.wants_json), then each option over real sockets in both engines, errors included.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys

import pytest

from tests.helpers.http import get, read_response
from tests.helpers.servers import REPO, run_cli, server_env
from reactor_http import website as site_module
from reactor_http import cli, extras, filesystem, listing, responder
from reactor_http.config import Config
from reactor_http.protocol import HttpConnection

SECURITY_HEADERS = ("X-Frame-Options: DENY", "Content-Security-Policy: default-src 'self'")


def basic(user: str, password: str) -> str:
    """An Authorization value for Basic credentials, UTF-8 encoded (RFC 7617)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def root(tmp_path):
    """A small site: files of known sizes and types, a folder without index, a dotfile."""
    site = tmp_path / "www"
    site.mkdir()
    (site / "index.html").write_text("<p>home</p>\n")
    (site / "notes.md").write_text("# notes\n")
    (site / "data.custom").write_bytes(b"\x00\x01")
    folder = site / "files"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"12345")
    (folder / "Zed").mkdir()
    (folder / ".secret").write_text("hidden")
    os.utime(folder / "a.txt", (1_700_000_000, 1_700_000_000))
    return site


# ---- --header --------------------------------------------------------------------------------

def test_header_parsing_accepts_fields_and_trims_the_value():
    assert extras.parse_header("X-Frame-Options:   DENY ") == ("X-Frame-Options", "DENY")
    assert extras.parse_header("Link: </a.css>; rel=preload") == ("Link", "</a.css>; rel=preload")


@pytest.mark.parametrize("text", [
    "NoColon", "Bad Name: x", "Bad\x00Name: x", ": x", "X-A: one\r\nX-B: two", "X-A: a\nb",
    "X-A: a\x00b", "Content-Length: 5", "transfer-encoding: chunked", "Connection: close",
    "Date: today", "Keep-Alive: timeout=9", "Content-Type: text/plain", "ETag: \"x\""])
def test_header_parsing_refuses_what_cannot_or_may_not_be_sent(text):
    with pytest.raises(ValueError, match="--header"):
        extras.parse_header(text)


def test_header_server_replaces_ours_and_others_are_added_in_order():
    server, extra = extras.header_fields(["Server: edge", "X-A: 1", "X-B: 2"])
    assert server == b"Server: edge\r\n"
    assert extra == b"X-A: 1\r\nX-B: 2\r\n"
    with pytest.raises(ValueError, match="once"):
        extras.header_fields(["Server: a", "Server: b"])


def test_no_header_option_keeps_the_server_field_and_adds_nothing():
    server, extra = extras.header_fields(())
    assert server.startswith(b"Server: reactor_http/") and extra == b""


def extra_fields_of(response) -> dict:
    return {name: value for name, value in response.header_list}


def test_header_is_on_every_response_errors_included(make_server, root, mode):
    server = make_server(root, mode, "--quiet", *(f"--header={h}" for h in SECURITY_HEADERS),
                         "--header", "Server: edge", "--max-body-bytes", "10",
                         "--header-timeout", "0.5")
    expected = {"X-Frame-Options": "DENY", "Content-Security-Policy": "default-src 'self'"}

    def check(response):
        fields = extra_fields_of(response)
        for name, value in expected.items():
            assert fields.get(name) == value, (response.status, response.header_list)
        assert fields["Server"] == "edge"
        assert [n for n, _ in response.header_list].count("Server") == 1

    ok = get(server, "/index.html")
    assert ok.status == 200
    check(ok)
    # Twice more: the second answer comes from the cached wire (a keep-alive hit).
    with server.connect() as sock:
        buffer = bytearray()
        for _ in range(3):
            sock.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
            check(read_response(sock, buffer))
    check(get(server, "/index.html", {"If-None-Match": ok.headers["etag"]}))  # 304
    check(get(server, "/missing"))                                           # 404
    check(get(server, "/", method="POST"))                                   # 405
    check(get(server, "/..%2f..%2fetc/passwd"))                              # 400
    with server.connect() as sock:                                            # 413
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n")
        response = read_response(sock, bytearray())
        assert response.status == 413
        check(response)
    with server.connect() as sock:                                            # 408
        sock.sendall(b"GET / HTTP/1.1\r\n")
        response = read_response(sock, bytearray())
        assert response.status == 408
        check(response)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_header_is_on_the_400_for_plain_http_on_the_https_port(make_server, root, mode,
                                                                 tls_certificate):
    cert, key = tls_certificate
    server = make_server(root, mode, "--quiet", "--certfile", str(cert), "--keyfile", str(key),
                         "--header", "X-Frame-Options: DENY")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = read_response(sock, bytearray())
    assert response.status == 400 and response.headers["x-frame-options"] == "DENY"
    context = ssl.create_default_context(cafile=str(cert))
    with context.wrap_socket(socket.create_connection(("127.0.0.1", server.port), timeout=10),
                             server_hostname="localhost") as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_response(tls, bytearray()).headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("value, said", [
    ("NoColon", "Name: value"), ("Bad Name: x", "not a token"), ("Content-Length: 1", "itself"),
    ("X-A: a\rb", "CR, LF or NUL")])
def test_malformed_header_is_a_one_line_start_up_error(root, value, said):
    result = run_cli("--root", str(root), "--port", "0", "--header", value)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reactor-http: error: --header"), lines
    assert said in lines[0]


def test_header_access_control_allow_origin_conflicts_with_cors(root):
    Config(root=str(root), headers=("Access-Control-Allow-Origin: https://a.example",)).validate()
    with pytest.raises(ValueError, match="--cors"):
        Config(root=str(root), cors=True,
               headers=("access-control-allow-origin: https://a.example",)).validate()


# ---- --mime ----------------------------------------------------------------------------------

def test_mime_parsing():
    assert extras.parse_mime(".MD=text/Markdown") == (".md", "text/markdown")
    assert extras.parse_mime("md=text/markdown") == (".md", "text/markdown")
    assert extras.mime_table([".a=text/x-a", ".a=text/x-b"]) == {".a": "text/x-b"}


@pytest.mark.parametrize("text", ["md", ".md=", ".md=text", ".md=te xt/plain", "=text/plain",
                                  ".tar.gz=application/gzip", ".a/b=text/plain",
                                  ".md=text/markdown; charset=latin1"])
def test_mime_parsing_refuses_malformed_values(text):
    with pytest.raises(ValueError, match="--mime"):
        extras.parse_mime(text)


def test_mime_overrides_come_first_and_text_gets_a_charset():
    overrides = {".md": "text/x-markdown", ".js": "application/javascript",
                 ".geo": "application/json", ".custom": "application/x-custom"}
    assert filesystem.content_type("/a/b.MD", overrides) == "text/x-markdown; charset=utf-8"
    assert filesystem.content_type("/a/b.geo", overrides) == "application/json; charset=utf-8"
    assert filesystem.content_type("/a/b.custom", overrides) == "application/x-custom"
    assert filesystem.content_type("/a/b.js", overrides) == "application/javascript"
    assert filesystem.content_type("/a/b.css", overrides) == "text/css; charset=utf-8"
    assert filesystem.content_type("/a/b.js") == "text/javascript; charset=utf-8"


def test_mime_over_sockets(make_server, root, mode):
    server = make_server(root, mode, "--quiet", "--mime", ".md=text/x-markdown",
                         "--mime", "custom=application/x-custom")
    assert get(server, "/notes.md").headers["content-type"] == "text/x-markdown; charset=utf-8"
    assert get(server, "/data.custom").headers["content-type"] == "application/x-custom"
    assert get(server, "/index.html").headers["content-type"] == "text/html; charset=utf-8"


def test_malformed_mime_is_a_one_line_start_up_error(root):
    result = run_cli("--root", str(root), "--port", "0", "--mime", ".md=markdown")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reactor-http: error: --mime"), lines


# ---- --auth ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value, allowed", [
    (basic("ann", "s3cret:with:colons"), True),
    ("basic " + basic("ann", "s3cret:with:colons")[6:], True),  # the scheme is case-insensitive
    (basic("ann", "s3cret:with:colon"), False),
    (basic("bob", "s3cret:with:colons"), False),
    (basic("ann", ""), False), ("Basic", False), ("Basic !!!notbase64", False),
    ("Bearer abc", False), ("", False), (None, False)])
def test_basic_auth_check(value, allowed):
    assert extras.BasicAuth("ann:s3cret:with:colons").allows(value) is allowed


def test_basic_auth_compares_utf8_credentials():
    auth = extras.BasicAuth("zoë:pässword")
    encoded = base64.b64encode("zoë:pässword".encode("utf-8")).decode()
    assert auth.allows("Basic " + encoded)
    assert not auth.allows("Basic " + base64.b64encode("zoë:pässword".encode("latin-1")).decode())


@pytest.mark.parametrize("text", ["nocolon", ":password", "user:", "us\x01er:pw"])
def test_auth_parsing_refuses_unusable_credentials(text):
    with pytest.raises(ValueError, match="--auth"):
        extras.parse_auth(text)


@pytest.mark.parametrize("host, certfile, tls_port, warns", [
    ("127.0.0.1", None, None, False), ("::1", None, None, False),
    ("localhost", None, None, False), ("0.0.0.0", None, None, True), ("::", None, None, True),
    ("192.0.2.1", "cert.pem", None, False), ("192.0.2.1", "cert.pem", 8443, True)])
def test_auth_warning_without_tls_beyond_loopback(host, certfile, tls_port, warns):
    config = Config(host=host, auth="a:b", certfile=certfile, tls_port=tls_port)
    warning = cli.auth_warning(config)
    assert (warning is not None) is warns
    if warning:
        assert "\n" not in warning and "--auth" in warning
    assert cli.auth_warning(Config(host=host)) is None


def test_auth_warning_is_one_line_on_stderr_at_start_up(root):
    # 192.0.2.1 (TEST-NET-1) is not ours, so the bind fails after the warning: nothing listens.
    result = run_cli("--root", str(root), "--port", "0", "--host", "192.0.2.1",
                     "--auth", "ann:pw")
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("reactor-http: warning: --auth without TLS on 192.0.2.1"), lines
    assert "pw" not in lines[0].replace("--auth", "")
    assert result.returncode == 2 and lines[1].startswith("reactor-http: error: ")
    quiet = run_cli("--root", str(root), "--port", "0", "--host", "192.0.2.1")
    assert "warning" not in quiet.stderr


def test_auth_from_the_environment_and_the_flag_wins(monkeypatch):
    monkeypatch.setenv(cli.AUTH_ENV, "env:pw")
    parser = cli.build_parser()
    assert cli.config_from_args(parser.parse_args([])).auth == "env:pw"
    assert cli.config_from_args(parser.parse_args(["--auth", "flag:pw"])).auth == "flag:pw"


def test_a_cached_answer_never_reaches_a_request_without_credentials(tmp_path):
    # Pure: the same connection asks without, with, then again without credentials; the
    # authorised 200 fills the answer cache, the memoised unauthorised head must still get 401.
    (tmp_path / "a.txt").write_text("secret\n")
    site = site_module.Site(Config(root=str(tmp_path), auth="ann:pw").validate())
    conn = HttpConnection(site)
    without = b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n"
    with_auth = (b"GET /a.txt HTTP/1.1\r\nHost: x\r\nAuthorization: "
                 + basic("ann", "pw").encode() + b"\r\n\r\n")
    statuses = []
    for raw in (without, with_auth, with_auth, without, without):
        exchange = conn.take_request(raw, 1.0)
        if exchange is None:
            conn.receive(raw)
            exchange = conn.next_exchange(1.0)
        statuses.append(exchange.plan.status)
        conn.response_done(exchange.plan, 1.0)
    assert statuses == [401, 200, 200, 401, 401]


def without_date(response) -> list:
    return [(n, v) for n, v in response.header_list if n.lower() != "date"]


def test_auth_over_sockets(make_server, root, mode):
    server = make_server(root, mode, "--quiet", "--auth", "ann:pw", "--cors",
                         "--status", "/status")
    denied = get(server, "/index.html")
    assert denied.status == 401
    assert denied.headers["www-authenticate"] == 'Basic realm="reactor_http", charset="UTF-8"'
    assert denied.headers["access-control-allow-origin"] == "*"
    # The same answer whether the user exists or not.
    wrong_password = get(server, "/index.html", {"Authorization": basic("ann", "nope")})
    unknown_user = get(server, "/index.html", {"Authorization": basic("zed", "pw")})
    assert without_date(wrong_password) == without_date(unknown_user) == without_date(denied)
    assert wrong_password.body == unknown_user.body == denied.body
    head = get(server, "/index.html", method="HEAD")
    assert head.status == 401 and head.body == b""
    allowed = get(server, "/index.html", {"Authorization": basic("ann", "pw")})
    assert allowed.status == 200 and allowed.body == b"<p>home</p>\n"
    assert allowed.headers["cache-control"] == "private"
    listing = get(server, "/files/", {"Authorization": basic("ann", "pw")})
    assert listing.status == 200 and listing.headers["cache-control"] == "private, no-cache"
    # A CORS preflight carries no credentials (Fetch): it is answered without them.
    preflight = get(server, "/index.html", {"Origin": "https://a.example",
                                            "Access-Control-Request-Method": "GET"},
                    method="OPTIONS")
    assert preflight.status == 204
    assert get(server, "/index.html", method="OPTIONS").status == 401
    # --status stays governed by --status-allow (loopback here), not by --auth.
    assert get(server, "/status").status == 200


def test_auth_keep_alive_never_serves_a_cached_answer_without_credentials(make_server, root,
                                                                           mode):
    server = make_server(root, mode, "--quiet", "--auth", "ann:pw")
    without = b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n"
    with_auth = (b"GET /index.html HTTP/1.1\r\nHost: x\r\nAuthorization: "
                 + basic("ann", "pw").encode() + b"\r\n\r\n")
    with server.connect() as sock:
        buffer = bytearray()
        statuses = []
        for raw in (without, without, with_auth, with_auth, without, without):
            sock.sendall(raw)
            statuses.append(read_response(sock, buffer).status)
    assert statuses == [401, 401, 200, 200, 401, 401]


def test_the_access_log_names_the_authenticated_user(make_server, root, tmp_path, mode):
    """CLF's authuser field: the user for a request with the right credentials, `-` for every
    other, a refused attempt included (the name tried is not logged: it is the client's text,
    and a password typed into the name field would land in the log). On one keep-alive
    connection, so the short route's replayed answers are logged per exchange too."""
    log = tmp_path / "access.log"
    server = make_server(root, mode, "--quiet", "--access-log", str(log), "--auth", "ann:pw")
    right = basic("ann", "pw").encode()
    wrong = basic("typed-my-secret-here", "pw").encode()
    heads = [b"GET /index.html HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n" for extra in (
        b"Authorization: " + right + b"\r\n", b"", b"Authorization: " + wrong + b"\r\n")]
    order = [0, 0, 1, 0, 2, 2, 0, 1]
    with server.connect() as sock:
        buffer = bytearray()
        for index in order:
            sock.sendall(heads[index])
            read_response(sock, buffer)
    assert server.stop()[0] == 0
    fields = [line.split(" ")[:3] + [line.split('" ')[1].split(" ")[0]]
              for line in log.read_text().splitlines()]
    expected = {0: ["127.0.0.1", "-", "ann", "200"], 1: ["127.0.0.1", "-", "-", "401"],
                2: ["127.0.0.1", "-", "-", "401"]}
    assert fields == [expected[index] for index in order]
    assert "typed-my-secret-here" not in log.read_text()


def test_auth_with_max_age_keeps_the_users_cache_control(make_server, root, mode):
    server = make_server(root, mode, "--quiet", "--auth", "ann:pw", "--max-age", "60")
    response = get(server, "/index.html", {"Authorization": basic("ann", "pw")})
    assert response.headers["cache-control"] == "max-age=60"
    headed = make_server(root, mode, "--quiet", "--auth", "ann:pw",
                         "--header", "Cache-Control: no-store")
    response = get(headed, "/index.html", {"Authorization": basic("ann", "pw")})
    assert [v for n, v in response.header_list if n == "Cache-Control"] == ["no-store"]


def test_auth_from_the_environment_over_sockets(make_server, root, mode):
    server = make_server(root, mode, "--quiet", env={"REACTOR_HTTP_AUTH": "env:pw"})
    assert get(server, "/index.html").status == 401
    assert get(server, "/index.html", {"Authorization": basic("env", "pw")}).status == 200
    flagged = make_server(root, mode, "--quiet", "--auth", "flag:pw",
                          env={"REACTOR_HTTP_AUTH": "env:pw"})
    assert get(flagged, "/index.html", {"Authorization": basic("env", "pw")}).status == 401
    assert get(flagged, "/index.html", {"Authorization": basic("flag", "pw")}).status == 200


def test_malformed_auth_is_a_one_line_start_up_error(root):
    result = run_cli("--root", str(root), "--port", "0", "--auth", "nopassword")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reactor-http: error: --auth"), lines
    assert "nopassword" not in lines[0]  # the secret is not echoed
    env = server_env(REACTOR_HTTP_AUTH="nocolon")
    result = subprocess.run([sys.executable, "-m", "reactor_http", "--root", str(root),
                             "--port", "0"], capture_output=True, text=True, timeout=20,
                            env=env, cwd=REPO)
    assert result.returncode == 2 and "--auth" in result.stderr


# ---- JSON listings ---------------------------------------------------------------------------

@pytest.mark.parametrize("accept, json_wanted", [
    (None, False), ("text/html", False), ("application/json", True),
    ("text/html, application/json", False), ("application/json, text/html", False),
    ("text/html;q=0.5, application/json", True), ("application/json;q=0.9, text/html", False),
    ("*/*", False), ("application/*", True), ("text/*;q=0.1, */*;q=0.5", True),
    ("application/json;q=0", False), ("APPLICATION/JSON", True),
    ("text/html;q=0.8, application/json;q=0.9, */*;q=0.1", True)])
def test_wants_json_follows_q_values(accept, json_wanted):
    assert responder.wants_json(accept) is json_wanted


def _listing_json(root, **rules) -> bytes:
    """The JSON listing of root/files in the default order."""
    entries = filesystem.listing_entries(str(root), str(root / "files"), **rules)
    return listing.render_json(listing.sort_entries(entries))


def test_listing_json_entries(root, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("out")
    (root / "files" / "link-out").symlink_to(outside)
    body = _listing_json(root, allow_dotfiles=False, follow_symlinks=False)
    entries = json.loads(body)
    assert [e["name"] for e in entries] == ["Zed", "a.txt"]
    assert entries[0] == {"name": "Zed", "type": "dir", "size": 0,
                          "modified": entries[0]["modified"]}
    assert entries[1] == {"name": "a.txt", "type": "file", "size": 5,
                          "modified": "2023-11-14T22:13:20Z"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entries[0]["modified"])
    shown = json.loads(_listing_json(root, allow_dotfiles=True, follow_symlinks=True))
    assert {e["name"] for e in shown} == {"Zed", "a.txt", ".secret", "link-out"}


def test_json_listing_over_sockets(make_server, root, mode):
    server = make_server(root, mode, "--quiet")
    html = get(server, "/files/")
    assert html.headers["content-type"] == "text/html; charset=utf-8"
    assert html.headers["vary"] == "Accept"
    answer = get(server, "/files/", {"Accept": "application/json"})
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["vary"] == "Accept"
    assert answer.headers["cache-control"] == "no-cache"
    etag = answer.headers["etag"]
    assert etag.startswith('W/"') and etag != html.headers["etag"]
    entries = json.loads(answer.body)
    assert [(e["name"], e["type"], e["size"]) for e in entries] == [("Zed", "dir", 0),
                                                                  ("a.txt", "file", 5)]
    assert entries[1]["modified"] == "2023-11-14T22:13:20Z"
    again = get(server, "/files/", {"Accept": "application/json", "If-None-Match": etag})
    assert again.status == 304 and again.body == b"" and again.headers["vary"] == "Accept"
    # The HTML tag does not validate the JSON representation.
    assert get(server, "/files/", {"Accept": "application/json",
                                   "If-None-Match": html.headers["etag"]}).status == 200
    head = get(server, "/files/", {"Accept": "application/json"}, method="HEAD")
    assert head.status == 200 and head.body == b""
    assert int(head.headers["content-length"]) == len(answer.body)
    preferred_html = get(server, "/files/", {"Accept": "text/html, application/json;q=0.9"})
    assert preferred_html.headers["content-type"].startswith("text/html")
    # A folder with index.html serves the page whatever Accept says.
    page = get(server, "/", {"Accept": "application/json"})
    assert page.body == b"<p>home</p>\n" and "vary" not in page.headers
