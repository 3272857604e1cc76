"""Messages between actors and from outside: requests, channels, deferred replies, one-way sends.

Everything goes through the CLI against a real theater-server; what the actors did is read
back from their chains (`theater events ID --json`), where every host call records its
input and output and every export call its parameters and result.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from theater.errors import NotFound
from theater.events import decode_data

from .conftest import ACTORS, EXAMPLES, ROOT, CLIResult, wait_for
from .conftest import cli_events as events
from .conftest import cli_start as start

MSH = "theater:simple/message-server-host"
CLIENT = "theater:simple/message-server-client"


def u(text: str) -> dict[str, str]:
    """How `events --json` shows bytes that are UTF-8 text."""
    return {"utf8": text}


def host_calls(evs: list[dict[str, Any]], fn: str) -> list[dict[str, Any]]:
    """Bodies ({input, output}) of the actor's calls of message-server-host/``fn``."""
    return [e["body"] for e in evs if e["type"] == f"{MSH}/{fn}"]


def export_events(evs: list[dict[str, Any]], fn: str, kind: str) -> list[dict[str, Any]]:
    """Bodies of the "wasm" events of kind call/result/error for message-server-client.``fn``."""
    return [e["body"] for e in evs
            if e["type"] == "wasm" and e["body"]["event"] == kind and e["body"]["function"] == f"{CLIENT}.{fn}"]


def wait_events(server, actor: str, done, what: str, timeout: float = 15) -> list[dict[str, Any]]:
    """Polls the actor's chain until ``done(events)`` holds; returns the events."""
    found: list[list[dict[str, Any]]] = []

    def check() -> bool:
        evs = events(server, actor)
        found[:] = [evs]
        return bool(done(evs))
    wait_for(check, timeout=timeout, interval=0.2, what=what)
    return found[0]


# ---- ping-pong -------------------------------------------------------------------------------

def test_ping_requests_pong_and_both_chains_record_it(server):
    pong = start(server, EXAMPLES / "ping-pong" / "pong.toml")
    ping = start(server, EXAMPLES / "ping-pong" / "ping.toml")

    r = server.cli("message", ping, pong, "--request")
    assert (r.code, r.out) == (0, b"pong"), r.err

    evs = events(server, ping)
    requests = host_calls(evs, "request")
    assert requests == [{"input": [pong, u("ping")], "output": {"ok": u("pong")}}]
    # ping's own handle-request: called with the target id, answered with pong's reply
    assert [c["params"][1] for c in export_events(evs, "handle-request", "call")] == [u(pong)]
    assert [c["result"] for c in export_events(evs, "handle-request", "result")] == [[u("pong")]]

    evs = events(server, pong)
    calls = export_events(evs, "handle-request", "call")
    results = export_events(evs, "handle-request", "result")
    assert [c["params"][1] for c in calls] == [u("ping")]
    assert [r["result"] for r in results] == [[u("pong")]]
    # the host call's result is what pong's export returned
    assert requests[0]["output"]["ok"] == results[0]["result"][0]

    # an actor's name works as its address, for the CLI and for an actor
    r = server.cli("message", ping, "pong", "--request")
    assert (r.code, r.out) == (0, b"pong"), r.err
    assert host_calls(events(server, ping), "request")[-1] == {"input": ["pong", u("ping")],
                                                                "output": {"ok": u("pong")}}
    r = server.cli("message", "ping", pong, "--request")
    assert (r.code, r.out) == (0, b"pong"), r.err
    assert len(export_events(events(server, pong), "handle-request", "call")) == 3


