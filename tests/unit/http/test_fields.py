"""Header-section rules (RFC 9110 section 5, RFC 9112 section 5; Gunicorn reference section 6, "Header checks")."""

from __future__ import annotations

import pytest
from http_replay import accept, reject, replay

from pronghorn.http import (
    ExpectationFailed,
    InvalidHeader,
    InvalidHeaderName,
    Limits,
    ObsoleteFolding,
    ProtocolError,
)

FOLDING = Limits(permit_obsolete_folding=True)


def req(*lines: bytes, version: bytes = b"1.1") -> bytes:
    return b"GET / HTTP/" + version + b"\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (b"x-a: v", (b"X-A", b"v")),
        (b"X-A:v", (b"X-A", b"v")),
        (b"X-A: \t v w \t ", (b"X-A", b"v w")),
        (b"X-A:", (b"X-A", b"")),
        (b"X-A:   ", (b"X-A", b"")),
        (b"X-A: a\tb", (b"X-A", b"a\tb")),
        (b"X-A: \x80\xff caf\xc3\xa9", (b"X-A", b"\x80\xff caf\xc3\xa9")),  # obs-text
        (b"X-A: a:b: c", (b"X-A", b"a:b: c")),
        (b"!#$%&'*+-.^_`|~09azAZ: t", (b"!#$%&'*+-.^_`|~09AZAZ", b"t")),
    ],
)
def test_field_lines(line: bytes, field: tuple[bytes, bytes]) -> None:
    limits = Limits(header_map="dangerous")
    assert accept(req(line), limits).head.headers == (field,)


def test_fields_keep_wire_order_and_repeats() -> None:
    head = accept(req(b"B: 1", b"A: 2", b"b: 3")).head
    assert head.headers == ((b"B", b"1"), (b"A", b"2"), (b"B", b"3"))
    assert head.get(b"B") == b"1" and head.get(b"C") is None
    assert head.get_all(b"B") == [b"1", b"3"]


def test_empty_header_section() -> None:
    assert accept(b"GET / HTTP/1.1\r\n\r\n").head.headers == ()


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b": v", InvalidHeader),
        (b"NoColon", InvalidHeader),
        (b"", InvalidHeader),  # stray CRLF (the section ends at the first CRLFCRLF, this is inside)
        (b"Name : v", InvalidHeaderName),
        (b"Name\t: v", InvalidHeaderName),
        (b"Na me: v", InvalidHeaderName),
        (b"Na\x00me: v", InvalidHeaderName),
        (b"Stra\xc3\x9fe: v", InvalidHeaderName),
        (b"\xffX: v", InvalidHeaderName),
        (b'X"Y: v', InvalidHeaderName),
        (b"X(Y): v", InvalidHeaderName),
        (b"X/Y: v", InvalidHeaderName),
        (b"X-A: a\x00b", InvalidHeader),
        (b"X-A: a\x01", InvalidHeader),
        (b"X-A: \x08", InvalidHeader),
        (b"X-A: a\x0bb", InvalidHeader),
        (b"X-A: a\x0cb", InvalidHeader),
        (b"X-A: a\x1fb", InvalidHeader),
        (b"X-A: a\x7fb", InvalidHeader),
        (b"X-A: a\rb", InvalidHeader),
        (b"X-A: a\nb", InvalidHeader),  # bare LF inside the block
        (b"X-A: a\n", InvalidHeader),
        (b"X-A: a\r\n\n", InvalidHeader),
    ],
)
def test_invalid_field_lines(line: bytes, error: type[ProtocolError]) -> None:
    raw = b"GET / HTTP/1.1\r\nHost: h\r\n" + line + b"\r\n\r\n"
    if line == b"":
        raw = b"GET / HTTP/1.1\r\nHost: h\r\n\rX\r\n\r\n"
    assert type(reject(raw)) is error


def test_bare_lf_is_rejected_before_the_section_completes() -> None:
    # RFC 9112 section 2.2 / Gunicorn 27.0: rejected at once, without waiting for CRLFCRLF.
    out = replay([b"GET / HTTP/1.1\r\nHost: h\nX: "], eof=False)
    assert type(out.error) is InvalidHeader
    out = replay([b"GET / HTTP/1.1\r\n\nX"], eof=False)
    assert type(out.error) is InvalidHeader


def test_whitespace_before_first_field_line() -> None:
    assert isinstance(reject(req(b" X: v")), (InvalidHeader, InvalidHeaderName))
    assert isinstance(reject(req(b"\tX: v"), FOLDING), (InvalidHeader, InvalidHeaderName))


def test_strip_header_spaces_rstrips_the_name() -> None:
    limits = Limits(strip_header_spaces=True)
    assert accept(req(b"Name \t: v"), limits).head.headers == ((b"NAME", b"v"),)
    assert type(reject(req(b" Name: v"), limits)) in (InvalidHeader, InvalidHeaderName)


