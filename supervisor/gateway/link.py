"""The server's side of the gateway: start it, restart it when it dies, tell it who may ask what.

The gateway (``python -m supervisor.gateway``) is started when the first actor granted one
of its handlers gets a worker (most hosts' actors need none: no process, no memory for them),
stopped last, and dies with the server. A request that reaches it before its grant waits for
it. When it dies it is restarted with a backoff (0.2 s doubling to 10 s; it starts over once a
gateway ran longer than that), and told every grant again.
A grant is sent as soon as the server learns an incarnation's pid (``pid_changed``, from
the registry: the fork server's report or the hello, whichever comes first) and revoked
when the incarnation ends; only actors granted ``http-client`` or ``store`` get one.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import Any

import zmq

from theater import protocol
from theater.config import ServerConfig
from theater.errors import ManifestError
from theater.manifest import Backoff, Manifest
from theater.paths import Home
from theater.secrets import Secrets

from ..launch import Child, Later, Outputs, Respawn
from ..registry import ActorRecord

log = logging.getLogger("theater.server")

# The handlers the gateway serves: an actor granted one of these gets a grant there.
TYPES = ("http-client", "store", "mcp-client")
BACKOFF = Backoff(min=0.2, max=10.0, jitter=0.2)


class GatewayLink:
    def __init__(self, home: Home, ctx: zmq.Context, log_args: list[str], config: ServerConfig, later: Later,
                 worker_group: int | None = None) -> None:
        args = ["--parent", str(os.getpid()), *log_args]
        if config.source.exists():
            args += ["--config", str(config.source)]
        if worker_group is not None:
            args += ["--worker-group", str(worker_group)]
        self.child = Child("supervisor.gateway", home, args)
        self.outputs: Outputs | None = None       # the server's, once its loop runs: our output goes there
        self._out: int | None = None
        self.secrets = Secrets(config.secrets, home.secrets)
        self.later = later
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(home.gateway_endpoint)
        self.grants: dict[int, dict[str, Any]] = {}     # pid -> the grant message
        self.respawn = Respawn("gateway", self.child, BACKOFF, later, self._started)
        self.start = self.respawn.start     # at the first grant

    def _started(self) -> None:
        """The gateway process is new: its output is relayed, and it is told every grant."""
        self.watch_output()
        for grant in self.grants.values():
            self._send(grant)

    def watch_output(self) -> None:
        """Relays the running gateway's output into the server's log (once the loop runs)."""
        if self.outputs is None or self.child.proc is None:
            return
        if self._out is not None:
            self.outputs.unwatch(self._out, drain=True)
        self._out = self.outputs.watch(self.child.output_fd())

    def check_manifest(self, m: Manifest) -> None:
        """Refuses a manifest whose http-client headers (or mcp-client servers' headers and env) name
        a secret this server does not have, or that grants mcp-client where the SDK is missing."""
        for i, h in enumerate(m.handlers):
            where = f"{m.source}: [[handler]] #{i + 1} ({h.type})"
            if h.type == "mcp-client" and importlib.util.find_spec("mcp") is None:
                raise ManifestError(f"{where}: this server has no MCP SDK (pip install 'theater[mcp]')")
            for key, template in _templates(h.type, h.config):
                missing = self.secrets.missing(template)
                if missing:
                    raise ManifestError(f"{where} {key}: secret {missing[0]!r} is not defined (server.toml "
                                        f"[secrets], or a file keys/secrets/{missing[0]})")

    def pid_changed(self, rec: ActorRecord, old: int | None, new: int | None) -> None:
        if old is not None and self.grants.pop(old, None) is not None:
            self._send({"k": "revoke", "pid": old})
        config = {h.type: h.config for h in rec.manifest.handlers if h.type in TYPES}
        if "mcp-client" in config:      # relative commands and working folders start from the manifest's
            config["mcp-client"] = {**config["mcp-client"], "base": rec.spec.base}
        if new is not None and config:
            self.grants[new] = grant = {"k": "grant", "actor": rec.actor_id, "name": rec.name, "pid": new,
                                        "config": config}
            if self.child.proc is None:
                self.start()            # which sends every grant
            else:
                self._send(grant)

    def check(self, stopping: bool) -> None:
        """Restarts the gateway (after its backoff) if it has died."""
        self.respawn.check(stopping)

    def stop(self, timeout: float) -> None:
        if self.child.proc is None:
            return
        self._send({"k": "shutdown"})
        self.child.wait(timeout)
        if self.outputs is not None and self._out is not None:
            self.outputs.unwatch(self._out, drain=True)

    def _send(self, header: dict[str, Any]) -> None:
        try:
            self.sock.send_multipart(protocol.encode(header), zmq.NOBLOCK)
        except zmq.Again:
            log.error("the gateway is not taking messages; %s dropped", header["k"])


def _templates(type_: str, config: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, template) of every value of a grant that may name a secret."""
    if type_ == "http-client":
        return [(f"headers {k}", v) for k, v in config.get("headers", {}).items()]
    if type_ == "mcp-client":
        return [(f"servers.{name} {key} {k}", v) for name, spec in config.get("servers", {}).items()
                for key in ("headers", "env") for k, v in spec.get(key, {}).items()]
    return []