def test_ping_to_an_unknown_actor_gets_an_error(server):
    ping = start(server, EXAMPLES / "ping-pong" / "ping.toml")
    nobody = str(uuid.uuid4())

    r = server.cli("message", ping, nobody, "--request")
    assert r.code == 0, r.err
    assert r.out.startswith(b"error:"), r.out

    (call,) = host_calls(events(server, ping), "request")
    assert call["input"] == [nobody, u("ping")]
    assert list(call["output"]) == ["err"], call
    assert call["output"]["err"]                                # says why
    assert r.out == b"error: " + call["output"]["err"].encode()  # ping replied with that reason

    # ping is fine afterwards
    pong = start(server, EXAMPLES / "ping-pong" / "pong.toml")
    assert server.cli("message", ping, pong, "--request").out == b"pong"


# ---- channels ----------------------------------------------------------------------------------

def test_channel_between_actors_carries_messages_both_ways_and_closes(server):
    echo = start(server, EXAMPLES / "channel" / "echo.toml")
    opener = start(server, EXAMPLES / "channel" / "opener.toml")

    r = server.cli("message", opener, echo, "--request")
    assert r.code == 0, r.err
    ch = r.out.decode()
    assert ch.startswith("ch_"), r.out

    # the rest happens asynchronously: wait for both ends to see the close
    op = wait_events(server, opener, lambda evs: host_calls(evs, "close-channel"),
                     "the opener to close the channel")
    ec = wait_events(server, echo, lambda evs: export_events(evs, "handle-channel-close", "result"),
                     "echo to see the channel closed")

    # opener: opened it, sent "one", got "welcome", closed it
    opens = host_calls(op, "open-channel")
    assert len(opens) == 1 and opens[0]["input"][0] == echo
    assert opens[0]["output"] == {"ok": ch}
    assert {"input": [ch, u("one")], "output": {"ok": None}} in host_calls(op, "send-on-channel")
    assert [c["params"] for c in export_events(op, "handle-channel-message", "call")][:1] == [[ch, u("welcome")]]
    assert host_calls(op, "close-channel") == [{"input": [ch], "output": {"ok": None}}]

    # echo: accepted it, got "one", sent "echo: one" back, saw it closed
    assert [c["params"][0] for c in export_events(ec, "handle-channel-open", "call")] == [ch]
    (accepted,) = export_events(ec, "handle-channel-open", "result")
    assert accepted["result"][0]["accepted"] is True
    assert accepted["result"][0]["message"] == u("welcome")
    assert [c["params"] for c in export_events(ec, "handle-channel-message", "call")] == [[ch, u("one")]]
    assert host_calls(ec, "send-on-channel") == [{"input": [ch, u("echo: one")], "output": {"ok": None}}]
    assert [c["params"] for c in export_events(ec, "handle-channel-close", "call")] == [[ch]]

    # in order, on each side
    def seq_of(evs, match) -> int:
        return next(e["seq"] for e in evs if match(e))
    assert (seq_of(op, lambda e: e["type"] == f"{MSH}/open-channel")
            < seq_of(op, lambda e: e["type"] == f"{MSH}/send-on-channel")
            < seq_of(op, lambda e: e["type"] == f"{MSH}/close-channel"))
    assert (seq_of(ec, lambda e: e["type"] == "wasm" and e["body"]["function"].endswith("handle-channel-open"))
            < seq_of(ec, lambda e: e["type"] == f"{MSH}/send-on-channel")
            < seq_of(ec, lambda e: e["type"] == "wasm" and e["body"]["function"].endswith("handle-channel-close")))


