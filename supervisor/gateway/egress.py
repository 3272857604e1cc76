"""``http-client`` requests, made by the gateway for an actor: checked, secrets placed, sent, read.

Every request is checked against the actor's grant before anything leaves: the method, the
scheme, ``host:port`` against ``allowed_hosts`` (``theater.egress``), then every address the
name resolves to. The connection goes to an address that was checked (the URL is rewritten
to it; ``Host`` and TLS SNI keep the name, so the certificate is verified for the name):
a second DNS answer can never send it elsewhere. As httpx pools connections by the URL's
origin, here the address, a client shared by every name would reuse a connection verified
for one name for another on the same address, never checking its certificate: so there is
one client per scheme, host and port (``Clients``), the pinning staying as it is (keeping
the name in the URL and dialling the address from an httpcore network backend would pool by
name too, but httpx takes a backend only through its transport's private pool). Redirects
are not followed: a 3xx goes back to the actor as it came, and the actor's next request is
checked like any other.
The actor's ``Host`` (which could pick another site behind a shared address) and framing
headers are replaced by the gateway's; the grant's ``headers`` are added last (they win),
with ``${secret:NAME}`` replaced by the secret's value. A value that comes back in the
response or an error message (as it is, JSON-escaped or percent-encoded) is masked again as
``${secret:NAME}``: a secret never reaches the actor, its chain or a log. So that it can be
found, a response to a request carrying a secret is asked for unencoded, and decoded if it
comes compressed anyway; and a secret goes in cleartext (http) only to an address the grant
names. A server that echoes a secret transformed otherwise (base64, a hash) defeats the
masking: grant secrets only towards servers that do not echo them. The body is read until
``max_response_bytes``, not further.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import threading
import time
import zlib
from collections import Counter, OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import orjson

from theater import egress, grants
from theater.errors import ManifestError
from theater.secrets import Secrets

# Framing and routing headers the gateway sets itself, whatever the actor says.
OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade",
                         "te", "trailer", "proxy-connection", "proxy-authorization"})


USER_AGENT = "theater-gateway"
# Clients kept, one per (scheme, host, port) (over the gateway's HTTP_THREADS: an idle one is
# always there to close), and each one's pool of connections.
CLIENTS = 32
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=4)
# Content codings the gateway decodes itself (zlib), to mask a secret in what comes back.
_DECODABLE = ("gzip", "deflate")


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


class Clients:
    """One httpx client per (scheme, host, port), made at its first request: a pooled connection
    (its certificate verified for the host) is reused for that host alone, never for another
    name that resolves to the same address (the pool knows only the address in the URL). At
    most ``CLIENTS`` are kept: past that, the least recently used that no request is using
    (requests run on a pool of threads) is closed with its connections."""

    def __init__(self, verify: ssl.SSLContext) -> None:
        self.verify = verify
        self.lock = threading.Lock()
        self.clients: OrderedDict[tuple[str, str, int], httpx.Client] = OrderedDict()
        self.users: Counter[tuple[str, str, int]] = Counter()       # requests using each, now

    @contextmanager
    def use(self, scheme: str, host: str, port: int) -> Iterator[httpx.Client]:
        key = (scheme, host, port)
        with self.lock:
            client = self.clients.get(key)
            if client is None:
                client = self.clients[key] = self._new()
            self.clients.move_to_end(key)
            self.users[key] += 1
            idle = [k for k in self.clients if not self.users[k]]       # least recently used first
            evicted = [self.clients.pop(k) for k in idle[:max(0, len(self.clients) - CLIENTS)]]
        for old in evicted:
            old.close()
        try:
            yield client
        finally:
            with self.lock:
                self.users[key] -= 1
                if not self.users[key]:
                    del self.users[key]

    def _new(self) -> httpx.Client:
        # no proxies or .netrc from the environment: where a request goes is the grant's business
        client = httpx.Client(trust_env=False, verify=self.verify, follow_redirects=False,
                              headers={"user-agent": USER_AGENT}, limits=LIMITS)
        del client.headers["accept-encoding"]     # the actor asks for compression if it wants it
        return client

    def close(self) -> None:
        with self.lock:
            clients, self.clients = list(self.clients.values()), OrderedDict()
        for client in clients:
            client.close()


@dataclass(frozen=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes | None


class Egress:
    """The HTTP clients (``Clients``) and the secrets, shared by every actor."""

    def __init__(self, secrets: Secrets, verify: ssl.SSLContext | None = None) -> None:
        self.secrets = secrets
        self.clients = Clients(verify or httpx.create_ssl_context(trust_env=False))

    def close(self) -> None:
        self.clients.close()

    def send(self, grant: HttpGrant, method: str, uri: str, headers: list[Any], body: bytes | None,
             timeout: float) -> Response:
        """Makes one request within ``timeout`` seconds (the actor's call deadline, at most the
        grant's timeout). Raises Denied (nothing sent) or Failed."""
        url, pattern, method = self._check(grant, method, uri)
        host, port = url.raw_host.decode("ascii"), url.port or egress.DEFAULT_PORTS[url.scheme]
        deadline = time.monotonic() + timeout
        sent, masks = self._headers(grant, headers, host, port, url.scheme, pattern)
        address = _checked_address(pattern, host, port)
        with self.clients.use(url.scheme, host, port) as client:
            request = client.build_request(
                method, url.copy_with(host=str(address)), headers=sent, content=body,
                extensions={"sni_hostname": host} if url.scheme == "https" else {},
                timeout=httpx.Timeout(max(0.001, deadline - time.monotonic())))
            try:
                resp = client.send(request, stream=True)
                try:
                    decoded = bool(masks) and _encoded(resp)
                    data = _read(resp, grant.max_bytes, deadline, decoded)
                finally:
                    resp.close()
            except httpx.TimeoutException:
                raise Failed(f"{method} {host}: no response within {timeout:.3g}s") from None
            except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as e:
                raise Failed(_mask(f"{method} {host}: {type(e).__name__}: {e}", masks)) from None
        kept = [(k, v) for k, v in resp.headers.multi_items()
                if not (decoded and k.lower() in ("content-encoding", "content-length"))]
        return Response(resp.status_code, [(k, _mask(v, masks)) for k, v in kept],
                        _mask_bytes(data, masks) if data else None)

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

    def _headers(self, grant: HttpGrant, asked: list[Any], host: str, port: int, scheme: str,
                 pattern: egress.HostPattern) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The headers sent: the actor's, less those the gateway sets, then the grant's (secrets
        placed); and how to mask the secret values used in what comes back. A secret goes in
        cleartext only to an address the grant names (a model server on this host or a LAN);
        where it is placed, the response is asked for unencoded, so the masking can find it."""
        used: dict[str, str] = {}
        rendered: list[tuple[str, str]] = []
        for name, template in grant.headers.items():
            try:
                value, names = self.secrets.render(template)
            except ManifestError as e:
                raise Failed(f"header {name}: {e.message}") from None
            if names and scheme != "https" and pattern.host != "localhost" and pattern.address is None:
                raise Denied(f"header {name} holds a secret: it is sent to {host} only over https "
                             f"(or to a host allowed_hosts names by address)")
            used.update(names)
            rendered.append((name, value))
        own = OWN_HEADERS | ({"accept-encoding"} if used else set())
        out: list[tuple[str, str]] = []
        for pair in asked:
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
                raise Failed("headers: expected (name, value) pairs of strings")
            name = pair[0].lower()
            if name not in own and name not in grant.headers:
                out.append((pair[0], pair[1]))
        out += rendered
        if used:
            out.append(("accept-encoding", "identity"))
        default = port == egress.DEFAULT_PORTS[scheme]
        out.append(("host", host if default else _hostport(host, port)))
        masks = _masks(used)
        for name, value in out:        # (httpx takes ASCII values only: another raised UnicodeEncodeError)
            if not egress.is_header_name(name) or not value.isascii() or any(c in value for c in "\r\n\0"):
                raise Failed(_mask(f"header {name[:100]!r}: not a valid header line (ASCII, on one line)", masks))
        return out, masks


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


def _encoded(resp: httpx.Response) -> bool:
    """Whether a response that may echo a secret came encoded anyway (it is decoded to be
    masked); one in another encoding than gzip or deflate, or in two, is refused."""
    codings = [c.strip().lower() for c in resp.headers.get("content-encoding", "").split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    unknown = [c for c in codings if c not in _DECODABLE]
    if unknown or len(codings) > 1:
        raise Failed(f"the response is encoded ({', '.join(codings)}), which the gateway cannot decode to keep "
                     f"the grant's secrets out of it")
    return bool(codings)


def _read(resp: httpx.Response, limit: int, deadline: float, decoded: bool = False) -> bytes:
    """The body, at most ``limit`` bytes: as sent (a compressed body stays compressed, as its
    headers say), or ``decoded``: then the limit holds for the decoded bytes, and no more than
    it is ever unpacked (a few KiB of gzip may unpack to gigabytes)."""
    chunks, size = [], 0
    inflate = zlib.decompressobj(47) if decoded else None      # 47: a gzip or a zlib header, whichever
    for raw in resp.iter_raw():
        chunk = raw
        if inflate is not None:
            try:
                try:
                    chunk = inflate.decompress(raw, limit + 1 - size)
                except zlib.error:
                    if size or "deflate" not in resp.headers["content-encoding"].lower():
                        raise
                    inflate = zlib.decompressobj(-zlib.MAX_WBITS)   # "deflate" sent raw, with no zlib header
                    chunk = inflate.decompress(raw, limit + 1)
            except zlib.error as e:
                raise Failed(f"the response body is not valid {resp.headers['content-encoding']}: {e}") from None
            if inflate.unconsumed_tail:         # more than the limit: not unpacked further
                chunk += b"\0"
        size += len(chunk)
        if size > limit:
            raise Failed(f"the response body is over max_response_bytes ({limit} bytes)")
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the response took too long")
        chunks.append(chunk)
    if inflate is not None and (rest := inflate.flush()):
        if size + len(rest) > limit:
            raise Failed(f"the response body is over max_response_bytes ({limit} bytes)")
        chunks.append(rest)
    return b"".join(chunks)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _forms(value: str) -> list[str]:
    """A secret as an echo may carry it: as it is; escaped in JSON (orjson's way, with ``\\/``, or
    every non-alphanumeric as ``\\uXXXX``); percent-encoded (``/`` kept or not, ``+`` for space
    or not, hex in either case)."""
    json = orjson.dumps(value).decode()[1:-1]
    forms = [value, json, json.replace("/", "\\/"), "".join(c if c.isalnum() else f"\\u{ord(c):04x}" for c in value)]
    for encoded in (quote(value, safe=""), quote(value), quote_plus(value, safe=""), quote_plus(value)):
        forms += [encoded, re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), encoded)]
    return sorted(set(filter(None, forms)), key=len, reverse=True)      # longest first: none cut up by another


def _masks(used: Mapping[str, str]) -> list[tuple[str, str]]:
    """(a form a secret may come back in, what replaces it), for each secret placed: made once a
    request, used on every header and the body."""
    return [(form, f"${{secret:{name}}}") for name, value in used.items() for form in _forms(value)]


def _mask(text: str, masks: list[tuple[str, str]]) -> str:
    for form, masked in masks:
        text = text.replace(form, masked)
    return text


def _mask_bytes(data: bytes, masks: list[tuple[str, str]]) -> bytes:
    for form, masked in masks:
        data = data.replace(form.encode(), masked.encode())
    return data
