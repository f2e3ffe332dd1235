"""HTTP/1.1 server protocol as a pure state machine (sans-IO).

Bytes go into :class:`RequestParser`, events come out; :class:`ResponseFramer`
turns a status and headers into bytes.  No sockets, threads or settings here:
callers pass a :class:`Limits` value.
"""

from __future__ import annotations

from .errors import (
    ChunkMissingTerminator,
    ExpectationFailed,
    IncompleteMessage,
    InvalidChunkExtension,
    InvalidChunkSize,
    InvalidHeader,
    InvalidHeaderName,
    InvalidHTTPVersion,
    InvalidRequestLine,
    InvalidRequestMethod,
    InvalidResponseHeader,
    InvalidResponseHeaderName,
    InvalidSchemeHeaders,
    LimitRequestBody,
    LimitRequestHeaders,
    LimitRequestLine,
    ObsoleteFolding,
    ProtocolError,
    UnsupportedTransferCoding,
    error_response,
)
from .dates import http_date
from .events import (
    CONNECTION_CLOSED,
    NEED_DATA,
    BodyData,
    EndOfMessage,
    Event,
    RequestHead,
    Signal,
)
from .limits import Limits
from .parser import ParserState, RequestParser
from .response import (
    CONTINUE_RESPONSE,
    HOP_BY_HOP,
    ResponseFramer,
    is_token,
    is_valid_field_value,
    parse_status,
)
from .scheme import normalize_scheme_headers, scheme_from_normalized, scheme_vote, url_scheme_from_headers

__all__ = [
    "CONNECTION_CLOSED",
    "CONTINUE_RESPONSE",
    "HOP_BY_HOP",
    "NEED_DATA",
    "BodyData",
    "ChunkMissingTerminator",
    "EndOfMessage",
    "Event",
    "ExpectationFailed",
    "IncompleteMessage",
    "InvalidChunkExtension",
    "InvalidChunkSize",
    "InvalidHTTPVersion",
    "InvalidHeader",
    "InvalidHeaderName",
    "InvalidRequestLine",
    "InvalidRequestMethod",
    "InvalidResponseHeader",
    "InvalidResponseHeaderName",
    "InvalidSchemeHeaders",
    "LimitRequestBody",
    "LimitRequestHeaders",
    "LimitRequestLine",
    "Limits",
    "ObsoleteFolding",
    "ParserState",
    "ProtocolError",
    "RequestHead",
    "RequestParser",
    "ResponseFramer",
    "Signal",
    "UnsupportedTransferCoding",
    "http_date",
    "is_token",
    "is_valid_field_value",
    "parse_status",
    "error_response",
    "normalize_scheme_headers",
    "scheme_from_normalized",
    "scheme_vote",
    "url_scheme_from_headers",
]