def test_external_channel_through_the_cli(server):
    echo = start(server, EXAMPLES / "channel" / "echo.toml")

    r = server.cli("channel", "open", echo, "first", input=b"hi\nthere\n", timeout=30)
    assert r.code == 0, r.err
    assert r.out == b"welcome\necho: hi\necho: there\n", (r.out, r.err)

    # the actor saw the channel open with the first message, both lines, and the close
    evs = wait_events(server, echo, lambda evs: export_events(evs, "handle-channel-close", "result"),
                      "echo to see the CLI's channel closed")
    (opened,) = export_events(evs, "handle-channel-open", "call")
    ch = opened["params"][0]
    assert opened["params"] == [ch, u("first")]
    assert [c["params"] for c in export_events(evs, "handle-channel-message", "call")] == [[ch, u("hi")],
                                                                                           [ch, u("there")]]
    assert [c["input"] for c in host_calls(evs, "send-on-channel")] == [[ch, u("echo: hi")], [ch, u("echo: there")]]

    # by name too
    r = server.cli("channel", "open", "echo", input=b"again\n", timeout=30)
    assert r.code == 0, r.err
    assert r.out == b"welcome\necho: again\n", (r.out, r.err)

    # with stdin closed (`<&-`): the first message only, as at the end of stdin (was a traceback)
    p = subprocess.run([sys.executable, "-m", "theater", "--home", str(server.home.root), "channel", "open", "echo"],
                       capture_output=True, timeout=30, cwd=ROOT, preexec_fn=lambda: os.close(0))
    assert (p.returncode, p.stdout) == (0, b"welcome\n"), p.stderr
    assert p.stderr.startswith(b"channel ch_") and p.stderr.endswith(b" closed\n"), p.stderr


def test_a_channel_whose_other_end_restarted_is_closed_at_this_end_too(server):
    """The restarted end's new incarnation knows none of its channels: what was sent on them was
    acknowledged and dropped unread, and the opener could go on sending. Now the opener's end
    closes when the server says the other end restarted, and whatever reached the new incarnation
    first is refused there and recorded by the opener."""
    with server.client(timeout=30) as c:
        echo = c.start(EXAMPLES / "channel" / "echo.toml")["id"]
        probe = c.start(ACTORS / "probe.toml")["id"]
        ch = c.request(probe, b"C" + echo.encode()).decode()
        assert not ch.startswith("error"), ch
        assert c.request(probe, f"K{ch} one".encode()) == b"ok"
        wait_for(lambda: any(b"one" in e.data for e in c.events(echo, types=["wasm"])), what="echo to get 'one'")
        c.call("restart", actor=echo)
        replies: list[bytes] = []

        def closed() -> bool:
            replies.append(c.request(probe, f"K{ch} two".encode()))
            return replies[-1] != b"ok"
        wait_for(closed, what="the probe's end of the channel to close")
        assert replies[-1] == f"error: no open channel {ch}".encode(), replies
        sent = len(replies) - 1         # sent before the probe heard of the restart

        def refusals() -> int:
            return sum(decode_data(e.data).get("messages", 0) for e in c.events(probe, types=["limit/refused"])
                       if b"no open channel" in e.data)
        wait_for(lambda: refusals() == sent, what=f"{sent} refusals recorded by the probe")
        assert not any(b"two" in e.data for e in c.events(echo, types=["wasm"]))


@pytest.mark.parametrize("end", ["restart", "kill"])
def test_a_channel_whose_opener_went_is_closed_at_the_acceptor_that_never_wrote_to_it(server, end):
    """Only those who resolved an actor heard that it went: an acceptor that never wrote to the
    opener kept its end open after the opener's incarnation was over, its actor unaware until it
    wrote on it. Now the acceptor asks the server to watch the opener's incarnation, and its end
    closes (``handle-channel-close``) when that incarnation ends, however it ends."""
    with server.client(timeout=30) as c:
        echo = c.start(EXAMPLES / "channel" / "echo.toml")["id"]
        probe = c.start(ACTORS / "probe.toml")["id"]
        ch = c.request(probe, b"C" + echo.encode()).decode()
        assert not ch.startswith("error"), ch

        def calls(fn: str) -> list[Any]:
            evs = [decode_data(e.data) for e in c.events(echo, types=["wasm"])]
            return [e["params"] for e in evs if e.get("event") == "call" and e.get("function") == f"{CLIENT}.{fn}"]
        wait_for(lambda: calls("handle-channel-open"), timeout=30, interval=0.2, what="echo's accept in its chain")
        assert calls("handle-channel-close") == []
        if end == "restart":
            c.call("restart", actor=probe)
        else:
            os.kill(c.inspect(probe)["pid"], signal.SIGKILL)
        wait_for(lambda: calls("handle-channel-close"), timeout=30, interval=0.2,
                 what="echo's end of the channel to close")
        assert calls("handle-channel-close") == [[ch]]
        assert c.inspect(echo)["restarts"] == 0


