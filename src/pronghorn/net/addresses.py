"""Bind addresses: the values of the ``bind`` setting, parsed into typed values.

Accepted spellings (Gunicorn's): ``HOST``, ``HOST:PORT``, ``[V6]``, ``[V6]:PORT``, ``tcp://HOST:PORT``,
``unix:PATH``, ``unix://PATH`` (``unix://var/x.sock`` is the *relative* path ``var/x.sock``) and
``fd://N``. An empty string means all IPv4 interfaces.
"""

from __future__ import annotations

from typing import NamedTuple, Union

from pronghorn.errors import ConfigError

__all__ = ["TcpAddress", "UnixAddress", "FdAddress", "Address", "parse_address", "parse_binds"]

_DIGITS = frozenset("0123456789")
_MAX_PORT = 65535


class TcpAddress(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        if ":" in self.host:  # IPv6 literal: brackets keep the port separable
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


class UnixAddress(NamedTuple):
    path: str

    def __str__(self) -> str:
        return f"unix:{self.path}"


class FdAddress(NamedTuple):
    fd: int

    def __str__(self) -> str:
        return f"fd://{self.fd}"


Address = Union[TcpAddress, UnixAddress, FdAddress]


def parse_address(text: str, default_port: int = 8000) -> Address:
    """Parse one ``bind`` value; raises ``ValueError`` with a one-line message when it is invalid."""
    if text.startswith("unix:"):
        path = text[len("unix:"):]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise ValueError(f"{text!r} has no unix socket path.")
        return UnixAddress(path)

    if text.startswith("fd://"):
        fd_text = text[len("fd://"):]
        if not _is_decimal(fd_text):
            raise ValueError(f"{fd_text!r} is not a valid file descriptor.")
        return FdAddress(int(fd_text))

    if text.startswith("tcp://"):
        text = text[len("tcp://"):]

    host, port_text = _split_host_port(text)
    port = default_port if port_text is None else _parse_port(port_text)
    return TcpAddress(host.lower() or "0.0.0.0", port)


def _split_host_port(text: str) -> tuple[str, str | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{text!r} is missing the closing ']' of its IPv6 address.")
        host, rest = text[1:end], text[end + 1:]
        if not host:
            raise ValueError(f"{text!r} has an empty IPv6 address.")
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected ':PORT' after the IPv6 address.")
        return host, rest[1:]

    if text.count(":") > 1:
        raise ValueError(f"{text!r}: put an IPv6 address in brackets, e.g. '[::1]:8000'.")
    host, colon, port_text = text.partition(":")
    return host, (port_text if colon else None)


def _parse_port(port_text: str) -> int:
    if not _is_decimal(port_text) or int(port_text) > _MAX_PORT:
        raise ValueError(f"{port_text!r} is not a valid port number.")
    return int(port_text)


def _is_decimal(text: str) -> bool:
    # Only ASCII digits: int() would also take signs, spaces, underscores and other scripts' digits.
    return bool(text) and all(char in _DIGITS for char in text)


def parse_binds(binds: list[str]) -> list[Address]:
    """Every ``bind`` value, or one configuration error naming the first that does not parse."""
    addresses = []
    for bind in binds:
        try:
            addresses.append(parse_address(bind))
        except ValueError as exc:
            raise ConfigError(f"Invalid value for bind: {bind!r} ({exc})") from None
    return addresses
