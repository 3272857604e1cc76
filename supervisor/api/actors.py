"""Actor lifecycle requests: ping, start, stop, restart, prune, list, inspect, tree, top, tools, watch, unwatch."""

from __future__ import annotations

import os
import time
from pathlib import PurePosixPath

import psutil

from theater import __version__
from theater import manifest as manifests
from theater.errors import Refused, TheaterError

from ..registry import Status
from .request import Request

# The previous `top` sample of each running actor (pid, events, CPU seconds, time): rates
# are the change since then. (psutil's own cpu_percent needs the same Process object twice.)
_samples: dict[str, tuple[int, int, float, float]] = {}


def ping(req: Request) -> None:
    s = req.services
    req.ok(version=__version__, pid=os.getpid(), home=str(s.home.root), listen=s.listen,
           actors=len(s.registry), public_key=s.public_key, limits=s.limits.describe())


def start(req: Request) -> None:
    """{manifest: TOML text, source, base, has_state, component_sha?} [component bytes, initial state?]
    -> {id, name, pid, component}; while its component compiles, {"k": "compiling", request,
    component, bytes, seconds} every second. With ``component_sha`` and no bytes, the component is
    one stored already (NoSuchComponent if not: the client sends its bytes)."""
    h = req.header
    m = manifests.parse(h["manifest"], h["source"])
    req.services.check_manifest(m)
    req.services.room.check(None)
    if h.get("component_sha") and not req.frames[0]:
        sha = req.services.stored_component(h["component_sha"])
    else:
        sha = req.services.store_component(req.frames[0], f"{h['source']}: component {m.component!r}",
                                           str(PurePosixPath(h["base"]) / m.component))
    init = req.frames[1] if h.get("has_state") and len(req.frames) > 1 else None

    def ready(err: TheaterError | None) -> None:
        if err is not None:
            req.fail(err)
        else:
            req.ok(id=rec.actor_id, name=rec.name, pid=rec.pid, component=sha)
    rec = req.services.supervision.start(m, h["manifest"], h["base"], sha, init, on_ready=ready)

    name = PurePosixPath(m.component).name

    def compiling(seconds: float, size: int) -> None:     # the first start of a component: it compiles
        req.services.outbox.push(req.client, {"k": "compiling", "request": req.id, "component": name,
                                              "bytes": size, "seconds": round(seconds, 1)})
    req.services.supervision.compiles.watch(sha, rec.spec.limits.fuel > 0, compiling)


def stop(req: Request) -> None:
    """{actor} -> {id}, once its process (and its children's) are gone; the actor is forgotten."""
    sup = req.services.supervision
    rec = req.services.registry.lookup(req.header["actor"])

    def done() -> None:
        sup.remove(rec)
        req.ok(id=rec.actor_id, status="stopped")
    sup.stop(rec, "stopped by request", done, by_parent=False)


def restart(req: Request) -> None:
    """{actor} -> {id, name, pid} once its next incarnation's init is done (from its last committed
    state, or a fresh init, as its manifest's [restart] state says); its children stop first. A
    failed actor is started again; one already starting, restarting or stopping is refused."""
    rec = req.services.registry.lookup(req.header["actor"])
    if rec.status in (Status.STARTING, Status.RESTARTING, Status.STOPPING):
        raise Refused(f"actor {rec.actor_id} ({rec.name}) is {rec.status} already")
    if not rec.live:            # it ended: started again, it takes a place
        req.services.room.check(req.services.registry.get(rec.parent or ""))

    def ready(err: TheaterError | None) -> None:
        if err is not None:
            req.fail(err)
        else:
            req.ok(id=rec.actor_id, name=rec.name, pid=rec.pid)
    req.services.supervision.restart_now(rec, "restarted by request", ready)


def prune(req: Request) -> None:
    """{} -> {pruned: [{id, name, status}]}: forgets the top-level actors that are failed or exited
    (and are not saved for the next server any more); their chains stay."""
    gone = [r for r in req.services.registry if r.parent is None and not r.alive
            and r.status in (Status.FAILED, Status.EXITED)]
    for rec in gone:
        req.services.supervision.remove(rec)
    req.ok(pruned=[{"id": r.actor_id, "name": r.name, "status": str(r.status)} for r in gone])


def list_actors(req: Request) -> None:
    """Each actor's summary; while the chain refuses new events (a full disk), each says why
    (``chain_error``): no actor makes progress until it can store them."""
    error = req.services.chain_error
    req.ok(actors=[{**r.summary(), **({"chain_error": error} if error else {})} for r in req.services.registry])


def inspect(req: Request) -> None:
    rec = req.services.registry.lookup(req.header["actor"])
    req.ok(actor={**rec.detail(), "enforced": req.services.limits.describe(),
                  "chain_error": req.services.chain_error})


# Whose tools an MCP client sees: a restarting actor keeps its tools (its calls wait or fail
# while it is away), so a restart does not make the list flap.
TOOL_STATUSES = (Status.RUNNING, Status.RESTARTING)


def tools(req: Request) -> None:
    """{} -> {actors: [{id, name, status, tools: [{name, description, input_schema}]}]}: the running
    actors whose manifests declare [[mcp.tool]] tables."""
    req.ok(actors=[{"id": r.actor_id, "name": r.name, "status": str(r.status),
                    "tools": [t.to_dict() for t in r.manifest.tools]}
                   for r in req.services.registry if r.manifest.tools and r.status in TOOL_STATUSES])


def watch(req: Request) -> None:
    """{} -> {sub}; then pushes {"k": "actors_changed", sub, actor, status} as actors come and go."""
    assert req.services.directory is not None
    req.ok(sub=req.services.directory.watch(req.client))


def unwatch(req: Request) -> None:
    assert req.services.directory is not None
    req.services.directory.unwatch(req.header["sub"])
    req.ok()


def tree(req: Request) -> None:
    req.ok(tree=req.services.registry.tree())


def top(req: Request) -> None:
    """Live resource use of every running worker (psutil); events/s and CPU % since the last `top`."""
    rows = []
    samples = {}
    now = time.monotonic()
    for rec in req.services.registry:
        stats = rec.run.stats
        row = {"id": rec.actor_id, "name": rec.name, "status": str(rec.status), "pid": rec.pid,
               "last_exit": rec.last_exit.reason if rec.last_exit else None, "restarts": rec.restarts,
               "events": stats.get("events", 0), "calls": stats.get("calls", 0),
               "mailbox": stats.get("mailbox", 0)}
        if rec.pid is not None:
            try:
                p = psutil.Process(rec.pid)
                with p.oneshot():
                    mem = p.memory_full_info()
                    row.update(rss=mem.rss, uss=mem.uss, cpu_seconds=sum(p.cpu_times()[:2]))
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        if "cpu_seconds" in row:
            prev = _samples.get(rec.actor_id)
            if prev is not None and prev[0] == rec.pid and now > prev[3]:
                row["events_per_second"] = round((row["events"] - prev[1]) / (now - prev[3]), 1)
                row["cpu_percent"] = round(100 * (row["cpu_seconds"] - prev[2]) / (now - prev[3]), 1)
            samples[rec.actor_id] = (rec.pid, row["events"], row["cpu_seconds"], now)
        rows.append(row)
    _samples.clear()                # actors that are gone are forgotten
    _samples.update(samples)
    server = psutil.Process()
    req.ok(actors=rows, server={"pid": server.pid, "rss": server.memory_info().rss})
