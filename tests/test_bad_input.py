"""Bad input, each one clear line on stderr, non-zero exit, no traceback, server unharmed (issue).

Every case runs against a real theater-server. After each group of bad inputs the server must
still answer `theater list` and a counter actor must still start and answer a request.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
import wasmtime
import zmq
from zmq.utils.monitor import recv_monitor_message

from theater import keys, protocol
from theater.cli import main as cli_main
from theater.cli import replay as cli_replay
from theater.errors import UsageError

from .conftest import ACTORS, EXAMPLES, ROOT, CLIResult, Server, cmdline, run_cli

COUNTER = EXAMPLES / "counter" / "manifest.toml"
VECTORS = ROOT / "tests" / "vectors"

GOOD_MANIFEST = """\
name = "bad-input"
version = "0.1.0"
component = "{component}"

[[handler]]
type = "runtime"

[[handler]]
type = "message-server"
"""


def one_line(r: CLIResult, *needles: str, code: int | None = None) -> str:
    """Asserts the CLI failed with exactly one clear `theater: ...` line naming every needle."""
    detail = f"exit {r.code}, stderr {r.err!r}, stdout {r.out!r}"
    assert r.code != 0, detail
    if code is not None:
        assert r.code == code, detail
    assert "Traceback" not in r.err, detail
    err = r.err.strip()
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].strip(), detail
    line = lines[0]
    assert line.startswith("theater: "), detail
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def server_works(server: Server, counter: bool = True) -> None:
    """The server is still alive and serving: `list` works, and a counter starts and answers."""
    assert server.proc is not None and server.proc.poll() is None, server.log_tail()
    r = server.cli("list")
    assert r.code == 0, r.err + server.log_tail()
    if counter:
        r = server.cli("start", str(COUNTER), "--json")
        assert r.code == 0, r.err + server.log_tail()
        actor = orjson.loads(r.out)["id"]
        r = server.cli("message", actor, "x", "--request")
        assert (r.code, r.out) == (0, b"1"), r.err + server.log_tail()
        assert server.cli("stop", actor).code == 0


def write_manifest(d: Path, body: str, name: str = "manifest.toml") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_text(body)
    return p


# ---- help --------------------------------------------------------------------------------------


def test_help_exits_zero_and_shows_usage(home):
    for args in (("--help",), ("start", "--help")):
        r = run_cli(home, *args)
        assert r.code == 0, r.err
        assert "usage" in r.text.lower(), r.text
        assert "Traceback" not in r.err
    assert "manifest" in run_cli(home, "start", "--help").text
    # an argument a command does not take points to that command's help
    one_line(run_cli(home, "message", "a", "b", "c"), "unrecognized arguments: c", "`theater message --help`", code=2)
    one_line(run_cli(home, "--bogus"), "unrecognized arguments: --bogus", "`theater --help`", code=2)


# ---- manifests (1-4) ---------------------------------------------------------------------------


def test_bad_manifests(server, tmp_path):
    comp = tmp_path / "counter.wat"
    comp.write_bytes((EXAMPLES / "counter" / "counter.wat").read_bytes())
    good = GOOD_MANIFEST.format(component="counter.wat")

    # 1. a required field missing: names the file and the key
    m = write_manifest(tmp_path, good.replace('version = "0.1.0"\n', ""), "no_version.toml")
    line = one_line(server.cli("start", str(m)), "no_version.toml", "version", code=2)
    assert "missing" in line

    m = write_manifest(tmp_path, good.replace('component = "counter.wat"\n', ""), "no_component.toml")
    one_line(server.cli("start", str(m)), "no_component.toml", "component", code=2)

    # 2. an unknown key: names it and lists the allowed ones
    m = write_manifest(tmp_path, 'colour = "blue"\n' + good, "unknown.toml")
    line = one_line(server.cli("start", str(m)), "unknown.toml", "colour", "allowed", code=2)
    for allowed in ("name", "version", "component", "handler", "limits"):
        assert allowed in line.split("allowed", 1)[1], line

    m = write_manifest(tmp_path, good + "\n[limits]\nmemroy = \"64MiB\"\n", "unknown_limit.toml")
    line = one_line(server.cli("start", str(m)), "unknown_limit.toml", "memroy", "allowed", code=2)
    assert "memory" in line.split("allowed", 1)[1], line

    m = write_manifest(tmp_path, good + "\n[[handler]]\ntype = \"teleport\"\n", "unknown_handler.toml")
    line = one_line(server.cli("start", str(m)), "unknown_handler.toml", "teleport", "allowed", code=2)
    assert "message-server" in line, line

    # 3. a wrong type: names the key and what is allowed
    m = write_manifest(tmp_path, good.replace('name = "bad-input"', "name = 3"), "name_int.toml")
    one_line(server.cli("start", str(m)), "name_int.toml", "name", "string", code=2)

    m = write_manifest(tmp_path, good + '\n[limits]\nmemory = "lots"\n', "memory_lots.toml")
    line = one_line(server.cli("start", str(m)), "memory_lots.toml", "memory", "lots", code=2)
    assert "MiB" in line or "size" in line, line

    m = write_manifest(tmp_path, good + '\n[limits]\nmailbox = "many"\n', "mailbox.toml")
    one_line(server.cli("start", str(m)), "mailbox.toml", "mailbox", "integer", code=2)

    m = write_manifest(tmp_path, good + '\n[restart]\ntype = "sometimes"\n', "restart.toml")
    one_line(server.cli("start", str(m)), "restart.toml", "sometimes", "permanent", code=2)

    m = write_manifest(tmp_path, 'handler = "runtime"\n' + good.split("[[handler]]")[0], "handler_str.toml")
    one_line(server.cli("start", str(m)), "handler_str.toml", "handler", code=2)

    # 4. not TOML at all
    m = write_manifest(tmp_path, 'name = "unterminated\nversion = \n[[[\n', "broken.toml")
    one_line(server.cli("start", str(m)), "broken.toml", "TOML", code=2)

    m = tmp_path / "binary.toml"
    m.write_bytes(b"\xff\xfe\x00garbage")
    one_line(server.cli("start", str(m)), "binary.toml", code=2)

    # a manifest that does not exist, or is a directory
    one_line(server.cli("start", str(tmp_path / "nope.toml")), "nope.toml", code=2)
    one_line(server.cli("start", str(tmp_path)), str(tmp_path), code=2)

    assert orjson.loads(server.cli("list", "--json").out) == []
    server_works(server)


def test_deeply_nested_or_unreadable_manifest_files(server, tmp_path):
    """Issue 16, findings 13 and 1: a manifest or init_state nested thousands deep is one line and
    exit 2 (not a RecursionError's traceback); a FIFO or device named as manifest, component or
    init_state is refused without blocking (the operator may name any path, but only files)."""
    comp = tmp_path / "counter.wat"
    comp.write_bytes((EXAMPLES / "counter" / "counter.wat").read_bytes())
    good = GOOD_MANIFEST.format(component="counter.wat")
    for i, deep in enumerate(("[" * 5000 + "]" * 5000, "{a = " * 5000 + "1" + "}" * 5000)):
        m = write_manifest(tmp_path, good + f"\ndeep = {deep}\n", f"deep{i}.toml")
        one_line(server.cli("start", str(m)), f"deep{i}.toml", "TOML", "deep", code=2)
    (tmp_path / "deep.json").write_text("[" * 5000 + "]" * 5000)
    m = write_manifest(tmp_path, 'init_state = "deep.json"\n' + good, "deep_state.toml")
    one_line(server.cli("start", str(m)), "deep_state.toml", "init_state", "deep", code=2)
    m = write_manifest(tmp_path, "init_state = " + "{a = " * 300 + "1" + "}" * 300 + "\n" + good, "deep_inline.toml")
    one_line(server.cli("start", str(m)), "deep_inline.toml", "init_state", "deep", code=2)

    os.mkfifo(tmp_path / "fifo")
    one_line(server.cli("start", str(tmp_path / "fifo"), timeout=30), "fifo", "FIFO", code=2)
    m = write_manifest(tmp_path, good.replace("counter.wat", "fifo"), "fifo_component.toml")
    one_line(server.cli("start", str(m), timeout=30), "component", "FIFO", code=2)
    m = write_manifest(tmp_path, 'init_state = "fifo"\n' + good, "fifo_state.toml")
    one_line(server.cli("start", str(m), timeout=30), "init_state", "FIFO", code=2)
    m = write_manifest(tmp_path, good.replace("counter.wat", "/dev/zero"), "device.toml")
    one_line(server.cli("start", str(m), timeout=30), "component", "character device", code=2)
    assert "Traceback" not in (server.home.logs / "server.log").read_text()
    server_works(server)


def test_a_path_with_a_nul_byte_is_one_line(server, tmp_path):
    """A NUL in component or init_state is refused by name (os.stat raised ValueError: a traceback)."""
    good = GOOD_MANIFEST.format(component="counter.wat")
    for i, body in enumerate((good.replace("counter.wat", "counter\\u0000.wat"),
                              'init_state = "s\\u0000.json"\n' + good)):
        m = write_manifest(tmp_path, body, f"nul{i}.toml")
        one_line(server.cli("start", str(m)), f"nul{i}.toml", ("component", "init_state")[i], "NUL", code=2)
    server_works(server, counter=False)


# ---- components (5-8) --------------------------------------------------------------------------


def test_bad_components(server, tmp_path):
    def start_with(component: str) -> CLIResult:
        m = write_manifest(tmp_path, GOOD_MANIFEST.format(component=component), f"{component}.toml")
        return server.cli("start", str(m))

    # 5. the component file does not exist: names the path
    line = one_line(start_with("missing.wasm"), "missing.wasm", code=2)
    assert str(tmp_path / "missing.wasm") in line, line

    # 6. random bytes: not WebAssembly
    (tmp_path / "x.wasm").write_bytes(b"\x01" + os.urandom(255))   # never the \0asm magic by chance
    one_line(start_with("x.wasm"), "x.wasm", "not WebAssembly", code=2)

    # ... a text file that is neither
    (tmp_path / "prose.wasm").write_text("hello, this is not a component\n")
    one_line(start_with("prose.wasm"), "prose.wasm", "not WebAssembly", code=2)

    # ... an empty file
    (tmp_path / "empty.wasm").write_bytes(b"")
    one_line(start_with("empty.wasm"), "empty.wasm", "not WebAssembly", code=2)

    # ... the wasm magic followed by garbage (a "component" that does not compile)
    (tmp_path / "magic.wasm").write_bytes(b"\x00asm\x0d\x00\x01\x00" + os.urandom(64))
    one_line(start_with("magic.wasm"), "WebAssembly")

    # 7. invalid WAT text
    (tmp_path / "bad.wat").write_text("(component (garbage")
    one_line(start_with("bad.wat"), "bad.wat", "not valid WAT", code=2)

    # 8. a core module, not a component: as binary and as WAT text
    (tmp_path / "core.wasm").write_bytes(wasmtime.wat2wasm("(module)"))
    line = one_line(start_with("core.wasm"), "core.wasm", "core", "not a component", code=2)
    assert "module" in line
    (tmp_path / "core.wat").write_text("(module)")
    one_line(start_with("core.wat"), "core.wat", "core", "not a component", code=2)

    # a valid component without the actor export
    (tmp_path / "nothing.wat").write_text("(component)")
    one_line(start_with("nothing.wat"), "theater:simple/actor")

    listed = orjson.loads(server.cli("list", "--json").out)
    assert all(a["status"] == "failed" for a in listed), listed
    server_works(server)


# ---- an import the manifest does not grant (9) -------------------------------------------------


def test_ungranted_import(server):
    line = one_line(server.cli("start", str(ACTORS / "bad_import.toml")), "theater:simple/supervisor")
    assert "not grant" in line, line
    assert "Traceback" not in server.log_tail(200)
    listed = orjson.loads(server.cli("list", "--json").out)
    bad = [a for a in listed if a["name"] == "bad-import"]
    assert all(a["status"] == "failed" and a["pid"] is None for a in bad), listed
    server_works(server)


# ---- unknown actors (10) -----------------------------------------------------------------------


def test_unknown_actors(server):
    unknown = str(uuid.uuid4())
    one_line(server.cli("message", unknown, "x", "--request"), unknown, code=3)
    one_line(server.cli("message", unknown, "x"), unknown, code=3)
    one_line(server.cli("stop", unknown), unknown, code=3)
    one_line(server.cli("stop", "nosuchactor"), "nosuchactor", code=3)
    one_line(server.cli("inspect", "nosuchactor"), "nosuchactor", code=3)
    one_line(server.cli("state", str(uuid.uuid4())), code=3)
    one_line(server.cli("events", str(uuid.uuid4())), code=3)
    one_line(server.cli("channel", "open", unknown, "hi"), unknown, code=3)
    # a message with no data at all is a usage error
    one_line(server.cli("message", unknown), "DATA", code=2)
    server_works(server)


# ---- no server (11) ----------------------------------------------------------------------------


def test_no_server_running(home, tmp_path):
    for args in (("list",), ("start", str(COUNTER)), ("message", str(uuid.uuid4()), "x", "--request")):
        r = run_cli(home, *args)
        line = one_line(r, "theater-server", code=4)
        assert "no theater server is running" in line, line
        assert str(home.root) in line, line
    bad = tmp_path / "bad.toml"            # a bad manifest is said as such first, server or not
    bad.write_text('name = "x"\nversion = 1\n')
    one_line(run_cli(home, "start", str(bad)), "bad.toml", "version", code=2)
    # and `theater run` says so before it starts a server for the run (it started one, then failed)
    one_line(run_cli(home, "run", str(bad)), "bad.toml", "version", code=2)
    assert not (home.root / "logs" / "server.log").exists()


def test_odd_addresses_inputs_and_arguments_are_one_line_without_a_server(home, tmp_path):
    """Found by an exploratory run: each of these was a traceback, a wait for the timeout, or an
    endless read (an unbounded --file /dev/zero took gigabytes in seconds)."""
    with socket.socket() as s:              # a port nothing listens on (was: the whole timeout, then exit 6)
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    cases = [
        (("--server", f"tcp://127.0.0.1:{closed}", "list"), ("connection was refused",), 4),
        (("--server", "garbage", "list"), ("'garbage'", "ipc://PATH or tcp://HOST:PORT"), 2),
        (("--server", "tcp://127.0.0.1:99999", "list"), ("PORT from 0 to 65535",), 2),
        (("--server", "ipc:///nonexistent/sock", "list"), ("ipc:///nonexistent/sock",), 4),
        (("--server", "tcp://bad host:5555", "list"), ("tcp://bad host:5555",), 2),
        (("--server", "tcp://127.0.0.1:*", "list"), ("needs the server's port",), 2),
        (("message", "x", "--file", "/dev/zero"), ("--file /dev/zero", str(protocol.MAX_PAYLOAD)), 2),
        (("start", str(COUNTER), "--state", "/dev/zero"), ("--state /dev/zero",), 2),

        (("verify", "--file", "/dev/zero", "--pubkey", str(VECTORS / "chain-v1.pub")),
         ("/dev/zero:1: over", "not an event record"), 5),
        (("verify", "--file", str(VECTORS / "chain-v1.jsonl"), "--pubkey", str(VECTORS / "chain-v1.pub"),
          "--checkpoint", "/dev/zero"), ("/dev/zero: not a checkpoint",), 2),
        (("replay", "--file", str(VECTORS / "chain-v1.jsonl"), "--component", "/dev/zero"),
         ("--component /dev/zero",), 2),
        (("replay", "--file", str(VECTORS / "chain-v1.jsonl"), "--component", "/nonexistent"),
         ("--component /nonexistent: No such file or directory",), 2),
        (("replay",), ("give an actor id, or --file",), 2),
        (("mcp", "--manage"), ("--manage is for --http", "--read-only leaves them out"), 2),
        (("mcp", "--manage", "--read-only", "--http", "0"), ("contradict",), 2),
        (("replay", "zzzz"), ("no chains database",), 3),
        (("message", "x", "--file", "/nonexistent"), ("--file /nonexistent: No such file or directory",), 2),
        (("start", str(COUNTER), "--state", str(tmp_path)), (f"--state {tmp_path}: Is a directory",), 2),
    ]
    for args, needles, code in cases:
        one_line(run_cli(home, *args, timeout=60), *needles, code=code)
    (tmp_path / "key").write_bytes(b"\x00\xff" * 40)
    with pytest.raises(UsageError):
        keys.parse_public(str(tmp_path / "key"))
    # a reader that goes away (`| head`) ends the command quietly, exit 0
    p = subprocess.Popen([sys.executable, "-m", "theater", "--home", str(home.root), "completion", "bash"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert p.stdout is not None
    p.stdout.close()
    _, err = p.communicate(timeout=60)
    assert (p.returncode, err) == (0, b"")


def test_arguments_that_are_not_utf8(server):
    """Bytes that are not UTF-8 on a command line (they reach Python as lone surrogates) were a
    UnicodeEncodeError or a TypeError traceback. As a message they are the bytes typed; where
    they must be text (an actor's id or name), one line."""
    for args in (("logs", "\udcff"), ("message", "\udcff", "hi"), ("inspect", "a\udcff")):
        one_line(server.cli(*args), "not valid UTF-8", code=2)
    probe = orjson.loads(server.cli("start", str(ACTORS / "probe.toml"), "--json").out)["id"]
    assert server.cli("message", probe, "e\udcff", "--request").out == b"\xff"


def test_no_server_after_a_crash(server):
    """A server killed with SIGKILL leaves its socket file behind: the CLI must still say, quickly,
    that no server is running (not wait for its whole timeout and report one)."""
    server.remember()
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    assert server.home.management_socket.exists()       # stale: nobody listens on it
    t0 = time.monotonic()
    r = server.cli("list", "--timeout", "5", timeout=30)
    elapsed = time.monotonic() - t0
    line = one_line(r, "theater-server", code=4)
    assert "no theater server is running" in line, line
    assert elapsed < 4, f"took {elapsed:.1f}s to notice there is no server"


# ---- garbage on the management socket (12) -----------------------------------------------------


class Raw:
    """A bare DEALER on the management socket."""

    def __init__(self, server: Server, identity: bytes | None = None, monitor: bool = False,
                 endpoint: str | None = None) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if identity is not None:
            self.sock.setsockopt(zmq.IDENTITY, identity)
        # watched from before the connect, so that no connection event is missed
        self.monitor = self.sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED) if monitor else None
        self.sock.connect(endpoint or server.home.management_endpoint)

    def send(self, *frames: bytes) -> None:
        self.sock.send_multipart(list(frames))

    def recv(self, timeout: float = 5) -> tuple[dict, list[bytes]] | None:
        if not self.sock.poll(timeout * 1000):
            return None
        return protocol.decode(self.sock.recv_multipart())

    def error(self, *frames: bytes, re: str = "", code: str = "protocol") -> str:
        """Sends and expects an error answer; returns its message."""
        self.send(*frames)
        got = self.recv()
        assert got is not None, f"no answer to {frames[:2]!r}"
        header, _ = got
        assert header["k"] == "error", header
        assert header["re"] == re, header
        assert header["code"] == code, header
        assert header["error"].strip() and "Traceback" not in header["error"], header
        return header["error"]

    def close(self) -> None:
        if self.monitor is not None:
            self.sock.disable_monitor()
            self.monitor.close(0)
        self.sock.close(0)
        self.ctx.term()


def test_garbage_on_the_management_socket(server):
    raw = Raw(server)
    try:
        # (a) one frame of random bytes
        raw.error(b"\xff" + os.urandom(200))
        # ... an empty frame (the nearest thing to an empty message ZeroMQ can carry)
        raw.error(b"")
        # (b) JSON that is not an object
        for junk in (b"[1, 2, 3]", b'"start"', b"42", b"null", b"true"):
            assert "object" in raw.error(junk)
        # (c) an unknown kind
        assert "nonsense" in raw.error(b'{"k": "nonsense", "id": "1"}', re="1")
        raw.error(b'{"id": "1b"}', re="1b")                  # no kind at all
        raw.error(b'{"k": 7, "id": "1c"}', re="1c")          # a kind that is not a string
        # a kind that exists but is not a request a client may make
        for kind in ("ok", "hello", "shutdown", "heartbeat", "append"):
            msg = raw.error(orjson.dumps({"k": kind, "id": "1d", "re": "x", "actor": "a", "pid": 1,
                                          "endpoint": "e", "events": []}), re="1d")
            assert kind in msg
        # (d) a known kind with its fields missing or of the wrong type
        assert "manifest" in raw.error(b'{"k": "start", "id": "2"}', re="2")
        raw.error(orjson.dumps({"k": "stop", "id": "2b", "actor": 5}), re="2b")
        raw.error(orjson.dumps({"k": "request", "id": "2c", "actor": "x"}), re="2c")   # no payload frame
        raw.error(orjson.dumps({"k": "list", "id": 3}))                                  # id not a string
        raw.error(orjson.dumps({"k": "channel_ack", "channel": "c", "bytes": 1, "id": [1]}))    # even a notice's
        assert "config" in raw.error(orjson.dumps({"k": "grant", "id": "2d", "actor": "a", "pid": 1}), re="2d")
        # a header over the size limit
        assert "limit" in raw.error(orjson.dumps({"k": "list", "id": "h", "pad": "x" * protocol.MAX_HEADER}), re="h")
        # a start whose manifest or component is bad: the server checks, it does not trust the client
        good = GOOD_MANIFEST.format(component="c.wat")
        start = {"k": "start", "id": "4", "source": "/nowhere/m.toml", "base": "/nowhere"}
        raw.error(orjson.dumps({**start, "manifest": "name = [[["}), b"(component)", re="4", code="manifest")
        raw.error(orjson.dumps({**start, "manifest": good}), os.urandom(64), re="4", code="component")
        raw.error(orjson.dumps({**start, "manifest": good}), b"(component (garbage", re="4", code="component")
        # a request to an actor that does not exist
        raw.error(orjson.dumps({"k": "request", "id": "5", "actor": str(uuid.uuid4())}), b"x", re="5",
                  code="not_found")
        raw.error(orjson.dumps({"k": "channel_send", "id": "6", "channel": "nope"}), b"x", re="6",
                  code="not_found")
        # (e) a great many frames after a garbage header, and after a good one
        raw.error(b"garbage", *([b""] * 100_000))
        raw.send(orjson.dumps({"k": "ping", "id": "7"}), *([b"x"] * 100_000))
        got = raw.recv()
        assert got is not None and got[0]["k"] == "ok" and got[0]["re"] == "7", got
        # a burst of garbage: every one answered, the server keeps up
        for i in range(500):
            raw.send(b"{" + str(i).encode())
        answers = [raw.recv() for _ in range(500)]
        assert all(a is not None and a[0]["k"] == "error" for a in answers)
        # an empty multipart message cannot be sent: pyzmq refuses it before it reaches the wire
        with pytest.raises((ValueError, IndexError, TypeError, zmq.ZMQError)):
            raw.sock.send_multipart([])
    finally:
        raw.close()

    # the same DEALER identity used twice, and a client that leaves without reading its answers
    for _ in range(2):
        r = Raw(server, identity=b"twin")
        r.send(b"not json")
        r.close()

    # not ZeroMQ at all: random bytes on the raw unix socket, then a half-open greeting
    for junk in (os.urandom(4096), b"\xff" + b"\x00" * 8 + b"\x7f\x03", b"GET / HTTP/1.1\r\n\r\n"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2)
        s.connect(str(server.home.management_socket))
        s.sendall(junk)
        s.close()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(server.home.management_socket))    # connects and says nothing, held open below

    try:
        server_works(server)
    finally:
        s.close()
    server_works(server, counter=False)


