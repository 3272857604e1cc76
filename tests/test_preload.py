"""The fork server loads the components it spawned (worker.preload): its later workers start with
theirs mapped, and with no other actor's component in their memory or their descriptors."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .conftest import ACTORS, EXAMPLES, wait_for


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def _open_files(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):     # closed since the listing
            out.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return out


def test_spawned_components_are_preloaded_and_a_worker_keeps_only_its_own(server):
    counter, probe = EXAMPLES / "counter" / "manifest.toml", ACTORS / "probe.toml"
    zygote = server.fork_server()
    with server.client() as c:
        first = {m: c.start(m) for m in (counter, probe)}
        cwasm = {m: str(server.home.compiled(first[m]["component"], False)) for m in first}
        wait_for(lambda: all(path in _maps(zygote.pid) for path in cwasm.values()), timeout=60,
                 what="the fork server to load both components")
        # the spares forked before that (two at most) load theirs themselves; later ones inherit it
        later = [c.start(probe) for _ in range(4)]
        for info in later:
            assert c.request(info["id"], b"ehello") == b"hello"
            assert cwasm[probe] in _maps(info["pid"])
            assert cwasm[counter] not in _maps(info["pid"])
            assert cwasm[counter] not in _open_files(info["pid"])
        assert c.request(c.start(counter)["id"], b"x") == b"1"
