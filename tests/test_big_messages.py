"""Big messages (issue 16, finding 5): bytes cross into wasm as bytes, and what is too big is
refused with one clear line before it reaches the actor.

A 4 MiB message OOM-killed an actor under the default limits (each byte became a 32-byte C
value); a 100 MB one was dropped without a word by ZeroMQ and the CLI waited 60 s. Now a
message may be up to a quarter of the actor's linear memory ([limits] memory), and up to
what one wire message carries: the CLI refuses more before sending, the server refuses
more than the actor's limit, and so does a receiving worker for a message from a peer.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import orjson

from theater.manifest import Limits
from theater.protocol import MAX_PAYLOAD

from .conftest import ACTORS, Server

MiB = 1 << 20


def probe(tmp_path: Path, name: str, limits: str = "") -> Path:
    if not (tmp_path / "probe.wat").exists():
        shutil.copy(ACTORS / "probe.wat", tmp_path / "probe.wat")
    path = tmp_path / f"{name}.toml"
    path.write_text((ACTORS / "probe.toml").read_text().replace('name = "probe"', f'name = "{name}"')
                    + (f"\n[limits]\n{limits}\n" if limits else ""))
    return path


def start(server: Server, manifest: Path) -> str:
    r = server.cli("start", str(manifest), "--json")
    assert r.code == 0, r.err
    return orjson.loads(r.out)["id"]


def one_line(r, *needles: str, code: int) -> str:
    detail = f"exit {r.code}, stderr {r.err[:500]!r}"
    assert r.code == code and "Traceback" not in r.err, detail
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("theater: "), detail
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_a_4mib_message_round_trips_under_the_default_limits(server, tmp_path):
    actor = start(server, probe(tmp_path, "echo"))
    message = bytes(range(256)) * (4 * MiB // 256)
    (tmp_path / "m").write_bytes(b"e" + message)
    for _ in range(3):
        r = server.cli("message", actor, "--file", str(tmp_path / "m"), "--request", timeout=120)
        assert r.code == 0, r.err + server.log_tail()
        assert r.out == message
    info = orjson.loads(server.cli("inspect", actor, "--json").out)
    assert (info["status"], info["restarts"], info["last_error"]) == ("running", 0, None), info
    assert server.cli("verify", actor).code == 0


def test_too_big_a_message_is_refused_at_once_with_one_line(server, tmp_path):
    actor = start(server, probe(tmp_path, "echo"))
    default = Limits().max_message
    assert default == 16 * MiB
    # over what one message carries: the CLI refuses before sending (ZeroMQ would drop it silently)
    (tmp_path / "huge").write_bytes(b"e" + bytes(100_000_000))
    for args in (("--request",), ()):
        r = server.cli("message", actor, "--file", str(tmp_path / "huge"), *args, "--timeout", "30", timeout=120)
        one_line(r, str(MAX_PAYLOAD), code=2)
    # over the actor's own limit (a quarter of its linear memory): the server refuses it
    (tmp_path / "big").write_bytes(b"e" + bytes(default))
    for args in (("--request",), ()):
        r = server.cli("message", actor, "--file", str(tmp_path / "big"), *args, "--timeout", "30", timeout=120)
        one_line(r, actor, str(default), "memory", code=2)
    small = start(server, probe(tmp_path, "small", 'memory = "8MiB"'))
    (tmp_path / "3m").write_bytes(b"e" + bytes(3 * MiB))
    one_line(server.cli("message", small, "--file", str(tmp_path / "3m"), "--request"), str(2 * MiB), code=2)
    # nobody was hurt: the actors never saw them, the server goes on
    for a in (actor, small):
        info = orjson.loads(server.cli("inspect", a, "--json").out)
        assert (info["status"], info["restarts"]) == ("running", 0), info
        assert server.cli("message", a, "eok", "--request").out == b"ok"
    assert server.cli("list").code == 0


def test_a_peer_message_over_the_receivers_limit_is_refused_by_the_receiver(server, tmp_path):
    """Actor to actor, worker to worker: the receiving worker refuses what is over its limit and
    the sender gets the reason as an Err; under it, 4 MiB crosses both ways."""
    for name in ("parent.wat", "parent.toml"):
        shutil.copy(ACTORS / name, tmp_path / name)
    sender = start(server, tmp_path / "parent.toml")
    roomy = start(server, probe(tmp_path, "roomy"))
    small = start(server, probe(tmp_path, "small", 'memory = "8MiB"'))
    message = b"e" + bytes(range(256)) * (4 * MiB // 256)
    (tmp_path / "to-roomy").write_bytes(b"Q" + roomy.encode() + b" " + message)
    r = server.cli("message", sender, "--file", str(tmp_path / "to-roomy"), "--request", timeout=120)
    assert r.code == 0 and r.out == message[1:], r.err
    (tmp_path / "to-small").write_bytes(b"Q" + small.encode() + b" " + message)
    r = server.cli("message", sender, "--file", str(tmp_path / "to-small"), "--request", timeout=120)
    assert r.code == 0, r.err
    assert r.out.startswith(b"error: a message of") and str(2 * MiB).encode() in r.out, r.out[:300]
    for a in (sender, roomy, small):
        assert orjson.loads(server.cli("inspect", a, "--json").out)["restarts"] == 0


def test_an_answer_over_one_message_is_refused_to_the_asker_and_recorded(monkeypatch):
    """An accept's first message travels in the open's reply: over what one message carries, the
    opener's connection would drop it (and the open time out). It is refused with the reason, as a
    reply to a request over it is, and recorded in the answering actor's chain."""
    from worker.handlers import message_server
    from worker.mailbox import Incoming

    class Host:
        actor_id, peers = "acceptor", SimpleNamespace(on_moved=[])

        def __init__(self) -> None:
            self.said: list = []

        def exports(self, *_):
            return True

        def call(self, _iface, fn, _params):
            return (bytes(11),) if fn == "handle-request" else ({"accepted": True, "message": bytes(11)},)

        def record(self, event_type, value):
            self.said.append((event_type, value))

        def reply(self, route, header, *frames):
            self.said.append(("reply", header, frames))

    monkeypatch.setattr(message_server, "MAX_PAYLOAD", 10)
    host = Host()
    ms = message_server.MessageServer(host, {})
    ms.deliver(Incoming("chan_open", {"rid": "r", "ch": "c", "from": "opener"}, b"", ("peer", b"p1")))
    error = "actor acceptor's answer to a channel open of 11 bytes is over the 10-byte limit of one message"
    # recorded in the acceptor's chain, then told to the opener (held, like any answer)
    assert host.said == [("limit/refused", {"to": "opener", "error": error}),
                         ("reply", {"k": "reply", "rid": "r", "ok": False, "code": "refused", "error": error}, ())]
    assert not ms.channels
    # so is a reply to a request over it
    ms.deliver(Incoming("request", {"rid": "q"}, b"", ("control", None)))
    error = "actor acceptor's reply of 11 bytes is over the 10-byte limit of one message"
    assert host.said[-2:] == [("limit/refused", {"to": None, "error": error}),
                              ("reply", {"k": "reply", "rid": "q", "ok": False, "code": "refused", "error": error}, ())]
    monkeypatch.setattr(message_server, "MAX_PAYLOAD", 11)
    ms.deliver(Incoming("chan_open", {"rid": "r2", "ch": "c2"}, b"", ("peer", b"opener")))
    assert host.said[-1][0] == "reply" and host.said[-1][2] == (bytes(11),) and "c2" in ms.channels


