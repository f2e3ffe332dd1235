"""The PROXY protocol (HAProxy's, versions 1 and 2): the header a proxy sends before the request.

Sans-IO: ``read_proxy_header(data, mode)`` looks at the first bytes a connection received and says
whether more are needed, what the header says and how many bytes it took, or that there is no
header (the bytes are HTTP). A header is looked for once per connection, before its first request.
A malformed one raises ``InvalidProxyHeader`` (400); a peer outside ``proxy_allow_ips`` that sends
one gets ``ForbiddenProxyRequest`` (403) from the worker.
"""

from __future__ import annotations

import socket
import struct
from typing import NamedTuple

from pronghorn.http.errors import ProtocolError

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX_LINE = 107  # the specification's longest v1 line, CRLF included
V2_MAX_ADDRESSES = 216  # address block with TLVs; a longer one is refused rather than buffered
MODES = ("off", "v1", "v2", "auto")


class InvalidProxyHeader(ProtocolError):
    reason = "Bad Request"


class ForbiddenProxyRequest(ProtocolError):
    status = 403
    reason = "Forbidden"


class ProxyInfo(NamedTuple):
    """What the proxy said: its protocol word and, unless LOCAL or UNKNOWN, both ends' addresses."""

    protocol: str  # "TCP4", "TCP6", "UNKNOWN" (v1) or "LOCAL" (v2 health checks)
    client: tuple[str, int] | None  # the original client: REMOTE_ADDR and REMOTE_PORT
    proxy: tuple[str, int] | None  # the address the client connected to: PROXY_ADDR and PROXY_PORT

    def environ(self) -> dict[str, str]:
        entries = {"PROXY_PROTOCOL": self.protocol}
        if self.proxy is not None:
            entries["PROXY_ADDR"], entries["PROXY_PORT"] = self.proxy[0], str(self.proxy[1])
        return entries


NO_HEADER = (None, 0)


def read_proxy_header(data: bytes, mode: str) -> tuple[ProxyInfo | None, int] | None:
    """None while more bytes are needed; ``NO_HEADER`` when ``data`` does not start with a header
    the mode accepts; else the header and the number of bytes it took."""
    if mode in ("v2", "auto"):
        if data[: len(V2_SIGNATURE)] != V2_SIGNATURE[: len(data)]:
            pass  # not v2
        elif len(data) < 16:
            return None
        else:
            return _read_v2(data)
    if mode in ("v1", "auto"):
        if data[: len(V1_PREFIX)] != V1_PREFIX[: len(data)]:
            return NO_HEADER
        end = data.find(b"\r\n", 0, V1_MAX_LINE)
        if end < 0:
            if len(data) >= V1_MAX_LINE:
                raise InvalidProxyHeader(f"PROXY line longer than {V1_MAX_LINE} bytes")
            return None
        return _read_v1(data[:end]), end + 2
    return NO_HEADER


def _read_v1(line: bytes) -> ProxyInfo:
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidProxyHeader("PROXY line is not ASCII") from None
    fields = text.split(" ")
    if len(fields) >= 2 and fields[1] == "UNKNOWN":
        return ProxyInfo("UNKNOWN", None, None)  # the proxy could not tell: the connection's own peer stays
    if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
        raise InvalidProxyHeader(f"malformed PROXY line {text[:V1_MAX_LINE]!r}")
    family = socket.AF_INET if fields[1] == "TCP4" else socket.AF_INET6
    source, destination = _v1_address(family, fields[2]), _v1_address(family, fields[3])
    return ProxyInfo(fields[1], (source, _v1_port(fields[4])), (destination, _v1_port(fields[5])))


def _v1_address(family: socket.AddressFamily, text: str) -> str:
    try:
        socket.inet_pton(family, text)
    except (OSError, ValueError):
        raise InvalidProxyHeader(f"invalid address {text!r} in PROXY line") from None
    return text


def _v1_port(text: str) -> int:
    if not text.isdigit() or len(text) > 5 or int(text) > 65535 or (len(text) > 1 and text[0] == "0"):
        raise InvalidProxyHeader(f"invalid port {text!r} in PROXY line")
    return int(text)


def _read_v2(data: bytes) -> tuple[ProxyInfo, int] | None:
    version_command, family_protocol, length = struct.unpack_from("!BBH", data, 12)
    if version_command >> 4 != 2:
        raise InvalidProxyHeader(f"PROXY v2 header with version {version_command >> 4}")
    command = version_command & 0x0F
    if command not in (0, 1):
        raise InvalidProxyHeader(f"PROXY v2 header with command {command}")
    if length > V2_MAX_ADDRESSES:
        raise InvalidProxyHeader(f"PROXY v2 address block of {length} bytes")
    if len(data) < 16 + length:
        return None
    block = data[16 : 16 + length]
    family, protocol = family_protocol >> 4, family_protocol & 0x0F
    if command == 0:  # LOCAL: the proxy's own connection (a health check); addresses are ignored
        return ProxyInfo("LOCAL", None, None), 16 + length
    if family == 0:  # UNSPEC
        return ProxyInfo("UNKNOWN", None, None), 16 + length
    if protocol != 1:
        raise InvalidProxyHeader("PROXY v2 header for a protocol other than TCP")
    if family == 1 and length >= 12:
        source = socket.inet_ntop(socket.AF_INET, block[0:4])
        destination = socket.inet_ntop(socket.AF_INET, block[4:8])
        ports = struct.unpack_from("!HH", block, 8)
        return ProxyInfo("TCP4", (source, ports[0]), (destination, ports[1])), 16 + length
    if family == 2 and length >= 36:
        source = socket.inet_ntop(socket.AF_INET6, block[0:16])
        destination = socket.inet_ntop(socket.AF_INET6, block[16:32])
        ports = struct.unpack_from("!HH", block, 32)
        return ProxyInfo("TCP6", (source, ports[0]), (destination, ports[1])), 16 + length
    raise InvalidProxyHeader(f"PROXY v2 header with address family {family} and {length} address bytes")
