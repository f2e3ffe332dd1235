"""Byte classes from RFC 9110/9112 and tiny predicates over them.

Everything that judges wire data goes through these explicit sets, never
through ``str.isdigit``/``int()``/``\\s``-style helpers that accept more than
the RFCs allow (Unicode digits, ``_`` separators, signs, form feeds...).
"""

from __future__ import annotations

import re
from typing import Final

DIGIT: Final = b"0123456789"
HEXDIG: Final = DIGIT + b"abcdefABCDEF"
ALPHA: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# RFC 9110 section 5.6.2: tchar
TCHAR: Final = b"!#$%&'*+-.^_`|~" + DIGIT + ALPHA
# RFC 5234 appendix B.1: VCHAR (visible ASCII)
VCHAR: Final = bytes(range(0x21, 0x7F))
# RFC 3986 section 3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
SCHEME_CHAR: Final = ALPHA + DIGIT + b"+-."
# RFC 9110 section 5.6.3: OWS / BWS
OWS: Final = b" \t"
CRLF: Final = b"\r\n"

# RFC 9110 section 5.5: field-value bytes other than VCHAR, SP, HTAB, obs-text
# (i.e. CTLs without HTAB, plus DEL) are rejected.
FIELD_VALUE_CTL: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# The same class, but letting CR and LF through: used on whole field sections
# whose CRLFs are counted separately (fast path).
SECTION_CTL: Final = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# Largest decimal length we convert (2**63-1 has 19 digits); longer values are
# rejected before int() so no huge-number parsing happens on wire data.
MAX_DECIMAL_DIGITS: Final = 19
MAX_DECIMAL_VALUE: Final = (1 << 63) - 1


def is_token_bytes(data: bytes) -> bool:
    """RFC 9110 section 5.6.2: token = 1*tchar."""
    return bool(data) and not data.translate(None, TCHAR)


def is_digits(data: bytes) -> bool:
    """1*DIGIT (ASCII only)."""
    return bool(data) and not data.translate(None, DIGIT)


def is_hexdigits(data: bytes) -> bool:
    """1*HEXDIG (ASCII only, either case)."""
    return bool(data) and not data.translate(None, HEXDIG)


def decimal_value(data: bytes) -> int | None:
    """Value of 1*DIGIT up to 2**63-1, or ``None`` if ``data`` is anything else."""
    if len(data) <= 18 and data.isdigit():  # bytes.isdigit() is ASCII-only; 18 digits < 2**63
        return int(data)
    if not is_digits(data):
        return None
    significant = data.lstrip(b"0")
    if len(significant) > MAX_DECIMAL_DIGITS:
        return None
    value = int(significant or b"0")  # bytes checked against DIGIT above
    return value if value <= MAX_DECIMAL_VALUE else None


def trim_ows(data: bytes) -> bytes:
    """Strip SP/HTAB only (RFC 9110 section 5.5: OWS around field values)."""
    return data.strip(OWS)