def test_an_actor_asking_for_an_unknown_or_ambiguous_name_is_answered_at_once():
    """An actor's resolve of a name no actor has, or two have, gets an error at once (an
    ambiguous one was an exception in the server's loop: logged as a bug, the request left to
    its time limit), and an actor is not pointed to commands it cannot run."""
    from supervisor.directory import Directory
    from supervisor.registry import Registry

    registry = Registry()
    for actor_id in ("aaaa0001", "bbbb0002"):
        registry.actors[actor_id] = SimpleNamespace(actor_id=actor_id, name="twin")
    told: list[tuple[str, dict[str, Any]]] = []
    directory = Directory(registry, SimpleNamespace(to_worker=lambda actor, header: told.append((actor, header))))
    asker = SimpleNamespace(actor_id="asker")
    directory.resolve(asker, {"id": "r1", "actor": "twin"})
    directory.resolve(asker, {"id": "r2", "actor": "nobody"})
    assert [(actor, h["k"], h["re"], h["code"]) for actor, h in told] == [
        ("asker", "error", "r1", "usage"), ("asker", "error", "r2", "not_found")]
    assert "'twin' names 2 actors (aaaa0001, bbbb0002)" in told[0][1]["error"]
    assert told[1][1]["error"] == "no actor 'nobody'"
    assert not any("theater" in h["error"] for _, h in told)
    with pytest.raises(NotFound, match=r"no actor 'nobody' \(see `theater list`\)"):
        registry.lookup("nobody")                       # a person is pointed to the command


def test_a_watch_of_an_opener_that_comes_late_misses_nothing():
    """The acceptor asks to watch the opener's incarnation only once it has run the open, when that
    incarnation may be over (its notice already sent to others) and a later one running. The server
    tells it at once; the acceptor closes the channels of the incarnation that ended, keeps a later
    one's, and asks once per incarnation, not per channel."""
    from supervisor.directory import Directory
    from worker.handlers import message_server
    from worker.mailbox import Incoming
    from worker.peers import Peers

    told: list[tuple[str, dict[str, Any]]] = []
    opener = SimpleNamespace(actor_id="opener", alive=True, run=SimpleNamespace(number=2))
    directory = Directory(SimpleNamespace(get={"opener": opener}.get),
                          SimpleNamespace(to_worker=lambda actor, header: told.append((actor, header))))
    acceptor = SimpleNamespace(actor_id="acceptor")
    directory.follow(acceptor, {"actor": "opener", "incarnation": 1})        # over: told at once
    directory.follow(acceptor, {"actor": "nobody", "incarnation": 1})
    directory.follow(acceptor, {"actor": "opener", "incarnation": 2})        # current: watched
    assert told == [("acceptor", {"k": "peer", "actor": "opener", "incarnation": 1}),
                    ("acceptor", {"k": "peer", "actor": "nobody", "incarnation": 1})]
    directory.down(opener)
    assert told[-1] == ("acceptor", {"k": "peer", "actor": "opener", "incarnation": 2})
    assert not directory.watchers

    asked: list[dict[str, Any]] = []
    closed: list[str] = []
    loop = SimpleNamespace(send_control=asked.append)
    peers = Peers(loop, "acceptor", lambda *_: None, lambda *_: None, incarnation=1)

    class Host:
        actor_id = "acceptor"

        def __init__(self) -> None:
            self.peers = peers

        def exports(self, *_):
            return True

        def call(self, _iface, _fn, _params):
            return ({"accepted": True, "message": None},)

        def reply(self, *_a, **_k):
            pass

        def to_self(self, what, header, payload=b""):      # the close, delivered at once
            closed.append(header["ch"])
            ms.deliver(Incoming(what, header, payload, ("peer", b"self")))

        def read_inbox(self):
            pass

    ms = message_server.MessageServer(Host(), {})
    for ch, incarnation in (("c1", 1), ("c2", 1), ("c3", 2)):
        ms.deliver(Incoming("chan_open", {"rid": ch, "ch": ch, "from": "opener", "incarnation": incarnation},
                            b"", ("peer", b"p")))
    assert asked == [{"k": "watch_peer", "actor": "opener", "incarnation": i} for i in (1, 2)]
    peers.moved("opener", 1)          # the answer to the first watch, after the second was asked
    assert closed == ["c1", "c2"] and peers.followed == {"opener": 2}
    peers.moved("opener", 2)
    assert closed == ["c1", "c2", "c3"] and peers.followed == {} and not ms.channels


