"""Message-level meaning of a parsed head (RFC 9112 sections 6 and 9, RFC 9110 section 10.1.1).

:func:`build_request_head` combines the request line and the validated field
lines into a :class:`RequestHead`: body framing (Transfer-Encoding /
Content-Length), persistence (Connection, version, forced closes), the
Expect field and the optional Host requirement.
"""

from __future__ import annotations

from typing import Any, Callable, Final

from .errors import ExpectationFailed, InvalidHeader, UnsupportedTransferCoding, show
from .events import RequestHead
from .grammar import OWS, decimal_value
from .limits import Limits
from .request_line import RequestLine

_CONTENT_LENGTH: Final = b"CONTENT-LENGTH"
_TRANSFER_ENCODING: Final = b"TRANSFER-ENCODING"
_CONNECTION: Final = b"CONNECTION"
_EXPECT: Final = b"EXPECT"
_HOST: Final = b"HOST"
_INTERESTING: Final = frozenset({_CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION, _EXPECT, _HOST})


def _tuple_new(cls: type, *items: object) -> Any:
    return tuple.__new__(cls, items)


# One RequestHead per request: made in C where the parser's C module is built (no tuple of the items
# first, no Python-level __new__), else with tuple.__new__.
_new_tuple: Callable[..., Any]
try:
    from ._head import new_tuple as _new_tuple
except ImportError:  # pragma: no cover - an install without a compiler
    _new_tuple = _tuple_new

# Codings we can pass through undecoded ahead of chunked (Gunicorn: force close).
_COMPRESSION_CODINGS: Final = frozenset({b"compress", b"deflate", b"gzip"})


def build_request_head(
    line: RequestLine, fields: list[tuple[bytes, bytes]], limits: Limits
) -> RequestHead:
    version = line.version
    content_length_value: bytes | None = None
    transfer_encodings: list[bytes] = []
    connection: bytes | None = None
    close_option = False
    expect_continue = False
    has_host = False
    for name, value in fields:
        if name not in _INTERESTING:
            continue
        if name == _CONTENT_LENGTH:
            content_length_value = value  # duplicates were rejected with the fields
        elif name == _TRANSFER_ENCODING:
            transfer_encodings.append(value)
        elif name == _CONNECTION:
            lowered = value.lower()
            if connection is None:
                connection = lowered  # Gunicorn: only the first Connection field decides
            if lowered.find(b"close") >= 0 and _has_option(lowered, b"close"):  # find: ``in`` costs a TypeError inside
                close_option = True  # RFC 9112 section 9.6: "close" anywhere closes
        elif name == _EXPECT:
            # RFC 9110 section 10.1.1: 100-continue is the only expectation;
            # it is ignored on HTTP/1.0, anything else is answered 417.
            if value.lower() != b"100-continue":
                raise ExpectationFailed(f"Unsupported expectation {show(value)}")
            if version >= (1, 1):
                expect_continue = True
        else:
            has_host = True

    chunked = force_close = False
    content_length: int | None = None
    if transfer_encodings:
        chunked, force_close = _transfer_coding(transfer_encodings)
        # RFC 9112 section 6.1: Transfer-Encoding is an HTTP/1.1 feature; a
        # 1.0 message carrying it is treated as faulty (smuggling vector).
        if version < (1, 1):
            raise InvalidHeader("Transfer-Encoding on an HTTP/1.0 request")
        # RFC 9112 section 6.3 (rule 3): TE and Content-Length together is
        # how requests get smuggled; reject rather than pick one.
        if content_length_value is not None:
            raise InvalidHeader("Both Content-Length and Transfer-Encoding present")
    elif content_length_value is not None:
        # RFC 9110 section 8.6: Content-Length = 1*DIGIT (no sign, no list,
        # no spaces inside); RFC 9112 section 6.3 (rule 5): invalid -> 400.
        content_length = decimal_value(content_length_value)
        if content_length is None:
            raise InvalidHeader(f"Invalid Content-Length {show(content_length_value)}")

    # RFC 9112 section 3.2: a client MUST send Host in HTTP/1.1 requests.
    if limits.require_host and version >= (1, 1) and not has_host:
        raise InvalidHeader("Missing Host header")

    if close_option or connection == b"close":
        keep_alive = False
    elif connection == b"keep-alive":
        keep_alive = True
    else:
        keep_alive = version >= (1, 1)  # RFC 9112 section 9.3: persistence by version
    if force_close or line.method == b"CONNECT":
        keep_alive = False

    method, target, path, query, fragment, _ = line
    head: RequestHead = _new_tuple(
        RequestHead, method, target, path, query, fragment, version, tuple(fields), keep_alive, expect_continue,
        content_length, chunked,
    )
    return head


def _has_option(value: bytes, option: bytes) -> bool:
    # RFC 9110 section 7.6.1: Connection = #connection-option (comma list).
    return any(item.strip(OWS) == option for item in value.split(b","))


def _transfer_coding(values: list[bytes]) -> tuple[bool, bool]:
    """Return (chunked, force_close) for the Transfer-Encoding fields in order."""
    chunked = False
    force_close = False
    for value in values:
        for item in value.split(b","):
            coding = item.strip(OWS).lower()
            if coding == b"chunked":
                # RFC 9112 section 6.1: chunked MUST NOT be applied more than once.
                if chunked:
                    raise InvalidHeader("chunked transfer coding applied twice")
                chunked = True
            elif coding == b"identity":
                if chunked:
                    raise InvalidHeader("identity transfer coding after chunked")
            elif coding in _COMPRESSION_CODINGS:
                # RFC 9112 section 6.1: chunked must be the final coding.
                if chunked:
                    raise InvalidHeader(f"{coding.decode('ascii')} applied after chunked")
                force_close = True
            else:
                # RFC 9112 section 6.1: unknown coding -> 501 Not Implemented.
                raise UnsupportedTransferCoding(f"Unsupported transfer coding {show(coding)}")
    # RFC 9112 section 6.3 (rule 4): a request whose final coding is not
    # chunked has no determinable length -> 400 and close.
    if values and not chunked:
        raise InvalidHeader("Transfer-Encoding does not end with chunked")
    return chunked, force_close
