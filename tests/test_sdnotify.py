"""systemd's notify protocol, seen on a real AF_UNIX datagram socket (a path, and an abstract
name): the server says READY only once it can serve (and has restored its actors, extending
the start timeout meanwhile), keeps STATUS current, pings the watchdog from its loop, and says
STOPPING on SIGTERM. The parsing of $NOTIFY_SOCKET and $WATCHDOG_* is checked as a table."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.sdnotify import Notifier, address, watchdog_interval

from .conftest import EXAMPLES, OpsServer, Server, cli_start, wait_for

COUNTER = EXAMPLES / "counter" / "manifest.toml"


class Manager:
    """The service manager's end: a datagram socket, and every message it has received."""

    def __init__(self, kind: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.dir = Path(tempfile.mkdtemp(prefix="th-notify-", dir="/tmp"))
        if kind == "path":
            self.sock.bind(str(self.dir / "notify"))
            self.env = str(self.dir / "notify")
        else:
            name = f"theater-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.env = "@" + name
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    def received(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.messages
            self.messages.append(dict(line.split("=", 1) for line in data.decode().split("\n")))

    def wait(self, key: str, value: str | None = None, timeout: float = 60) -> dict[str, str]:
        """The first message (received since the start) that sets ``key`` (to ``value``)."""
        def seen() -> dict[str, str] | None:
            return next((m for m in self.received() if key in m and value in (None, m[key])), None)
        return wait_for(seen, timeout=timeout, what=f"{key}={value or '*'} on the notify socket")

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(params=["path", "abstract"])
def manager(request) -> Iterator[Manager]:
    m = Manager(request.param)
    yield m
    m.close()


def notified_server(home, manager: Manager, watchdog_usec: int = 1_000_000) -> OpsServer:
    return OpsServer(home, env={"NOTIFY_SOCKET": manager.env, "WATCHDOG_USEC": str(watchdog_usec)}).start()


def test_ready_status_watchdog_and_stopping_on_a_real_socket(home, manager):
    server = notified_server(home, manager)
    try:
        ready = manager.wait("READY", "1")
        assert ready["STATUS"] == "no actors", ready
        first = manager.messages.index(ready)
        # the watchdog is pinged every half of WATCHDOG_USEC (0.5 s): several pings follow
        wait_for(lambda: sum("WATCHDOG" in m for m in manager.received()[first:]) >= 3, timeout=30,
                 what="three watchdog pings")
        assert all(m.get("WATCHDOG", "1") == "1" for m in manager.messages)

        cli_start(server, COUNTER)
        manager.wait("STATUS", "1 actor: 1 running")

        server.proc.send_signal(signal.SIGTERM)
        stopping = manager.wait("STOPPING", "1")
        assert stopping["STATUS"].startswith("stopping"), stopping
        assert server.proc.wait(30) == 0, server.stderr
        assert "READY" not in "".join(str(m) for m in manager.messages[first + 1:])     # said once
    finally:
        server.stop()


def test_ready_waits_for_restored_actors_and_extends_the_start_timeout(home, manager):
    first = Server(home).start()
    try:
        cli_start(first, COUNTER)
        cli_start(first, COUNTER)
    finally:
        first.stop()            # SIGTERM: both stay saved, to be restored

    server = notified_server(home, manager)
    try:
        ready = manager.wait("READY", "1")
        assert ready["STATUS"] == "2 actors: 2 running", ready
        before = manager.messages[:manager.messages.index(ready)]
        extend = [m for m in before if "EXTEND_TIMEOUT_USEC" in m]
        assert extend and int(extend[0]["EXTEND_TIMEOUT_USEC"]) >= 10_000_000, before
        assert extend[0]["STATUS"].startswith("restoring"), extend
    finally:
        server.stop()


def test_no_watchdog_pings_when_systemd_asks_none(home, manager):
    """Without WATCHDOG_USEC the server does not ping (READY and STATUS still come)."""
    server = OpsServer(home, env={"NOTIFY_SOCKET": manager.env}).start()
    try:
        manager.wait("READY", "1")
        cli_start(server, COUNTER)
        manager.wait("STATUS", "1 actor: 1 running")
        assert not any("WATCHDOG" in m for m in manager.received())
    finally:
        server.stop()


def test_an_unusable_notify_socket_is_said_once_and_the_server_serves(home):
    server = OpsServer(home, env={"NOTIFY_SOCKET": "/nonexistent/notify.sock", "WATCHDOG_USEC": "200000"}).start()
    try:
        wait_for(lambda: "cannot notify" in (home.logs / "server.log").read_text(), what="the warning")
        actor = cli_start(server, COUNTER)          # meanwhile, pings (every 0.1 s) keep failing
        assert server.cli("message", actor, "+1", "--request").out == b"1"
        assert (home.logs / "server.log").read_text().count("cannot notify") == 1
    finally:
        server.stop()


# ---- the environment, as a table -------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("/run/systemd/notify", "/run/systemd/notify"),
    ("@/org/freedesktop/systemd1/notify/123", "\0/org/freedesktop/systemd1/notify/123"),
    ("", None), ("@", None), ("relative/notify", None), ("vsock:2:1234", None),
])
def test_notify_socket_addresses(value, expected):
    assert address(value) == expected


@pytest.mark.parametrize("env, interval", [
    ({"WATCHDOG_USEC": "30000000"}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),          # meant for another process
    ({"WATCHDOG_USEC": "0"}, None), ({"WATCHDOG_USEC": "soon"}, None), ({}, None),
])
def test_watchdog_interval(env, interval):
    assert watchdog_interval(env, os.getpid()) == interval


def test_one_datagram_per_message(manager):
    n = Notifier({"NOTIFY_SOCKET": manager.env})
    assert n.ready("3 actors:\nall running")        # a newline in a status cannot start another assignment
    assert n.watchdog()
    assert manager.received() == [{"READY": "1", "STATUS": "3 actors: all running"}, {"WATCHDOG": "1"}]
    n.close()
    assert not Notifier({}).ready("x")              # not under systemd: nothing sent, nothing raised
