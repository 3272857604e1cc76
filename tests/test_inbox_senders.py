"""Which actor a message between actors is from, as the server vouches (theater.tickets,
worker.senders): a process of the workers' user that connects to an actor's inbox can neither
write in another actor's name, nor take over its connection or its inbox; actors' own messages
still flow.
"""

from __future__ import annotations

import subprocess

import orjson
import pytest
import zmq

from theater import protocol, tickets
from theater.errors import Timeout
from theater.events import decode_data
from worker import outgoing, wire
from worker.loop import Loop, Sockets
from worker.outgoing import Outgoing
from worker.peers import Peers
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


def _loop_on_pairs(ctx: zmq.Context, *extra: str) -> tuple[Loop, dict[str, tuple[zmq.Socket, zmq.Socket]]]:
    """Actor a's loop on inproc DEALER pairs (its control, chain and inbox, and ``extra`` ones):
    the loop's end of each pair (ours), and the other (theirs)."""
    pairs = {name: (ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)) for name in ("control", "chain", "inbox", *extra)}
    for name, (ours, theirs) in pairs.items():
        ours.bind(f"inproc://{name}")
        theirs.connect(f"inproc://{name}")
    sockets = Sockets(pairs["control"][0], pairs["chain"][0], pairs["inbox"][0], "inproc://inbox")
    return Loop(ctx, sockets, "a", "a"), pairs


def test_a_worker_takes_answers_from_its_own_services_and_only_awaited_replies_from_peers():
    """The server, the chain and the gateway answer with ok or error; a peer may only answer, and only
    what is waited for (a late or made-up reply would be kept for nobody)."""
    ctx = zmq.Context()
    try:
        loop, pairs = _loop_on_pairs(ctx, "gateway", "peer")
        gateway, peer = pairs["gateway"][0], pairs["peer"][0]
        loop.to_peers.add(peer)

        def deliver(sock: zmq.Socket, header: dict) -> None:
            loop._dispatch(sock, protocol.encode(header))

        rid = loop.ask(gateway, {"k": "get"})
        deliver(gateway, {"k": "ok", "re": rid})
        assert rid in loop.replies and loop.senders.dropped == 0
        deliver(peer, {"k": "reply", "rid": "p1", "ok": True})               # nobody waits for it
        deliver(peer, {"k": "msg", "what": "send"})                          # a peer only answers
        assert "p1" not in loop.replies and loop.senders.dropped == 1
        other = pairs["inbox"][1]           # stands for a second peer connection
        loop.to_peers.add(other)
        loop.awaited["p2"] = peer
        deliver(other, {"k": "reply", "rid": "p2", "ok": True})             # another peer's answer: not its to give
        assert "p2" not in loop.replies
        deliver(peer, {"k": "reply", "rid": "p2", "ok": True})
        assert "p2" in loop.replies
    finally:
        ctx.destroy(linger=0)


def test_an_answer_nobody_waits_for_any_more_is_not_kept():
    """An answer that comes after its wait gave up (the call's time limit), or to nothing this
    worker asked, was kept in ``replies`` for the worker's whole life: one entry a timeout."""
    ctx = zmq.Context()
    try:
        loop, _ = _loop_on_pairs(ctx)
        rid = loop.ask(loop.control, {"k": "spawn"})
        with pytest.raises(Timeout):
            loop.wait_reply(rid, timeout=0.01)
        for sock, header in ((loop.control, {"k": "error", "re": rid, "code": "timeout", "error": "late"}),
                             (loop.control, {"k": "ok", "re": "never-asked"}),
                             (loop.chain_sock, {"k": "ok", "re": "never-asked-either"})):
            loop._dispatch(sock, protocol.encode(header))
        assert loop.replies == {} and loop.asked == set()
        second = loop.ask(loop.chain_sock, {"k": "query"})          # one still waited for is kept
        loop._dispatch(loop.chain_sock, protocol.encode({"k": "ok", "re": second}))
        assert loop.wait_reply(second, timeout=1)[0]["re"] == second
    finally:
        ctx.destroy(linger=0)


def test_a_socket_closed_by_what_it_delivered_is_read_no_further():
    """What a message sets off may drop the very connection being read (a refusal recorded, the
    record waiting for the event rate, the wait serving the notice that the peer stopped, which
    closes the connection): reading on raised ZMQError, and the actor failed (reason host)."""
    ctx = zmq.Context()
    try:
        loop, pairs = _loop_on_pairs(ctx)
        ours, theirs = pairs["chain"]
        seen: list[dict] = []
        loop.on_chain["ack"] = lambda h: (seen.append(h), ours.close(linger=0))
        for n in range(2):
            theirs.send_multipart(protocol.encode({"k": "ack", "actor": "a", "seq": n}))
        wait_for(lambda: wire.readable(ours), what="the acknowledgements to arrive")
        loop.drain(ours)
        assert [h["seq"] for h in seen] == [0] and ours.closed
    finally:
        ctx.destroy(linger=0)


def _sender_a_with_a_peer(ctx: zmq.Context) -> tuple[Loop, Peers, list[dict], tuple[zmq.Socket, zmq.Socket]]:
    """Actor a's loop and peers on inproc pairs; what it records; its connection to a peer
    (ours) and the peer's end (theirs), whose refusals and acknowledgements a takes."""
    loop, pairs = _loop_on_pairs(ctx, "peer")
    recorded: list[dict] = []
    peers = Peers(loop, "a", lambda *_: None, lambda _type, data: recorded.append(data))
    loop.on.update(took=lambda h, _b, _r, sock: peers.took(sock, h["count"]),
                   refused=lambda h, _b, _r, sock: peers.refused(sock, h["error"], h["count"]))
    loop.to_peers.add(pairs["peer"][0])
    return loop, peers, recorded, pairs["peer"]