class PeerLoop:
    """What worker.peers uses of the worker's loop: peers resolve to inboxes nobody listens on,
    and a wait for room or a reply runs ``pumped`` (a notice arriving meanwhile)."""

    def __init__(self) -> None:
        import zmq

        self.ctx = zmq.Context.instance()
        self.poller = zmq.Poller()
        self.to_peers: set[Any] = set()
        self.pumped = lambda: None

    def control_request(self, header: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
        actor = header["actor"]
        return {"actor": actor, "endpoint": f"ipc:///tmp/th-nobody-{actor}", "ticket": "t", "incarnation": 1}, []

    def send_control(self, _header: dict[str, Any]) -> None:
        pass

    def watch(self, *_: Any) -> None:
        pass

    def before_effect(self) -> None:
        pass

    def call_deadline(self) -> float:
        return time.monotonic() + 30

    def pump(self, _timeout: float) -> None:
        self.pumped()

    def wait_reply(self, _rid: str, check: Any, **_: Any) -> None:
        self.pumped()
        check()
        raise AssertionError("the check let a wait on a peer gone go on")


def test_a_workers_peers_leave_nothing_behind_when_they_stop():
    """A worker kept the id of every peer that ever stopped (to fail a request waiting on one):
    an actor talking to short-lived ones (ping to a new pong each time) grew without bound."""
    from worker.peers import Peers

    loop = PeerLoop()
    peers = Peers(loop, "ping", lambda *_: None, lambda *_: None)      # type: ignore[arg-type]
    for i in range(20):
        peers._connect(f"pong{i}")
        peers.follow(f"pong{i}", 1)
        peers.moved(f"pong{i}", 1)
    assert {k: v for k, v in vars(peers).items() if isinstance(v, (dict, set, list)) and v} == {}
    assert not loop.to_peers

    loop.pumped = lambda: peers.moved("pong")        # it stops while the request waits
    with pytest.raises(NotFound, match="actor pong stopped before it answered"):
        peers.call("pong", {"k": "msg", "what": "request", "rid": "r1"}, b"x")


def _echo(tmp_path, limits: str) -> Path:
    """The channel example's echo with ``limits``, its manifest in tmp_path."""
    m = tmp_path / "echo.toml"
    m.write_text((EXAMPLES / "channel" / "echo.toml").read_text().replace(
        'component = "echo.wat"', f'component = "{EXAMPLES / "channel" / "echo.wat"}"') + f"\n[limits]\n{limits}\n")
    return m


def _channel_messages(c, actor: str) -> list[bytes]:
    evs = [decode_data(e.data) for e in c.events(actor, types=["wasm"])]
    return [e["params"][1] for e in evs if e.get("event") == "call"
            and e.get("function", "").endswith("handle-channel-message")]


def test_what_a_peer_sent_before_it_stopped_arrives_before_its_channel_closes(server, tmp_path):
    """The server's notice that the peer stopped comes on another socket than the peer's messages:
    read first, it closed the channel ahead of the messages still waiting, which were refused to
    a peer that was gone. Those messages are read first now."""
    with server.client(timeout=30) as c:
        echo = c.start(_echo(tmp_path, "mailbox = 1"))["id"]
        probe = c.start(ACTORS / "probe.toml")["id"]
        ch = c.request(probe, b"C" + echo.encode()).decode()
        assert c.request(probe, f"K{ch} m0".encode()) == b"ok"
        # echo answers on the channel: it has resolved the probe, so it hears when the probe stops
        wait_for(lambda: any(b"echo: m0" in e.data for e in c.events(echo, types=[f"{MSH}/send-on-channel"])),
                 what="echo's answer")
        pid = c.inspect(echo)["pid"]
        os.kill(pid, signal.SIGSTOP)
        try:
            for i in range(1, 6):
                assert c.request(probe, f"K{ch} m{i}".encode()) == b"ok"
            c.stop(probe)
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: any(b"handle-channel-close" in e.data for e in c.events(echo, types=["wasm"])),
                 what="echo to hear the channel closed")
        assert _channel_messages(c, echo) == [b"m0", b"m1", b"m2", b"m3", b"m4", b"m5"]


