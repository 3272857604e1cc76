"""``theater inspect``: one actor in detail, running or not.

A running (or failed, still listed) actor is described by the server. One the server no
longer knows (stopped, or no server is running) is described from what this home holds:
its chain (name, version, component, incarnations, how the last one ended) and, if it is
saved for the next server, its manifest (handlers, restart policy, limits).
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

import orjson

from .. import manifest as manifests
from .._units import format_size, human_duration
from ..bodies import body_of
from ..chaindb import ChainReader
from ..config import load_server_config
from ..errors import NotFound, TheaterError, Unreachable
from ..events import readable
from ..manifest import Limits
from . import _output
from ._context import Context

_LIMIT_TEXT = (   # (key, label, how to show it; 0 means "none" for these)
    ("memory", "memory", format_size), ("process_memory", "process memory", format_size),
    ("call_timeout", "call timeout", human_duration), ("fuel", "fuel", str), ("cpu", "cpu", lambda v: f"{v:g} core"),
    ("mailbox", "mailbox", str), ("events_per_second", "events/s", str),
    ("event_bytes_per_second", "event bytes/s", format_size), ("children", "children", str),
    ("descendants", "descendants", str))
_ZERO_IS_ZERO = frozenset({"children", "descendants"})      # not "off": no children at all


def limits_text(limits: dict[str, Any]) -> str:
    """The effective limits in one line, as a manifest writes them ("memory 64MiB, ...")."""
    return ", ".join(f"{label} {show(limits[key]) if limits[key] or key in _ZERO_IS_ZERO else 'off'}"
                     for key, label, show in _LIMIT_TEXT if key in limits)


def inspect(args: argparse.Namespace, ctx: Context) -> int:
    """Show one actor: status, pid, restarts, last error, manifest settings, limits, children.

    An actor the server no longer knows (stopped, or no server running) is shown from its
    chain and, if it is saved for the next server, its manifest. --json prints the same
    fields as an object (a stopped actor's has "running": false).
    """
    try:
        info = {**ctx.client.inspect(args.actor), "running": True}
    except (NotFound, Unreachable) as e:
        info = stopped(ctx, args.actor, e)
    if ctx.json:
        _output.emit_json(info)
        return 0
    keys = ["id", "name", "version", "status", "pid", "incarnation", "restarts", "last_error", "parent", "manifest",
            "component", "endpoint"] if info["running"] else \
        ["id", "name", "version", "status", "incarnation", "last_error", "component", "events", "started", "last_event"]
    for key in keys:
        value = info.get(key)
        _output.line(f"{key.replace('_', ' ') + ':':13} {value if value is not None else '-'}",
                     colour=_output.STATUS_COLOURS.get(str(value)) if key == "status" else None)
    if "handlers" in info:
        _output.line(f"{'handlers:':13} {', '.join(info['handlers']) or '-'}")
    if info["running"]:
        _output.line(f"{'children:':13} {', '.join(info['children']) or '-'}")
    if "restart" in info:
        r = info["restart"]
        shutdown = "brutal_kill" if r["shutdown"] is None else f"{r['shutdown']:g}s"
        _output.line(f"{'restart:':13} {r['type']}, children {r['strategy']} "
                     f"(at most {r['intensity']} in {r['period']:g}s), shutdown {shutdown}, state {r['state']}")
    if "limits" in info:
        _output.line(f"{'limits:':13} {limits_text(info['limits'])}")
    if info.get("enforced"):
        _output.line(f"{'enforced:':13} {info['enforced']}")
    if info.get("last_exit"):
        e = info["last_exit"]
        error = f": {e['error']}" if e.get("error") else ""
        _output.line(f"{'last exit:':13} {e['kind']} ({e['reason']}){error}")
    if info.get("chain_error"):
        _output.line(f"{'chain:':13} refusing new events ({info['chain_error']}); the actor waits until it can "
                     f"store them")
    if not info["running"]:
        _output.line(f"{'note:':13} {info['note']}")
    return 0


def stopped(ctx: Context, key: str, why: TheaterError) -> dict[str, Any]:
    """An actor the server does not know, from its chain and saved manifest. Raises ``why``
    (the server's answer) if this home has no chain for it either."""
    try:
        reader = ChainReader(ctx.home.chains_db)
    except NotFound:
        raise why from None
    actor_id = reader.resolve(key)
    chain = next(c for c in reader.chains() if c.actor_id == actor_id)
    info: dict[str, Any] = {"id": actor_id, "name": chain.name, "running": False, "pid": None,
                            "events": chain.length, "head": chain.head.hex() if chain.head else None}
    starts = exits = 0
    last_start: dict[str, Any] = {}
    last_exit: dict[str, Any] | None = None
    first_ns = last_ns = None
    for ev in reader.events(actor_id, types=("lifecycle/start", "lifecycle/exit")):
        body = readable(body_of(ev.data))       # JSON, as --json prints it; a worker may have written it
        body = body if isinstance(body, dict) else {}
        if ev.type == "lifecycle/start":
            starts, last_start, last_exit, first_ns = starts + 1, body, None, first_ns or ev.time_ns
        else:
            exits, last_exit = exits + 1, body
        last_ns = ev.time_ns
    for ev in reader.events(actor_id, since=max(chain.length - 1, 0)):
        last_ns = ev.time_ns
    reader.close()
    m = last_start.get("manifest")
    m = m if isinstance(m, dict) else {}
    info.update(name=info["name"] or m.get("name"), version=m.get("version"), component=last_start.get("component"),
                incarnation=last_start.get("incarnation", starts) or None, restarts=max(starts - 1, 0),
                started=_output.when(first_ns) if first_ns else None,
                last_event=_output.when(last_ns) if last_ns else None)
    if last_exit is not None:
        info["last_exit"] = {k: last_exit.get(k) for k in ("kind", "reason", "error", "status")}
        abnormal = last_exit.get("kind") == "abnormal"
        info["status"] = "stopped" if last_exit.get("action") == "stopped" else "failed" if abnormal else "exited"
        if abnormal:
            info["last_error"] = ": ".join(str(x) for x in (last_exit.get("reason"), last_exit.get("error")) if x)
    else:
        info["status"] = "not running"
    saved = _saved(ctx, actor_id)
    if saved is not None:
        info.update(saved)
        info["note"] = "saved: the next server started on this home brings it back"
    else:
        info["note"] = ("not known to the server: stopped, or its server is not running; "
                        "its chain stays (`theater events`, `verify`, `export`)")
    return info


def _saved(ctx: Context, actor_id: str) -> dict[str, Any] | None:
    """What the saved actor (``actors/<id>.json``) says of it: manifest, handlers, restart, limits."""
    path = ctx.home.actors / f"{actor_id}.json"
    with contextlib.suppress(OSError, ValueError, TheaterError, KeyError, TypeError):
        doc = orjson.loads(path.read_bytes())
        m = manifests.parse(doc["manifest"], doc["source"])
        defaults = Limits()
        with contextlib.suppress(TheaterError, OSError):
            defaults = load_server_config(ctx.home.root / "server.toml").limits
        lim = m.effective_limits(defaults)
        r = m.restart
        return {"saved": True, "manifest": m.source, "handlers": [h.type for h in m.handlers],
                "restart": {"type": r.type, "strategy": r.strategy, "intensity": r.intensity, "period": r.period,
                            "shutdown": r.shutdown, "state": r.state},
                "limits": {k: getattr(lim, k) for k in lim.__dataclass_fields__}}
    return None


def _inspect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("actor", help="actor id (or a unique prefix of it, or its name); stopped actors too")


COMMANDS = {"inspect": (inspect, "show one actor in detail (running or stopped)", _inspect_args)}
