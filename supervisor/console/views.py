"""The console's pages and its JSON API (docs/console.md), side by side: each page shows what
one API route answers, both made from the same management requests.

    /                          the supervision tree          /api/tree
    /actors/ID                 an actor, live                /api/actors/ID, /api/stream?actor=ID
    /actors/ID/chain           its chain, paged, verified    /api/actors/ID/events, /api/actors/ID/verify
                                                             /api/server, /api/actors, /api/samples
    /fragments/tree, /fragments/actors/ID: parts of the pages, fetched again when they change.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlencode

from theater.errors import NotFound, UsageError
from theater.events import Event, from_wire
from theater.protocol import MAX_INT

from . import render
from .hub import Hub
from .samples import RING, SAMPLE_EVERY
from .web import App, Request, Response, Routes, json_response

routes = Routes()

ID = r"([A-Za-z0-9._-]{1,128})"
_ID = re.compile(ID)
# A chain page verifies the chain when it has at most this many events (verifying reads all of
# them, in the chain process); past that, on request (?verify=1).
AUTO_VERIFY = 100_000
PAGE = 50          # events on a chain page, unless ?limit= says otherwise
LATEST = 20        # events on an actor's page


# ---- what the pages and the API are made of ---------------------------------------------------------

def tree(hub: Hub) -> list[dict[str, Any]]:
    """The ``tree`` answer, each node with its latest resource use."""
    def node(n: dict[str, Any]) -> dict[str, Any]:
        use = hub.samples.latest(n["id"])
        return {**n, "use": use.to_json() if use else None, "children": [node(c) for c in n["children"]]}
    return [node(n) for n in hub.call("tree")[0]["tree"]]


def actor(hub: Hub, key: str) -> dict[str, Any]:
    """``inspect``, its children's summaries (from ``list``) and its latest resource use."""
    a = hub.call("inspect", actor=key)[0]["actor"]
    known = {r["id"]: r for r in hub.call("list")[0]["actors"]}
    use = hub.samples.latest(a["id"])
    return {**a, "use": use.to_json() if use else None,
            "child_rows": [known.get(c, {"id": c, "name": "?", "status": "gone"}) for c in a["children"]]}


def chain_length(hub: Hub, actor_id: str) -> int:
    chains = hub.call("chains")[0]["chains"]
    return next((c["length"] for c in chains if c["actor"] == actor_id), 0)


def events(hub: Hub, key: str, since: int, limit: int, types: list[str]) -> tuple[str, list[Event], int | None]:
    """One page of stored events: (the actor's full id, the events, where the next page starts
    or None). The chain answers a page in parts where a filter passes over many events."""
    evs: list[Event] = []
    while True:
        header, frames = hub.call("events", actor=key, since=since, limit=limit - len(evs), types=types)
        evs += [from_wire(header["actor"], m, d) for m, d in zip(header["events"], frames, strict=True)]
        nxt = header.get("next") if header.get("more") else None
        if nxt is None or len(evs) >= limit:
            return header["actor"], evs, nxt
        since = nxt


def verify(hub: Hub, actor_id: str) -> dict[str, Any]:
    reports = hub.call("verify", actor=actor_id)[0]["reports"]
    return reports[0] if reports else {"actor": actor_id, "ok": True, "events": 0, "signatures": 0}


def _types(req: Request) -> list[str]:
    """?type= (repeated, or comma-separated): exact types, or prefixes ending in ``*``."""
    return [t.strip() for v in req.query.get("type", []) for t in v.split(",") if t.strip()][:20]


# ---- pages ----------------------------------------------------------------------------------------------

def page(app: App, template: str, **context: Any) -> Response:
    return Response(200, app.render(template, **context))


@routes.get("/")
def tree_page(app: App, req: Request) -> Response:
    server = app.hub.call("ping")[0]
    return page(app, "tree.html", server=server, tree=tree(app.hub), every=SAMPLE_EVERY)


@routes.get("/fragments/tree")
def tree_fragment(app: App, req: Request) -> Response:
    return page(app, "tree_nodes.html", tree=tree(app.hub))


@routes.get(f"/actors/{ID}")
def actor_page(app: App, req: Request, key: str) -> Response:
    a = actor(app.hub, key)
    length = chain_length(app.hub, a["id"])
    _, latest, _ = events(app.hub, a["id"], max(0, length - LATEST), LATEST, [])
    return page(app, "actor.html", a=a, length=length, latest=[render.event_row(e) for e in reversed(latest)],
                every=SAMPLE_EVERY)


@routes.get(f"/fragments/actors/{ID}")
def actor_fragment(app: App, req: Request, key: str) -> Response:
    try:
        return page(app, "actor_summary.html", a=actor(app.hub, key))
    except NotFound as e:            # stopped while its page was open: the page says so, in place
        return page(app, "actor_gone.html", key=key, message=e.message.split(" (")[0])


