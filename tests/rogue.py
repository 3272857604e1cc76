"""A hostile local process for the tests: it speaks Theater's internal sockets directly.

    python -m tests.rogue ask ENDPOINT HEADER_JSON [FRAME_HEX ...]
        one message on a DEALER, then prints each message received within --wait seconds,
        one JSON line each ({"header": ..., "frames": [hex, ...]}), and stops at the first
        answer to it (its "re", an ack or a nack)
    python -m tests.rogue listen ENDPOINT IDENTITY HEADER_JSON [HEADER_JSON ...]
        connects a DEALER with the given routing id, sends the messages (one frame each), prints
        "ready" once the connection is up, then prints every message received until its stdin
        closes
    python -m tests.rogue connect PATH
        tries to connect to a unix socket; prints "ok" or the error's name
    python -m tests.rogue replace PATH
        tries to put a socket of its own in place of the unix socket PATH: remove it, rename it,
        bind another beside it; prints one JSON object, each attempt's "ok" or error's name

The tests run it as the workers' user (``--user NAME``: it starts as root, imports what it
needs, then becomes that user for good, as a worker does; the interpreter here lives where
only root can read it), to show what such a process cannot do (tests/test_chain_access.py,
tests/test_inbox_senders.py).
It imports nothing of Theater: only what any local program has.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import socket
import sys
import time

import zmq
from zmq.utils.monitor import recv_monitor_message


def _frames(msg: list[bytes]) -> dict[str, object]:
    try:
        header = json.loads(msg[0])
    except ValueError:
        header = {"raw": msg[0].hex()}
    return {"header": header, "frames": [f.hex() for f in msg[1:]]}


def ask(endpoint: str, header: str, frames: list[str], wait: float) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    sent = json.loads(header)
    sock.send_multipart([header.encode(), *(bytes.fromhex(f) for f in frames)])
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        if not sock.poll(left * 1000):
            break
        got = _frames(sock.recv_multipart())
        print(json.dumps(got), flush=True)
        h = got["header"]
        if isinstance(h, dict) and (h.get("re") == sent.get("id") or h.get("k") in ("ack", "nack")):
            break
    ctx.destroy(linger=0)


def listen(endpoint: str, identity: str, headers: list[str]) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IDENTITY, identity.encode())
    monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    sock.connect(endpoint)
    if monitor.poll(10_000):
        recv_monitor_message(monitor)
    for header in headers:
        sock.send_multipart([header.encode()])
    print("ready", flush=True)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(sys.stdin.fileno(), zmq.POLLIN)
    while True:
        ready = dict(poller.poll())
        if sock in ready:
            print(json.dumps(_frames(sock.recv_multipart())), flush=True)
        if sys.stdin.fileno() in ready and not sys.stdin.readline():
            break                       # the test closed our stdin: done
    ctx.destroy(linger=0)


def connect(path: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
            print("ok")
        except OSError as e:
            print(type(e).__name__)


def replace(path: str) -> None:
    def attempt(f: object, *args: str) -> str:
        try:
            f(*args)  # type: ignore[operator]
            return "ok"
        except OSError as e:
            return type(e).__name__

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        bind = attempt(s.bind, os.path.join(os.path.dirname(path), "rogue.sock"))
    print(json.dumps({"unlink": attempt(os.unlink, path), "rename": attempt(os.rename, path, path + ".x"),
                      "bind": bind}))


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tests.rogue")
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("ask")
    a.add_argument("endpoint")
    a.add_argument("header")
    a.add_argument("frames", nargs="*")
    a.add_argument("--wait", type=float, default=15.0)
    li = sub.add_parser("listen")
    li.add_argument("endpoint")
    li.add_argument("identity")
    li.add_argument("headers", nargs="+")
    c = sub.add_parser("connect")
    c.add_argument("path")
    sub.add_parser("replace").add_argument("path")
    p.add_argument("--user", help="become this user before doing anything")
    args = p.parse_args()
    if args.user:
        entry = pwd.getpwnam(args.user)
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    if args.cmd == "ask":
        ask(args.endpoint, args.header, args.frames, args.wait)
    elif args.cmd == "listen":
        listen(args.endpoint, args.identity, args.headers)
    elif args.cmd == "connect":
        connect(args.path)
    else:
        replace(args.path)


if __name__ == "__main__":
    main()
