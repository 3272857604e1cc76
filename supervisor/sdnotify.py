"""systemd's notify protocol (sd_notify(3)), written against its documentation.

A message is one datagram of newline-separated ``KEY=VALUE`` assignments (``READY=1``,
``STATUS=...``, ``STOPPING=1``, ``WATCHDOG=1``, ``EXTEND_TIMEOUT_USEC=...``), sent on an
``AF_UNIX``/``SOCK_DGRAM`` socket to the address in ``$NOTIFY_SOCKET``: a filesystem path, or,
when it starts with ``@``, a name in the abstract namespace (the ``@`` stands for the leading
NUL byte). The sender's credentials travel with it (the kernel attaches them: systemd's
socket has ``SO_PASSCRED``), which is how systemd knows the main process sent it.

Without ``$NOTIFY_SOCKET`` (not started by systemd, or not ``Type=notify``) nothing is sent.
The watchdog (sd_watchdog_enabled(3)) is on when ``$WATCHDOG_USEC`` is set and
``$WATCHDOG_PID`` is unset or this process's pid; pings are due every half of it.
Nothing here blocks or raises: a message the manager cannot take now is dropped (logged).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("theater.server")


def address(value: str) -> str | None:
    """The socket address ``$NOTIFY_SOCKET`` names, as ``sendto`` takes it; None if unusable."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None         # empty, relative, or a kind this module does not speak (vsock:)


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between watchdog pings (half the manager's timeout), or None when it is off."""
    usec = env.get("WATCHDOG_USEC", "")
    owner = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None
    return int(usec) / 2e6


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        raw = env.get("NOTIFY_SOCKET", "")
        self.address = address(raw)
        if raw and self.address is None:
            log.warning("NOTIFY_SOCKET=%r is not an absolute path or an @abstract name; not notifying", raw)
        self.watchdog_every = watchdog_interval(env, os.getpid()) if self.address else None
        self.sock: socket.socket | None = None
        self.failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Sends one message of ``KEY=VALUE`` lines; whether the manager got it."""
        if self.address is None:
            return False
        if self.sock is None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self.sock.sendto("\n".join(assignments).encode(), socket.MSG_DONTWAIT, self.address)
        except OSError as e:
            if not self.failed:           # said once: a manager that went away would flood the log
                log.warning("cannot notify the service manager (%s): %s", self.address.lstrip("\0"), e)
            self.failed = True
            return False
        self.failed = False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={_one_line(status)}")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={_one_line(text)}")

    def stopping(self, status: str) -> bool:
        return self.send("STOPPING=1", f"STATUS={_one_line(status)}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def extend(self, seconds: float, status: str) -> bool:
        """Moves the start (or stop) timeout to ``seconds`` from now, as it is being approached."""
        return self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}", f"STATUS={_one_line(status)}")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _one_line(text: str) -> str:
    return " ".join(text.split())
