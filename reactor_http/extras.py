"""What users add to the served answers: --header fields, --mime types, --auth Basic credentials.

Each option's text is checked here once, at start-up (`parse_*` raise ValueError with a one-line
message naming the option), and turned into what the hot path needs: the extra header fields
rendered once as bytes, a {suffix: type} table, and a `BasicAuth` that checks an Authorization
field in constant time. Pure: no sockets, no files, nothing of this package but messages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re

from .messages import SERVER_FIELD

# tchar from RFC 9110 section 5.6.2: field names and media type parts are tokens.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Field names the server sets itself on every response, or that frame the message or manage the
# connection: a second copy would contradict ours (two Content-Length fields make the message
# unparseable, RFC 9112 section 6.3; a second Date, Content-Type or ETag is a singleton field
# sent twice). Server is not here: a --header Server replaces ours (see `server_field`).
MANAGED_FIELDS = frozenset({
    "content-length", "transfer-encoding", "connection", "keep-alive", "date", "upgrade",
    "te", "trailer", "proxy-connection", "content-type", "content-range", "content-encoding",
    "etag", "last-modified", "location", "www-authenticate"})
# The realm of the Basic challenge (RFC 7617 section 2). A fixed name, not the served folder's:
# the realm is shown to anyone who asks, before any credential, so it should reveal nothing of
# the machine; browsers keep credentials per origin and realm, and one server has one realm.
REALM = "reactor_http"
WWW_AUTHENTICATE = f'Basic realm="{REALM}", charset="UTF-8"'


def parse_header(text: str) -> tuple[str, str]:
    """`Name: value` of --header as (name, value); ValueError (one line) if it may not be sent."""
    name, sep, value = text.partition(":")
    if not sep:
        raise ValueError(f"--header {text!r} must be 'Name: value'")
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"--header {text!r}: the name {name!r} is not a token "
                         f"(RFC 9110 section 5.6.2)")
    value = value.strip(" \t")
    problem = field_problem(name, value)
    if problem is not None:
        raise ValueError(f"--header {name}: {problem}")
    return name, value


def is_token(text: str) -> bool:
    """Is `text` a token (RFC 9110 section 5.6.2), as a field name must be?"""
    return _TOKEN.fullmatch(text) is not None


def field_problem(name: str, value: str) -> str | None:
    """Why the field `name: value` (name a token, value stripped) may not be added, or None.

    Shared by --header and the site's `_headers` file (siterules), which word the rest.
    """
    if any(char in value for char in "\r\n\0"):
        return "the value may not contain CR, LF or NUL"
    # Field values are octets (RFC 9110 section 5.5); we send them as latin-1 like our own.
    if any(ord(char) > 0xFF or (ord(char) < 0x20 and char != "\t") or ord(char) == 0x7F
           for char in value):
        return "the value may hold only visible characters, spaces and tabs"
    if name.lower() in MANAGED_FIELDS:
        return "the server sets this field itself"
    return None


def header_fields(texts) -> tuple[bytes, bytes]:
    """(Server field, extra fields) as rendered bytes for every response head.

    A --header Server replaces our own Server field (as Caddy's `header` does; nginx's add_header
    would send two, which RFC 9110 section 10.2.4 does not allow for a singleton); every other
    field is added as given, after the response's own fields (as nginx's add_header does).
    """
    lines = header_lines(texts, servers=True)
    servers = [line for name, line in lines if name == "server"]
    if len(servers) > 1:
        raise ValueError("--header Server may be given once")
    extra = b"".join(line for name, line in lines if name != "server")
    return (servers[0] if servers else SERVER_FIELD), extra


def header_lines(texts, servers: bool = False) -> list[tuple[str, bytes]]:
    """(lower-case name, rendered line) of each --header field, in order; Server's only with
    `servers` (a path's `_headers` rules may replace or detach the others, one by one)."""
    lines = []
    for text in texts:
        name, value = parse_header(text)
        if servers or name.lower() != "server":
            lines.append((name.lower(), f"{name}: {value}\r\n".encode("latin-1")))
    return lines


def parse_mime(text: str) -> tuple[str, str]:
    """`.EXT=TYPE` of --mime as ('.ext', 'type/subtype'); ValueError (one line) if malformed."""
    ext, sep, ctype = text.partition("=")
    ext, ctype = ext.strip(), ctype.strip()
    if not sep:
        raise ValueError(f"--mime {text!r} must be EXT=TYPE, e.g. .md=text/markdown")
    if not ext.startswith("."):
        ext = "." + ext
    # A file name suffix as os.path.splitext sees it: one dot, then no dot or slash.
    if len(ext) < 2 or not _TOKEN.fullmatch(ext[1:]) or "." in ext[1:]:
        raise ValueError(f"--mime {text!r}: {ext!r} is not a file name extension like .md")
    kind, slash, subtype = ctype.partition("/")
    if not slash or not _TOKEN.fullmatch(kind) or not _TOKEN.fullmatch(subtype):
        raise ValueError(f"--mime {text!r}: {ctype!r} is not a media type like text/markdown "
                         f"(type/subtype, RFC 9110 section 8.3.1)")
    return ext.lower(), ctype.lower()


def mime_table(texts) -> dict[str, str]:
    """{'.ext': 'type/subtype'} from every --mime (a later one for the same suffix wins)."""
    return dict(parse_mime(text) for text in texts)


def parse_auth(text: str) -> tuple[str, str]:
    """`USER:PASSWORD` of --auth as (user, password); ValueError (one line) if unusable."""
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ValueError("--auth must be USER:PASSWORD, both non-empty "
                         "(or set REACTOR_HTTP_AUTH)")
    # RFC 7617 section 2: neither part may hold control characters; the user-id no colon.
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        raise ValueError("--auth may not contain control characters")
    return user, password


def is_loopback(host: str) -> bool:
    """True if binding `host` keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BasicAuth:
    """HTTP Basic credentials (RFC 7617) and the check of an Authorization field against them."""

    __slots__ = ("_digest", "user")

    def __init__(self, text: str):
        user, password = parse_auth(text)
        self._digest = hashlib.sha256(f"{user}:{password}".encode()).digest()
        # What the access log's authuser field says for a request with these credentials: our
        # own configured name, never the client's text (see Site.access_user).
        self.user = user

    def allows(self, authorization: str | None) -> bool:
        """True if the Authorization field carries our user and password.

        The decoded user-pass is hashed and the digests compared with hmac.compare_digest, so
        the time taken does not depend on how much of the user or the password is right, nor
        on whether the user exists (one comparison of fixed-length digests).
        """
        if not authorization:
            return False
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "basic":  # the scheme is case-insensitive (RFC 9110 section 11.1)
            return False
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        # Fields are parsed as latin-1, so non-ASCII base64 text cannot occur here; the decoded
        # octets are compared as sent (UTF-8, as our challenge's charset asks).
        return hmac.compare_digest(hashlib.sha256(decoded).digest(), self._digest)
