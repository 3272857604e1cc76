"""Actor commands: start, stop, restart, prune, list, tree, top, state (inspect: inspect.py)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from .. import admission
from .. import manifest as manifests
from .._units import human_size
from ..errors import ManifestError, Unreachable
from ..events import readable
from ..manifest import Manifest
from . import _output, chains
from ._context import Context, actor_arg, read_input, seconds


def start(args: argparse.Namespace, ctx: Context) -> int:
    """Start an actor from its manifest; prints its id once its init is done.

    The manifest, its component (.wasm or .wat) and its initial state are read here and sent
    to the server, so the server needs no access to your files. The first start of a component
    compiles it (seconds for a large one); a terminal shows how long it has taken so far.
    --json prints {"id": ..., "name": ..., "pid": ...}.
    """
    checked_manifest(args.manifest)
    state = read_input(args.state, "--state") if args.state else None
    info = start_with_progress(ctx, args.manifest, state)
    if ctx.json:
        _output.emit_json({"id": info["id"], "name": info["name"], "pid": info.get("pid")})
    else:
        _output.line(info["id"])
    return 0


def checked_manifest(manifest: str) -> Manifest:
    """The manifest, checked here before any server is reached (or, for `theater run`, started):
    a bad one is said as such, server or not."""
    path = Path(manifest).absolute()
    m = manifests.load(path)
    if not (path.parent / m.component).exists() and (path.parent / "app.py").is_file():
        # `theater new` then `theater run`, the build skipped: the file missing is not the news
        raise ManifestError(f"{path}: component = {m.component!r} is not built yet: "
                            f"`theater build {path.parent}` builds it from app.py")
    admission.check(m)
    return m


def start_with_progress(ctx: Context, manifest: str, state: bytes | None) -> dict[str, Any]:
    """The start request's answer; a first start that compiles its component shows how long,
    on a terminal."""
    progress = _output.Progress()
    ctx.client.on_progress = progress
    try:
        return ctx.client.start(manifest, state)
    finally:
        progress.done()


def stop(args: argparse.Namespace, ctx: Context) -> int:
    """Stop an actor (its children first), wait until its process is gone, and forget it.

    Its chain stays in the store: `theater events`, `verify` and `export` still work on it.
    """
    info = ctx.client.stop(args.actor)
    if ctx.json:
        _output.emit_json({"id": info["id"], "status": info["status"]})
    else:
        _output.line(f"stopped {info['id']}")
    return 0


def restart(args: argparse.Namespace, ctx: Context) -> int:
    """Restart an actor: stop it (its children first) and start its next incarnation, from its
    last committed state (or a fresh init, as its manifest's [restart] state says); prints its
    id once init is done. A failed actor is started again. --json prints {"id", "name", "pid"}.
    """
    info = ctx.client.call("restart", actor=args.actor)[0]
    if ctx.json:
        _output.emit_json({"id": info["id"], "name": info["name"], "pid": info.get("pid")})
    else:
        _output.line(info["id"])
    return 0


def prune(args: argparse.Namespace, ctx: Context) -> int:
    """Forget the actors that failed or exited (top-level ones, and so their children): they leave
    `theater list` and are not brought back by the next server. Their chains stay.
    --json prints [{"id", "name", "status"}, ...].
    """
    gone = ctx.client.call("prune")[0]["pruned"]
    if ctx.json:
        _output.emit_json(gone)
    elif not gone:
        _output.line("nothing to prune (no failed or exited actors)")
    for a in [] if ctx.json else gone:
        _output.line(f"forgot {a['id']} ({a['name']}, {a['status']})")
    return 0


def list_actors(args: argparse.Namespace, ctx: Context) -> int:
    """List the server's actors: running, restarting, or failed and left stopped."""
    actors = ctx.client.call("list")[0]["actors"]
    if ctx.json:
        _output.emit_json(actors)
        return 0
    if not actors:
        _output.line("no actors")
        return 0
    rows = [[a["id"], a["name"], a["status"], str(a["pid"] or "-"), str(a["restarts"]), a["last_error"] or ""]
            for a in actors]
    _output.table(rows, ["ID", "NAME", "STATUS", "PID", "RESTARTS", "LAST ERROR"], status_column=2)
    if actors[0].get("chain_error"):
        _output.line(f"chain: refusing new events ({actors[0]['chain_error']}); actors wait until it can store them")
    return 0


def tree(args: argparse.Namespace, ctx: Context) -> int:
    """Show the supervision tree: each actor under its supervisor, with status and restarts."""
    nodes = ctx.client.call("tree")[0]["tree"]
    if ctx.json:
        _output.emit_json(nodes)
        return 0
    _output.line("theater-server (root, one_for_one)")

    def show(node: dict[str, Any], prefix: str, last: bool) -> None:
        branch = "└── " if last else "├── "
        extra = f" restarts={node['restarts']}" if node["restarts"] else ""
        err = f" last error: {node['last_error']}" if node["last_error"] else ""
        _output.line(f"{prefix}{branch}{node['name']} {node['id'][:8]} [{node['status']}] {node['restart']}"
              f"{extra}{err}")
        kids = node["children"]
        for i, k in enumerate(kids):
            show(k, prefix + ("    " if last else "│   "), i == len(kids) - 1)
    for i, n in enumerate(nodes):
        show(n, "", i == len(nodes) - 1)
    return 0


def top(args: argparse.Namespace, ctx: Context) -> int:
    """Live resource use per actor: memory (RSS and unique), CPU, events/s, mailbox, restarts, and
    why its last incarnation ended (memory, oom, timeout, fuel, trap, ...).

    CPU and events/s are rates between two samples: the first screen takes two, --interval
    apart at most 0.5 s. --json prints {"actors": [...], "server": {...}} from one sample, with
    rates since the previous `top` (none on the first); with --watch, one object per line.
    """
    first = True
    while True:
        info = ctx.client.call("top")[0]
        if first and not ctx.json and any("cpu_seconds" in a and "cpu_percent" not in a for a in info["actors"]):
            time.sleep(min(args.interval, FIRST_SAMPLE))      # a rate needs two samples
            info = ctx.client.call("top")[0]
        if ctx.json:
            shown = {"actors": info["actors"], "server": info["server"]}
            _output.emit_json_line(shown) if args.watch else _output.emit_json(shown)
        else:
            if args.watch:
                _output.new_screen(first)
            _top_table(info)
        if not args.watch:
            return 0
        first = False
        time.sleep(args.interval)


# The pause between the two samples of `top`'s first screen.
FIRST_SAMPLE = 0.5


def _top_table(info: dict[str, Any]) -> None:
    def rate(a: dict[str, Any], key: str, fmt: str) -> str:
        return fmt.format(a[key]) if key in a else "-"
    rows = [[a["id"][:8], a["name"], a["status"], rate(a, "cpu_percent", "{:.0f}%"),
             rate(a, "events_per_second", "{:g}"), human_size(a["rss"]) if "rss" in a else "-",
             human_size(a["uss"]) if "uss" in a else "-", str(a.get("mailbox", 0)), str(a["restarts"]),
             a.get("last_exit") or "-", str(a["pid"] or "-")]
            for a in info["actors"]]
    _output.table(rows, ["ID", "NAME", "STATUS", "CPU", "EVENTS/S", "RSS", "UNIQUE", "MAILBOX", "RESTARTS",
                         "LAST EXIT", "PID"], status_column=2)
    _output.line(f"server pid {info['server']['pid']}, rss {human_size(info['server']['rss'])}; "
                 f"{len(info['actors'])} actor(s)")


def state(args: argparse.Namespace, ctx: Context) -> int:
    """Write an actor's current state (its bytes) to stdout.

    From the running worker, or, for a stopped actor (or with no server running), the last
    state its chain committed. --json prints {"actor": ..., "state": {"utf8": ...} | {"b64":
    ...} | null}.
    """
    try:
        value = ctx.client.state(args.actor)
    except Unreachable:          # no server: the chain is on disk all the same
        store = chains.open_store(ctx)
        try:
            value = store.state(store.resolve(args.actor))
        finally:
            store.close()
    if ctx.json:
        _output.emit_json({"actor": args.actor, "state": readable(value) if value is not None else None})
    elif value is not None:
        _output.emit_bytes(value)
    return 0


def _start_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifest", help="path to the actor's manifest.toml")
    p.add_argument("--state", metavar="FILE", help="initial state bytes (instead of the manifest's init_state)")


def _top_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--watch", action="store_true", help="refresh until interrupted")
    p.add_argument("--interval", type=seconds, default=2.0, help="seconds between refreshes (default 2)")


COMMANDS = {
    "start": (start, "start an actor from a manifest", _start_args),
    "stop": (stop, "stop an actor and its children", actor_arg),
    "restart": (restart, "restart an actor (and start a failed one again)", actor_arg),
    "prune": (prune, "forget failed and exited actors (their chains stay)", lambda p: None),
    "list": (list_actors, "list actors", lambda p: None),
    "tree": (tree, "show the supervision tree", lambda p: None),
    "top": (top, "live resource use per actor", _top_args),
    "state": (state, "print an actor's state", actor_arg),
}
