"""Actor lifecycle requests: ping, start, stop, list, inspect, tree, top."""

from __future__ import annotations

import os
import time

import psutil

from theater import manifest as manifests
from theater.errors import TheaterError

from .. import components
from . import Request

_VERSION = "0.1.0"
# The previous `top` sample of each running actor (pid, events, CPU seconds, time): rates
# are the change since then. (psutil's own cpu_percent needs the same Process object twice.)
_samples: dict[str, tuple[int, int, float, float]] = {}


def ping(req: Request) -> None:
    s = req.server
    req.ok(version=_VERSION, pid=os.getpid(), home=str(s.home.root), listen=s.listen,
           actors=len(s.registry), public_key=s.public_key, limits=s.limits.describe())


def start(req: Request) -> None:
    """{manifest: TOML text, source, base, has_state} [component bytes, initial state?] -> {id, name, pid}"""
    h = req.header
    m = manifests.parse(h["manifest"], h["source"])
    sha = components.store(req.server.home, req.frames[0], f"{h['source']}: component {m.component!r}")
    init = req.frames[1] if h.get("has_state") and len(req.frames) > 1 else None

    def ready(err: TheaterError | None) -> None:
        if err is not None:
            req.fail(err)
        else:
            req.ok(id=rec.actor_id, name=rec.name, pid=rec.pid)
    rec = req.server.supervision.start(m, h["manifest"], h["base"], sha, init, on_ready=ready)


def stop(req: Request) -> None:
    """{actor} -> {id}, once its process (and its children's) are gone; the actor is forgotten."""
    sup = req.server.supervision
    rec = req.server.registry.lookup(req.header["actor"])

    def done() -> None:
        sup.remove(rec)
        req.ok(id=rec.actor_id, status="stopped")
    sup.stop(rec, "stopped by request", done, by_parent=False)


def list_actors(req: Request) -> None:
    """Each actor's summary; while the chain refuses new events (a full disk), each says why
    (``chain_error``): no actor makes progress until it can store them."""
    error = req.server.chain_error
    req.ok(actors=[{**r.summary(), **({"chain_error": error} if error else {})} for r in req.server.registry])


def inspect(req: Request) -> None:
    rec = req.server.registry.lookup(req.header["actor"])
    req.ok(actor={**rec.detail(), "enforced": req.server.limits.describe(), "chain_error": req.server.chain_error})


def tree(req: Request) -> None:
    req.ok(tree=req.server.registry.tree())


def top(req: Request) -> None:
    """Live resource use of every running worker (psutil); events/s and CPU % since the last `top`."""
    rows = []
    samples = {}
    now = time.monotonic()
    for rec in req.server.registry:
        row = {"id": rec.actor_id, "name": rec.name, "status": rec.status, "pid": rec.pid,
               "restarts": rec.restarts, "events": rec.stats.get("events", 0), "calls": rec.stats.get("calls", 0),
               "mailbox": rec.stats.get("mailbox", 0)}
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
