"""Plain IP addresses are read without ``ipaddress``: trust decisions, validation and binding
give the same answers as before, and a default configuration never imports the module."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pronghorn.apps.forwarding import ForwardingPolicy
from pronghorn.config.validators import address_list
from pronghorn.ip_literals import packed_address
from serving import child_env


def policy(allowed: str) -> ForwardingPolicy:
    return ForwardingPolicy(address_list(allowed), {}, [])


@pytest.mark.parametrize(
    ("allowed", "peer", "trusted"),
    [
        ("127.0.0.1,::1", ("127.0.0.1", 5000), True),
        ("127.0.0.1,::1", ("::1", 5000), True),
        ("127.0.0.1,::1", ("::ffff:127.0.0.1", 5000), True),  # IPv4 client on a dual-stack listener
        ("127.0.0.1,::1", ("127.0.0.2", 5000), False),
        ("127.0.0.1,::1", ("::2", 5000), False),
        ("127.0.0.1,::1", ("not an address", 5000), False),
        ("0:0:0:0:0:0:0:1", ("::1", 5000), True),  # the same address written out in full
        ("fe80::1", ("fe80::1%eth0", 5000), True),  # the peer's scope does not matter
        ("10.0.0.0/8", ("10.20.30.40", 5000), True),
        ("10.0.0.0/8", ("11.0.0.1", 5000), False),
        ("10.0.0.0/8", ("::ffff:10.0.0.9", 5000), True),
        ("192.168.1.1, 2001:db8::/32", ("2001:db8::5", 5000), True),
        ("192.168.1.1, 2001:db8::/32", ("192.168.1.1", 5000), True),
        ("192.168.1.1, 2001:db8::/32", ("192.168.1.2", 5000), False),
        ("*", ("203.0.113.7", 5000), True),
        ("127.0.0.1", "/run/app.sock", True),  # unix socket peers always are
        ("127.0.0.1", None, True),
    ],
)
def test_trusted_peers(allowed: str, peer: tuple[str, int] | str | None, trusted: bool) -> None:
    assert policy(allowed).trusts(peer) is trusted


@pytest.mark.parametrize("item", ["1.2.3.4", "::1", "::ffff:1.2.3.4", "FE80::1", "10.0.0.0/8", "2001:db8::/32", "fe80::1%eth0", "*"])
def test_valid_allow_list_items(item: str) -> None:
    assert address_list(item) == [item]


@pytest.mark.parametrize("item", ["1.2.3", "01.2.3.4", "256.1.1.1", "1::2::3", "localhost", "10.0.0.1/8", "1.2.3.4/33", "a\0b"])
def test_invalid_allow_list_items(item: str) -> None:
    with pytest.raises(ValueError, match="expected IP addresses or networks"):
        address_list(item)


def test_packed_address() -> None:
    assert packed_address("127.0.0.1") == b"\x7f\x00\x00\x01"
    assert packed_address("::1") == b"\x00" * 15 + b"\x01"
    assert packed_address("example.com") is None


def test_a_default_configuration_does_not_import_ipaddress() -> None:
    code = (
        "import sys\n"
        "sys.modules.pop('ipaddress', None)\n"  # some interpreters' start-up imports it (pathlib)
        "from pronghorn.config import Config\n"
        "from pronghorn.apps.forwarding import ForwardingPolicy\n"
        "from pronghorn.net.addresses import TcpAddress\n"
        "from pronghorn.net.listeners import create_listener\n"
        "cfg = Config()\n"
        "policy = ForwardingPolicy(cfg.forwarded_allow_ips, cfg.secure_scheme_headers, cfg.forwarder_headers)\n"
        "assert policy.trusts(('127.0.0.1', 1)) and not policy.trusts(('10.0.0.1', 1))\n"
        "listener = create_listener(TcpAddress('127.0.0.1', 0), backlog=8)\n"
        "listener.close()\n"
        "print('ipaddress' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=child_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
