"""One error hierarchy for the HTTP layer.

Every :class:`ProtocolError` knows its status, reason phrase and whether a
response should be written at all (``respond``), and renders that response
itself with :meth:`ProtocolError.to_response`.  Callers write it once and
close; they never branch on the concrete class.

Response-side mistakes made by the *application* (bad header name or value)
are not protocol errors: they raise :class:`InvalidResponseHeader`, a
``ValueError``, and the caller answers 500.
"""

from __future__ import annotations

from typing import ClassVar

from .dates import http_date

_SHOW_LIMIT = 64
# html.escape() without importing ``html``, whose entity table alone is ~0.5 MiB in every worker.
_HTML_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"})


def _html_escape(text: str) -> str:
    return text.translate(_HTML_ESCAPES)


def show(data: bytes | str, limit: int = _SHOW_LIMIT) -> str:
    """Short printable form of wire data for error messages (never the whole input)."""
    text = repr(data[:limit])
    return text + "..." if len(data) > limit else text


class ProtocolError(Exception):
    """The peer broke HTTP/1.1; the connection cannot continue."""

    status: ClassVar[int] = 400
    reason: ClassVar[str] = "Bad Request"
    respond: ClassVar[bool] = True  # False: just close the connection

    def __init__(self, message: str = "") -> None:
        self.message = message or self.reason
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    def to_response(self) -> bytes:
        """A complete ``HTTP/1.1`` error response that closes the connection."""
        return error_response(self.status, self.reason, self.message)


def error_response(status: int, reason: str, message: str) -> bytes:
    """A small HTML error page, framed by Content-Length, with ``Connection: close``."""
    title = f"{status} {reason}"
    body = (
        "<html>\n"
        f"  <head><title>{_html_escape(title)}</title></head>\n"
        "  <body>\n"
        f"    <h1>{_html_escape(reason)}</h1>\n"
        f"    <p>{_html_escape(message)}</p>\n"
        "  </body>\n"
        "</html>\n"
    ).encode("ascii", "xmlcharrefreplace")
    # RFC 9110 section 6.6.1: an origin server with a clock sends Date, error pages included.
    head = (
        f"HTTP/1.1 {title}\r\n"
        f"Date: {http_date()}\r\n"
        "Connection: close\r\n"
        "Content-Type: text/html\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    ).encode("ascii")
    return head + body


class IncompleteMessage(ProtocolError):
    """EOF in the middle of a message: nothing is written, the connection is closed."""

    respond: ClassVar[bool] = False


class InvalidRequestLine(ProtocolError):
    """Malformed request line, bare LF, bad request-target form or bytes."""


class InvalidRequestMethod(ProtocolError):
    """Method is not a token, or breaks the conventional-method rules."""


class InvalidHTTPVersion(ProtocolError):
    """Version is not ``HTTP/D.D`` or outside 1.0 <= v < 2.0."""


class InvalidHeader(ProtocolError):
    """Bad field line or value, bare LF, duplicates, framing (CL/TE) problems."""


class InvalidHeaderName(ProtocolError):
    """Field name is not a token, refused by header_map, or forbidden in trailers."""


class ObsoleteFolding(ProtocolError):
    """obs-fold continuation line while folding is not permitted."""


class InvalidChunkSize(ProtocolError):
    """Chunk size is not 1*HEXDIG (or too long, or the size line is too long)."""


class ChunkMissingTerminator(ProtocolError):
    """Chunk data not followed by CRLF."""


class InvalidChunkExtension(ProtocolError):
    """chunk-ext does not match the RFC 9112 section 7.1.1 grammar or is too long."""


class InvalidSchemeHeaders(ProtocolError):
    """Trusted secure-scheme headers contradict each other."""


class LimitRequestLine(ProtocolError):
    status: ClassVar[int] = 414
    reason: ClassVar[str] = "URI Too Long"


class LimitRequestHeaders(ProtocolError):
    status: ClassVar[int] = 431
    reason: ClassVar[str] = "Request Header Fields Too Large"


class LimitRequestBody(ProtocolError):
    """The body is larger than the limit (RFC 9110 section 15.5.14), declared or counted."""

    status: ClassVar[int] = 413
    reason: ClassVar[str] = "Content Too Large"


class ExpectationFailed(ProtocolError):
    status: ClassVar[int] = 417
    reason: ClassVar[str] = "Expectation Failed"


class UnsupportedTransferCoding(ProtocolError):
    status: ClassVar[int] = 501
    reason: ClassVar[str] = "Not Implemented"


class InvalidResponseHeader(ValueError):
    """The application produced a header the server will not send (answer 500).

    Not a :class:`ProtocolError` (the peer did nothing wrong), but it carries
    the status the caller answers with, like every other error here.
    """

    status: ClassVar[int] = 500
    reason: ClassVar[str] = "Internal Server Error"


class InvalidResponseHeaderName(InvalidResponseHeader):
    """The application produced a header name that is not a token."""