@routes.get(f"/actors/{ID}/chain")
def chain_page(app: App, req: Request, key: str) -> Response:
    since, limit, types = req.integer("since", 0, 0, MAX_INT), req.integer("limit", PAGE, 1, 500), _types(req)
    actor_id, evs, nxt = events(app.hub, key, since, limit, types)
    length = chain_length(app.hub, actor_id)
    asked = req.arg("verify") == "1"
    report = verify(app.hub, actor_id) if asked or length <= AUTO_VERIFY else None
    bad = report["seq"] if report is not None and not report["ok"] else None

    def link(**changes: Any) -> str:
        args = {"since": since, "limit": limit, "type": ",".join(types), "verify": "1" if asked else "", **changes}
        return f"/actors/{quote(actor_id)}/chain?" + urlencode({k: v for k, v in args.items() if v not in ("", None)})
    pages = {"first": link(since=0) if since > 0 else None,
             "previous": link(since=max(0, since - limit)) if since > 0 else None,
             "next": link(since=nxt) if nxt is not None else None,
             "latest": link(since=max(0, length - limit))}
    return page(app, "chain.html", actor_id=actor_id, rows=[render.event_row(e) for e in evs], length=length,
                report=report, bad=bad, bad_link=link(since=bad) + f"#e{bad}" if bad is not None else None,
                pages=pages, types=",".join(types), limit=limit, verify_link=link(verify="1"))


# ---- the JSON API -------------------------------------------------------------------------------------

@routes.get("/api/server")
def api_server(app: App, req: Request) -> Response:
    ping = app.hub.call("ping")[0]
    return json_response({k: v for k, v in ping.items() if k not in ("k", "re")}
                         | {"console": {"sample_every": SAMPLE_EVERY, "samples_kept": RING}})


@routes.get("/api/tree")
def api_tree(app: App, req: Request) -> Response:
    return json_response({"tree": tree(app.hub)})


@routes.get("/api/actors")
def api_actors(app: App, req: Request) -> Response:
    rows = app.hub.call("list")[0]["actors"]
    return json_response({"actors": [{**r, "use": (u.to_json() if (u := app.hub.samples.latest(r["id"])) else None)}
                                     for r in rows]})


@routes.get(f"/api/actors/{ID}")
def api_actor(app: App, req: Request, key: str) -> Response:
    a = actor(app.hub, key)
    del a["child_rows"]
    return json_response({"actor": a})


@routes.get(f"/api/actors/{ID}/events")
def api_events(app: App, req: Request, key: str) -> Response:
    actor_id, evs, nxt = events(app.hub, key, req.integer("since", 0, 0, MAX_INT),
                                req.integer("limit", 100, 1, 2000), _types(req))
    return json_response({"actor": actor_id, "events": [e.to_json() for e in evs], "more": nxt is not None,
                          "next": nxt})


@routes.get(f"/api/actors/{ID}/verify")
def api_verify(app: App, req: Request, key: str) -> Response:
    try:
        actor_id = app.hub.call("inspect", actor=key)[0]["actor"]["id"]
    except NotFound:
        actor_id = key               # a stopped actor: its chain stays, under its full id
    return json_response(verify(app.hub, actor_id))


@routes.get("/api/samples")
def api_samples(app: App, req: Request) -> Response:
    actor_id = _actor_arg(app, req)
    return json_response({"every": SAMPLE_EVERY, "actor": actor_id, "samples": app.hub.samples.series(actor_id)})


@routes.get("/api/stream")
def api_stream(app: App, req: Request) -> None:
    req.handler.stream(app.hub, _actor_arg(app, req))


def _actor_arg(app: App, req: Request) -> str | None:
    """``?actor=``'s full id (given an id, a unique prefix or a name, as everywhere; samples are
    kept by id, so a name found none); an actor the server does not know is a 404."""
    key = req.arg("actor") or None
    if key is None:
        return None
    if not _is_id(key):
        raise UsageError(f"?actor={key[:40]!r}: expected an actor id, a unique prefix of one, or a name")
    return app.hub.call("inspect", actor=key)[0]["actor"]["id"]


def _is_id(key: str) -> bool:
    return _ID.fullmatch(key) is not None


# ---- this console's own files --------------------------------------------------------------------------

STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


@routes.get(r"/static/([a-z]+\.(?:js|css|svg))")
def static(app: App, req: Request, name: str) -> Response:
    found = app.static.get(name)
    if found is None:
        raise NotFound(f"no file {name}")
    return Response(200, found, STATIC_TYPES[name[name.rindex("."):]])
