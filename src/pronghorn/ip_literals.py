"""IP address literals, read without the ``ipaddress`` module.

``ipaddress`` is about 0.3 MiB of objects, and whatever the master imports every forked worker
carries. Plain addresses, the usual case (``forwarded_allow_ips`` defaults to two of them), are
checked and compared in their packed form from ``inet_pton`` instead, which accepts exactly the
plain addresses ``ipaddress`` does. Networks ("/") and scoped addresses ("%") still need it.
"""

from __future__ import annotations

import socket


def needs_ipaddress(text: str) -> bool:
    """A network or a scoped address: only the ``ipaddress`` module reads those."""
    return "/" in text or "%" in text


def packed_address(text: str) -> bytes | None:
    """The 4 (IPv4) or 16 (IPv6) bytes of an address literal; None if ``text`` is not one."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_pton(family, text)
        except (OSError, ValueError):  # ValueError: an embedded NUL
            continue
    return None