def chain_pids(server: Server) -> list[int]:
    return [p.pid for p in server.descendants() if cmdline(p)[1:3] == ["-m", "chain"]]


def test_events_with_wrongly_typed_fields(server):
    """The optional fields of `events` (since, limit, types) are client input the protocol table does
    not type: a wrong type is answered with an error, and the chain process behind the server lives."""
    r = server.cli("start", str(COUNTER), "--json")
    assert r.code == 0, r.err
    actor = orjson.loads(r.out)["id"]
    assert server.cli("message", actor, "x", "--request").out == b"1"
    chain = chain_pids(server)
    assert len(chain) == 1, chain
    raw = Raw(server)
    try:
        for i, extra in enumerate(({"since": "abc"}, {"limit": "x"}, {"types": 5}, {"types": [1, None]},
                                   {"since": [1]}, {"limit": {"a": 1}})):
            raw.send(orjson.dumps({"k": "events", "id": f"e{i}", "actor": actor, **extra}))
            got = raw.recv(timeout=3)
            assert got is not None, f"no answer to events {extra}"
            assert got[0]["k"] == "error" and got[0]["re"] == f"e{i}", (extra, got[0])
            assert "restarted" not in got[0]["error"], (extra, got[0])
            assert chain_pids(server) == chain, f"events {extra} killed the chain process"
    finally:
        raw.close()
    assert server.cli("message", actor, "x", "--request").out == b"2"
    assert server.cli("verify", actor).code == 0
    server_works(server)


