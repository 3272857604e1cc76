"""Chain commands: events, export, verify, key, chains, chain head.

``verify``, ``export``, ``key`` and ``chains`` read ``$THEATER_HOME`` directly and need no
server: a chain can be checked with nothing but its data and the host's public key.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from ..bodies import body_of
from ..chaindb import ChainReader
from ..client import Client
from ..errors import NotFound, TheaterError, Unreachable, UsageError, VerifyError
from ..events import (
    Checkpoint,
    Event,
    MalformedExport,
    Report,
    export_events,
    from_wire,
    type_matches,
    verify_chain,
)
from ..paths import read_regular
from . import _output, curve
from ._context import Context, actor_arg, count


def summary(ev: Event) -> str:
    """One human line for an event."""
    d = body_of(ev.data)
    if not isinstance(d, dict):
        return short(d)
    if ev.type == "wasm":
        fn = str(d.get("function", "")).rsplit("/", 1)[-1]
        if d.get("event") == "call":
            return f"call {fn} {short(d.get('params'))}"
        if d.get("event") == "result":
            st = f" state={short(d['state'])}" if "state" in d else ""
            return f"result {fn} {short(d.get('result'))}{st}"
        return f"error {fn} {d.get('reason')}: {d.get('error')}"
    if "input" in d:
        return f"{short(d['input'])} -> {short(d.get('output'))}"
    return " ".join(f"{k}={short(v)}" for k, v in d.items() if v is not None)


def short(v: Any, limit: int = 60) -> str:
    """A decoded value in at most ``limit`` characters."""
    if isinstance(v, bytes):
        try:
            text = repr(v.decode())
        except UnicodeDecodeError:
            text = f"<{len(v)} bytes>"
    elif isinstance(v, list | tuple):
        text = "(" + ", ".join(short(x, limit) for x in v) + ")"
    elif isinstance(v, dict):
        text = "{" + ", ".join(f"{k}: {short(x, limit)}" for k, x in v.items()) + "}"
    else:
        text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _print_event(ev: Event, as_json: bool) -> None:
    if as_json:
        _output.emit_json_line(ev.to_json())
    else:
        _output.line(f"{ev.seq:6d}  {_output.when(ev.time_ns)}  {ev.type:40s} {summary(ev)}")


def events(args: argparse.Namespace, ctx: Context) -> int:
    """Show an actor's events: sequence number, time, type and what went in and out.

    --type takes a type or a shell-style glob, matched against the full type or its tail after
    a "/" or ":" (`log`, `send`, `http-client/*`, `lifecycle/*`, `wasm`); repeat it for several.
    --tail N shows the last N (of those). Without a running server the home's store is read
    directly (not with --follow).

    --json prints a JSON array of events (see docs/chain-format.md); with --follow, one JSON
    object per line as events are stored. --follow resumes from --since after a disconnect,
    and catches up from the store when it falls behind, so it misses nothing.
    """
    types = args.type or []
    if args.tail is not None and (args.since or args.limit is not None):
        raise UsageError(f"--tail N and {'--since SEQ' if args.since else '--limit N'} do not go together: give one")
    if "" in types:
        raise UsageError("--type needs a type, a short name (log, send) or a glob (http-client/*), not ''")
    if args.tail is not None:
        found, since = tail(ctx, args.actor, types, args.tail)
    elif not args.follow:
        found, since = stored(ctx, args.actor, args.since, args.limit, types), args.since
    else:
        found, since = [], args.since
    if not args.follow:
        if ctx.json:
            _output.emit_json([e.to_json() for e in found])
        else:
            for ev in found:
                _print_event(ev, False)
        if types and not found:         # a legitimate answer, or a typo: say which filter gave it
            _output.note(f"no stored event{f' from {since}' if since else ''} matches --type "
                         f"{' --type '.join(types)} (types: `theater events ACTOR`; matching: --help)")
        return 0
    for ev in found:
        _print_event(ev, ctx.json)
    for shown, ev in enumerate(follow(ctx, args.actor, since, types), 1):
        _print_event(ev, ctx.json)
        if args.limit is not None and shown >= args.limit:
            break
    return 0


def stored(ctx: Context, actor: str, since: int = 0, limit: int | None = None,
           types: list[str] | None = None) -> list[Event]:
    """Stored events, from the server, or without one from the home's store."""
    try:
        return ctx.client.events(actor, since, limit, types)
    except Unreachable:          # no server: the chain is on disk all the same
        reader = open_store(ctx)
        return list(reader.events(reader.resolve(actor), since, limit, tuple(types or ())))


def tail(ctx: Context, actor: str, types: list[str], n: int) -> tuple[list[Event], int]:
    """The last ``n`` stored events (of ``types``), and the sequence number to follow from."""
    try:
        length = ctx.client.call("head", actor=actor)[0]["checkpoint"]["seq"] + 1
    except Unreachable:
        reader = open_store(ctx)
        actor_id = reader.resolve(actor)
        length = next(c.length for c in reader.chains() if c.actor_id == actor_id)
    except NotFound:            # a chain with no event yet
        length = 0
    # without a filter, the last n are the last n sequence numbers; with one, read them all
    found = stored(ctx, actor, 0 if types else max(length - n, 0), None, types)
    return found[-n:], (found[-1].seq + 1 if found else length)


