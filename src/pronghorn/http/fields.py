"""Field sections (RFC 9112 section 5): the header section and the chunked trailer section.

Two steps, shared by headers and trailers:

* :class:`FieldSectionScanner` finds the end of a section in a growing buffer
  (the first CRLF CRLF, or an immediate CRLF for an empty section).  While the
  section is incomplete it only looks at newly arrived bytes, rejecting a bare
  LF at once and enforcing the section and line size caps early, so a slow or
  hostile peer cannot make it rescan the buffer.
* :func:`parse_field_lines` turns a complete section into ``(NAME, value)``
  pairs: token names (upper-cased), SP/HTAB-trimmed values without control
  bytes, obs-fold handling, per-line and count limits, ``header_map`` for
  names containing ``_``, duplicate and forbidden-trailer checks.
"""

from __future__ import annotations

import re
from typing import Final

from .errors import (
    InvalidHeader,
    InvalidHeaderName,
    LimitRequestHeaders,
    ObsoleteFolding,
    show,
)
from .grammar import CRLF, FIELD_VALUE_CTL, OWS, SECTION_CTL, TCHAR
from .limits import Limits

# Bytes as ints, also for ``in``: ``b"_" in data`` raises and clears a TypeError inside (performance.md).
_UNDERSCORE: Final = 0x5F

# Gunicorn (26.1): a second Host, Content-Type or Content-Length is an error.
# RFC 9110 section 5.3: these fields are not lists, so duplicates are invalid.
_SINGLETONS: Final = frozenset({b"HOST", b"CONTENT-TYPE", b"CONTENT-LENGTH"})
# RFC 9110 section 6.5.1: fields that must not be taken from trailers
# (framing, routing, authentication and the trailer machinery itself).
FORBIDDEN_TRAILERS: Final = frozenset(
    {b"HOST", b"CONTENT-LENGTH", b"TRANSFER-ENCODING", b"TRAILER", b"AUTHORIZATION", b"TE"}
)
_LF: Final = 0x0A
_CR: Final = 0x0D


class FieldSectionScanner:
    """Locate the end of one field section starting at ``start`` in a buffer."""

    __slots__ = ("_limits", "_start", "_scan", "_line_start")

    def __init__(self, limits: Limits, start: int = 0) -> None:
        self._limits = limits
        self._start = self._scan = self._line_start = start

    def reset(self, start: int) -> None:
        self._start = self._scan = self._line_start = start

    def find_end(self, buf: bytearray) -> int:
        """Index just past the section's final CRLF, or -1 if more bytes are needed."""
        start = self._start
        size = len(buf)
        if self._scan == start:
            # RFC 9112 section 2.1: an empty section is just the terminating CRLF.
            if size - start < 2:
                if size == start or buf[start] == _CR:
                    return -1
            elif buf[start] == _CR and buf[start + 1] == _LF:
                return start + 2
        end = buf.find(b"\r\n\r\n", max(start, self._scan - 3))
        if end != -1:
            if end + 4 - start > self._limits.max_field_section:
                raise LimitRequestHeaders("Header section too large")
            return end + 4
        self._check_partial(buf, size)
        return -1

    def _check_partial(self, buf: bytearray, size: int) -> None:
        limits = self._limits
        start = self._start
        # Gunicorn's "max buffer headers": an unfinished section longer than
        # the cap can never become valid.  Checked first so a huge feed is
        # rejected without walking its lines.
        if size - start > limits.max_field_section:
            raise LimitRequestHeaders("Header section too large")
        max_line = limits.max_header_field_size
        at = buf.find(b"\n", self._scan)
        while at != -1:
            # RFC 9112 section 2.2: only CRLF terminates a field line here;
            # a bare LF is rejected at once rather than guessed at.
            if at == start or buf[at - 1] != _CR:
                raise InvalidHeader("Bare LF as line terminator in field section")
            # Each finished line (CRLF included) must fit on its own; an
            # obs-fold continuation only makes its field longer.  Checking
            # here keeps the verdict independent of how the bytes arrived.
            if at + 1 - self._line_start > max_line:
                raise LimitRequestHeaders("Header field too large")
            self._line_start = at + 1
            at = buf.find(b"\n", at + 1)
        # An unfinished line this long can no longer fit max_header_field_size
        # (the line plus its CRLF must fit).
        if size - self._line_start >= max_line:
            raise LimitRequestHeaders("Header field too large")
        self._scan = size


# One line of the sections the quick path takes: a token name without "_" (those depend on
# header_map and forwarder_headers), ":", and a value of VCHAR, SP, HTAB and obs-text (no CTL, no
# DEL), then CRLF. Checked with one compiled match, not a translate per line (each builds a 256-byte
# table); the parser's whole-head scan (``_head.c``) takes the same lines.
PLAIN_FIELD_LINE: Final = rb"[!#$%&'*+\-.^`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n"
_PLAIN_SECTION: Final = re.compile(rb"(?:" + PLAIN_FIELD_LINE + rb")+")