def test_a_message_on_a_channel_not_open_here_is_refused_to_its_sender():
    """A channel this incarnation never opened or accepted (the other end gave up waiting for the
    accept, or this end restarted): its messages are refused to their sender, not taken unread."""
    from worker.handlers import message_server
    from worker.mailbox import Incoming

    class Host:
        actor_id, peers = "receiver", SimpleNamespace(on_moved=[])

        def __init__(self) -> None:
            self.refused: list[tuple[Incoming, str]] = []
            self.recorded: list[tuple[str, dict[str, Any]]] = []

        def refuse(self, item: Incoming, error: str) -> None:
            self.refused.append((item, error))

        def record(self, event_type: str, value: dict[str, Any]) -> None:
            self.recorded.append((event_type, value))

    host = Host()
    ms = message_server.MessageServer(host, {})
    item = Incoming("chan_msg", {"ch": "c1", "from": "opener"}, b"lost?", ("peer", b"p1"))
    ms.deliver(item)
    why = "actor receiver has no open channel c1 (closed, or restarted since)"
    assert host.refused == [(item, why)] and host.recorded == []
    ms.gone["c1"] = None                # closed here because the opener went: it cannot record the refusal
    ms.deliver(item)
    assert host.recorded == [("limit/refused", {"from": "opener", "error": why})]
    ms.deliver(Incoming("chan_close", {"ch": "c1", "from": "opener"}, b"", ("peer", b"p1")))
    assert len(host.refused) == 2       # closing what is closed loses nothing


def test_a_clients_channel_closes_when_its_actor_restarts(server):
    """The server forgot nothing of it: a client's sends after the actor restarted were answered ok
    and dropped by the new incarnation. Now the client is told the channel closed, and a send on
    it is refused."""
    with server.client(timeout=30) as c:
        echo = c.start(EXAMPLES / "channel" / "echo.toml")["id"]
        header, _ = c.call("channel_open", b"first", actor=echo)
        ch = header["channel"]
        c.call("channel_send", b"one", channel=ch)
        c.call("restart", actor=echo)
        pushes = []
        wait_for(lambda: (p := c.next_push(0.2)) is not None and pushes.append(p[0]) is None
                 and p[0]["k"] == "channel_closed", what="the channel_closed push")
        assert {"k": "channel_closed", "channel": ch} in pushes, pushes
        with pytest.raises(NotFound, match=f"no open channel {ch}"):
            c.call("channel_send", b"two", channel=ch)


