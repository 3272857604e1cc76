"""``http-client`` requests, made by the gateway for an actor: checked, secrets placed, sent, read.

Every request is checked against the actor's grant before anything leaves: the method, the
scheme, ``host:port`` against ``allowed_hosts`` (``theater.egress``), then every address the
name resolves to. The connection goes to an address that was checked (the URL is rewritten
to it; ``Host`` and TLS SNI keep the name, so the certificate is verified for the name):
a second DNS answer can never send it elsewhere. Redirects are not followed: a 3xx goes
back to the actor as it came, and the actor's next request is checked like any other.
The actor's ``Host`` (which could pick another site behind a shared address) and framing
headers are replaced by the gateway's; the grant's ``headers`` are added last (they win),
with ``${secret:NAME}`` replaced by the secret's value. A value that comes back in the
response or an error message is masked again as ``${secret:NAME}``: a secret never reaches
the actor, its chain or a log. The body is read until ``max_response_bytes``, not further.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from theater import egress, grants
from theater.errors import ManifestError
from theater.secrets import Secrets

# Framing and routing headers the gateway sets itself, whatever the actor says.
OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade",
                         "te", "trailer", "proxy-connection", "proxy-authorization"})


USER_AGENT = "theater-gateway"


class Denied(Exception):
    """Outside the grant: nothing was sent."""


class Failed(Exception):
    """Within the grant, but the request could not be made or its response read."""


@dataclass(frozen=True)
class HttpGrant:
    patterns: tuple[egress.HostPattern, ...]
    methods: frozenset[str]
    timeout: float
    max_bytes: int
    headers: Mapping[str, str]          # name -> template (may hold ${secret:NAME})

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> HttpGrant:
        """From the grant's config, as the manifest checker left it (``theater.grants``)."""
        return cls(tuple(egress.parse_pattern(p) for p in config.get("allowed_hosts", [])),
                   frozenset(config.get("allowed_methods", grants.HTTP_DEFAULT_METHODS)),
                   float(config.get("timeout", grants.HTTP_DEFAULT_TIMEOUT)),
                   int(config.get("max_response_bytes", grants.HTTP_DEFAULT_MAX_RESPONSE)),
                   dict(config.get("headers", {})))


