"""Body framing and persistence (RFC 9112 sections 6 and 9; Gunicorn reference section 6, "Body framing")."""

from __future__ import annotations

import pytest
from http_replay import accept, reject

from pronghorn.http import InvalidHeader, ProtocolError, UnsupportedTransferCoding


def req(*lines: bytes, version: bytes = b"1.1", method: bytes = b"POST", target: bytes = b"/") -> bytes:
    head = method + b" " + target + b" HTTP/" + version + b"\r\nHost: h\r\n"
    return head + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


CHUNKED_BODY = b"5\r\nhello\r\n0\r\n\r\n"

# -- Content-Length (RFC 9110 section 8.6, RFC 9112 section 6.3) -------------------------------------


@pytest.mark.parametrize(("value", "length"), [(b"0", 0), (b"5", 5), (b"005", 5), (b" 5 ", 5), (b"\t5", 5)])
def test_valid_content_length(value: bytes, length: int) -> None:
    done = accept(req(b"Content-Length: " + value) + b"hello"[:length])
    assert done.head.content_length == length and not done.head.chunked
    assert done.body == b"hello"[:length]
    assert done.head.has_body is (length > 0)


@pytest.mark.parametrize(
    "value",
    [
        b"-1", b"+1", b"-0", b"0_1", b"0 1", b"3 1", b"5, 5", b"5,5", b"bla", b"", b"0x5", b"5.0", b"1e3",
        b"\xd9\xa1",  # ARABIC-INDIC DIGIT ONE (UTF-8)
        b"\xb2",  # SUPERSCRIPT TWO (latin-1): str.isnumeric() says yes, the RFC says no
        b"99999999999999999999",  # beyond 2**63-1
    ],
)
def test_invalid_content_length(value: bytes) -> None:
    error = reject(req(b"Content-Length: " + value))
    assert type(error) is InvalidHeader and error.status == 400


def test_huge_leading_zero_content_length_is_fine() -> None:
    assert accept(req(b"Content-Length: " + b"0" * 100 + b"3") + b"abc").body == b"abc"


def test_no_framing_means_no_body() -> None:
    done = accept(req())  # POST without CL or TE: length 0, never read to EOF
    assert done.body == b"" and done.head.content_length is None and not done.head.chunked
    assert not done.head.has_body


# -- Transfer-Encoding (RFC 9112 sections 6.1 and 6.3) --------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "keep_alive"),
    [
        ((b"Transfer-Encoding: chunked",), True),
        ((b"Transfer-Encoding: Chunked",), True),
        ((b"Transfer-Encoding: \tCHUNKED ",), True),
        ((b"Transfer-Encoding: identity, chunked",), True),
        ((b"Transfer-Encoding: identity", b"Transfer-Encoding: chunked"), True),
        ((b"Transfer-Encoding: gzip, chunked",), False),  # compression passes through: force close
        ((b"Transfer-Encoding: deflate ,\tchunked",), False),
        ((b"Transfer-Encoding: compress", b"Transfer-Encoding: chunked"), False),
        ((b"Transfer-Encoding: gzip, identity, chunked",), False),
    ],
)
def test_accepted_transfer_codings(fields: tuple[bytes, ...], keep_alive: bool) -> None:
    done = accept(req(*fields) + CHUNKED_BODY)
    assert done.head.chunked and done.head.content_length is None
    assert done.body == b"hello"
    assert done.head.keep_alive is keep_alive


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ((b"Transfer-Encoding: chunked, chunked",), InvalidHeader),
        ((b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"), InvalidHeader),
        ((b"Transfer-Encoding: chunked, identity",), InvalidHeader),
        ((b"Transfer-Encoding: chunked, gzip",), InvalidHeader),
        ((b"Transfer-Encoding: chunked", b"Transfer-Encoding: deflate"), InvalidHeader),
        # since 27.0 the final coding must be chunked
        ((b"Transfer-Encoding: gzip",), InvalidHeader),
        ((b"Transfer-Encoding: identity",), InvalidHeader),
        ((b"Transfer-Encoding: identity", b"Content-Length: 5"), InvalidHeader),
        ((b"Transfer-Encoding: gzip", b"Content-Length: 5"), InvalidHeader),
        # CL.TE / TE.CL: both framings present
        ((b"Transfer-Encoding: chunked", b"Content-Length: 5"), InvalidHeader),
        ((b"Content-Length: 5", b"Transfer-Encoding: chunked"), InvalidHeader),
        ((b"Content-Length: 0", b"Transfer-Encoding: gzip, chunked"), InvalidHeader),
        # unknown codings: 501
        ((b"Transfer-Encoding: br, chunked",), UnsupportedTransferCoding),
        ((b"Transfer-Encoding: x-gzip, chunked",), UnsupportedTransferCoding),
        ((b"Transfer-Encoding: chunked;q=1",), UnsupportedTransferCoding),
        ((b"Transfer-Encoding: chunked, foo",), UnsupportedTransferCoding),
        ((b"Transfer-Encoding: \"chunked\"",), UnsupportedTransferCoding),
        ((b"Transfer-Encoding: chunked\x0bx",), InvalidHeader),  # control byte in the value comes first
        ((b"Transfer-Encoding: chunked,",), UnsupportedTransferCoding),  # Gunicorn: empty element is unknown
        ((b"Transfer-Encoding:",), UnsupportedTransferCoding),
        ((b"Transfer-Encoding: foo", b"Content-Length: 5"), UnsupportedTransferCoding),
    ],
)
def test_rejected_transfer_codings(fields: tuple[bytes, ...], error: type[ProtocolError]) -> None:
    got = reject(req(*fields) + CHUNKED_BODY)
    assert type(got) is error
    assert got.status == (501 if error is UnsupportedTransferCoding else 400)


