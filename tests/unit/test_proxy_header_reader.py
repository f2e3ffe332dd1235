"""The PROXY protocol header reader (pure: bytes in, a verdict out)."""

from __future__ import annotations

import socket
import struct

import pytest

from pronghorn.net.proxy_protocol import (
    NO_HEADER,
    V2_SIGNATURE,
    InvalidProxyHeader,
    ProxyInfo,
    read_proxy_header,
)

V1 = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"


def v2(command: int = 1, family: int = 1, protocol: int = 1, block: bytes | None = None, version: int = 2) -> bytes:
    if block is None:
        block = socket.inet_pton(socket.AF_INET, "10.1.2.3") + socket.inet_pton(socket.AF_INET, "10.9.9.9")
        block += struct.pack("!HH", 40000, 8443)
    return V2_SIGNATURE + bytes([version << 4 | command, family << 4 | protocol]) + struct.pack("!H", len(block)) + block


def test_v1_sets_both_ends() -> None:
    info, used = read_proxy_header(V1 + b"GET / HTTP/1.1\r\n", "auto")  # type: ignore[misc]
    assert used == len(V1)
    assert info == ProxyInfo("TCP4", ("192.168.0.1", 56324), ("192.168.0.11", 443))
    assert info.environ() == {"PROXY_PROTOCOL": "TCP4", "PROXY_ADDR": "192.168.0.11", "PROXY_PORT": "443"}


def test_v1_tcp6_and_unknown() -> None:
    line = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n"
    assert read_proxy_header(line, "v1") == (ProxyInfo("TCP6", ("2001:db8::1", 1), ("2001:db8::2", 65535)), len(line))
    assert read_proxy_header(b"PROXY UNKNOWN\r\n", "v1") == (ProxyInfo("UNKNOWN", None, None), 15)


@pytest.mark.parametrize("data", [b"", b"PRO", b"PROXY TCP4 1.2.3.4", V2_SIGNATURE[:5], v2()[:20]])
def test_an_incomplete_header_needs_more(data: bytes) -> None:
    assert read_proxy_header(data, "auto") is None


@pytest.mark.parametrize("line", [
    b"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n",  # five fields
    b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 extra\r\n",
    b"PROXY UDP4 192.168.0.1 192.168.0.11 56324 443\r\n",
    b"PROXY TCP4 192.168.0.256 192.168.0.11 56324 443\r\n",
    b"PROXY TCP4 2001:db8::1 192.168.0.11 56324 443\r\n",  # family and address disagree
    b"PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n",
    b"PROXY TCP4 192.168.0.1 192.168.0.11 +80 443\r\n",
    b"PROXY TCP4 192.168.0.1 192.168.0.11 080 443\r\n",
    b"PROXY TCP4  192.168.0.1 192.168.0.11 80 443\r\n",
    b"PROXY TCP4 192.168.0.1 192.168.0.11 80 \xff43\r\n",
    b"PROXY " + b"A" * 120,  # no line end within the longest line the specification allows
])
def test_a_malformed_v1_line_is_refused(line: bytes) -> None:
    with pytest.raises(InvalidProxyHeader) as caught:
        read_proxy_header(line, "auto")
    assert caught.value.status == 400


def test_v2_tcp4_tcp6_local_unspec() -> None:
    header = v2()
    assert read_proxy_header(header + b"GET", "v2") == (ProxyInfo("TCP4", ("10.1.2.3", 40000), ("10.9.9.9", 8443)),
                                                        len(header))
    six = socket.inet_pton(socket.AF_INET6, "2001:db8::7") * 2 + struct.pack("!HH", 1, 2)
    assert read_proxy_header(v2(family=2, block=six), "auto")[0] == ProxyInfo(  # type: ignore[index]
        "TCP6", ("2001:db8::7", 1), ("2001:db8::7", 2))
    assert read_proxy_header(v2(command=0), "auto") == (ProxyInfo("LOCAL", None, None), len(v2()))
    assert read_proxy_header(v2(family=0, protocol=0, block=b""), "auto") == (ProxyInfo("UNKNOWN", None, None), 16)


@pytest.mark.parametrize("header", [
    v2(version=1),
    v2(command=2),
    v2(protocol=2),  # UDP
    v2(block=b"\x00" * 8),  # too short for two IPv4 addresses and ports
    v2(family=3, block=b"\x00" * 216),  # AF_UNIX is not served
    V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", 5000),  # an address block larger than any real one
])
def test_a_malformed_v2_header_is_refused(header: bytes) -> None:
    with pytest.raises(InvalidProxyHeader):
        read_proxy_header(header + b"\x00" * 300, "auto")


def test_modes_look_only_for_their_form() -> None:
    assert read_proxy_header(V1, "v2") == NO_HEADER
    assert read_proxy_header(v2(), "v1") == NO_HEADER
    assert read_proxy_header(b"GET / HTTP/1.1\r\n", "auto") == NO_HEADER
    assert read_proxy_header(V1, "off") == NO_HEADER
