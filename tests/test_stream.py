"""theater.stream: the unix stream a worker's events travel on to the chain (issue 11's round trip).

An effect leaves a worker once the events that led to it are written to this stream, on the
word of the kernel that they stay readable whatever becomes of the writer: the first test
shows that word kept by a process SIGKILLed right after its write. The others hold the
framing to what the chain reads from anyone who can connect.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import orjson
import pytest
import zmq

from chain import streams as chain_streams
from chain.streams import UNBOUND_FOR, Streams
from theater.stream import Closed, Stream, frame

from .conftest import wait_for


def pair(max_message: int = 1 << 20) -> tuple[Stream, Stream]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return Stream(a, max_message), Stream(b, max_message)


def received(s: Stream, n: int) -> list[list[bytes]]:
    got: list[list[bytes]] = []
    wait_for(lambda: bool(got.extend(s.receive())) or len(got) >= n, timeout=30, what=f"{n} messages")
    return got


def test_what_a_killed_writer_wrote_is_read_to_the_end(tmp_path):
    """A child connects, writes three messages, and SIGKILLs itself before anyone has read a
    byte; the listener accepts afterwards and reads all three, then the end of the stream."""
    path = tmp_path / "s.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    child = textwrap.dedent(f"""
        import os, signal
        from theater.stream import Stream
        s = Stream.connect({str(path)!r}, 1 << 20)
        for i in range(3):
            s.send([b'{{"k": "append"}}', bytes([i]) * 20_000])
        assert not s.out, "the kernel took it all"
        os.kill(os.getpid(), signal.SIGKILL)
        """)
    p = subprocess.run([sys.executable, "-c", child], timeout=60)
    assert p.returncode == -9
    conn, _ = listener.accept()
    reader = Stream(conn, 1 << 20)
    got = received(reader, 3)
    assert got == [[b'{"k": "append"}', bytes([i]) * 20_000] for i in range(3)]
    with pytest.raises(Closed, match="closed by the other end"):
        reader.receive()
    listener.close()


def test_messages_arrive_whole_and_in_order_however_the_bytes_are_cut():
    a, b = pair()
    msgs = [[b"h%d" % i, b"x" * i, b""] for i in range(50)]
    data = b"".join(frame(m) for m in msgs)
    got = []
    for i in range(0, len(data), 7):        # seven bytes at a time: messages cut anywhere
        a.sock.send(data[i:i + 7])
        got.extend(b.receive())
    assert got == msgs and not b.inbuf


def test_a_reader_that_does_not_read_makes_the_writer_queue_not_block():
    """What the socket does not take waits in ``out``; ``written`` counts only what the kernel
    took; once the reader reads, ``flush`` writes the rest."""
    a, b = pair(64 << 20)
    big = b"y" * (8 << 20)
    end = a.send([b"{}", big])
    assert a.written < end == a.queued and a.out
    got: list[list[bytes]] = []

    def drained() -> bool:
        a.flush()
        got.extend(b.receive())
        return bool(got)
    wait_for(drained, timeout=30, what="the big message")
    assert a.written == end and not a.out
    assert got == [[b"{}", big]]


@pytest.mark.parametrize(("data", "why"), [
    ((1 << 30).to_bytes(4, "little") + b"\0" * 8, "a message of 1073741824 bytes"),
    ((8).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"\0" * 4, "a message of 5 frames in 8 bytes"),
    ((12).to_bytes(4, "little") + (1).to_bytes(4, "little") + (9).to_bytes(4, "little") + b"abcd",
     "frames do not add up"),
    ((2).to_bytes(4, "little") + b"ab", "a message of 2 bytes"),
])
def test_a_broken_frame_ends_the_stream(data, why):
    a, b = pair()
    a.sock.send(data)
    with pytest.raises(Closed, match=why):
        received(b, 1)


# ---- a worker's link on it (worker.chainlink) --------------------------------------------------


def chain_listening(path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(4)
    return s


def seqs_received(conn: Stream, last: int) -> list[int]:
    """The seqs of the events appended on ``conn`` until ``last`` arrives."""
    got: list[int] = []

    def until_last() -> bool:
        for frames in conn.receive():
            got.extend(e["seq"] for e in orjson.loads(frames[0])["events"])
        return bool(got) and got[-1] == last
    wait_for(until_last, timeout=30, what=f"event {last}")
    return got


def test_a_new_stream_carries_everything_unacknowledged_before_an_effect_may_go(tmp_path):
    """The chain dies with events it never acknowledged (written to it, they are now nowhere
    but in this worker); on the next stream the link writes them all again, oldest first,
    before anything new, so an effect sealed after them goes only once the new chain's queue
    holds every one (before: the new stream carried only the newest batch, and the effect
    went over events no live process had)."""
    from worker.chainlink import ChainLink

    path = tmp_path / "chain.sock"
    first = chain_listening(path)
    link = ChainLink(str(path), "a", -1, None, on_bytes=lambda n: None, handoff=True,
                     watch=lambda *_: None, on_message=lambda frames: None)
    released: list[str] = []
    for i in range(3):
        link.emit("t", {"i": i})
    link.hold(lambda: released.append("first"))
    link.seal()
    link.sync()
    conn = Stream(first.accept()[0], 1 << 20)
    assert seqs_received(conn, 2) == [0, 1, 2]
    assert released == ["first"], "written to a live chain's stream: out of the worker's reach"

    conn.close()                            # the chain process dies before acknowledging them
    first.close()
    path.unlink()
    second = chain_listening(path)
    link.emit("t", {"i": 3})
    link.flush()                            # meets the dead stream
    link.hold(lambda: released.append("second"))
    link.seal()
    link.emit("t", {"i": 4})
    link.flush()                            # a new stream: 0-2 went nowhere that lasts
    conn = Stream(second.accept()[0], 1 << 20)
    assert seqs_received(conn, 4) == [0, 1, 2, 3, 4]
    assert released == ["first", "second"]
    second.close()



# ---- the chain's end (chain.streams) -------------------------------------------------------------


def test_a_stream_whose_process_is_no_actors_worker_is_closed_in_time(tmp_path):
    """Any process of the workers' user can connect to the chain's stream; one that is no actor's
    worker is closed UNBOUND_FOR after it connected or was last one, so strangers cannot hold the
    chain's descriptors (PER_PROCESS bounds each process, not how many connect)."""
    path = tmp_path / "chain-stream.sock"
    s = Streams(path, zmq.Poller())
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(str(path))
        s.read_all()                                    # accepts it
        (conn,) = s.by_fd.values()
        t = conn.bound_at
        s.sweep(t + 1, lambda _pid: True)               # an actor's worker then
        s.sweep(t + UNBOUND_FOR + 0.5, lambda _pid: False)
        assert s.by_fd, "closed though it was a worker less than UNBOUND_FOR ago"
        s.sweep(t + 1 + UNBOUND_FOR + 0.1, lambda _pid: False)
        assert not s.by_fd, "a stream whose process is no actor's worker was kept"
        client.settimeout(10)
        assert client.recv(1) == b""                    # it hears the end
    finally:
        s.close()
        client.close()