@pytest.mark.parametrize("fold", [b" more", b"\tmore", b"  \t more  "])
def test_obs_fold_rejected_by_default(fold: bytes) -> None:
    assert type(reject(req(b"X-A: v", fold))) is ObsoleteFolding


@pytest.mark.parametrize(
    ("lines", "value"),
    [
        ((b"X-A: v", b" more"), b"v more"),
        ((b"X-A: v", b"\t more \t", b" and more"), b"v more and more"),
        ((b"X-A:", b" v"), b"v"),
        ((b"X-A: v", b"   "), b"v"),
    ],
)
def test_obs_fold_joined_with_one_space_when_permitted(lines: tuple[bytes, ...], value: bytes) -> None:
    assert accept(req(*lines), FOLDING).head.headers == ((b"X-A", value),)


def test_obs_fold_value_still_checked_for_controls() -> None:
    assert type(reject(req(b"X-A: v", b" a\x00b"), FOLDING)) is InvalidHeader


@pytest.mark.parametrize("name", [b"Host", b"Content-Type", b"Content-Length"])
@pytest.mark.parametrize("second", [b"same", b"other"])
def test_duplicate_singleton_fields(name: bytes, second: bytes) -> None:
    value = b"5" if name == b"Content-Length" else b"same"
    other = value if second == b"same" else b"6" if name == b"Content-Length" else b"other"
    error = reject(req(name + b": " + value, name.lower() + b": " + other))
    assert type(error) is InvalidHeader and error.status == 400


# -- header_map and forwarder_headers --------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "kept"),
    [
        (Limits(), False),
        (Limits(header_map="dangerous"), True),
        (Limits.from_settings(header_map="drop", forwarder_headers=["X_FORWARDED"]), True),
        (Limits.from_settings(header_map="drop", forwarder_headers=["x_forwarded"]), True),
        (Limits.from_settings(header_map="refuse", forwarder_headers=[b"X_FORWARDED"]), True),
        (Limits.from_settings(header_map="drop", forwarder_headers=["*"]), True),
        (Limits.from_settings(header_map="drop", forwarder_headers=["OTHER_NAME"]), False),
    ],
)
def test_header_map_underscore_names(limits: Limits, kept: bool) -> None:
    head = accept(req(b"X_Forwarded: 1", b"X-Forwarded: 2"), limits).head
    expected = ((b"X_FORWARDED", b"1"), (b"X-FORWARDED", b"2")) if kept else ((b"X-FORWARDED", b"2"),)
    assert head.headers == expected


def test_header_map_refuse() -> None:
    assert type(reject(req(b"X_A: 1"), Limits(header_map="refuse"))) is InvalidHeaderName
    assert type(reject(req(b"X_A: 1"), Limits.from_settings(header_map="refuse"))) is InvalidHeaderName


def test_dropped_names_still_count_toward_the_field_limit() -> None:
    limits = Limits(max_header_count=2)
    assert accept(req(b"A_1: x", b"B: y"), limits).head.headers == ((b"B", b"y"),)
    assert reject(req(b"A_1: x", b"A_2: x", b"B: y"), limits).status == 431


@pytest.mark.parametrize("bad", ["", "DROP", "allow", "ignore"])
def test_header_map_values_are_validated(bad: str) -> None:
    with pytest.raises(ValueError):
        Limits.from_settings(header_map=bad)
    with pytest.raises(ValueError):
        Limits(header_map=bad)  # type: ignore[arg-type]


# -- Expect (RFC 9110 section 10.1.1) --------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "value", "expect_continue"),
    [
        (b"1.1", b"100-continue", True),
        (b"1.1", b"100-Continue", True),
        (b"1.1", b"100-CONTINUE", True),
        (b"1.0", b"100-continue", False),  # ignored on HTTP/1.0
    ],
)
def test_expect_100_continue(version: bytes, value: bytes, expect_continue: bool) -> None:
    head = accept(req(b"Expect: " + value, version=version)).head
    assert head.expect_continue is expect_continue


def test_no_expect_field() -> None:
    assert accept(req(b"Host: h")).head.expect_continue is False


@pytest.mark.parametrize("version", [b"1.1", b"1.0"])
@pytest.mark.parametrize("value", [b"", b"foo", b"100-continue, foo", b"100-continuex", b"200-ok", b"100 continue"])
def test_other_expectations_are_417(version: bytes, value: bytes) -> None:
    error = reject(req(b"Expect: " + value, version=version))
    assert type(error) is ExpectationFailed
    assert (error.status, error.reason) == (417, "Expectation Failed")


def test_missing_host_only_rejected_when_required() -> None:
    assert accept(b"GET / HTTP/1.1\r\n\r\n").head.get(b"HOST") is None
    assert type(reject(b"GET / HTTP/1.1\r\n\r\n", Limits(require_host=True))) is InvalidHeader
    assert accept(b"GET / HTTP/1.0\r\n\r\n", Limits(require_host=True)).head.version == (1, 0)
    assert accept(req(b"Host: h"), Limits(require_host=True)).head.get(b"HOST") == b"h"
