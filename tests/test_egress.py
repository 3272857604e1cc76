"""The allow-list's rules (``theater.egress``) and the secrets' (``theater.secrets``), as tables."""

from __future__ import annotations

import ipaddress
import os

import pytest

from theater import egress
from theater.config import load_server_config
from theater.errors import ManifestError
from theater.secrets import Secrets


@pytest.mark.parametrize(("pattern", "host", "port", "scheme", "matches"), [
    ("api.example.com", "api.example.com", 443, "https", True),
    ("api.example.com", "API.Example.com.", 443, "https", True),
    ("api.example.com", "api.example.com", 8443, "https", False),     # no port: the default port only
    ("api.example.com", "api.example.com", 80, "http", True),
    ("api.example.com:8443", "api.example.com", 8443, "https", True),
    ("api.example.com", "evil.api.example.com", 443, "https", False),
    ("api.example.com", "api.example.com.evil.net", 443, "https", False),
    ("*.example.com", "a.example.com", 443, "https", True),
    ("*.example.com", "a.b.example.com", 443, "https", True),
    ("*.example.com", "example.com", 443, "https", False),
    ("*.example.com", "evilexample.com", 443, "https", False),
    ("*", "anything.net", 80, "http", True),
    ("*", "127.0.0.1", 80, "http", False),                              # "*" names no address
    ("127.0.0.1:8080", "127.0.0.1", 8080, "http", True),
    ("[::1]:8080", "::1", 8080, "http", True),
    ("[::1]:8080", "[::1]", 8080, "http", True),
])
def test_host_patterns(pattern, host, port, scheme, matches):
    assert egress.parse_pattern(pattern).matches(host, port, scheme) is matches


@pytest.mark.parametrize(("pattern", "address", "admitted"), [
    ("*.example.com", "93.184.216.34", True),
    ("*.example.com", "127.0.0.1", False),
    ("*.example.com", "10.1.2.3", False),
    ("*.example.com", "192.168.0.1", False),
    ("*.example.com", "169.254.169.254", False),            # cloud metadata
    ("*.example.com", "100.64.0.1", False),                 # shared (CGNAT)
    ("*.example.com", "::1", False),
    ("*.example.com", "fd00::1", False),
    ("*.example.com", "::ffff:127.0.0.1", False),           # IPv4-mapped loopback
    ("*.example.com", "64:ff9b::7f00:1", False),            # NAT64 of loopback (Python: "global")
    ("*.example.com", "64:ff9b:1::a00:1", False),           # local-use NAT64: never public
    ("*.example.com", "64:ff9b:1:7f00:0:100:808:808", False),   # (127.0.0.1 in a /48 network's layout)
    ("*.example.com", "2002:7f00:1::", False),              # 6to4 of loopback
    ("*.example.com", "2001:0:4136:e378:8000:63bf:80ff:fffe", False),     # Teredo, client 127.0.0.1
    ("*.example.com", "::7f00:1", False),                   # IPv4-compatible loopback
    ("*.example.com", "64:ff9b::808:808", True),            # NAT64 of a public address
    ("*.example.com", "0.0.0.0", False),
    ("localhost:8080", "127.0.0.1", True),
    ("localhost:8080", "::1", True),
    ("localhost:8080", "10.0.0.1", False),
    ("127.0.0.1:8080", "127.0.0.1", True),
    ("127.0.0.1:8080", "127.0.0.2", False),
    ("10.0.0.5", "10.0.0.5", True),
    ("10.0.0.5", "::ffff:10.0.0.5", True),
])
def test_addresses_a_pattern_admits(pattern, address, admitted):
    assert egress.parse_pattern(pattern).admits(ipaddress.ip_address(address)) is admitted


@pytest.mark.parametrize("bad", ["", "a b", "x:0", "x:65536", "x:port", "*.", "**.a", "a.*.b", "::1", "[::1",
                                 "[x]:1", "-a.com", 5, "ex_ample.com"])
def test_bad_patterns_say_what_is_allowed(bad):
    with pytest.raises(ValueError):
        egress.parse_pattern(bad)


def test_a_secret_file_must_be_private(tmp_path):
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "OPEN").write_text("v")
    os.chmod(folder / "OPEN", 0o644)
    (folder / "KEY").write_text("value\n")
    os.chmod(folder / "KEY", 0o600)
    s = Secrets({"TABLE": "tv"}, folder)
    assert s.render("Bearer ${secret:KEY} ${secret:TABLE}") == ("Bearer value tv", {"KEY": "value", "TABLE": "tv"})
    assert s.missing("${secret:KEY} ${secret:NOPE}") == ["NOPE"]
    with pytest.raises(ManifestError, match="must be a regular file of mode 0600"):
        s.value("OPEN")
    with pytest.raises(ManifestError, match="'NOPE' is not defined"):
        s.value("NOPE")
    assert "tv" not in repr(s)


def test_server_toml_with_secrets_must_be_private(tmp_path):
    config = tmp_path / "server.toml"
    config.write_text('[secrets]\nKEY = "v"\n')
    os.chmod(config, 0o644)
    with pytest.raises(ManifestError, match=r"\[secrets\]: this file holds secrets"):
        load_server_config(config)
    os.chmod(config, 0o600)
    loaded = load_server_config(config)
    assert loaded.secrets == {"KEY": "v"} and "'v'" not in repr(loaded)
    config.write_text('[secrets]\n"bad name" = "v"\n')
    with pytest.raises(ManifestError, match=r"\[secrets\] bad name"):
        load_server_config(config)
