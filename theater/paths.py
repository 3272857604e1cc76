"""Where things live under ``$THEATER_HOME``, and the sockets every process agrees on.

    keys/           host.key (Ed25519, 0600), host.pub; CURVE: curve/, authorized/, servers/ (theater.keys)
    run/            theater.sock (management), control.sock, chain.sock, events.sock, w/<pid>.sock, server.json
    chains.db       the event chains (SQLite, WAL)
    actors/         the top-level actors a restarted server brings back (<id>.json)
    components/     uploaded components by SHA-256 (the source of every start and restart)
    cache/          compiled components: <wasmtime version>/<engine flavour>/<sha256>.cwasm
    store/          the content store handler's data
    logs/           server log when not logging to stdout
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError

# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
_IPC_PATH_MAX = 107


def default_home() -> Path:
    env = os.environ.get("THEATER_HOME")
    return Path(env).expanduser() if env else Path.home() / ".theater"


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def resolve(cls, arg: str | os.PathLike[str] | None = None) -> Home:
        """``--home`` if given, else ``$THEATER_HOME``, else ``~/.theater``; always absolute."""
        root = Path(arg).expanduser() if arg else default_home()
        return cls(root.absolute())

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def chains_db(self) -> Path:
        return self.root / "chains.db"

    @property
    def actors(self) -> Path:
        return self.root / "actors"

    @property
    def components(self) -> Path:
        return self.root / "components"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def host_key(self) -> Path:
        return self.keys / "host.key"

    @property
    def host_pub(self) -> Path:
        return self.keys / "host.pub"

    @property
    def management_socket(self) -> Path:
        return self.run / "theater.sock"

    def ensure(self) -> None:
        """Creates what is missing of the layout; run/ and keys/ are created private (0700).
        Existing folders keep their modes (the server sets run/'s: see supervisor.server)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for private in (self.keys, self.run, self.run / "w"):
            if not private.exists():
                private.mkdir(mode=0o700)
                os.chmod(private, 0o700)          # whatever the umask
        for d in (self.components, self.cache, self.store, self.logs):
            d.mkdir(exist_ok=True)
        self.check_socket_paths()

    def check_socket_paths(self) -> None:
        longest = self.run / "w" / "4194304.sock"
        if len(os.fsencode(longest)) > _IPC_PATH_MAX:
            raise UsageError(
                f"THEATER_HOME {self.root} is too long for its unix sockets "
                f"(run/ paths must stay under {_IPC_PATH_MAX} bytes); choose a shorter --home"
            )

    # Endpoints (ZeroMQ addresses).
    def ipc(self, name: str) -> str:
        return f"ipc://{self.run / name}"

    @property
    def management_endpoint(self) -> str:
        return self.ipc("theater.sock")

    @property
    def control_endpoint(self) -> str:
        return self.ipc("control.sock")

    @property
    def chain_endpoint(self) -> str:
        return self.ipc("chain.sock")

    @property
    def events_endpoint(self) -> str:
        return self.ipc("events.sock")

    def worker_socket(self, pid: int) -> Path:
        """A worker's inbox; named by pid so each incarnation gets its own address."""
        return self.run / "w" / f"{pid}.sock"

    def worker_endpoint(self, pid: int) -> str:
        return f"ipc://{self.worker_socket(pid)}"


def write_atomically(path: Path, data: bytes, mode: int | None = None) -> None:
    """Writes ``path`` whole or not at all (a temporary file renamed over it): a crash or a
    concurrent writer never leaves a torn file. ``mode``: the file's permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
