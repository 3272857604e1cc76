"""Which actor a message between actors is from, as the server vouches (theater.tickets,
worker.senders): a process of the workers' user that connects to an actor's inbox can neither
write in another actor's name, nor take over its connection or its inbox; actors' own messages
still flow.
"""

from __future__ import annotations

import subprocess

import orjson

from theater import tickets
from theater.events import decode_data
from worker.senders import Senders

from .conftest import ROGUE_ENV, ROOT, cli_start, rogue_command, wait_for

PROBE = ROOT / "tests" / "actors" / "probe.toml"


def j(**fields: object) -> str:
    return orjson.dumps(fields).decode()


def test_a_worker_users_process_cannot_write_as_an_actor_or_take_its_connection(user_server, worker_user):
    server, home = user_server, user_server.home
    sender, receiver = cli_start(server, PROBE), cli_start(server, PROBE)
    with server.client() as c:
        assert c.request(sender, f"q{receiver}".encode()) == b"p"     # sender -> receiver, ticket and all
        pid = c.inspect(receiver)["pid"]
    forged = [j(k="msg", what="send", **{"from": sender}),                       # no ticket
              j(k="msg", what="send", t="0" * tickets.TICKET_CHARS, **{"from": sender}),   # a made-up one
              j(k="reply", rid="r1", ok=True)]                                   # a kind peers never send
    # connected under the routing id a sender's connection used to have (its actor id), as
    # that user, while the sender's own connection is up
    rogue = subprocess.Popen(rogue_command(worker_user, "listen", home.worker_endpoint(pid), sender, *forged),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                             env=ROGUE_ENV)
    try:
        assert rogue.stdout is not None and rogue.stdout.readline().strip() == b"ready"

        def dropped() -> int:
            with server.client() as c:
                return int(c.inspect(receiver)["stats"].get("dropped", 0))
        wait_for(lambda: dropped() >= len(forged), timeout=60, what="the receiver to drop the forged messages")
        with server.client() as c:
            for _ in range(2):
                assert c.request(sender, f"q{receiver}".encode()) == b"p"     # the sender's still go, and back
    finally:
        out, _ = rogue.communicate(b"", timeout=20)
    assert out.strip() == b"", f"the rogue received: {out[:500]!r}"
    with server.client() as c:
        calls = [decode_data(e.data) for e in c.events(receiver, types=["wasm"])]
    assert not [b for b in calls if b["event"] == "call" and b["function"].endswith("handle-send")], \
        "a forged message reached the actor"
    assert "dropped a message naming no sender, or with no ticket" in \
        (home.logs / "server.log").read_text()
    # nor put a socket of its own in place of the inbox (and so get what peers send there)
    inbox = home.worker_socket(pid)
    out = subprocess.run(rogue_command(worker_user, "replace", str(inbox)), capture_output=True, cwd=ROOT,
                         env=ROGUE_ENV, timeout=60)
    assert orjson.loads(out.stdout) == {"unlink": "PermissionError", "rename": "PermissionError",
                                        "bind": "PermissionError"}, out
    assert inbox.is_socket()


def test_a_ticket_vouches_for_one_sender_to_one_receiver():
    key, other_key = tickets.new_key(), tickets.new_key()
    s = Senders("receiver")
    s.key = key
    good = {"k": "msg", "what": "send", "from": "a", "t": tickets.ticket(key, "a")}
    assert s.vouched(good) and s.vouched(good)                  # checked, then known
    bad = [{**good, "from": "b"},                                # a's ticket does not make b
           {**good, "t": tickets.ticket(other_key, "a")},        # nor does another receiver's
           {"k": "msg", "what": "send", "from": "a"},            # no ticket
           {**good, "t": "\u00e9" * tickets.TICKET_CHARS},       # not hex (once a TypeError in compare_digest)
           {**good, "t": "\ud800" * tickets.TICKET_CHARS},       # not even UTF-8
           {**good, "from": "a" * 1_000_000},                    # nobody: not worth an HMAC
           {**good, "k": "reply"},                               # peers send only msg ...
           {**good, "what": "child_exit"}]                       # ... of the kinds peers send
    assert not any(s.vouched(h) for h in bad)
    assert s.dropped == len(bad)
    assert s.answer({"k": "reply"}) and s.answer({"k": "refused"}) and not s.answer({"k": "msg"})
    fresh = Senders("receiver")                                  # before the server's key: nobody
    assert not fresh.vouched(good)