@dataclass(frozen=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes | None


class Egress:
    """One pooled HTTP client for every actor (httpx's pool is thread-safe), and the secrets."""

    def __init__(self, secrets: Secrets) -> None:
        self.secrets = secrets
        # no proxies or .netrc from the environment: where a request goes is the grant's business
        self.client = httpx.Client(trust_env=False, follow_redirects=False, headers={"user-agent": USER_AGENT},
                                   limits=httpx.Limits(max_connections=100, max_keepalive_connections=20))
        del self.client.headers["accept-encoding"]     # the actor asks for compression if it wants it

    def close(self) -> None:
        self.client.close()

    def send(self, grant: HttpGrant, method: str, uri: str, headers: list[Any], body: bytes | None,
             timeout: float) -> Response:
        """Makes one request within ``timeout`` seconds (the actor's call deadline, at most the
        grant's timeout). Raises Denied (nothing sent) or Failed."""
        url, pattern, method = self._check(grant, method, uri)
        host, port = url.raw_host.decode("ascii"), url.port or egress.DEFAULT_PORTS[url.scheme]
        deadline = time.monotonic() + timeout
        address = _checked_address(pattern, host, port)
        sent, used = self._headers(grant, headers, host, port, url.scheme)
        request = self.client.build_request(
            method, url.copy_with(host=str(address)), headers=sent, content=body,
            extensions={"sni_hostname": host} if url.scheme == "https" else {},
            timeout=httpx.Timeout(max(0.001, deadline - time.monotonic())))
        try:
            resp = self.client.send(request, stream=True)
            try:
                data = _read(resp, grant.max_bytes, deadline)
            finally:
                resp.close()
        except httpx.TimeoutException:
            raise Failed(f"{method} {host}: no response within {timeout:.3g}s") from None
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as e:
            raise Failed(_mask(f"{method} {host}: {type(e).__name__}: {e}", used)) from None
        return Response(resp.status_code, [(k, _mask(v, used)) for k, v in resp.headers.multi_items()],
                        _mask_bytes(data, used) if data else None)

    def _check(self, grant: HttpGrant, method: str, uri: str) -> tuple[httpx.URL, egress.HostPattern, str]:
        method = method.upper()
        if method not in grant.methods:
            raise Denied(f"method {method} is not in allowed_methods ({', '.join(sorted(grant.methods))})")
        try:
            url = httpx.URL(uri)
        except (httpx.InvalidURL, TypeError, ValueError) as e:
            raise Failed(f"not a valid URI: {uri[:200]!r}: {e}") from None
        if url.scheme not in egress.DEFAULT_PORTS or not url.raw_host:
            raise Denied(f"{uri[:200]!r}: only absolute http:// and https:// URIs")
        host, port = url.raw_host.decode("ascii"), url.port or egress.DEFAULT_PORTS[url.scheme]
        pattern = egress.first_match(grant.patterns, host, port, url.scheme)
        if pattern is None:
            raise Denied(f"{_hostport(host, port)} is not in allowed_hosts")
        return url, pattern, method

    def _headers(self, grant: HttpGrant, asked: list[Any], host: str, port: int,
                 scheme: str) -> tuple[list[tuple[str, str]], dict[str, str]]:
        """The headers sent: the actor's, less those the gateway sets, then the grant's (secrets
        placed); and the secret values used, to mask them in what comes back."""
        out: list[tuple[str, str]] = []
        for pair in asked:
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
                raise Failed("headers: expected (name, value) pairs of strings")
            name = pair[0].lower()
            if name not in OWN_HEADERS and name not in grant.headers:
                out.append((pair[0], pair[1]))
        used: dict[str, str] = {}
        for name, template in grant.headers.items():
            try:
                value, names = self.secrets.render(template)
            except ManifestError as e:
                raise Failed(f"header {name}: {e.message}") from None
            used.update(names)
            out.append((name, value))
        default = port == egress.DEFAULT_PORTS[scheme]
        out.append(("host", host if default else _hostport(host, port)))
        for name, value in out:
            if not egress.is_header_name(name) or "\r" in value or "\n" in value or "\0" in value:
                raise Failed(_mask(f"header {name[:100]!r}: not a valid header line", used))
        return out, used


def _checked_address(pattern: egress.HostPattern, host: str, port: int) -> egress.IP:
    """The address to connect to: ``host`` resolved, every answer checked against ``pattern``."""
    try:
        addresses = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError) as e:
            raise Failed(f"cannot resolve {host}: {e}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
    if not addresses:
        raise Failed(f"cannot resolve {host}: no address")
    for address in addresses:
        if not pattern.admits(address):
            raise Denied(f"{host} resolves to {address}, which is not a public address and which "
                         f"allowed_hosts does not name ({pattern})")
    return addresses[0]


def _read(resp: httpx.Response, limit: int, deadline: float) -> bytes:
    chunks, size = [], 0
    for chunk in resp.iter_raw():      # as sent: a compressed body stays compressed, as its headers say
        size += len(chunk)
        if size > limit:
            raise Failed(f"the response body is over max_response_bytes ({limit} bytes)")
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the response took too long")
        chunks.append(chunk)
    return b"".join(chunks)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _mask(text: str, used: Mapping[str, str]) -> str:
    for name, value in used.items():
        if value:
            text = text.replace(value, f"${{secret:{name}}}")
    return text


def _mask_bytes(data: bytes, used: Mapping[str, str]) -> bytes:
    for name, value in used.items():
        if value:
            data = data.replace(value.encode(), f"${{secret:{name}}}".encode())
    return data
