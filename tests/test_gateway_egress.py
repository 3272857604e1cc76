"""The gateway's HTTP requests against a stub server on loopback: a secret the grant places in a
header never comes back to the actor, however the server echoes it.

Red-team finding: an actor that asked for ``accept-encoding: gzip`` got an echo of its request
headers compressed; the masking looked for the secret in the compressed bytes, missed it, and the
actor (and its chain) had the API key once decompressed.
"""

from __future__ import annotations

import functools
import gzip
import http.server
import threading
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from supervisor.gateway import egress as gateway_egress
from supervisor.gateway.egress import Clients, Denied, Egress, Failed, HttpGrant, _mask_bytes, _masks
from theater.secrets import Secrets

SECRET = 'sk-top/secret "value"'


@functools.cache
def bomb() -> bytes:
    """16 MiB of zeros in ~16 KiB of gzip."""
    return gzip.compress(bytes(16 << 20), compresslevel=9)


class Echo(http.server.BaseHTTPRequestHandler):
    """Echoes the request's headers as JSON; /gzip compresses it whatever was asked, /odd says an
    encoding nobody decodes."""

    def do_GET(self) -> None:
        if self.path == "/bomb":
            body = bomb()
            self.send_response(200)
            self.send_header("content-encoding", "gzip")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        body = orjson.dumps(dict(self.headers))
        self.send_response(200)
        if self.path in ("/gzip", "/odd"):
            body = gzip.compress(body)
            self.send_header("content-encoding", "gzip" if self.path == "/gzip" else "x-custom")
        elif self.path == "/raw-deflate":                  # "deflate" as some servers send it: no zlib header
            packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
            body = packer.compress(body) + packer.flush()
            self.send_header("content-encoding", "deflate")
        self.send_header("x-echo", self.headers.get("authorization", ""))
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join()


@pytest.fixture
def egress(tmp_path: Path) -> Iterator[Egress]:
    e = Egress(Secrets({"KEY": SECRET}, tmp_path))
    try:
        yield e
    finally:
        e.close()


def grant(hosts: list[str]) -> HttpGrant:
    return HttpGrant.of({"allowed_hosts": hosts, "headers": {"authorization": "Bearer ${secret:KEY}"}})


@pytest.mark.parametrize("path", ["/", "/gzip", "/raw-deflate"])
def test_an_echoed_secret_is_masked_even_when_the_actor_asks_for_compression(egress, echo, path):
    r = egress.send(grant([f"127.0.0.1:{echo}"]), "GET", f"http://127.0.0.1:{echo}{path}",
                    [["accept-encoding", "gzip"]], None, 5)
    assert r.status == 200 and r.body is not None
    seen = orjson.loads(r.body)                         # decoded: plain JSON, whatever the server sent
    assert seen["authorization"] == "Bearer ${secret:KEY}", seen      # JSON-escaped in the echo, masked
    assert seen["accept-encoding"] == "identity"        # the actor's own wish was not passed on
    headers = dict(r.headers)
    assert headers["x-echo"] == "Bearer ${secret:KEY}" and "content-encoding" not in headers
    assert SECRET.encode() not in r.body and b"sk-top" not in r.body


def test_a_response_in_an_encoding_the_gateway_cannot_decode_is_refused(egress, echo):
    with pytest.raises(Failed, match=r"encoded \(x-custom\), which the gateway cannot decode"):
        egress.send(grant([f"127.0.0.1:{echo}"]), "GET", f"http://127.0.0.1:{echo}/odd", [], None, 5)


def test_a_request_without_a_secret_keeps_the_actors_encoding(egress, echo):
    plain = HttpGrant.of({"allowed_hosts": [f"127.0.0.1:{echo}"]})
    r = egress.send(plain, "GET", f"http://127.0.0.1:{echo}/gzip", [["accept-encoding", "gzip"]], None, 5)
    assert dict(r.headers)["content-encoding"] == "gzip"
    assert orjson.loads(gzip.decompress(r.body))["accept-encoding"] == "gzip"


def test_a_secret_goes_in_cleartext_only_to_an_address_the_grant_names(egress):
    with pytest.raises(Denied, match=r"header authorization holds a secret: it is sent to models\.invalid only "
                                     r"over https"):
        egress.send(grant(["models.invalid"]), "GET", "http://models.invalid/", [], None, 5)


@pytest.mark.parametrize("echo", [
    "ab/c+d=e", "ab\\/c+d=e", "ab\\u002fc\\u002bd\\u003de", "ab%2Fc%2Bd%3De", "ab%2fc%2bd%3de", "ab/c%2Bd%3De",
    "ab/c%2bd%3de",
])
def test_the_forms_an_echo_may_give_a_secret_are_all_masked(echo):
    """Review finding: lowercase percent-encoding, a JSON-escaped slash and partial encoding
    were missed; a base64-style key (/, +, =) leaked in them."""
    assert _mask_bytes(f'{{"seen": "{echo}"}}'.encode(), _masks({"KEY": "ab/c+d=e"})) == b'{"seen": "${secret:KEY}"}'


def test_a_compressed_body_is_unpacked_no_further_than_the_limit(egress, echo):
    """A few KiB of gzip may unpack to gigabytes: decoding stops at max_response_bytes, and
    never holds much more (httpx's decoder unpacked each chunk whole: 16 MiB here)."""
    bomb()
    tracemalloc.start()
    try:
        with pytest.raises(Failed, match=r"over max_response_bytes \(1048576 bytes\)"):
            egress.send(grant([f"127.0.0.1:{echo}"]), "GET", f"http://127.0.0.1:{echo}/bomb", [], None, 5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{peak} bytes held to refuse a body over 1 MiB"


def test_clients_are_one_per_name_and_the_least_recently_used_idle_one_is_closed(monkeypatch):
    """One client per (scheme, host, port), so a connection serves the name it was verified for
    alone; past CLIENTS the oldest no request is using is closed, one in use never."""
    monkeypatch.setattr(gateway_egress, "CLIENTS", 2)
    clients = Clients(httpx.create_ssl_context(trust_env=False))
    try:
        with clients.use("https", "a.test", 443) as a, clients.use("https", "b.test", 443) as b:
            assert a is not b
            with clients.use("https", "a.test", 443) as again:
                assert again is a
            with clients.use("https", "c.test", 443):       # a and b in use: neither closed
                assert not a.is_closed and not b.is_closed
        with clients.use("https", "d.test", 443):           # now the two least recently used go: b, then a
            assert b.is_closed and a.is_closed
        assert list(clients.clients) == [("https", "c.test", 443), ("https", "d.test", 443)]
    finally:
        clients.close()
    assert all(c.is_closed for c in (a, b)) and not clients.clients
