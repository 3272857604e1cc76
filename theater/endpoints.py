"""TCP management addresses: where they point, and whether they leave the machine.

The server and the client decide the same way whether an address needs CURVE (anything
not on loopback does), so a client never demands keys a server does not, or the reverse.
"""

from __future__ import annotations

import ipaddress
import socket

from .errors import UsageError


def tcp_host(listen: str) -> str:
    """The host of ``tcp://HOST:PORT`` (IPv6 brackets removed)."""
    rest = listen.removeprefix("tcp://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not (port == "*" or (port.isdigit() and int(port) <= 65535)):
        raise UsageError(f"{listen}: expected tcp://HOST:PORT, PORT from 0 to 65535 (0 or * for any free port)")
    return host.strip("[]")


def is_loopback(host: str) -> bool:
    """An address, or a name all of whose addresses are, on loopback."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except OSError:
            return False


def host_name(header: str) -> str:
    """The name in an HTTP Host header, without its port (IPv6 brackets removed)."""
    host = header.strip()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def loopback_host_header(header: str) -> bool:
    """Whether an HTTP Host header names loopback (localhost, 127.0.0.1, [::1]; any port): a
    page elsewhere that reaches a loopback listener through a name it points at 127.0.0.1 (DNS
    rebinding) sends that name instead."""
    host = host_name(header)
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_port(value: str, option: str, default_port: int) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 in brackets), or a bare PORT on 127.0.0.1, for an HTTP listener's option."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    host = host.strip("[]")
    if not port.isdigit() or int(port) > 65535 or not host:
        raise UsageError(f"{option} {value}: expected HOST:PORT, e.g. 127.0.0.1:{default_port} (PORT 0: any free port)")
    return host, int(port)
