"""The C socket type a plain connection gets has every method the engines use on one.

engine.Listener hands out `_socket.socket` (the C type) for plain TCP connections instead of
`socket.socket`, which only adds Python wrappers: a method that exists only in the wrapper
(`sendfile`, `makefile`, `dup`, ...) would raise AttributeError on a live connection, and only
on that code path. This test reads the code instead of waiting for that path to run.

What counts as a connection's socket (the rule), in reactor.py, threaded.py, sending.py,
engine.py and poller.py (parsed with ast):

- the name `sock`, in any function (the engines' name for a connection's socket);
- a function parameter annotated `socket.socket`, `_socket.socket` or `ssl.SSLSocket`;
- `X.sock` for any X but a listener (`conn.sock`, `self.sock`, `victim.sock`; not
  `listener.sock`, nor any name with "listener" in it);
- a local name assigned from one of the above (`s = conn.sock`);
- `cast(T, E)` (typing's) of one of the above: `cast(ssl.SSLSocket, sock).pending()`;

except inside class `Listener`, whose `sock` is the listening socket (a `socket.socket`, made by
listeners.py). Every attribute read or called on such an expression is collected (`sock.X`,
`sock.X(...)`), and so is every method called through a class with the socket as `self`
(`socket.socket.shutdown(sock, how)`): the latter must moreover be the C type's own method,
since the Python wrapper's methods (`close`, `detach`, `sendfile`, ...) need the wrapper's
instance state.

Names only ever used on TLS sockets (ssl.SSLSocket, which wraps socket.socket) are exempt, in
TLS_ONLY with the reason; each must still be used, and be an SSLSocket method.
"""

from __future__ import annotations

import _socket
import ast
import socket
import ssl
from pathlib import Path

import pytest

from tests.helpers.servers import REPO
from reactor_http.engine import Listener

PACKAGE = REPO / "reactor_http"
SOURCES = ("reactor.py", "threaded.py", "sending.py", "engine.py", "poller.py")
SOCKET_ANNOTATIONS = {"socket.socket", "_socket.socket", "ssl.SSLSocket"}
#: Classes whose methods are called with a connection's socket as `self`.
UNBOUND_OWNERS = {"socket.socket", "_socket.socket"}
#: Classes whose `sock` is not a connection's socket.
LISTENING_CLASSES = {"Listener"}
#: Used on a connection's socket only when it is an ssl.SSLSocket, never on a plain one.
TLS_ONLY = {
    # The TLS handshake step: engine.handshake_step and the threaded engine's handshake, run
    # only for a connection accepted on a TLS listener.
    "do_handshake": "TLS handshake, only on a TLS listener's connections",
    # Bytes OpenSSL has decrypted but not handed out yet; read only under `if conn.tls`.
    "pending": "decrypted bytes held by OpenSSL, asked only when conn.tls",
}


class Uses:
    """Where each attribute is used on a connection's socket, and which methods are called
    through a class with the socket as `self`: name -> ["file:line", ...]."""

    def __init__(self) -> None:
        self.attributes: dict[str, list[str]] = {}
        self.unbound: dict[str, list[str]] = {}


def _is_listener(node: ast.AST) -> bool:
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")
    return "listener" in name.lower()


def _socket_aliases(function: ast.AST, names: set[str]) -> set[str]:
    """`names` plus the local names assigned from a socket expression, to a fixed point."""
    names = set(names)
    while True:
        found = {target.id for node in ast.walk(function) if isinstance(node, ast.Assign)
                 and _is_socket(node.value, names)
                 for target in node.targets if isinstance(target, ast.Name)}
        if found <= names:
            return names
        names |= found


def _is_socket(node: ast.AST, names: set[str]) -> bool:
    if isinstance(node, ast.Call) and ast.unparse(node.func) in ("cast", "typing.cast") \
            and len(node.args) == 2:
        return _is_socket(node.args[1], names)  # cast(ssl.SSLSocket, sock) is still sock
    if isinstance(node, ast.Name):
        return node.id in names
    return isinstance(node, ast.Attribute) and node.attr == "sock" and not _is_listener(node.value)


