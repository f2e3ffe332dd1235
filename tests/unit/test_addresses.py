"""parse_address: Gunicorn's bind vectors plus the checks pronghorn adds."""

from __future__ import annotations

import pytest

from pronghorn.net.addresses import Address, FdAddress, TcpAddress, UnixAddress, parse_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unix://var/run/test.sock", UnixAddress("var/run/test.sock")),
        ("unix:/var/run/test.sock", UnixAddress("/var/run/test.sock")),
        ("unix:///var/run/test.sock", UnixAddress("/var/run/test.sock")),
        ("unix:relative.sock", UnixAddress("relative.sock")),
        ("tcp://localhost", TcpAddress("localhost", 8000)),
        ("tcp://localhost:5000", TcpAddress("localhost", 5000)),
        ("", TcpAddress("0.0.0.0", 8000)),
        ("[::1]", TcpAddress("::1", 8000)),
        ("[::1]:5000", TcpAddress("::1", 5000)),
        ("[::]:0", TcpAddress("::", 0)),
        ("localhost", TcpAddress("localhost", 8000)),
        ("LocalHost:80", TcpAddress("localhost", 80)),
        ("[FE80::1]:8080", TcpAddress("fe80::1", 8080)),
        ("127.0.0.1:8000", TcpAddress("127.0.0.1", 8000)),
        ("0.0.0.0:65535", TcpAddress("0.0.0.0", 65535)),
        (":9000", TcpAddress("0.0.0.0", 9000)),
        ("fd://33", FdAddress(33)),
        ("fd://0", FdAddress(0)),
    ],
)
def test_vectors(text: str, expected: Address) -> None:
    assert parse_address(text) == expected


def test_default_port() -> None:
    assert parse_address("example.com", default_port=80) == TcpAddress("example.com", 80)
    assert parse_address("[::1]", default_port=443) == TcpAddress("::1", 443)
    assert parse_address("example.com:81", default_port=80) == TcpAddress("example.com", 81)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.1:test", "'test' is not a valid port number."),
        ("127.0.0.1:", "'' is not a valid port number."),
        ("127.0.0.1:65536", "'65536' is not a valid port number."),
        ("127.0.0.1:-1", "'-1' is not a valid port number."),
        ("127.0.0.1: 80", "' 80' is not a valid port number."),
        ("127.0.0.1:8_000", "'8_000' is not a valid port number."),
        ("127.0.0.1:\u0663", "'\u0663' is not a valid port number."),
        ("[::1]:x", "'x' is not a valid port number."),
        ("fd://asd", "'asd' is not a valid file descriptor."),
        ("fd://", "'' is not a valid file descriptor."),
        ("fd://-3", "'-3' is not a valid file descriptor."),
    ],
)
def test_invalid_numbers(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_address(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("::1", "brackets"),
        ("::1:8000", "brackets"),
        ("[::1", "closing ']'"),
        ("[]:80", "empty IPv6"),
        ("[::1]8000", "':PORT'"),
        ("unix:", "no unix socket path"),
        ("unix://", "no unix socket path"),
    ],
)
def test_malformed(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_address(text)


@pytest.mark.parametrize(
    ("address", "text"),
    [
        (TcpAddress("127.0.0.1", 8000), "127.0.0.1:8000"),
        (TcpAddress("::1", 8000), "[::1]:8000"),
        (TcpAddress("localhost", 0), "localhost:0"),
        (UnixAddress("/tmp/x.sock"), "unix:/tmp/x.sock"),
        (UnixAddress("var/x.sock"), "unix:var/x.sock"),
        (FdAddress(3), "fd://3"),
    ],
)
def test_str_is_the_bind_form_and_round_trips(address: Address, text: str) -> None:
    assert str(address) == text
    assert parse_address(str(address)) == address


def test_addresses_are_frozen_and_hashable() -> None:
    address = TcpAddress("127.0.0.1", 1)
    with pytest.raises(AttributeError):
        address.port = 2  # type: ignore[misc]
    assert len({address, TcpAddress("127.0.0.1", 1), UnixAddress("a"), FdAddress(1)}) == 3
