"""Response side: status and header validation, framing decisions, serialisation.

:class:`ResponseFramer` is pure: it is told about the request (method,
version, whether the request allows keep-alive) and turns the application's
status and headers into bytes, then frames each body piece.  It decides:

* chunked (HTTP/1.1+, no Content-Length, a body is allowed) or
  close-delimited (HTTP/1.0 without Content-Length) or Content-Length;
* no body for HEAD, 1xx, 204 and 304 (RFC 9110 sections 9.3.2, 15.2, 15.3.5,
  15.4.5); Content-Length is removed for 1xx/204 and kept for HEAD/304;
* ``Connection: close|keep-alive|upgrade`` and whether the connection may be
  reused afterwards (:attr:`ResponseFramer.keep_alive`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

from .dates import http_date_line
from .errors import InvalidResponseHeader, InvalidResponseHeaderName
from .grammar import TCHAR

CONTINUE_RESPONSE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"

# Hop-by-hop fields the application may not set (RFC 9110 section 7.6.1, which
# also names Proxy-Connection, RFC 9112 appendix C.2.2), plus Server/Date which
# the server owns.  "trailer" (RFC 9110 section 6.6.2) because the server ends
# every chunked body with an empty trailer section: announcing fields that never
# come would mislead the client; "trailers" is kept for Gunicorn parity.  Lower-case.
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "server",
        "date",
    }
)

# str.translate table deleting every tchar: a token translates to "".
_DELETE_TCHAR: Final = {code: None for code in TCHAR}
_DIGITS_STR: Final = re.compile("[0-9]{1,19}")
# RFC 9110 section 5.5: field-value = *field-content; VCHAR / SP / HTAB / obs-text.
_FIELD_VALUE_STR: Final = re.compile("[ \t\x21-\x7e\x80-\xff]*")
_FIELD_VALUE_BYTES: Final = re.compile(rb"[ \t\x21-\x7e\x80-\xff]*")
# RFC 9112 section 4: status-code = 3DIGIT, reason-phrase = *( HTAB / SP / VCHAR / obs-text )
_STATUS: Final = re.compile("([0-9]{3})(?: ([ \t\x21-\x7e\x80-\xff]*))?")

def is_token(name: bytes | str) -> bool:
    """RFC 9110 section 5.6.2: ``1*tchar``."""
    if isinstance(name, str):
        return bool(name) and not name.translate(_DELETE_TCHAR)
    return bool(name) and not name.translate(None, TCHAR)


def is_valid_field_value(value: bytes | str) -> bool:
    """RFC 9110 section 5.5: no CR, LF, NUL or other control bytes (HTAB allowed)."""
    if isinstance(value, str):
        return _FIELD_VALUE_STR.fullmatch(value) is not None
    return _FIELD_VALUE_BYTES.fullmatch(value) is not None


# Statuses already parsed: applications use a handful. Bounded like the header-line cache.
_PARSED_STATUSES: dict[str, tuple[int, str]] = {}


def parse_status(status: object) -> tuple[int, str]:
    """Split a WSGI status (``"200 OK"``) into code and reason; ``ValueError`` if malformed."""
    if not isinstance(status, str):  # checked here, not by the signature: compiled, that is a TypeError
        raise ValueError(f"status must be a str, not {type(status).__name__}")
    parsed = _PARSED_STATUSES.get(status)
    if parsed is not None:
        return parsed
    match = _STATUS.fullmatch(status)
    if match is None:
        raise ValueError(f"Invalid status {status[:64]!r}")
    parsed = int(match.group(1)), match.group(2) or ""
    if type(status) is str:
        if len(_PARSED_STATUSES) >= _CHECKED_LINES_MAX:
            _PARSED_STATUSES.clear()
        _PARSED_STATUSES[status] = parsed
    return parsed


def _allows_body(method: bytes, status_code: int) -> bool:
    return not (method == b"HEAD" or status_code < 200 or status_code in (204, 304))


# Header lines already validated, keyed by the (name, value) tuple: applications send the same few
# headers on every response, so validation runs once per distinct line. The value is the encoded
# line and, for Content-Length, its number. Bounded; never holds hop-by-hop fields, whose handling
# depends on the response.
_CHECKED_LINES: dict[tuple[str, str], tuple[bytes, int | None]] = {}
_CHECKED_LINES_MAX = 1024
# Status lines ("HTTP/1.1 200 OK\r\n") keyed by (HTTP/1.1?, code, reason), and "Server: ...\r\n"
# lines by value: both validated once.
_STATUS_LINES: dict[tuple[bool, int, str], bytes] = {}
_SERVER_LINES: dict[bytes, bytes] = {}
_CONNECTION_LINES: Final = {
    "keep-alive": b"Connection: keep-alive\r\n",
    "close": b"Connection: close\r\n",
    "upgrade": b"Connection: upgrade\r\n",
}


def _status_line(http11: bool, status_code: int, reason: str) -> bytes:
    key = (http11, status_code, reason)
    line = _STATUS_LINES.get(key)
    if line is None:
        if not 100 <= status_code <= 999:
            raise ValueError(f"Invalid status code {status_code!r}")
        if not is_valid_field_value(reason):
            raise ValueError(f"Invalid reason phrase {reason[:64]!r}")
        # RFC 9110 section 6.2: answer with our highest minor version for 1.x,
        # but never claim 1.1 to a 1.0 client (Gunicorn echoes the request version).
        line = f"{'HTTP/1.1' if http11 else 'HTTP/1.0'} {status_code} {reason}\r\n".encode("latin-1")
        if len(_STATUS_LINES) >= _CHECKED_LINES_MAX:
            _STATUS_LINES.clear()
        _STATUS_LINES[key] = line
    return line


def _server_line(server_header: bytes) -> bytes:
    line = _SERVER_LINES.get(server_header)
    if line is None:
        if not is_valid_field_value(server_header):
            raise InvalidResponseHeader("Invalid Server header value")
        line = _SERVER_LINES[server_header] = b"Server: " + server_header + b"\r\n"
    return line


class ResponseFramer:
    """Frames one response on a connection."""

    __slots__ = (
        "_method",
        "_version",
        "_request_keep_alive",
        "_server_header",
        "status_code",
        "chunked",
        "content_length",
        "body_allowed",
        "upgrade",
        "body_dropped",
        "_keep_alive",
        "_head_sent",
        "_sent",
        "_ended",
    )

    def __init__(
        self,
        *,
        request_method: bytes,
        request_version: tuple[int, int],
        keep_alive: bool,
        server_header: bytes,
    ) -> None:
        self._method = request_method
        self._version = request_version
        self._request_keep_alive = keep_alive
        self._server_header = server_header
        self.status_code = 0
        self.chunked = False
        self.content_length: int | None = None
        self.body_allowed = True
        self.upgrade = False
        self.body_dropped = False  # body bytes arrived for a response that has none
        self._keep_alive = keep_alive
        self._head_sent = False
        self._sent = 0
        self._ended = False

    @property
    def keep_alive(self) -> bool:
        """After ``head()``: whether the connection may be reused.

        After ``end()`` this also turns False when a Content-Length body came up short.
        """
        if not self._keep_alive:
            return False
        return not self._ended or self.complete

    @property
    def complete(self) -> bool:
        """Whether everything the head promised has been sent (a CL body fully written)."""
        if self.content_length is None or not self.body_allowed:
            return True
        return self._sent >= self.content_length

    @property
    def short(self) -> bool:
        """A Content-Length body that is (so far) incomplete: the connection must be closed."""
        return not self.complete

    @property
    def bytes_sent(self) -> int:
        """Body bytes (not framing) written so far."""
        return self._sent

    def head(self, status_code: int, reason: str, headers: Iterable[Any]) -> bytes:
        """The status line and header section. ``headers`` are (name, value) pairs of ``str`` (WSGI)
        or of ``bytes`` (ASGI), validated the same way."""
        if self._head_sent:
            raise RuntimeError("response head already serialised")
        http11 = self._version >= (1, 1)
        status_line = _STATUS_LINES.get((http11, status_code, reason)) or _status_line(http11, status_code, reason)
        server_line = _SERVER_LINES.get(self._server_header) or _server_line(self._server_header)
        # [3] becomes the Connection line, [4] Transfer-Encoding when chunked; the app's headers follow.
        kept: list[bytes] = [status_line, server_line, http_date_line(), b"", b""]
        content_length: int | None = None
        force_close = False
        checked = _CHECKED_LINES
        for header in headers:
            # The header tuple itself is the key: no new object per header on a hit.
            hit = checked.get(header) if type(header) is tuple else None
            if hit is not None:
                line, length = hit
                if length is not None:
                    if content_length is not None:
                        if length != content_length:
                            raise InvalidResponseHeader("Conflicting Content-Length values")
                        continue
                    content_length = length
                    if status_code < 200 or status_code == 204:
                        continue  # RFC 9110 section 8.6: never sent with 1xx / 204
                kept.append(line)
                continue
            name, value = header
            if type(name) is bytes and type(value) is bytes:  # ASGI: latin-1, byte for byte
                name = name.decode("latin-1")
                value = value.decode("latin-1")
            elif not isinstance(name, str) or not isinstance(value, str):
                raise TypeError(f"header name and value must be str: {name!r}: {value!r}")
            if not is_token(name):
                raise InvalidResponseHeaderName(f"Invalid response header name {name[:64]!r}")
            if not is_valid_field_value(value):
                raise InvalidResponseHeader(f"Invalid value for response header {name!r}")
            lname = name.lower()
            line = f"{name}: {value}\r\n".encode("latin-1")
            if lname in HOP_BY_HOP:
                option = value.strip(" \t").lower()
                if lname == "connection":
                    if option == "upgrade":
                        self.upgrade = True
                    elif option == "close":
                        force_close = True
                elif lname == "upgrade" and option == "websocket":
                    kept.append(line)
                continue
            length = None
            if lname == "content-length":
                digits = value.strip(" \t")
                if _DIGITS_STR.fullmatch(digits) is None:
                    raise InvalidResponseHeader(f"Invalid Content-Length {value[:64]!r}")
                length = int(digits)  # checked against ASCII digits above
                if content_length is not None:
                    if length != content_length:
                        raise InvalidResponseHeader("Conflicting Content-Length values")
                    continue
                content_length = length
                if not (status_code < 200 or status_code == 204):  # RFC 9110 section 8.6
                    kept.append(line)
            else:
                kept.append(line)
            if type(name) is str and type(value) is str and type(header) is tuple:
                if len(checked) >= _CHECKED_LINES_MAX:
                    checked.clear()
                checked[header] = (line, length)

        self.status_code = status_code
        self.body_allowed = _allows_body(self._method, status_code)
        self.content_length = content_length if status_code >= 200 and status_code != 204 else None
        # RFC 9112 section 6.1: chunked only towards HTTP/1.1+ recipients; RFC 9112
        # section 6.3 (rule 8): otherwise a body without Content-Length ends at close.
        self.chunked = self.body_allowed and self.content_length is None and http11
        close_delimited = self.body_allowed and self.content_length is None and not self.chunked
        # RFC 9112 section 9.6: a close-delimited body or "Connection: close" ends the
        # connection; RFC 9110 section 7.8: after an upgrade it is no longer HTTP/1.1.
        # RFC 9110 section 15.2: a 1xx is never final; an application that ends with one leaves
        # the client waiting, so the connection cannot carry another exchange.
        self._keep_alive = (
            self._request_keep_alive
            and not force_close
            and not close_delimited
            and not self.upgrade
            and status_code >= 200
        )
        if self.upgrade:
            kept[3] = _CONNECTION_LINES["upgrade"]
        else:
            kept[3] = _CONNECTION_LINES["keep-alive" if self._keep_alive else "close"]
        if self.chunked:
            kept[4] = b"Transfer-Encoding: chunked\r\n"
        kept.append(b"\r\n")
        self._head_sent = True
        return b"".join(kept)

    def body(self, data: bytes) -> bytes:
        """Frame one piece of body: chunked, truncated at Content-Length, or dropped."""
        if not self._head_sent:
            raise RuntimeError("body() before head()")
        if not data:
            return b""  # an empty chunk would end a chunked body
        if not self.body_allowed:
            self.body_dropped = True
            return b""
        if self.chunked:
            # RFC 9112 section 7.1: chunk = chunk-size CRLF chunk-data CRLF
            self._sent += len(data)
            return b"%x\r\n%b\r\n" % (len(data), data)
        if self.content_length is not None:
            # RFC 9112 section 6.3: the recipient stops at Content-Length; anything
            # more would be read as the next response, so it is never sent.
            room = self.content_length - self._sent
            if room <= 0:
                return b""
            if len(data) > room:
                data = data[:room]
        self._sent += len(data)
        return data

    @property
    def informational_allowed(self) -> bool:
        """1xx responses only go to HTTP/1.1+ clients (RFC 9110 section 15.2)."""
        return self._version >= (1, 1) and not self._head_sent

    def informational(self, status_code: int, reason: str, headers: list[tuple[str, str]]) -> bytes:
        """An interim (1xx) response such as 103 Early Hints; the final head still follows."""
        if not 100 <= status_code <= 199:
            raise ValueError(f"not an informational status: {status_code}")
        lines = [f"HTTP/1.1 {status_code} {reason}\r\n"]
        for name, value in headers:
            if not isinstance(name, str) or not is_token(name):
                raise InvalidResponseHeaderName(f"Invalid response header name {str(name)[:64]!r}")
            if not isinstance(value, str) or not is_valid_field_value(value):
                raise InvalidResponseHeader(f"Invalid value for response header {name!r}")
            lines.append(f"{name}: {value}\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")

    def file_frame(self, size: int) -> tuple[bytes, int, bytes]:
        """Framing for ``size`` body bytes sent straight from a file (sendfile).

        Returns ``(prefix, count, suffix)``: write ``prefix``, send ``count`` bytes of the file,
        write ``suffix``. ``count`` is already cut at Content-Length, or 0 when there is no body.
        """
        if not self._head_sent:
            raise RuntimeError("file_frame() before head()")
        if size <= 0:
            return b"", 0, b""
        if not self.body_allowed:
            self.body_dropped = True
            return b"", 0, b""
        if self.content_length is not None:
            size = max(0, min(size, self.content_length - self._sent))
        self._sent += size
        if self.chunked and size:
            return b"%x\r\n" % size, size, b"\r\n"  # RFC 9112 section 7.1: one chunk
        return b"", size, b""

    def end(self) -> bytes:
        """Finish the body: the last chunk when chunked, else nothing."""
        if not self._head_sent:
            raise RuntimeError("end() before head()")
        if self._ended:
            return b""
        self._ended = True
        # RFC 9112 section 7.1: last-chunk = 1*("0") CRLF, then an empty trailer section.
        return b"0\r\n\r\n" if self.chunked else b""
