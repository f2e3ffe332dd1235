"""``wsgi.url_scheme`` from trusted secure-scheme headers (Gunicorn's ``secure_scheme_headers``).

Only call this for peers the caller trusts (Gunicorn: ``forwarded_allow_ips``;
unix-socket peers always).  Trailers are never consulted: pass the head's
headers only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .errors import InvalidSchemeHeaders
from .grammar import OWS


def url_scheme_from_headers(
    headers: Iterable[tuple[bytes, bytes]],
    secure_scheme_headers: Mapping[bytes, bytes],
) -> str | None:
    """``"https"``/``"http"`` from the first matching header, or ``None`` if none matches.

    ``secure_scheme_headers`` maps upper-cased names to the value meaning
    HTTPS (e.g. ``{b"X-FORWARDED-PROTO": b"https"}``); values are compared
    ASCII case-insensitively.  A later matching header that disagrees raises
    :class:`InvalidSchemeHeaders` (400).
    """
    return scheme_from_normalized(headers, normalize_scheme_headers(secure_scheme_headers))


def normalize_scheme_headers(secure_scheme_headers: Mapping[bytes, bytes]) -> dict[bytes, bytes]:
    """Upper-case names and trimmed lower-case values, as ``scheme_from_normalized`` expects."""
    return {name.upper(): value.strip(OWS).lower() for name, value in secure_scheme_headers.items()}


def scheme_from_normalized(headers: Iterable[tuple[bytes, bytes]], wanted: Mapping[bytes, bytes]) -> str | None:
    """``url_scheme_from_headers`` with the mapping normalised once by the caller (the hot path)."""
    scheme: str | None = None
    for name, value in headers:
        secure_value = wanted.get(name)
        if secure_value is not None:
            scheme = scheme_vote(scheme, value, secure_value)
    return scheme


def scheme_vote(scheme: str | None, value: bytes, secure_value: bytes) -> str:
    """One matching header's say: the scheme it means, which must agree with ``scheme`` (the
    earlier headers' one, if any), else :class:`InvalidSchemeHeaders`."""
    this = "https" if value.lower() == secure_value else "http"
    if scheme is not None and scheme != this:
        raise InvalidSchemeHeaders("Contradictory scheme headers")
    return this
