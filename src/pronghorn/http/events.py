"""Events produced by :class:`~pronghorn.http.parser.RequestParser`.

A request is delivered as one :class:`RequestHead`, zero or more
:class:`BodyData` and one :class:`EndOfMessage`.  Two sentinels complete the
set: :data:`NEED_DATA` (feed more bytes) and :data:`CONNECTION_CLOSED` (the
peer closed cleanly between requests).
"""

from __future__ import annotations

import enum
from typing import Final, Literal, NamedTuple, Union

Fields = tuple[tuple[bytes, bytes], ...]


class Signal(enum.Enum):
    """Non-data outcomes of ``next_event()``."""

    NEED_DATA = "NEED_DATA"
    CONNECTION_CLOSED = "CONNECTION_CLOSED"

    def __repr__(self) -> str:
        return self.value


NEED_DATA: Final = Signal.NEED_DATA
CONNECTION_CLOSED: Final = Signal.CONNECTION_CLOSED


class RequestHead(NamedTuple):
    """A validated request line and header section.

    ``headers`` keeps wire order with names upper-cased and values trimmed of
    SP/HTAB; names dropped by ``header_map=drop`` are absent.  ``path``,
    ``query`` and ``fragment`` are the raw (not percent-decoded) parts of
    ``target``.  ``keep_alive`` is the parser's view after this request
    (``Connection``, version, forced closes); ``content_length`` is set only
    for Content-Length framing, ``chunked`` for chunked framing; neither means
    no body.
    """

    method: bytes
    target: bytes
    path: bytes
    query: bytes
    fragment: bytes
    version: tuple[int, int]
    headers: Fields
    keep_alive: bool
    expect_continue: bool
    content_length: int | None
    chunked: bool

    @property
    def http_version(self) -> str:
        """``"HTTP/1.1"`` style string (WSGI ``SERVER_PROTOCOL``)."""
        return f"HTTP/{self.version[0]}.{self.version[1]}"

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def get(self, name: bytes) -> bytes | None:
        """First value of the upper-cased field ``name``, or ``None``."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def get_all(self, name: bytes) -> list[bytes]:
        """Every value of the upper-cased field ``name``, in wire order."""
        return [value for key, value in self.headers if key == name]


class BodyData(NamedTuple):
    """A slice of the request body (already de-chunked)."""

    data: bytes


class EndOfMessage(NamedTuple):
    """The body is complete.  Trailers (chunked only) are never merged into headers."""

    trailers: Fields = ()


END_OF_MESSAGE: Final = EndOfMessage()  # the usual end: no trailers (shared, it is immutable)


Event = Union[RequestHead, BodyData, EndOfMessage, Literal[Signal.NEED_DATA, Signal.CONNECTION_CLOSED]]