def test_the_chains_poll_watches_one_descriptor_for_all_streams(tmp_path, monkeypatch):
    """However many workers are connected, the chain's poller holds the listener and one epoll:
    zmq.Poller polls every descriptor it holds at each turn of the chain's loop. What each
    connection writes is still read, and its end still seen."""
    monkeypatch.setattr(chain_streams, "PER_PROCESS", 100)     # all of them are this process's
    path = tmp_path / "chain-stream.sock"
    poller = zmq.Poller()
    s = Streams(path, poller)
    clients = [Stream.connect(str(path), 1 << 20) for _ in range(50)]
    try:
        s.read_all()                                    # accepts them
        assert len(s.by_fd) == 50 and len(poller.sockets) == 2
        for i, c in enumerate(clients):
            c.send([b"%d" % i])
        got: list[bytes] = []

        def turn() -> bool:
            for fd, _ in poller.poll(100):
                s.ready(fd)
            got.extend(frames[0] for _, _, frames in s.take())
            return len(got) == 50
        wait_for(turn, timeout=30, what="a message from each stream")
        assert sorted(got) == sorted(b"%d" % i for i in range(50))
        clients.pop().close()
        wait_for(lambda: turn() or len(s.by_fd) == 49, timeout=30, what="a closed stream to be dropped")
    finally:
        s.close()
        for c in clients:
            c.close()
