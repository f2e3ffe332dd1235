"""What a trusted proxy may tell us: the original scheme and forwarded environ values.

Only peers listed in ``forwarded_allow_ips`` (IP addresses, CIDR networks or ``*``) are trusted;
peers on a unix socket always are, since only local processes can reach it. From a trusted peer,
``secure_scheme_headers`` decide ``wsgi.url_scheme`` and the headers named in ``forwarder_headers``
(``SCRIPT_NAME``, ``PATH_INFO``, ``REMOTE_USER``...) are copied into the environ. From anyone else
both are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from pronghorn.http import RequestHead, normalize_scheme_headers, scheme_vote
from pronghorn.ip_literals import needs_ipaddress, packed_address

if TYPE_CHECKING:
    import ipaddress

_UNDERSCORE = 0x5F  # "_" as an int: ``b"_" in name`` raises and clears a TypeError inside (performance.md)

_V4_MAPPED_PREFIX = b"\0" * 10 + b"\xff\xff"  # RFC 4291 section 2.5.5.2: ::ffff:a.b.c.d


class AllowedPeers:
    """A list of IP addresses, CIDR networks or ``*``, and whether a peer is in it. A unix-socket
    peer always is: only local processes can reach the socket."""

    def __init__(self, allow_ips: Iterable[str]) -> None:
        allowed = list(allow_ips)
        self.everyone = "*" in allowed
        # Plain addresses are compared packed; ``ipaddress`` only for networks and scoped addresses.
        self.addresses = frozenset(packed_address(a) for a in allowed if a != "*" and not needs_ipaddress(a))
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        if any(needs_ipaddress(a) for a in allowed):
            import ipaddress

            self.networks = [ipaddress.ip_network(a, strict=False) for a in allowed if needs_ipaddress(a)]
        self._by_ip: dict[str, bool] = {}

    def allows(self, peer: tuple[str, int] | str | None) -> bool:
        """Whether ``peer`` (an (ip, port) pair, or a unix socket path/None) is in the list."""
        if not isinstance(peer, tuple) or self.everyone:
            return True
        known = self._by_ip.get(peer[0])
        if known is None:
            known = self._by_ip[peer[0]] = self._allows_ip(peer[0])
            if len(self._by_ip) > 4096:  # bounded: many distinct clients must not grow it forever
                self._by_ip.clear()
        return known

    def _allows_ip(self, ip: str) -> bool:
        packed = packed_address(ip.split("%", 1)[0])
        if packed is None:
            return False
        if packed.startswith(_V4_MAPPED_PREFIX):
            packed = packed[12:]  # an IPv4 client on a dual-stack socket
        if packed in self.addresses:
            return True
        if not self.networks:
            return False
        import ipaddress

        address = ipaddress.ip_address(packed)
        return any(address in network for network in self.networks)


class ForwardingPolicy:
    def __init__(
        self,
        allow_ips: Iterable[str],
        secure_scheme_headers: Mapping[str, str],
        forwarder_headers: Iterable[str],
    ) -> None:
        self.trusted_peers = AllowedPeers(allow_ips)
        self.secure_scheme_headers = normalize_scheme_headers(
            {name.encode("latin-1"): value.encode("latin-1") for name, value in secure_scheme_headers.items()}
        )
        self.forwarder_names = frozenset(name.strip().upper() for name in forwarder_headers if name.strip())
        self.forward_any = "*" in self.forwarder_names

    def trusts(self, peer: tuple[str, int] | str | None) -> bool:
        """Whether ``peer`` (an (ip, port) pair, or a unix socket path/None) may set forwarded values."""
        return self.trusted_peers.allows(peer)

    def from_proxy(self, head: RequestHead) -> tuple[str | None, dict[str, str] | None]:
        """What a trusted peer's headers set, in one pass: the scheme of its secure-scheme headers
        (None without any; contradictory ones raise ``InvalidSchemeHeaders``) and the environ
        entries of its forwarder headers, named like ``SCRIPT_NAME`` (None without any).

        Only underscore names are forwarder headers: they cannot be confused with an ``HTTP_*``
        mapping of a hyphenated header, which is why the parser drops them from everyone else.
        """
        wanted = self.secure_scheme_headers
        names = self.forwarder_names
        if not wanted and not names:
            return None, None
        wildcard = self.forward_any
        scheme: str | None = None
        values: dict[str, str] | None = None
        for raw_name, raw_value in head.headers:
            secure_value = wanted.get(raw_name)
            if secure_value is not None:
                scheme = scheme_vote(scheme, raw_value, secure_value)
            if names and _UNDERSCORE in raw_name:
                name = raw_name.decode("latin-1")
                if wildcard or name in names:
                    if values is None:
                        values = {}
                    values[name] = raw_value.decode("latin-1")
        return scheme, values
