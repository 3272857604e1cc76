"""A component a client sent once is named by its digest at later starts (theater.digests), never
mistaken for a changed file, and sent again when the server does not have it."""

from __future__ import annotations

import os
import shutil

import pytest

from supervisor import components
from theater import digests
from theater.digests import FileDigests, stamp
from theater.errors import NoSuchComponent

from .conftest import EXAMPLES


def test_a_file_is_remembered_while_unchanged_and_only_once_settled(tmp_path, monkeypatch):
    f = tmp_path / "c.wasm"
    f.write_bytes(b"one")
    memo = FileDigests()
    memo.remember(f, stamp(f), "sha-one")
    assert memo.get(f) is None                      # changed just now: a change in the same tick would not show
    monkeypatch.setattr(digests, "SETTLED", 0.0)
    before = stamp(f)
    f.write_bytes(b"two")                           # changed while it was being read: not remembered
    memo.remember(f, before, "sha-one")
    assert memo.get(f) is None
    memo.remember(f, stamp(f), "sha-two")
    assert memo.get(f) == "sha-two"
    os.utime(f, ns=(0, 0))                          # any change of its stat: forgotten
    assert memo.get(f) is None and memo.get(f) is None
    memo.remember(f, stamp(f), "sha-two")
    f.unlink()
    assert memo.get(f) is None


def test_the_least_recently_used_is_forgotten_first(tmp_path, monkeypatch):
    monkeypatch.setattr(digests, "SETTLED", 0.0)
    memo = FileDigests(kept=2)
    files = [tmp_path / f"{i}.wasm" for i in range(3)]
    for i, f in enumerate(files[:2]):
        f.write_bytes(bytes([i]))
        memo.remember(f, stamp(f), str(i))
    assert memo.get(files[0]) == "0"                # now the most recent
    files[2].write_bytes(b"2")
    memo.remember(files[2], stamp(files[2]), "2")
    assert [memo.get(f) for f in files] == ["0", None, "2"]


def test_the_server_refuses_a_digest_it_does_not_store(home):
    home.ensure()
    sha = components.store(home, (EXAMPLES / "counter" / "counter.wat").read_bytes(), "counter")
    assert components.stored(home, sha) == sha
    (home.root / "outside.wasm").write_bytes(b"\0asm")
    for bad in ("0" * 64, "../outside", sha.upper(), sha[:-1], ""):
        with pytest.raises(NoSuchComponent):
            components.stored(home, bad)


def test_a_start_names_a_sent_component_by_digest_and_sends_it_again_when_needed(server, tmp_path, monkeypatch):
    monkeypatch.setattr(digests, "SETTLED", 0.0)
    project = tmp_path / "counter"
    shutil.copytree(EXAMPLES / "counter", project)
    manifest = project / "manifest.toml"
    sent: list[tuple[int, str | None]] = []
    with server.client() as c:
        real = c.call

        def spy(kind, *frames, **fields):
            if kind == "start":
                sent.append((len(frames[0]), fields.get("component_sha")))
            return real(kind, *frames, **fields)
        c.call = spy
        first = c.start(manifest)
        sha = first["component"]
        assert sent[-1][0] > 0 and sent[-1][1] is None
        second = c.start(manifest)
        assert second["component"] == sha and sent[-1] == (0, sha)     # unchanged: by digest, no bytes
        assert c.request(second["id"], b"x") == b"1"

        (server.home.components / f"{sha}.wasm").unlink()     # the server lost it: the bytes again
        assert c.start(manifest)["component"] == sha
        assert sent[-2:] == [(0, sha), (sent[-1][0], None)] and sent[-1][0] > 0
        assert (server.home.components / f"{sha}.wasm").exists()

        wat = project / "counter.wat"               # a changed file is never taken for the old one
        wat.write_text(wat.read_text().replace('"counter started"', '"counter STARTED"'))
        changed = c.start(manifest)
        assert sent[-1][1] is None and changed["component"] != sha