def test_an_answer_over_the_askers_own_limit_is_its_err_not_its_death():
    """A reply (or an accept's first message) is held to the asker's message limit like any
    message to it: a 6 MiB reply to an actor with 4 MiB of memory trapped it (out of memory)."""
    from worker.handlers import message_server

    class Peers:
        on_moved: list = []
        sent: list = []
        incarnation = 1

        def incarnation_of(self, _actor):
            return None

        def call(self, _target, header, *_frames):
            answer = {"ok": True, "accepted": True, "actor": "big"} if header["what"] == "chan_open" else {"ok": True}
            return answer, [bytes(MiB + 1)]

        def send(self, target, header, *frames):
            self.sent.append((target, header))

    limits = Limits(memory=4 * MiB)
    host = SimpleNamespace(actor_id="small", peers=Peers(), over_limit=lambda a: limits.too_large("small", len(a)))
    ms = message_server.MessageServer(host, {})
    why = f"a message of {MiB + 1} bytes is over actor small's limit of {MiB} bytes"
    result = ms.request("big", b"q")
    assert result.message.startswith(f"the reply was refused: {why}"), result
    result = ms.open_channel("big", b"hi")
    assert result.message.startswith(f"the channel's first message was refused: {why}"), result
    assert not ms.channels
    ((target, header),) = host.peers.sent
    assert (target, header["what"]) == ("big", "chan_close")


def test_a_childs_state_over_the_parents_message_limit_is_its_err():
    """A child's state is an answer like a reply: held to the parent's message limit (a quarter of
    its memory), or lowering it into the parent's memory traps the parent."""
    from worker.handlers.supervisor import INTERFACE, Supervisor

    limits = Limits(memory=4 << 20)
    host = SimpleNamespace(actor_id="parent", over_limit=lambda a: limits.too_large("parent", len(a)))
    handler = Supervisor(host, {})
    handler._ask = lambda kind, *_f, **_k: ({"has_state": True}, [bytes((1 << 20) + 1)])
    get_state = handler.functions()[INTERFACE]["get-child-state"]
    assert get_state("kid").message.startswith(f"the child's state was refused: a message of {(1 << 20) + 1} bytes")
    handler._ask = lambda kind, *_f, **_k: ({"has_state": True}, [bytes(1 << 20)])
    assert len(handler.functions()[INTERFACE]["get-child-state"]("kid").value) == 1 << 20    # at the limit: taken
