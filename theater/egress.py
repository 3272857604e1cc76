"""Which hosts an actor granted ``http-client`` may reach: the allow-list's patterns and address rules.

A pattern is ``host`` or ``host:port``: a DNS name (``api.example.com``), a wildcard for the
names under a domain (``*.example.com``: ``a.example.com`` and ``a.b.example.com``, not
``example.com`` itself), ``*`` for any name, ``localhost``, or an IP literal (``10.0.0.5``,
``[::1]``). Without a port only the scheme's default port (80, 443) matches. Names are
ASCII (write international names in their ``xn--`` form).

An address that is not public (loopback, private, link-local, shared, reserved, ...) may
only be reached through a pattern that names it: the IP literal itself, or ``localhost``
for loopback. An IPv6 address that carries an IPv4 one (mapped, NAT64, 6to4, Teredo) is
judged by the IPv4 address. So ``*.example.com`` never leads into the host's own network,
whatever a DNS answer says. The gateway (``supervisor/gateway``) applies these rules to every
address a name resolves to before it connects, and connects only to an address it checked.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

IP = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")      # RFC 9110 token: header names, methods


@dataclass(frozen=True)
class HostPattern:
    host: str              # lower-case name, "*.suffix", "*", or an IP literal (compressed)
    port: int | None       # None: the scheme's default port only

    @property
    def address(self) -> IP | None:
        """The IP literal this pattern names, if it is one."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    def matches(self, host: str, port: int, scheme: str) -> bool:
        if port != (self.port if self.port is not None else DEFAULT_PORTS.get(scheme)):
            return False
        host = _canonical_host(host)
        if self.host == "*":
            return _ip(host) is None
        if self.host.startswith("*."):
            return host.endswith(self.host[1:]) and _ip(host) is None
        return host == self.host

    def admits(self, address: IP) -> bool:
        """Whether a connection made through this pattern may go to ``address``."""
        address = _unmapped(address)
        if address.is_global and address not in _LOCAL_NAT64:
            return True
        if self.host == "localhost":
            return address.is_loopback
        named = self.address
        return named is not None and _unmapped(named) == address

    def covers(self, other: HostPattern) -> bool:
        """Whether every connection ``other`` allows, this pattern allows too (a child's grant
        against its parent's): the same port, and a host this one matches, reaching no address
        this one would refuse (``localhost`` and IP literals are covered only by themselves)."""
        if other.port != self.port:
            return False
        if other.host == self.host:
            return True
        if other.host == "localhost" or other.address is not None:
            return False
        if self.host == "*":
            return True
        name = other.host[2:] if other.host.startswith("*.") else other.host
        return self.host.startswith("*.") and name.endswith(self.host[1:])

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


def parse_pattern(text: object) -> HostPattern:
    """A pattern from the manifest; ValueError says what is allowed."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("expected a host pattern such as \"api.example.com\", \"*.example.com:443\" or "
                         "\"127.0.0.1:8080\"")
    raw = text.strip().lower()
    host, port = raw, None
    if raw.startswith("["):
        end = raw.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: unclosed [ in an IPv6 address")
        host, rest = raw[1:end], raw[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{text!r}: expected :PORT after the ]")
            port = _port(rest[1:], text)
        if _ip(host) is None:
            raise ValueError(f"{text!r}: [...] must hold an IPv6 address")
    elif raw.count(":") == 1:
        host, p = raw.split(":")
        port = _port(p, text)
    elif raw.count(":") > 1:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. \"[::1]:8080\"")
    if _ip(host) is not None:
        return HostPattern(str(ipaddress.ip_address(host)), port)
    name = host[2:] if host.startswith("*.") else host
    if host != "*" and not (name and all(_LABEL.match(label) for label in name.split("."))):
        raise ValueError(f"{text!r}: not a host name, \"*.domain\", \"*\" or an IP address")
    return HostPattern(host, port)


def first_match(patterns: Iterable[HostPattern], host: str, port: int, scheme: str) -> HostPattern | None:
    return next((p for p in patterns if p.matches(host, port, scheme)), None)


def check_patterns(value: object) -> list[str]:
    """The ``allowed_hosts`` key: a list of patterns, kept in their canonical text."""
    if not isinstance(value, list):
        raise ValueError("expected a list of host patterns such as [\"api.example.com\", \"*.example.org:8443\"]")
    return [str(parse_pattern(v)) for v in value]


def check_methods(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and _TOKEN.match(v) for v in value):
        raise ValueError("expected a list of HTTP methods such as [\"GET\", \"POST\"]")
    return [v.upper() for v in value]


def is_header_name(name: str) -> bool:
    return bool(_TOKEN.match(name))


def _port(text: str, original: object) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{original!r}: the port must be a number from 1 to 65535")
    return int(text)


def _ip(host: str) -> IP | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _canonical_host(host: str) -> str:
    host = host.lower().rstrip(".")
    ip = _ip(host)
    return str(ip) if ip is not None else host


# IPv6 prefixes whose addresses carry an IPv4 one in their last 32 bits: NAT64's well-known
# prefix and the deprecated IPv4-compatible form. A DNS answer 64:ff9b::7f00:1 reaches
# 127.0.0.1 through a NAT64 gateway, yet Python calls it global.
_CARRIERS = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("::/96"))
# NAT64's local-use prefix (RFC 8215): where the IPv4 address sits depends on the network's own
# prefix length, so none of it counts as public.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


def _unmapped(address: IP) -> IP:
    """An IPv6 address that carries an IPv4 one (mapped ::ffff:a.b.c.d, NAT64, 6to4, Teredo's
    client, IPv4-compatible) is judged as the IPv4 address it carries."""
    if not isinstance(address, ipaddress.IPv6Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in net for net in _CARRIERS) and int(address) > 1:     # not :: and ::1
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address