# While following, a quiet server is pinged this often, so a dead one is noticed.
SERVER_CHECK = 5.0
# A checkpoint is a few hundred bytes of JSON; a file much larger is not one.
MAX_CHECKPOINT_FILE = 1 << 16


def follow(ctx: Context, actor: str, since: int, types: list[str], idle: float | None = None) -> Iterator[Event]:
    """Every event from ``since`` on, stored ones first, then live ones, in order, none missing.

    Live events come through the server's relay of the chain's publications. Whenever that
    stream may have lost some (a gap in sequence numbers, a "missed" notice from the relay,
    a quiet spell) the store is read from the next sequence number, so none is missed.
    Stops after ``idle`` seconds without an event, if given.
    """
    c = ctx.client
    sub = c.call("subscribe", actor=actor)[0]
    actor_id = sub["actor"]
    nxt = since
    parent: bytes | None = None        # live events carry no parent: it is the previous event's hash
    last_event = last_heard = time.monotonic()
    try:
        while True:
            for ev in c.events(actor_id, nxt):          # catch up from the store
                nxt, parent, last_event = ev.seq + 1, ev.hash, time.monotonic()
                if type_matches(ev.type, types):
                    yield ev
            while True:
                push = c.next_push(0.5)
                now = time.monotonic()
                if push is None:
                    if idle is not None and now - last_event > idle:
                        return
                    if now - last_heard > SERVER_CHECK:
                        _check_server(c)
                        last_heard = time.monotonic()
                        break                            # and look in the store: the relay may have dropped some
                    continue
                last_heard = now
                h, data = push
                if h.get("k") == "missed":
                    _output.note(f"missed {h['count']} events (reading too slowly); catching up from the store")
                    break
                if h.get("k") != "event" or h.get("actor") != actor_id:
                    continue
                ev = from_wire(actor_id, {**h["meta"], "parent": None}, data[0])
                if ev.seq < nxt:
                    continue
                if ev.seq > nxt:
                    break                                # missed some: back to the store
                ev.parent = parent if ev.seq > 0 else None
                nxt, parent, last_event = ev.seq + 1, ev.hash, now
                if type_matches(ev.type, types):
                    yield ev
    finally:
        with contextlib.suppress(TheaterError):
            c.call("unsubscribe", sub=sub["sub"], timeout=2)


def _check_server(c: Client) -> None:
    """Raises Unreachable if the server died. A server that kept pushing events while we waited
    for its answer is alive: its answer was dropped because our queue of pushes was full (a
    follower that was stopped, then continued)."""
    queued = len(c.pushes)
    try:
        c.ping()
    except Unreachable:
        if len(c.pushes) == queued:
            raise


def settle(ctx: Context) -> None:
    """Before the home's store is read directly: a running server's chain first stores what its
    workers have written. A reply leaves a worker once its events are written to the chain, not
    once they are stored (docs/chain-format.md), and what a reply showed must be in what is read."""
    with contextlib.suppress(TheaterError):
        ctx.client.call("chains")


def open_store(ctx: Context) -> ChainReader:
    """The home's chains database, read directly (once a running server's chain has stored what
    its workers wrote: ``settle``)."""
    settle(ctx)
    return ChainReader(ctx.home.chains_db)


def _public(ctx: Context, given: str | None) -> Any:
    from .. import keys  # cryptography: loaded by the commands that verify, not by every command

    return keys.parse_public(given) if given else keys.read_public(ctx.home)


def export(args: argparse.Namespace, ctx: Context) -> int:
    """Write an actor's whole chain as JSON Lines (one event per line) for offline verification."""
    reader = open_store(ctx)
    actor_id = reader.resolve(args.actor)
    try:
        out = sys.stdout.buffer if args.output in (None, "-") else open(args.output, "wb")  # noqa: SIM115
    except OSError as e:
        raise UsageError(_output.os_problem(e, "-o: cannot write")) from None
    n = 0
    try:
        for ev in reader.events(actor_id):
            out.write(orjson.dumps(ev.to_json()) + b"\n")
            n += 1
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    if args.output not in (None, "-"):
        _output.line(f"exported {n} events of {actor_id} to {args.output}", sys.stderr)
    return 0


