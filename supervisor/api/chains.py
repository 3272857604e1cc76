"""Requests answered from the chain: state, events, subscribe, verify, head, key, chains."""

from __future__ import annotations

from typing import Any

from theater.errors import NotFound

from ..registry import Status
from .request import Request


def _actor_id(req: Request) -> str:
    """A live actor's id, or the key as given (the chain may know a stopped actor by it)."""
    key = req.header["actor"]
    try:
        return req.services.registry.lookup(key).actor_id
    except NotFound:
        return key


def state(req: Request) -> None:
    """{actor} -> {has_state} [state]: from the running worker, else the last committed state."""
    try:
        rec = req.services.registry.lookup(req.header["actor"])
    except NotFound:
        rec = None
    req.services.ask_state(rec.actor_id if rec is not None else req.header["actor"],
                           rec is not None and rec.status == Status.RUNNING, client=req.client, client_id=req.id)


def events(req: Request) -> None:
    """{actor, since?, limit?, types?, last?} -> {actor, events: [...], more, next} [data per event];
    ``last`` (without ``types``): the newest ``limit`` events from ``since`` on, not the oldest."""
    h = req.header
    req.forward_to_chain({"k": "query", "what": "events", "actor": _actor_id(req), "since": h.get("since", 0),
                          "limit": h.get("limit"), "types": h.get("types") or [], "last": bool(h.get("last"))})


def subscribe(req: Request) -> None:
    """{actor} -> {sub}; then pushes {"k": "event", sub, actor, meta} [data] as events are stored."""
    actor_id = _actor_id(req)
    req.ok(sub=req.services.relay.subscribe(req.client, actor_id), actor=actor_id)


def unsubscribe(req: Request) -> None:
    req.services.relay.unsubscribe(req.header["sub"])
    req.ok()


def verify(req: Request) -> None:
    """{actor?} -> {reports: [{actor, ok, events, signatures} | {actor, ok: false, error, seq}]}"""
    header: dict[str, Any] = {"k": "query", "what": "verify"}
    if req.header.get("actor"):
        header["actor"] = _actor_id(req)
    req.forward_to_chain(header)


def head(req: Request) -> None:
    req.forward_to_chain({"k": "query", "what": "head", "actor": _actor_id(req)})


def key(req: Request) -> None:
    req.ok(public_key=req.services.public_key)


def list_chains(req: Request) -> None:
    req.forward_to_chain({"k": "query", "what": "chains"})
