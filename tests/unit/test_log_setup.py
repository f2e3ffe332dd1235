"""Pure pieces of the logging and metrics set-up: syslog and StatsD addresses."""

from __future__ import annotations

import socket

import pytest

from pronghorn.errors import ConfigError
from pronghorn.log_setup import parse_syslog_address
from pronghorn.metrics import split_statsd_address


@pytest.mark.parametrize(("text", "address", "kind"), [
    ("udp://localhost:514", ("localhost", 514), socket.SOCK_DGRAM),
    ("udp://10.0.0.5", ("10.0.0.5", 514), socket.SOCK_DGRAM),
    ("tcp://logs.example:1514", ("logs.example", 1514), socket.SOCK_STREAM),
    ("udp://[::1]:5514", ("::1", 5514), socket.SOCK_DGRAM),
    ("unix:///dev/log", "/dev/log", socket.SOCK_DGRAM),
    ("unix:///run/syslog#stream", "/run/syslog", socket.SOCK_STREAM),
    ("unix:///run/syslog#dgram", "/run/syslog", socket.SOCK_DGRAM),
])
def test_syslog_addresses(text: str, address: object, kind: socket.SocketKind) -> None:
    assert parse_syslog_address(text) == (address, kind)


@pytest.mark.parametrize("text", ["localhost:514", "http://x:1", "udp://", "udp://host:port", "unix:///x#raw",
                                  "tcp://:514"])
def test_bad_syslog_addresses_name_the_setting(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^Invalid value for syslog_addr: "):
        parse_syslog_address(text)


@pytest.mark.parametrize(("text", "host", "port"), [
    ("localhost:8125", "localhost", 8125), ("statsd", "statsd", 8125), ("[::1]:9125", "::1", 9125),
    ("[::1]", "::1", 8125),
])
def test_statsd_addresses(text: str, host: str, port: int) -> None:
    assert split_statsd_address(text) == (host, port)
