"""Actor commands: start, stop, list, inspect, tree, top, state."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from .._units import format_size
from ..events import readable
from . import _output
from ._context import Context, actor_arg, seconds


def start(args: argparse.Namespace, ctx: Context) -> int:
    """Start an actor from its manifest; prints its id once its init is done.

    The manifest, its component (.wasm or .wat) and its initial state are read here and sent
    to the server, so the server needs no access to your files. The first start of a component
    compiles it (seconds for a large one); a terminal shows how long it has taken so far.
    --json prints {"id": ..., "name": ..., "pid": ...}.
    """
    state = Path(args.state).read_bytes() if args.state else None
    info = start_with_progress(ctx, args.manifest, state)
    if ctx.json:
        _output.emit_json({"id": info["id"], "name": info["name"], "pid": info.get("pid")})
    else:
        _output.line(info["id"])
    return 0


def start_with_progress(ctx: Context, manifest: str, state: bytes | None) -> dict[str, Any]:
    """The start request; a first start that compiles its component shows how long, on a terminal."""
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
        _output.emit_json(info)
    else:
        _output.line(f"stopped {info['id']}")
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
    _output.table(rows, ["ID", "NAME", "STATUS", "PID", "RESTARTS", "LAST ERROR"])
    if actors[0].get("chain_error"):
        _output.line(f"chain: refusing new events ({actors[0]['chain_error']}); actors wait until it can store them")
    return 0


def inspect(args: argparse.Namespace, ctx: Context) -> int:
    """Show one actor: status, pid, restarts, last error, manifest settings, children."""
    info = ctx.client.inspect(args.actor)
    if ctx.json:
        _output.emit_json(info)
        return 0
    for key in ("id", "name", "version", "status", "pid", "incarnation", "restarts", "last_error", "parent",
                "manifest", "component", "endpoint"):
        _output.line(f"{key + ':':13} {info.get(key) if info.get(key) is not None else '-'}")
    _output.line(f"{'handlers:':13} {', '.join(info['handlers']) or '-'}")
    _output.line(f"{'children:':13} {', '.join(info['children']) or '-'}")
    r = info["restart"]
    shutdown = "brutal_kill" if r["shutdown"] is None else f"{r['shutdown']:g}s"
    _output.line(f"{'restart:':13} {r['type']}, children {r['strategy']} "
          f"(at most {r['intensity']} in {r['period']:g}s), shutdown {shutdown}, state {r['state']}")
    if info.get("last_exit"):
        e = info["last_exit"]
        _output.line(f"{'last exit:':13} {e['kind']} ({e['reason']}){': ' + e['error'] if e.get('error') else ''}")
    if info.get("chain_error"):
        _output.line(f"{'chain:':13} refusing new events ({info['chain_error']}); the actor waits until it can "
                     f"store them")
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
    """Live resource use per actor: memory (RSS and unique), CPU, events/s, restarts, and why its
    last incarnation ended (memory, oom, timeout, fuel, trap, ...)."""
    while True:
        info = ctx.client.call("top")[0]
        if ctx.json:
            _output.emit_json_line(info) if args.watch else _output.emit_json(info)
        else:
            if args.watch:
                _output.clear_screen()
            # CPU % and events/s are rates since the previous `top`: the first shows "-"
            rows = [[a["id"][:8], a["name"], a["status"], a.get("last_exit") or "-", str(a["pid"] or "-"),
                     format_size(a["rss"]) if "rss" in a else "-", format_size(a["uss"]) if "uss" in a else "-",
                     f"{a['cpu_percent']:.0f}%" if "cpu_percent" in a else "-",
                     str(a.get("events_per_second", "-")), str(a["restarts"])]
                    for a in info["actors"]]
            _output.table(rows, ["ID", "NAME", "STATUS", "LAST EXIT", "PID", "RSS", "UNIQUE", "CPU", "EVENTS/S",
                                 "RESTARTS"])
            _output.line(f"server pid {info['server']['pid']}, rss {format_size(info['server']['rss'])}")
        if not args.watch:
            return 0
        time.sleep(args.interval)


def state(args: argparse.Namespace, ctx: Context) -> int:
    """Write an actor's current state (its bytes) to stdout.

    From the running worker, or, for a stopped actor, the last state its chain committed.
    --json prints {"actor": ..., "state": {"utf8": ...} | {"b64": ...} | null}.
    """
    value = ctx.client.state(args.actor)
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
    "list": (list_actors, "list actors", lambda p: None),
    "inspect": (inspect, "show one actor in detail", actor_arg),
    "tree": (tree, "show the supervision tree", lambda p: None),
    "top": (top, "live resource use per actor", _top_args),
    "state": (state, "print an actor's state", actor_arg),
}