@pytest.mark.parametrize("coding", [b"chunked", b"gzip, chunked", b"identity, chunked"])
def test_transfer_encoding_on_http_1_0_is_rejected(coding: bytes) -> None:
    assert type(reject(req(b"Transfer-Encoding: " + coding, version=b"1.0") + CHUNKED_BODY)) is InvalidHeader


def test_unknown_coding_on_http_1_0_is_still_501() -> None:
    assert type(reject(req(b"Transfer-Encoding: foo", version=b"1.0"))) is UnsupportedTransferCoding


# -- persistence (RFC 9112 section 9.3; Gunicorn should_close) ---------------------------------------------


@pytest.mark.parametrize(
    ("version", "fields", "keep_alive"),
    [
        (b"1.1", (), True),
        (b"1.0", (), False),
        (b"1.1", (b"Connection: close",), False),
        (b"1.1", (b"Connection: CLOSE ",), False),
        (b"1.0", (b"Connection: keep-alive",), True),
        (b"1.0", (b"Connection: Keep-Alive",), True),
        (b"1.1", (b"Connection: keep-alive",), True),
        (b"1.0", (b"Connection: close",), False),
        (b"1.1", (b"Connection: upgrade",), True),
        (b"1.0", (b"Connection: upgrade",), False),
        (b"1.0", (b"Connection: keep-alive, upgrade",), False),  # not exactly keep-alive: version decides
        (b"1.0", (b"Connection: foo", b"Connection: keep-alive"), False),  # only the first field decides
        (b"1.0", (b"Connection: keep-alive", b"Connection: foo"), True),
        # RFC 9112 section 9.6: a "close" option anywhere closes (stricter than Gunicorn).
        (b"1.1", (b"Connection: keep-alive, close",), False),
        (b"1.1", (b"Connection: upgrade", b"Connection: close"), False),
        (b"1.0", (b"Connection: keep-alive", b"Connection: close"), False),
        (b"1.1", (b"Connection: closed",), True),
        (b"1.1", (b"Connection: x-close",), True),
    ],
)
def test_keep_alive(version: bytes, fields: tuple[bytes, ...], keep_alive: bool) -> None:
    assert accept(req(*fields, version=version, method=b"GET")).head.keep_alive is keep_alive


@pytest.mark.parametrize("fields", [(), (b"Connection: keep-alive",)])
def test_connect_always_closes(fields: tuple[bytes, ...]) -> None:
    head = accept(req(*fields, method=b"CONNECT", target=b"h.example:443")).head
    assert head.keep_alive is False


def test_compressed_coding_forces_close_even_with_keep_alive() -> None:
    raw = req(b"Connection: keep-alive", b"Transfer-Encoding: gzip, chunked") + CHUNKED_BODY
    assert accept(raw).head.keep_alive is False