def verify(args: argparse.Namespace, ctx: Context) -> int:
    """Check chains offline: every hash, link, time stamp and signature, from the first event.

    Names the first bad event and exits 5 if anything was changed, removed, inserted or
    reordered, signed by another key, or (given --checkpoint) cut short or rewritten since
    that checkpoint. Without --file it reads the home's store; without --pubkey it uses the
    home's host key.
    """
    public = _public(ctx, args.pubkey)
    trusted = None
    if args.checkpoint:
        try:
            doc = orjson.loads(read_regular(Path(args.checkpoint), MAX_CHECKPOINT_FILE))
            trusted = Checkpoint.from_json(doc if isinstance(doc, dict) else {})
        except (OSError, orjson.JSONDecodeError, VerifyError) as e:
            raise UsageError(f"{args.checkpoint}: not a checkpoint from `theater chain head` ({e})") from None
    # (label, how to verify it given the checkpoint it is held to)
    chains: list[tuple[str, Callable[[Checkpoint | None], Report]]]
    if args.file:
        chains = [("file", lambda held: verify_chain(export_events(args.file), public, held))]
    else:
        reader = open_store(ctx)
        stored = [c.actor_id for c in reader.chains()]
        ids = [reader.resolve(args.actor)] if args.actor else list(stored)
        if trusted is not None and not args.actor and trusted.actor_id not in ids:
            ids.append(trusted.actor_id)         # its chain is gone altogether: that fails below
        # a stored chain is also held to the head the store records for it (ChainReader.verify)
        chains = [(a, partial(reader.verify, a, public) if a in stored else partial(verify_chain, (), public))
                  for a in ids]
    results, failed = [], 0
    for label, verify_one in chains:
        # the checkpoint holds the chain it is for: the one asked for, the file, or (verifying
        # every chain) the chain with its actor id
        held = trusted if trusted is not None and (args.actor or label in ("file", trusted.actor_id)) else None
        try:
            r = verify_one(held)
            results.append({"actor": r.actor_id or label, "ok": True, "events": r.events, "signatures": r.signatures})
        except MalformedExport:
            raise
        except VerifyError as e:
            failed += 1
            results.append({"actor": label, "ok": False, "seq": e.seq, "error": e.message})
    if ctx.json:
        _output.emit_json(results)
    else:
        for r in results:
            if r["ok"]:
                _output.line(f"ok      {r['actor']}  {r['events']} events, {r['signatures']} signatures")
            else:
                _output.line(f"FAILED  {r['actor']}  {r['error']}")
        if not results:
            _output.line("no chains")
    return 5 if failed else 0


def key(args: argparse.Namespace, ctx: Context) -> int:
    """Print the host's Ed25519 public key (hex): what `verify --pubkey` needs elsewhere.

    With --curve: the CURVE public key for remote management (the server's, or with --client
    this client's), made first if there is none (docs/operations.md, "Remote access")."""
    if args.curve or args.client or args.server_key is not None:
        return curve.key(args, ctx)
    from .. import keys

    try:
        public = keys.public_hex(keys.read_public(ctx.home))
    except UsageError:
        public = ctx.client.call("key")[0]["public_key"]
    if ctx.json:
        _output.emit_json({"public_key": public})
    else:
        _output.line(public)
    return 0


def chains(args: argparse.Namespace, ctx: Context) -> int:
    """List the chains stored in this home (running actors and stopped ones)."""
    found = open_store(ctx).chains()
    rows = [{"actor": c.actor_id, "name": c.name, "length": c.length, "head": c.head.hex() if c.head else None}
            for c in found]
    if ctx.json:
        _output.emit_json(rows)
    else:
        _output.table([[r["actor"], r["name"], str(r["length"]), (r["head"] or "-")[:16]] for r in rows],
                      ["ACTOR", "NAME", "EVENTS", "HEAD"])
    return 0


def head(args: argparse.Namespace, ctx: Context) -> int:
    """Print a signed checkpoint of an actor's chain (actor, length, head hash), as JSON.

    Keep it: `theater verify --checkpoint FILE` later proves the chain only grew since.
    """
    cp = ctx.client.call("head", actor=args.actor)[0]["checkpoint"]
    _output.emit_json(cp)
    return 0


def _events_args(p: argparse.ArgumentParser) -> None:
    actor_arg(p)
    p.add_argument("--type", action="append", metavar="TYPE",
                   help="only events of this type: full or short (log, send, wasm), or a glob "
                        "(http-client/*, lifecycle/*); repeatable")
    p.add_argument("--limit", type=count(1), help="at most this many events")
    p.add_argument("--tail", type=count(1), metavar="N", help="only the last N events")
    p.add_argument("--since", type=count(0), default=0, metavar="SEQ", help="start at this sequence number")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events as they are stored")


def _export_args(p: argparse.ArgumentParser) -> None:
    actor_arg(p)
    p.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")


def _verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("actor", nargs="?", help="only this actor's chain (default: every chain in the home)")
    p.add_argument("--file", metavar="FILE", help="verify an export (JSON Lines) instead of the home's store")
    p.add_argument("--pubkey", metavar="KEY", help="the host's public key, hex or a file (default: the home's)")
    p.add_argument("--checkpoint", metavar="FILE", help="a checkpoint from `theater chain head` to hold the chain to")


GROUPS = {"chain": "chain checkpoints (chain head)"}
COMMANDS = {
    "events": (events, "show an actor's events", _events_args),
    "export": (export, "write an actor's chain as JSON Lines", _export_args),
    "verify": (verify, "verify chains offline (hashes, links, signatures)", _verify_args),
    "key": (key, "print the host's public key (--curve: the keys for remote access)", curve.add_args),
    "chains": (chains, "list the chains stored in this home", lambda p: None),
    "chain head": (head, "print a signed checkpoint of an actor's chain", actor_arg),
}