def collect(path: Path, uses: Uses | None = None) -> Uses:
    """The attributes `path` uses on a connection's socket (see the module docstring)."""
    uses = uses or Uses()

    def visit(node: ast.AST, names: set[str]) -> None:
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ClassDef) and node.name in LISTENING_CLASSES:
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            arguments = node.args
            params = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
            annotated = {arg.arg for arg in params if arg.annotation is not None
                         and ast.unparse(arg.annotation) in SOCKET_ANNOTATIONS}
            names = _socket_aliases(node, names | annotated)
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) \
                and _is_socket(node.value, names):
            uses.attributes.setdefault(node.attr, []).append(where)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and ast.unparse(node.func.value) in UNBOUND_OWNERS \
                and node.args and _is_socket(node.args[0], names):
            uses.unbound.setdefault(node.func.attr, []).append(where)
        for child in ast.iter_child_nodes(node):
            visit(child, names)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), {"sock"})
    return uses


def collect_all(directory: Path = PACKAGE) -> Uses:
    uses = Uses()
    for name in SOURCES:
        collect(directory / name, uses)
    return uses


def missing_on_the_c_type(uses: Uses) -> list[str]:
    """What `_socket.socket` lacks of what the code uses on a plain connection's socket."""
    problems = [f"_socket.socket has no {name!r}, used at {', '.join(where)}"
                for name, where in sorted(uses.attributes.items())
                if name not in TLS_ONLY and not hasattr(_socket.socket, name)]
    for name, where in sorted(uses.unbound.items()):
        if getattr(socket.socket, name, None) is not getattr(_socket.socket, name, object()):
            problems.append(f"socket.socket.{name} is not the C type's own method (called "
                            f"with a connection's socket as self at {', '.join(where)})")
    return problems


def test_the_c_socket_type_has_every_method_the_engines_use():
    uses = collect_all()
    # The rule finds what the engines are known to do: it is not looking at nothing.
    assert {"recv", "send", "sendmsg", "sendall", "fileno", "settimeout", "close"} \
        <= set(uses.attributes), sorted(uses.attributes)
    assert "shutdown" in uses.unbound, uses.unbound
    assert not missing_on_the_c_type(uses)


def test_each_tls_only_exception_is_used_and_is_an_ssl_socket_method():
    uses = collect_all()
    for name in TLS_ONLY:
        assert name in uses.attributes, f"{name} is no longer used: drop it from TLS_ONLY"
        assert hasattr(ssl.SSLSocket, name) and not hasattr(_socket.socket, name), name


def test_a_plain_listener_hands_out_the_c_type():
    """The premise: a plain TCP connection's socket is `_socket.socket` itself."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=5):
            accepted, _ = Listener(server).accept()
            try:
                assert type(accepted) is _socket.socket
            finally:
                accepted.close()


@pytest.mark.parametrize("line, found", [
    ("    sock.sendfile(file)\n", "no 'sendfile'"),
    ("    conn.sock.makefile('rb')\n", "no 'makefile'"),
    ("    self.sock.dup()\n", "no 'dup'"),
    ("    s = conn.sock\n    s.set_inheritable(True)\n", "no 'set_inheritable'"),
    ("    socket.socket.close(conn.sock)\n", "socket.socket.close is not the C type's own"),
    ("    cast(socket.socket, sock).makefile()\n", "no 'makefile'"),
])
def test_the_check_fails_on_a_method_the_c_type_lacks(tmp_path, line, found):
    for name in SOURCES:
        (tmp_path / name).write_text((PACKAGE / name).read_text(encoding="utf-8"))
    with open(tmp_path / "sending.py", "a", encoding="utf-8") as file:
        file.write(f"\n\ndef _added(sock, conn, file):\n{line}")
    problems = missing_on_the_c_type(collect_all(tmp_path))
    assert any(found in problem and "sending.py:" in problem for problem in problems), problems


def test_a_listeners_socket_is_not_a_connections(tmp_path):
    path = tmp_path / "example.py"
    path.write_text("class Listener:\n    def __init__(self, sock):\n        sock.makefile()\n\n\n"
                    "def run(listener, server):\n    listener.sock.makefile()\n"
                    "    server.listener.sock.dup()\n")
    uses = collect(path)
    assert uses.attributes == {} and uses.unbound == {}