def test_an_actor_sends_to_itself_by_id_name_or_prefix(server):
    """By its full id a send to itself was queued; by its name or an id prefix it was refused as
    "it cannot wait on its own reply", though a one-way message waits for none."""
    with server.client(timeout=30) as c:
        me = c.start(ACTORS / "parent.toml")["id"]
        for target in (me, "parent", me[:8]):
            assert c.request(me, f"P{target} to-self".encode()) == b"ok", target
        wait_for(lambda: sum(b"to-self" in e.data for e in c.events(me, types=["wasm"])
                             if b"handle-send" in e.data) == 3, what="three handle-send calls of its own messages")
        assert c.request(me, b"Qparent x").startswith(b"error: an actor cannot request itself")


# ---- deferred replies ----------------------------------------------------------------------------

def _outstanding_request(server, actor: str) -> tuple[threading.Thread, dict[str, CLIResult], str]:
    """Sends "d" as a request from a background CLI; returns once the actor left it outstanding."""
    before = len(export_events(events(server, actor), "handle-request", "result"))
    out: dict[str, CLIResult] = {}
    t = threading.Thread(target=lambda: out.setdefault("r", server.cli("message", actor, "d", "--request",
                                                                        timeout=30)), daemon=True)
    t.start()
    evs = wait_events(server, actor,
                      lambda evs: len(export_events(evs, "handle-request", "result")) > before,
                      "the probe to take the request")
    assert export_events(evs, "handle-request", "result")[-1]["result"] == [None]    # no reply yet
    rid = export_events(evs, "handle-request", "call")[-1]["params"][0]
    assert "r" not in out                     # the CLI is still waiting
    return t, out, rid


def test_deferred_reply_answers_the_waiting_request(server):
    probe = start(server, ACTORS / "probe.toml")
    t, out, rid = _outstanding_request(server, probe)

    s = server.cli("message", probe, "r")       # respond to every outstanding request with "late"
    assert s.code == 0, s.err
    t.join(30)
    assert not t.is_alive(), "the deferred request never got its answer"
    assert (out["r"].code, out["r"].out) == (0, b"late"), out["r"].err

    evs = events(server, probe)
    assert host_calls(evs, "list-outstanding-requests")[-1]["output"] == [rid]
    assert host_calls(evs, "respond-to-request") == [{"input": [rid, u("late")], "output": {"ok": None}}]
    # answered: nothing outstanding any more
    assert server.cli("message", probe, "r", "--request").out == b"0"


def test_cancelled_deferred_request_fails(server):
    probe = start(server, ACTORS / "probe.toml")
    t, out, rid = _outstanding_request(server, probe)

    s = server.cli("message", probe, "c")       # cancel every outstanding request
    assert s.code == 0, s.err
    t.join(30)
    assert not t.is_alive(), "the cancelled request never ended"
    r = out["r"]
    assert r.code != 0 and r.out == b"", r
    assert "cancel" in r.err.lower(), r.err

    evs = events(server, probe)
    assert host_calls(evs, "cancel-request") == [{"input": [rid], "output": {"ok": None}}]
    assert server.cli("message", probe, "c", "--request").out == b"0"
    # the actor is fine: a new request is answered
    assert server.cli("message", probe, "ehello", "--request").out == b"hello"


# ---- one-way sends --------------------------------------------------------------------------------

def test_one_way_send_then_request(server):
    counter = start(server, EXAMPLES / "counter" / "manifest.toml")

    s = server.cli("message", counter, "data")
    assert s.code == 0, s.err
    assert s.out == b""                          # a send prints nothing
    r = server.cli("message", counter, "x", "--request")
    assert (r.code, r.out) == (0, b"2"), r.err

    evs = events(server, counter)
    sends = export_events(evs, "handle-send", "call")
    assert [c["params"] for c in sends] == [[u("data")]]
    assert [c["params"][1] for c in export_events(evs, "handle-request", "call")] == [u("x")]
