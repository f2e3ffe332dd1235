"""What a trusted proxy may tell us: the original scheme and forwarded environ values.

Only peers listed in ``forwarded_allow_ips`` (IP addresses, CIDR networks or ``*``) are trusted;
peers on a unix socket always are, since only local processes can reach it. From a trusted peer,
``secure_scheme_headers`` decide ``wsgi.url_scheme`` and the headers named in ``forwarder_headers``
(``SCRIPT_NAME``, ``PATH_INFO``, ``REMOTE_USER``...) are copied into the environ. From anyone else
both are ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from pronghorn.http import RequestHead, normalize_scheme_headers, scheme_from_normalized

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ForwardingPolicy:
    def __init__(
        self,
        allow_ips: Iterable[str],
        secure_scheme_headers: Mapping[str, str],
        forwarder_headers: Iterable[str],
    ) -> None:
        allowed = list(allow_ips)
        self.trust_all = "*" in allowed
        self.networks: list[IPNetwork] = [ipaddress.ip_network(a, strict=False) for a in allowed if a != "*"]
        self.secure_scheme_headers = normalize_scheme_headers(
            {name.encode("latin-1"): value.encode("latin-1") for name, value in secure_scheme_headers.items()}
        )
        self._trust_by_ip: dict[str, bool] = {}
        self.forwarder_names = frozenset(name.strip().upper() for name in forwarder_headers if name.strip())

    def trusts(self, peer: tuple[str, int] | str | None) -> bool:
        """Whether ``peer`` (an (ip, port) pair, or a unix socket path/None) may set forwarded values."""
        if not isinstance(peer, tuple):
            return True
        if self.trust_all:
            return True
        known = self._trust_by_ip.get(peer[0])
        if known is None:
            known = self._trust_by_ip[peer[0]] = self._trusts_ip(peer[0])
            if len(self._trust_by_ip) > 4096:  # bounded: many distinct clients must not grow it forever
                self._trust_by_ip.clear()
        return known

    def _trusts_ip(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def url_scheme(self, head: RequestHead, trusted: bool, default: str) -> str:
        """The request's scheme; contradictory secure-scheme headers raise ``InvalidSchemeHeaders``."""
        if not trusted or not self.secure_scheme_headers:
            return default
        return scheme_from_normalized(head.headers, self.secure_scheme_headers) or default

    def forwarded_values(self, head: RequestHead, trusted: bool) -> dict[str, str]:
        """Environ entries a trusted proxy set with headers named like ``SCRIPT_NAME``.

        Only underscore names qualify: they cannot be confused with an ``HTTP_*`` mapping of a
        hyphenated header, which is why the parser drops them from everyone else.
        """
        if not trusted or not self.forwarder_names:
            return {}
        wildcard = "*" in self.forwarder_names
        values: dict[str, str] = {}
        for raw_name, raw_value in head.headers:
            if b"_" not in raw_name:
                continue
            name = raw_name.decode("latin-1")
            if wildcard or name in self.forwarder_names:
                values[name] = raw_value.decode("latin-1")
        return values