def test_a_peer_can_refuse_only_what_it_was_sent(monkeypatch):
    """Each refusal a peer sends becomes an event in the sender's chain: it may count the messages
    handed to it, once each, and a refusal of nothing is dropped, so a peer cannot fill the chain."""
    ctx = zmq.Context()
    try:
        loop, peers, recorded, (ours, theirs) = _sender_a_with_a_peer(ctx)
        out = peers.outgoing["b"] = peers.by_sock[ours] = Outgoing("b", ours, loop.watch, {"from": "a", "t": "x"})
        for _ in range(3):
            out.accepted(1)
            out.put(protocol.encode({"k": "msg", "what": "send"}, b"m"), 1)
        assert len([theirs.recv_multipart() for _ in range(3)]) == 3

        def refuse(count: int) -> None:
            loop._dispatch(ours, protocol.encode({"k": "refused", "error": "stopping", "count": count}))

        refuse(2)
        refuse(1000)            # claims more than it got: counts what is left
        for _ in range(50):     # and then nothing: dropped, not recorded
            refuse(1)
        assert [r["messages"] for r in recorded] == [2, 1] and {r["to"] for r in recorded} == {"b"}
        assert loop.senders.dropped == 50
        # messages that waited for room in this worker count once they are handed over
        full = [True]

        def send_when_room(sock: zmq.Socket, frames: list[bytes]) -> None:
            if full[0]:
                raise zmq.Again()
            wire.send(sock, frames)
        monkeypatch.setattr(outgoing, "send", send_when_room)
        for _ in range(2):
            out.accepted(1)
            out.put(protocol.encode({"k": "msg", "what": "send"}, b"m"), 1)
        assert len(out.queue) == 2
        refuse(1)               # none of them has left yet
        assert len(recorded) == 2 and loop.senders.dropped == 51
        full[0] = False
        out.flush()
        refuse(5)
        assert recorded[-1]["messages"] == 2
    finally:
        ctx.destroy(linger=0)


def test_a_send_to_a_peer_that_went_while_it_looked_goes_to_its_next_connection(monkeypatch):
    """``send`` reads what the peer said first, which may serve the notice that the peer stopped or
    restarted: the connection it held is gone then (its messages counted as lost), and the message
    goes to the peer's next one, not into the old one's void."""
    from types import SimpleNamespace

    ctx = zmq.Context()
    try:
        loop, peers, _recorded, (ours, theirs) = _sender_a_with_a_peer(ctx)
        loop.poller.register(ours, zmq.POLLIN)
        old = peers.outgoing["b"] = peers.by_sock[ours] = Outgoing("b", ours, loop.watch, {"from": "a", "t": "x"})
        new = Outgoing("b", theirs, loop.watch, {"from": "a", "t": "y"})
        held: list = []
        loop.chain = SimpleNamespace(hold=held.append)
        monkeypatch.setattr(loop, "take_acks", lambda: peers.moved("b"))     # the notice, served meanwhile
        real_connect = peers._connect
        monkeypatch.setattr(peers, "_connect", lambda target: real_connect(target) if "b" in peers.outgoing else new)
        peers.send("b", {"k": "msg", "what": "send"}, b"m")
        assert (old.unsent, new.unsent, len(held)) == (0, 1, 1)
    finally:
        loop.chain = None
        ctx.destroy(linger=0)


def test_what_a_peer_did_not_acknowledge_is_counted_when_it_goes():
    """A receiver acknowledges the one-way messages it took (``took``); when it goes (killed with
    messages in its queues), the sender records as not delivered those it neither acknowledged
    nor refused, and drops an acknowledgement of more than it sent."""
    ctx = zmq.Context()
    try:
        loop, peers, recorded, (ours, theirs) = _sender_a_with_a_peer(ctx)
        loop.poller.register(ours, zmq.POLLIN)
        out = peers.outgoing["b"] = peers.by_sock[ours] = Outgoing("b", ours, loop.watch, {"from": "a", "t": "x"})
        for _ in range(10):
            out.accepted(1)
            out.put(protocol.encode({"k": "msg", "what": "send"}, b"m"), 1)
        for _ in range(2):      # accepted, still waiting for the chain here
            out.accepted(1)
        theirs.send_multipart(protocol.encode({"k": "took", "count": 4}))
        theirs.send_multipart(protocol.encode({"k": "refused", "error": "too large", "count": 1}))
        wait_for(lambda: wire.readable(ours), what="the answers to arrive")
        loop.drain(ours)
        theirs.send_multipart(protocol.encode({"k": "took", "count": 2}))
        wait_for(lambda: wire.readable(ours), what="the last answer to arrive")
        peers.moved("b")        # reads what the peer said before it went, then counts
        assert [r["messages"] for r in recorded] == [1, 10 + 2 - 4 - 1 - 2], recorded
        assert "before it took" in recorded[-1]["error"]
        out2 = peers.outgoing["c"] = peers.by_sock[theirs] = Outgoing("c", theirs, loop.watch, {"from": "a", "t": "y"})
        assert out2.unanswered == 0
        peers.took(theirs, 3)   # of nothing it was sent: dropped, counted
        assert loop.senders.dropped == 1
    finally:
        ctx.destroy(linger=0)