def test_integers_out_of_range(server):
    """Issue 16, finding 6: every integer from outside is range-checked. `--since 2^63` killed the
    chain process (OverflowError in SQLite); above 2^64 the CLI printed a traceback. Now the CLI,
    the protocol and the chain each refuse what does not fit a signed 64-bit integer."""
    r = server.cli("start", str(COUNTER), "--json")
    assert r.code == 0, r.err
    actor = orjson.loads(r.out)["id"]
    assert server.cli("message", actor, "x", "--request").out == b"1"
    chain = chain_pids(server)
    for since in (str(1 << 63), str(1 << 64), "9" * 40, "-1", "1.5", "0x10"):
        one_line(server.cli("events", actor, "--since", since), "--since", "integer", code=2)
    one_line(server.cli("events", actor, "--limit", "0"), "--limit", code=2)
    one_line(server.cli("events", actor, "--limit", str(1 << 64)), "--limit", code=2)
    for timeout in ("1e300", "nan", "inf", "-1", "0"):
        one_line(server.cli("list", "--timeout", timeout), "--timeout", code=2)
    one_line(server.cli("top", "--interval", "1e300"), "--interval", code=2)
    assert chain_pids(server) == chain

    raw = Raw(server)
    try:
        for i, extra in enumerate(({"since": 1 << 63}, {"since": (1 << 64) - 1}, {"limit": 1 << 63})):
            field = next(iter(extra))
            msg = raw.error(orjson.dumps({"k": "events", "id": f"i{i}", "actor": actor, **extra}), re=f"i{i}")
            assert field in msg and str(protocol.MAX_INT) in msg, msg
        assert "pid" in raw.error(orjson.dumps({"k": "hello", "id": "h", "actor": actor, "pid": 1 << 63,
                                                "endpoint": "e"}), re="h")
    finally:
        raw.close()

    assert chain_pids(server) == chain, "bad integers killed the chain process"
    assert server.cli("message", actor, "x", "--request").out == b"2"
    r = server.cli("events", actor, "--since", "1", "--json")
    assert r.code == 0 and orjson.loads(r.out)[0]["seq"] == 1, r.err
    assert server.cli("verify", actor).code == 0
    server_works(server)


