"""Message commands: message (send or request), channel open."""

from __future__ import annotations

import argparse
import select
import sys
import time

from ..errors import Refused, UsageError
from ..events import readable
from ..protocol import MAX_PAYLOAD
from . import _output
from ._context import Context, actor_arg, read_input

# After the end of input, the channel stays open until the actor has been quiet this long.
LINGER = 0.5


def _payload(args: argparse.Namespace) -> bytes:
    if args.file:
        return read_input(args.file, "--file")
    if args.data is None:
        raise UsageError("give the message as DATA, or --file FILE (- for stdin)")
    return args.data.encode(errors="surrogateescape")     # the bytes typed, UTF-8 or not


def message(args: argparse.Namespace, ctx: Context) -> int:
    """Send a message to an actor (its handle-send), or with --request wait for its reply.

    Without --request it returns once the actor has run the message and its chain holds that
    call; it fails if that call fails the actor, or the actor's worker dies first.

    With --request the reply's bytes are written to stdout as they are (--json prints
    {"actor": ..., "reply": {"utf8": ...} | {"b64": ...}}).
    """
    data = _payload(args)
    if args.request:
        reply = ctx.client.request(args.actor, data)
        if ctx.json:
            _output.emit_json({"actor": args.actor, "reply": readable(reply)})
        else:
            _output.emit_bytes(reply)
    else:
        ctx.client.send(args.actor, data)
        if ctx.json:
            _output.emit_json({"actor": args.actor, "sent": len(data)})
    return 0


def channel_open(args: argparse.Namespace, ctx: Context) -> int:
    """Open a channel to an actor and talk on it: each line of stdin is sent as one message,
    each message from the actor is printed as one line; end of input closes the channel.

    --json prints one JSON object per line: {"opened": ...}, {"message": ...}, {"closed": ...}.
    A channel the server closed (it could not pass a message on) ends the command with its reason
    (exit status 7, refused).
    """
    c = ctx.client
    header, frames = c.call("channel_open", _payload(args), actor=args.actor)
    ch = header["channel"]
    if not header.get("accepted"):
        raise UsageError(f"actor {header['actor']} did not accept the channel")

    def show(kind: str, data: bytes | None) -> None:
        if ctx.json:
            _output.emit_json_line({kind: ch, **({"data": readable(data)} if data is not None else {})})
        elif data is not None:
            _output.emit_bytes(data if data.endswith(b"\n") else data + b"\n")
        else:
            _output.line(f"channel {ch} {kind}", sys.stderr)
    show("opened", frames[0] if frames else None)
    # stdin ended (or was closed from the start): answers still on their way are shown first
    quiet_since: float | None = time.monotonic() if sys.stdin is None else None
    while True:
        push = c.next_push(0.05)
        while push is not None:
            h, data = push
            if h.get("channel") == ch:
                if h["k"] == "channel_closed":
                    show("closed", None)
                    if h.get("error"):
                        raise Refused(h["error"])
                    return 0
                show("message", data[0] if data else b"")
                if quiet_since is not None:
                    quiet_since = time.monotonic()
            push = c.next_push(0)
        if quiet_since is not None:
            if time.monotonic() - quiet_since > LINGER:
                c.call("channel_close", channel=ch)
                show("closed", None)
                return 0
        elif select.select([sys.stdin], [], [], 0)[0]:
            line = sys.stdin.buffer.readline(MAX_PAYLOAD + 1)     # a whole message and its newline
            body = line.removesuffix(b"\n")
            if len(body) > MAX_PAYLOAD:
                raise UsageError(f"a line of stdin over the {MAX_PAYLOAD}-byte limit of one message")
            if not line:
                quiet_since = time.monotonic()
            else:
                c.call("channel_send", body, channel=ch)


def _message_args(p: argparse.ArgumentParser) -> None:
    actor_arg(p)
    p.add_argument("data", nargs="?", help="the message, as text")
    p.add_argument("--file", metavar="FILE", help="read the message from FILE (- for stdin)")
    p.add_argument("--request", action="store_true", help="wait for the actor's reply and print it")


def _channel_args(p: argparse.ArgumentParser) -> None:
    actor_arg(p)
    p.add_argument("data", nargs="?", default="", help="the first message (default: empty)")
    p.add_argument("--file", metavar="FILE", help="read the first message from FILE")


GROUPS = {"channel": "open a channel to an actor"}
COMMANDS = {
    "message": (message, "send a message to an actor, or --request and print the reply", _message_args),
    "channel open": (channel_open, "open a channel to an actor and talk on it", _channel_args),
}
