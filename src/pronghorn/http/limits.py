"""Parser limits and leniency switches, as one small immutable value.

The HTTP layer never reads settings itself: callers build a :class:`Limits`
(usually with :meth:`Limits.from_settings`, passing Gunicorn-style setting
values straight in) and hand it to the parser.  Construction always
normalises the numeric limits with Gunicorn's clamps (and refuses a negative
body limit, which has no meaning), so an out-of-range ``Limits`` value cannot
exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal, cast

# Gunicorn's hard ceilings (same numbers, so settings behave identically).
MAX_REQUEST_LINE = 8190
UNLIMITED_REQUEST_LINE = 1 << 20  # "0 = unlimited" still needs a ceiling: 1 MiB
MAX_HEADERS = 32768
DEFAULT_MAX_HEADERFIELD_SIZE = 8190
DEFAULT_MAX_CHUNK_EXTENSION = 4096
DEFAULT_MAX_BODY_SIZE = 1 << 30  # limit_request_body's default (pronghorn's own setting): 1 GiB

HeaderMap = Literal["drop", "refuse", "dangerous"]
_HEADER_MAP_VALUES: frozenset[str] = frozenset({"drop", "refuse", "dangerous"})


def _clamp_request_line(value: int) -> int:
    if value == 0:
        return UNLIMITED_REQUEST_LINE
    if value < 0 or value >= MAX_REQUEST_LINE:
        return MAX_REQUEST_LINE
    return value


def _clamp_header_count(value: int) -> int:
    if value <= 0 or value > MAX_HEADERS:
        return MAX_HEADERS
    return value


def _clamp_field_size(value: int) -> int:
    return DEFAULT_MAX_HEADERFIELD_SIZE if value <= 0 else value


def _clamp_chunk_extension(value: int) -> int:
    return DEFAULT_MAX_CHUNK_EXTENSION if value <= 0 else value


class Limits:
    """Size limits and leniency switches for :class:`~pronghorn.http.parser.RequestParser`.

    ``max_request_line``: bytes of the request line before CRLF (0 = unlimited,
    capped at 1 MiB; negative or >= 8190 -> 8190).  ``max_header_count``: field
    lines per header or trailer section (<= 0 or > 32768 -> 32768).
    ``max_header_field_size``: bytes per field line including name, colon,
    value, CRLF and obs-fold continuation lines (<= 0 -> 8190).
    ``max_chunk_extension``: bytes of chunk-ext per chunk (<= 0 -> 4096).
    ``max_body_size``: bytes of request body, counted after de-chunking (0 =
    unlimited; negative raises ``ValueError``); larger bodies get 413.
    ``header_map`` decides what happens to field names containing ``_``
    unless they are listed in ``underscore_names_allowed`` (upper-cased names,
    or ``b"*"`` for all).  ``require_host`` rejects HTTP/1.1 requests without
    a Host field (off by default, as in Gunicorn; see the parser docstring).
    """

    # Immutable (assignment raises), compared by value; not a dataclass: ``dataclasses`` would be
    # imported into every worker for this and a few other small classes (about 0.15 MiB).
    __slots__ = (
        "max_request_line", "max_header_count", "max_header_field_size", "max_chunk_extension", "max_body_size",
        "permit_obsolete_folding", "strip_header_spaces", "permit_unconventional_method",
        "permit_unconventional_version", "casefold_method", "header_map", "underscore_names_allowed",
        "require_host", "max_field_section", "field_rules", "usual_head_caps",
    )
    _FIELDS: Final = __slots__[:13]  # the constructor's; the last three are derived from them

    max_request_line: int
    max_header_count: int
    max_header_field_size: int
    max_chunk_extension: int
    max_body_size: int
    permit_obsolete_folding: bool
    strip_header_spaces: bool
    permit_unconventional_method: bool
    permit_unconventional_version: bool
    casefold_method: bool
    header_map: HeaderMap
    underscore_names_allowed: frozenset[bytes]
    require_host: bool
    max_field_section: int
    field_rules: tuple[int, int, bool, bool, HeaderMap, frozenset[bytes], bool]
    usual_head_caps: tuple[int, int, int, int]

    def __init__(
        self,
        max_request_line: int = 4094,
        max_header_count: int = 100,
        max_header_field_size: int = 8190,
        max_chunk_extension: int = DEFAULT_MAX_CHUNK_EXTENSION,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        permit_obsolete_folding: bool = False,
        strip_header_spaces: bool = False,
        permit_unconventional_method: bool = False,
        permit_unconventional_version: bool = False,
        casefold_method: bool = False,
        header_map: HeaderMap = "drop",
        underscore_names_allowed: frozenset[bytes] = frozenset(),
        require_host: bool = False,
    ) -> None:
        if header_map not in _HEADER_MAP_VALUES:
            raise ValueError(f"header_map must be one of drop, refuse, dangerous; got {header_map!r}")
        if max_body_size < 0:
            raise ValueError(f"max_body_size must be a non-negative integer (0 = unlimited); got {max_body_size!r}")
        allowed = frozenset(name.upper() for name in underscore_names_allowed)
        count = _clamp_header_count(max_header_count)
        size = _clamp_field_size(max_header_field_size)
        line = _clamp_request_line(max_request_line)
        section = count * (size + 2) + 4  # byte cap for a whole header (or trailer) section, final CRLF included
        values = (
            line, count, size, _clamp_chunk_extension(max_chunk_extension),
            max_body_size, permit_obsolete_folding, strip_header_spaces, permit_unconventional_method,
            permit_unconventional_version, casefold_method, header_map, allowed, require_host,
            section,
            # What ``parse_field_lines`` reads on every call, in one attribute: count and size caps,
            # folding, name stripping, ``header_map``, underscore names allowed, and whether all are.
            (count, size, permit_obsolete_folding, strip_header_spaces, header_map, allowed, b"*" in allowed),
            # What the parser's quick path (``_head.scan_head``) checks, in one attribute.
            (line, section, size, count),
        )
        for name, value in zip(self.__slots__, values):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Limits are immutable: cannot set {name!r}")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._FIELDS)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Limits) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return "Limits(" + ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS) + ")"

    @classmethod
    def from_settings(
        cls,
        *,
        limit_request_line: int = 4094,
        limit_request_fields: int = 100,
        limit_request_field_size: int = 8190,
        limit_request_body: int = DEFAULT_MAX_BODY_SIZE,
        permit_obsolete_folding: bool = False,
        strip_header_spaces: bool = False,
        permit_unconventional_http_method: bool = False,
        permit_unconventional_http_version: bool = False,
        casefold_http_method: bool = False,
        header_map: str = "drop",
        forwarder_headers: Iterable[str | bytes] = (),
        require_host: bool = False,
    ) -> Limits:
        """Build limits from Gunicorn setting values (names as in Gunicorn, plus pronghorn's own
        ``limit_request_body``).

        ``forwarder_headers`` must only be passed for peers the caller trusts
        (Gunicorn: ``forwarded_allow_ips``); names are upper-cased, ``*`` allows all.
        """
        # The constructor checks header_map and upper-cases the names.
        allowed = frozenset(name.encode("latin-1") if isinstance(name, str) else name for name in forwarder_headers)
        return cls(
            max_request_line=limit_request_line,
            max_header_count=limit_request_fields,
            max_header_field_size=limit_request_field_size,
            max_body_size=limit_request_body,
            permit_obsolete_folding=permit_obsolete_folding,
            strip_header_spaces=strip_header_spaces,
            permit_unconventional_method=permit_unconventional_http_method,
            permit_unconventional_version=permit_unconventional_http_version,
            casefold_method=casefold_http_method,
            header_map=cast(HeaderMap, header_map),
            underscore_names_allowed=allowed,
            require_host=require_host,
        )
