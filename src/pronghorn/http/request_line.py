"""The request line (RFC 9112 section 3): method, request-target, version.

``parse_request_line`` receives the line without its CRLF (the parser has
already enforced the length limit and rejected bare LF) and either returns a
:class:`RequestLine` or raises the matching :class:`ProtocolError`.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

from .errors import InvalidHTTPVersion, InvalidRequestLine, InvalidRequestMethod, show
from .grammar import ALPHA, DIGIT, HEXDIG, SCHEME_CHAR, is_digits, is_token_bytes
from .limits import Limits

# Gunicorn's conventional-method rule: no lower case, no "#", 3..20 bytes.
_UNCONVENTIONAL: Final = b"abcdefghijklmnopqrstuvwxyz#"
# RFC 3986 section 3.2.2: reg-name = *( unreserved / pct-encoded / sub-delims )
_REG_NAME: Final = ALPHA + DIGIT + b"-._~%!$&'()*+,;="
# RFC 3986 section 3.2.2: IP-literal contents (IPv6address, IPvFuture, zone ids)
_IP_LITERAL: Final = HEXDIG + b":.vV%-_~"
_HTTP_PREFIX: Final = b"HTTP/"
# RFC 9112 section 3.2 / RFC 3986: anything but visible ASCII (CTL, SP, DEL, non-ASCII). A compiled
# search: bytes.translate builds a 256-byte table on every call, a cost for a one-byte target.
_NOT_VCHAR: Final = re.compile(rb"[^\x21-\x7e]")
# Valid under every setting (conventional, upper case, tokens): no per-byte checks needed.
_COMMON_METHODS: Final = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"})
_COMMON_VERSIONS: Final = {b"HTTP/1.1": (1, 1), b"HTTP/1.0": (1, 0)}


class RequestLine(NamedTuple):
    method: bytes
    target: bytes
    path: bytes
    query: bytes
    fragment: bytes
    version: tuple[int, int]


_new_line: Final = tuple.__new__  # builds the named tuple in C, skipping its Python-level __new__


def parse_request_line(line: bytes, limits: Limits) -> RequestLine:
    # RFC 9112 section 3: request-line = method SP request-target SP HTTP-version.
    # Splitting on single SP: a double space yields an empty target or a
    # version with a leading SP, both rejected below.
    parts = line.split(b" ", 2)
    if len(parts) != 3:
        raise InvalidRequestLine(f"Invalid request line {show(line)}")
    method, target, version_bytes = parts
    if method not in _COMMON_METHODS:
        method = _check_method(method, limits)
    path, query, fragment = _check_target(method, target)
    version = _COMMON_VERSIONS.get(version_bytes) or _check_version(version_bytes, limits)
    return _new_line(RequestLine, (method, target, path, query, fragment, version))


def _check_method(method: bytes, limits: Limits) -> bytes:
    if not limits.permit_unconventional_method:
        if not 3 <= len(method) <= 20 or len(method.translate(None, _UNCONVENTIONAL)) != len(
            method
        ):
            raise InvalidRequestMethod(f"Invalid method {show(method)}")
    # RFC 9110 section 9.1: method = token
    if not is_token_bytes(method):
        raise InvalidRequestMethod(f"Invalid method {show(method)}")
    if limits.casefold_method:
        method = method.upper()
    return method


def _check_version(version: bytes, limits: Limits) -> tuple[int, int]:
    # RFC 9112 section 2.3: HTTP-version = "HTTP" "/" DIGIT "." DIGIT (case-sensitive)
    if (
        len(version) != 8
        or not version.startswith(_HTTP_PREFIX)
        or version[5] not in DIGIT
        or version[6] != 0x2E
        or version[7] not in DIGIT
    ):
        raise InvalidHTTPVersion(f"Invalid HTTP version {show(version)}")
    parsed = (version[5] - 0x30, version[7] - 0x30)
    if not limits.permit_unconventional_version and not (1, 0) <= parsed < (2, 0):
        raise InvalidHTTPVersion(f"Unsupported HTTP version {show(version)}")
    return parsed


def _check_target(method: bytes, target: bytes) -> tuple[bytes, bytes, bytes]:
    """Validate the request-target form; return raw (path, query, fragment)."""
    if not target:
        raise InvalidRequestLine("Empty request target")
    # RFC 9112 section 3.2 / RFC 3986: targets are visible ASCII only (no CTL,
    # SP, DEL or raw non-ASCII bytes).
    if _NOT_VCHAR.search(target) is not None:
        raise InvalidRequestLine(f"Invalid bytes in request target {show(target)}")
    if method == b"CONNECT":
        # RFC 9112 section 3.2.3: CONNECT uses authority-form, and only it does.
        _check_authority_form(target)
        return target, b"", b""
    if target[0] == 0x2F:  # "/": origin-form, RFC 9112 section 3.2.1 ("//" kept as is)
        return _split_path(target)
    if target == b"*":
        # RFC 9112 section 3.2.4: asterisk-form is only for server-wide OPTIONS.
        if method != b"OPTIONS":
            raise InvalidRequestLine("Asterisk-form target is only allowed with OPTIONS")
        return target, b"", b""
    sep = target.find(b"://")
    if sep > 0:
        # RFC 9112 section 3.2.2: absolute-form; RFC 3986 section 3.1 scheme syntax.
        scheme = target[:sep]
        if scheme[0] not in ALPHA or scheme.translate(None, SCHEME_CHAR):
            raise InvalidRequestLine(f"Invalid scheme in request target {show(target)}")
        rest = target[sep + 3 :]
        end = len(rest)
        for stop in (b"/", b"?", b"#"):
            at = rest.find(stop, 0, end)
            if at != -1:
                end = at
        if end == 0:
            # RFC 9110 section 4.2.1: an http(s) URI with an empty host is invalid.
            raise InvalidRequestLine(f"Empty authority in request target {show(target)}")
        _check_brackets(rest[:end], target)
        return _split_path(rest[end:])
    raise InvalidRequestLine(f"Invalid request target {show(target)}")


def _check_authority_form(target: bytes) -> None:
    # RFC 9112 section 3.2.3: authority-form = uri-host ":" port (no userinfo).
    colon = target.rfind(b":")
    host, port = target[:colon], target[colon + 1 :]
    if colon <= 0 or not is_digits(port):
        raise InvalidRequestLine(f"Invalid authority-form target {show(target)}")
    if host[0] == 0x5B:  # "[" IP-literal "]"
        valid = len(host) > 2 and host[-1] == 0x5D and not host[1:-1].translate(None, _IP_LITERAL)
    else:
        valid = not host.translate(None, _REG_NAME)
    if not valid:
        raise InvalidRequestLine(f"Invalid authority-form target {show(target)}")


def _check_brackets(authority: bytes, target: bytes) -> None:
    """RFC 3986 section 3.2.2: "[" and "]" only delimit an IP-literal host.

    The rest of the authority is left alone (Gunicorn accepts userinfo and
    any reg-name), but an unbalanced or misplaced bracket is what makes
    Gunicorn's ``urlsplit`` raise, so it is rejected here too.
    """
    if 0x5B not in authority and 0x5D not in authority:  # "[", "]" as ints (bytes needles cost a TypeError inside)
        return
    hostport = authority[authority.rfind(b"@") + 1 :]  # RFC 3986 section 3.2: [ userinfo "@" ]
    close = hostport.find(b"]")
    tail = hostport[close + 1 :]
    valid = (
        hostport[:1] == b"["
        and close > 1
        and hostport.count(b"[") == 1
        and hostport.count(b"]") == 1
        and not hostport[1:close].translate(None, _IP_LITERAL)
        # RFC 3986 section 3.2.3: after the literal only ":" port may follow.
        and (not tail or (tail[:1] == b":" and not tail[1:].translate(None, DIGIT)))
    )
    if not valid:
        raise InvalidRequestLine(f"Invalid IP-literal in request target {show(target)}")


def _split_path(rest: bytes) -> tuple[bytes, bytes, bytes]:
    fragment = b""
    hash_at = rest.find(b"#")
    if hash_at != -1:
        rest, fragment = rest[:hash_at], rest[hash_at + 1 :]
    query_at = rest.find(b"?")
    if query_at == -1:
        return rest, b"", fragment
    return rest[:query_at], rest[query_at + 1 :], fragment
