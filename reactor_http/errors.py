"""Protocol errors: each carries the status to answer with. The parser raises; the driver decides.

Every error closes the connection after its response: once framing is in doubt, the only safe
reading of the bytes that follow is none (RFC 9112 section 11.2 on request smuggling).
"""


class HttpError(Exception):
    """A request we must refuse with `status`; the connection closes afterwards."""

    status = 400
    reason = "Bad Request"

    def __init__(self, detail: str = "", status: int | None = None):
        super().__init__(detail or self.reason)
        self.detail = detail or self.reason
        if status is not None:
            self.status = status


class BadRequest(HttpError):
    """Malformed request line, header field or framing (400)."""


class BadRequestLine(BadRequest):
    """The request line is not `method SP target SP HTTP/x.y`."""


class BadHeaderField(BadRequest):
    """A header field line breaks RFC 9110 section 5 / RFC 9112 section 5."""


class BadFraming(BadRequest):
    """Content-Length / Transfer-Encoding that cannot be trusted (RFC 9112 section 6.3)."""


class RequestTimeout(HttpError):
    """The request head did not arrive in time (408)."""

    status = 408


class PayloadTooLarge(HttpError):
    """The request body is larger than we are willing to read and discard (413)."""

    status = 413


class UriTooLong(HttpError):
    """The request-target is longer than the limit (414)."""

    status = 414


class HeadTooLarge(HttpError):
    """The request head, or its number of fields, is over the limit (431)."""

    status = 431


class NotImplementedMethod(HttpError):
    """A method or transfer coding we do not implement (501)."""

    status = 501


class VersionNotSupported(HttpError):
    """An HTTP major version other than 1 (505)."""

    status = 505
