"""The gateway's HTTPS requests against a TLS server on loopback whose certificate is for
``a.test`` alone, both ``a.test`` and ``b.test`` resolving to it.

Review finding: every request went through one client whose pool keys connections by the
address the URL was rewritten to; a connection verified for ``a.test`` was reused for
``b.test`` on the same address, whose certificate was never checked, and ``b.test``'s
request (the grant's secrets with it) went to a server that had only proved it is ``a.test``.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from supervisor.gateway import egress as gateway_egress
from supervisor.gateway.egress import Egress, Failed, HttpGrant
from theater.secrets import Secrets

NAMES = ("a.test", "b.test")


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey,
          ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture
def pki(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(the server's context: a certificate for a.test, signed by a CA made here; a client
    context trusting that CA alone)."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test CA", ca_key, "test CA", ca_key, ca=True)
    leaf = _cert("a.test", key, "test CA", ca_key, ca=False)
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "key.pem")
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return server, client


class Hello(http.server.BaseHTTPRequestHandler):
    """Answers every GET, keeping the connection open (HTTP/1.1), and counts connections and requests."""

    protocol_version = "HTTP/1.1"
    connections = 0
    hosts: list[str] = []

    def setup(self) -> None:
        super().setup()
        type(self).connections += 1

    def do_GET(self) -> None:
        type(self).hosts.append(self.headers["host"])
        self.send_response(200)
        self.send_header("content-length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def server(pki: tuple[ssl.SSLContext, ssl.SSLContext]) -> Iterator[tuple[int, type[Hello]]]:
    handler = type("Handler", (Hello,), {"connections": 0, "hosts": []})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.socket = pki[0].wrap_socket(srv.socket, server_side=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv.server_address[1], handler
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join()


@pytest.fixture
def egress(tmp_path: Path, pki: tuple[ssl.SSLContext, ssl.SSLContext],
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Egress]:
    """An Egress trusting the test CA, to which a.test and b.test both resolve to 127.0.0.1."""
    def resolve(pattern: object, host: str, port: int) -> ipaddress.IPv4Address:
        assert host in NAMES, host
        return ipaddress.IPv4Address("127.0.0.1")
    monkeypatch.setattr(gateway_egress, "_checked_address", resolve)
    e = Egress(Secrets({"KEY": "sk-secret"}, tmp_path), verify=pki[1])
    try:
        yield e
    finally:
        e.close()


def test_a_connection_verified_for_one_name_is_not_reused_for_another_on_the_same_address(egress, server):
    port, handler = server
    grant = HttpGrant.of({"allowed_hosts": [f"{name}:{port}" for name in NAMES],
                          "headers": {"authorization": "Bearer ${secret:KEY}"}})
    for _ in range(2):             # the same name twice: its connection is kept and reused
        r = egress.send(grant, "GET", f"https://a.test:{port}/", [], None, 10)
        assert (r.status, r.body) == (200, b"hello")
    assert handler.connections == 1
    with pytest.raises(Failed, match=r"GET b\.test: ConnectError: .*certificate verify failed.*b\.test"):
        egress.send(grant, "GET", f"https://b.test:{port}/", [], None, 10)
    assert handler.hosts == [f"a.test:{port}"] * 2          # b.test's request never reached the server