def test_verify_with_a_non_string_actor(server):
    """`verify`'s optional actor field given as a list, object or number: an error answer, not silence."""
    raw = Raw(server)
    try:
        for i, bad in enumerate((["x"], {"a": 1}, 5)):
            raw.send(orjson.dumps({"k": "verify", "id": f"v{i}", "actor": bad}))
            got = raw.recv(timeout=3)
            assert got is not None, f"no answer to verify actor={bad!r}"
            assert got[0]["k"] == "error" and got[0]["re"] == f"v{i}", (bad, got[0])
    finally:
        raw.close()
    server_works(server, counter=False)


# ---- an oversized message (13) -----------------------------------------------------------------


def wait_event(monitor: zmq.Socket, event: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if monitor.poll(left * 1000) and recv_monitor_message(monitor)["event"] == event:
            return True
    return False


def test_oversized_message(server):
    r = server.cli("start", str(COUNTER), "--json")
    assert r.code == 0, r.err
    actor = orjson.loads(r.out)["id"]

    raw = Raw(server, monitor=True)
    monitor = raw.monitor
    assert monitor is not None
    try:
        assert wait_event(monitor, zmq.EVENT_CONNECTED, 5), "the DEALER did not connect"
        big = b"\0" * (protocol.MAX_MESSAGE + 1024)
        raw.send(orjson.dumps({"k": "request", "id": "big", "actor": actor}), big)
        del big
        # ZeroMQ on the server drops the peer once the message passes MAXMSGSIZE; no answer comes
        assert wait_event(monitor, zmq.EVENT_DISCONNECTED, 3), "the server did not drop the oversized message"
        got = raw.recv(timeout=1)
        assert got is None or got[0]["k"] == "error", got
    finally:
        raw.close()

    # the counter never saw it, and the server and the actor still work
    r = server.cli("message", actor, "x", "--request")
    assert (r.code, r.out) == (0, b"1"), r.err + server.log_tail()
    server_works(server)


# ---- verify with bad input (14) ----------------------------------------------------------------


def test_verify_bad_input(server, tmp_path):
    pub = server.cli("key").text.strip()
    assert len(pub) == 64, pub
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("this is not json\n{\"seq\": 1}\n" + os.urandom(16).hex() + "\n")
    one_line(server.cli("verify", "--file", str(garbage), "--pubkey", pub), "garbage.jsonl")

    # a JSON object that is not an event record
    notevent = tmp_path / "notevent.jsonl"
    notevent.write_text('{"seq": 0, "hash": 5}\n')
    one_line(server.cli("verify", "--file", str(notevent), "--pubkey", pub), "notevent.jsonl", "no 'actor' field")

    # binary garbage
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(os.urandom(512))
    one_line(server.cli("verify", "--file", str(binary), "--pubkey", pub), "binary.jsonl")

    # JSON values that are not objects
    for i, value in enumerate(("5", "[1, 2]", '"x"', "null")):
        f = tmp_path / f"value{i}.jsonl"
        f.write_text(value + "\n")
        one_line(server.cli("verify", "--file", str(f), "--pubkey", pub), f.name, "not a JSON object")

    # a checkpoint that is garbage, or JSON that is not a checkpoint
    for i, text in enumerate(("garbage", "5", "{}", '{"actor": 1}')):
        f = tmp_path / f"checkpoint{i}.json"
        f.write_text(text)
        one_line(server.cli("verify", "--file", str(notevent), "--pubkey", pub, "--checkpoint", str(f)),
                 "checkpoint")

    one_line(server.cli("verify", "--file", str(tmp_path / "missing.jsonl"), "--pubkey", pub), "missing.jsonl")
    one_line(server.cli("verify", "--file", str(garbage), "--pubkey", "nothex"), "nothex", code=2)
    one_line(server.cli("verify", "--file", str(garbage), "--pubkey", "ab" * 31), code=2)
    server_works(server, counter=False)


@pytest.mark.parametrize("given, limit", [((), 600.0), (("--timeout", "60"), 60.0), (("--timeout", "0.5"), 0.5)])
def test_replay_takes_the_timeout_given_whatever_its_value(home, monkeypatch, given, limit):
    """Review finding: --timeout was ignored when it equalled the default (60): the replay had
    600 s. A replay has 600 s unless --timeout is on the command line."""
    seen: dict[str, float] = {}

    def run(cmd, **kwargs):
        seen["timeout"] = kwargs["timeout"]
        report = {"ok": True, "actor": "a", "calls": 0, "incarnations": 0, "events": 0, "reproduced": 0}
        return subprocess.CompletedProcess(cmd, 0, orjson.dumps(report), b"")
    monkeypatch.setattr(cli_replay.subprocess, "run", run)
    assert cli_main(["--home", str(home.root), "replay", "--file", str(VECTORS / "chain-v1.jsonl"), *given]) == 0
    assert seen["timeout"] == limit