def parse_field_lines(block: bytes, limits: Limits, *, trailers: bool = False) -> list[tuple[bytes, bytes]]:
    """Parse a complete section (every line CRLF-terminated, final empty line excluded)."""
    if not block:
        return []
    if not trailers and len(block) <= limits.max_header_field_size:
        plain = _plain_fields(block, limits)
        if plain is not None:
            return plain
    lines = block[:-2].split(CRLF)
    count = len(lines)
    # Fast path: no control bytes anywhere and every CR/LF belongs to a CRLF,
    # so values need no per-line control-byte search.
    clean = (
        SECTION_CTL.search(block) is None
        and block.count(b"\r") == count
        and block.count(b"\n") == count
    )
    max_count, max_size, folding, strip_name, header_map, allowed, allow_all = limits.field_rules
    fields: list[tuple[bytes, bytes]] = []
    seen_singletons: set[bytes] | None = None
    seen = 0
    index = 0
    while index < count:
        line = lines[index]
        index += 1
        if not clean and _LF in line:
            # RFC 9112 section 2.2: the same verdict as the incremental scan
            # (bare LF as a line terminator), however the bytes were split.
            raise InvalidHeader("Bare LF as line terminator in field section")
        if seen >= max_count:
            raise LimitRequestHeaders("Too many header fields")
        seen += 1
        if line[:1] in (b" ", b"\t"):
            # Only possible for the first line (later continuations are consumed
            # below). RFC 9112 section 2.2: whitespace between the start-line and
            # the first field line is rejected; obs-fold needs a preceding field.
            raise InvalidHeader(f"Whitespace before the first field line {show(line)}")
        colon = line.find(b":")
        if colon <= 0:
            raise InvalidHeader(f"Invalid header line {show(line)}")
        name = line[:colon]
        if strip_name:
            name = name.rstrip(OWS)
        # RFC 9110 section 5.1: field-name = token (no whitespace before ":",
        # RFC 9112 section 5.1).
        if not name or name.translate(None, TCHAR):
            raise InvalidHeaderName(f"Invalid header name {show(name)}")
        # RFC 9112 section 5.1: OWS around the field value is not part of it.
        value = line[colon + 1 :].strip(OWS)
        size = len(line) + 2
        while index < count and lines[index][:1] in (b" ", b"\t"):
            # RFC 9112 section 5.2: obs-fold is rejected unless permitted, and
            # then replaced by a single SP; it counts toward the line size.
            if not folding:
                raise ObsoleteFolding(f"Obsolete line folding {show(lines[index])}")
            continuation = lines[index]
            index += 1
            size += len(continuation) + 2
            part = continuation.strip(OWS)
            if part:
                value = value + b" " + part if value else part
        if size > max_size:
            raise LimitRequestHeaders(f"Header field too large: {show(name)}")
        # RFC 9110 section 5.5: CR, LF, NUL and other CTLs are invalid in values.
        if not clean and FIELD_VALUE_CTL.search(value) is not None:
            raise InvalidHeader(f"Invalid character in value of {show(name)}")
        upper = name.upper()
        if _UNDERSCORE in upper and not (allow_all or upper in allowed):
            # Names with "_" collide with "-" names in CGI/WSGI environ keys.
            if header_map == "drop":
                continue
            if header_map == "refuse":
                raise InvalidHeaderName(f"Header name with underscore refused {show(name)}")
        if trailers and upper in FORBIDDEN_TRAILERS:
            raise InvalidHeaderName(f"Field not allowed in trailers {show(name)}")
        if upper in _SINGLETONS:
            if seen_singletons is None:
                seen_singletons = {upper}
            elif upper in seen_singletons:
                raise InvalidHeader(f"Duplicate {show(name)} header")
            else:
                seen_singletons.add(upper)
        fields.append((upper, value))
    return fields


def _plain_fields(block: bytes, limits: Limits) -> list[tuple[bytes, bytes]] | None:
    """The usual section, quickly: only CRLF as control bytes, every line ``token:value`` with no
    folding or "_" name, no duplicated singleton, within the count cap (and, the section being no
    longer than one field may be, within the size cap). Anything else returns None and the full
    loop gives the verdict."""
    if _PLAIN_SECTION.fullmatch(block) is None:
        return None
    return split_plain_fields(block, limits)


def split_plain_fields(block: bytes, limits: Limits) -> list[tuple[bytes, bytes]] | None:
    """A section whose every line matched ``PLAIN_FIELD_LINE``, no longer than ``max_header_field_size``:
    its fields, or None (the full loop decides) past the count cap or with a repeated singleton."""
    lines = block[:-2].split(CRLF)
    count = len(lines)
    if count > limits.max_header_count:
        return None
    fields: list[tuple[bytes, bytes]] = []
    for line in lines:
        name, _, value = line.partition(b":")
        fields.append((name.upper(), value.strip(OWS)))
    if count > 1 and len(dict(fields)) != count:  # some name repeats: is it a singleton?
        names = [name for name, _ in fields]
        for singleton in _SINGLETONS:
            if names.count(singleton) > 1:
                return None
    return fields
