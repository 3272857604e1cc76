"""Worker inbox sockets (run/w/<pid>.sock) go with their workers (issue 16, finding 12).

Each worker incarnation binds its own inbox, named by pid; none was ever removed, so restart
storms left thousands. The fork server removes each one when it reaps the worker, and those
of workers gone with an earlier fork server when it starts.
"""

from __future__ import annotations

import pytest

from theater.errors import TheaterError
from theater.paths import Home

from .conftest import ACTORS, EXAMPLES, Server, configured_server, pid_alive, wait_for

COUNTER = EXAMPLES / "counter" / "manifest.toml"


def inboxes(home: Home) -> set[int]:
    return {int(p.stem) for p in (home.run / "w").glob("*.sock") if p.stem.isdigit()}


def only_live_inboxes(home: Home) -> bool:
    return all(pid_alive(pid) for pid in inboxes(home))


@pytest.fixture
def storm_server(home: Home):
    """A server whose root tolerates a restart storm (the default gives up after 3 in 5 s)."""
    with configured_server(home, "[root]\nintensity = 1000\n") as s:
        yield s


def test_a_restart_storm_leaves_only_live_workers_inboxes(storm_server, tmp_path):
    home = storm_server.home
    probe = tmp_path / "probe.toml"
    probe.write_text((ACTORS / "probe.toml").read_text().replace('"probe.wat"', f'"{ACTORS / "probe.wat"}"')
                     + '\n[restart]\ntype = "permanent"\n')
    with storm_server.client() as c:
        for _ in range(10):                                  # start and stop
            actor = c.start(COUNTER)["id"]
            assert c.request(actor, b"x") == b"1"
            c.stop(actor)
        actor = c.start(probe)["id"]
        for n in range(1, 11):                               # trap, restart, again
            pid = c.inspect(actor)["pid"]
            with pytest.raises(TheaterError):
                c.request(actor, b"t")
            wait_for(lambda: (i := c.inspect(actor))["status"] == "running" and i["restarts"] == n  # noqa: B023
                     and i["pid"] != pid, timeout=20, what=f"restart {n}")  # noqa: B023
        assert c.request(actor, b"eok") == b"ok"
    wait_for(lambda: only_live_inboxes(home), timeout=10, what="only live workers' inboxes in run/w")
    live = {p.pid for p in storm_server.descendants()}
    assert inboxes(home) <= live, (inboxes(home), live)
    assert len(inboxes(home)) <= 4, inboxes(home)          # the probe, the spares, at most one more


def test_inboxes_left_by_a_killed_server_are_removed_at_start(home):
    s = Server(home).start()
    try:
        assert s.cli("start", str(COUNTER)).code == 0
        s.remember()
    finally:
        s.proc.kill()                                        # no cleanup at all
        s.proc.wait()
        s.stop()
    (home.run / "w" / "4000000.sock").touch()               # and an inbox of a pid that cannot exist
    assert inboxes(home)
    s = Server(home, "--no-restore").start()
    try:
        wait_for(lambda: only_live_inboxes(home), timeout=10, what="stale inboxes to be removed")
        assert 4000000 not in inboxes(home)
    finally:
        s.stop()
