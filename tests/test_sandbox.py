"""OS-level isolation, shown from inside a worker (issue 15, docs/isolation.md).

A test-only plug-in (``tests/plugins/probe.py``, loaded through ``THEATER_PLUGINS``) runs the
Python a request carries inside the actor's worker, after its sandbox is up: each test asks
it to do what the sandbox must stop, and reads the answer (a refusal, recorded in the chain
as the host call's output) or the stop (the worker killed, the exit recorded with reason
``seccomp`` and the call named). Replayed, the same probes run again in the replayer, which
confines itself alike (worker/replaysandbox.py).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from theater import _landlock, _linux, beneath, sandbox
from theater import manifest as manifests
from theater.chaindb import ChainReader
from theater.errors import TheaterError
from worker import executables
from worker.commands import SAFE_PATH

from .conftest import ROOT, OpsServer, Server, cli_events, pid_alive, server_of_its_own, wait_for

PROBE_WAT = ROOT / "tests" / "plugins" / "probe.wat"
PLUGIN_ENV = {"THEATER_PLUGINS": "tests.plugins.probe", "PYTHONPATH": str(ROOT)}


def start_probe(server: Server, where: Path, name: str = "probe",
                grant: str = '[[handler]]\ntype = "filesystem"\npath = "data"\nnew_dir = true\n') -> str:
    """A probe actor granted a directory of its own (``where/data``, made for it) unless ``grant``
    says otherwise; never restarted."""
    manifest = where / f"{name}.toml"
    manifest.write_text(f'name = "{name}"\nversion = "0.1.0"\ncomponent = "{PROBE_WAT}"\n'
                        '[restart]\ntype = "temporary"\n'
                        '[[handler]]\ntype = "message-server"\n[[handler]]\ntype = "probe"\n' + grant)
    r = server.cli("start", str(manifest), "--json")
    assert r.code == 0, r.err
    return orjson.loads(r.out)["id"]


def probe(server: Server, actor: str, code: str) -> str:
    """Runs ``code`` in the actor's worker; what it left in ``result`` (repr), or its exception."""
    with server.client() as c:
        return c.request(actor, code.encode()).decode()


def inspect(server: Server, actor: str) -> dict[str, Any]:
    with server.client() as c:
        return c.inspect(actor)


def killed_for(server: Server, actor: str, code: str) -> dict[str, Any]:
    """Runs ``code``, which must end the worker; the lifecycle/exit event recorded for it."""
    pid = inspect(server, actor)["pid"]
    with server.client() as c, pytest.raises(TheaterError):
        c.request(actor, code.encode())
    wait_for(lambda: not pid_alive(pid), timeout=60, what="the worker to die")
    evs = wait_for(lambda: [e for e in cli_events(server, actor) if e["type"] == "lifecycle/exit"],
                   timeout=60, interval=0.5, what="the recorded exit")      # a CLI process per look
    return evs[-1]["body"]


@pytest.fixture(scope="module")
def plugin_env():
    """The probe plug-in, for the servers and the CLI of this module only."""
    with pytest.MonkeyPatch.context() as mp:
        for k, v in PLUGIN_ENV.items():
            mp.setenv(k, v)
        yield


@pytest.fixture(scope="module")
def sandboxed(plugin_env):
    """One sandboxed server (the default) for the module: each test starts its own actors."""
    with server_of_its_own(OpsServer) as s:
        yield s


@pytest.fixture(scope="module")
def shared(sandboxed, tmp_path_factory) -> tuple[str, Path]:
    """A probe actor the tests that do not end it share, and the directory its manifest is in."""
    where = tmp_path_factory.mktemp("probe")
    return start_probe(sandboxed, where), where


@pytest.fixture
def tcp_listener():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


CONNECT = "import socket\ns = socket.socket()\ns.settimeout(5)\ns.connect(('127.0.0.1', {port}))\nresult = 'connected'"


def test_the_start_line_names_every_layer_in_force(sandboxed):
    line = next(x for x in sandboxed.stdout.splitlines() if x.startswith("theater-server: sandbox:"))
    assert "no network" in line and f"Landlock ABI {_landlock.abi()}" in line and "seccomp" in line
    assert "NOT in force" not in line


def test_a_worker_cannot_open_a_tcp_connection(sandboxed, shared, tcp_listener):
    actor, _ = shared
    # seccomp: no socket but AF_UNIX
    assert probe(sandboxed, actor, CONNECT.format(port=tcp_listener)) == "PermissionError: [Errno 1] " \
                                                                          "Operation not permitted"
    # and the refusal is in the chain, as the host call's output
    runs = [e for e in cli_events(sandboxed, actor) if e["type"] == "test:probe/probe/run"]
    assert "Operation not permitted" in orjson.dumps(runs[-1]["body"]["output"]).decode()


def test_a_worker_has_a_network_namespace_of_its_own_with_only_loopback(sandboxed, shared):
    actor, _ = shared
    ns = probe(sandboxed, actor, "import os\nresult = os.readlink('/proc/self/ns/net')")
    assert ns.strip("'") != os.readlink(f"/proc/{sandboxed.pid}/ns/net")
    dev = "result = [x.split(':')[0].strip() for x in open('/proc/net/dev').readlines()[2:]]"
    assert probe(sandboxed, actor, dev) == "['lo']"
    # and nothing listens or routes there: the loopback has no address
    assert probe(sandboxed, actor, "result = '127.0.0.1' in open('/proc/net/fib_trie').read()") == "False"


def test_a_worker_reads_only_its_view(sandboxed, shared):
    actor, where = shared
    key = sandboxed.home.host_key
    denied = "PermissionError: [Errno 13] Permission denied"
    assert probe(sandboxed, actor, f"result = open({str(key)!r}, 'rb').read()").startswith(denied)
    assert probe(sandboxed, actor, f"import os\nresult = os.listdir({str(sandboxed.home.root)!r})").startswith(denied)
    if os.geteuid() == 0 and Path("/etc/shadow").exists():
        assert probe(sandboxed, actor, "result = open('/etc/shadow').read()").startswith(denied)
    # what is granted stays reachable: its own directory, read and written
    (where / "data" / "in.txt").write_text("granted")
    assert probe(sandboxed, actor, f"result = open({str(where / 'data' / 'in.txt')!r}).read()") == "'granted'"
    assert probe(sandboxed, actor, f"open({str(where / 'data' / 'out.txt')!r}, 'w').write('x')\n"
                                   "result = 'written'") == "'written'"
    assert probe(sandboxed, actor, f"open({str(where / 'outside.txt')!r}, 'w')").startswith(denied)


def test_a_worker_cannot_put_a_socket_of_its_own_in_place_of_an_inbox(sandboxed, shared):
    """Inboxes are the server user's to make and remove: a worker that could remove one (its own
    here; another's is the same) and bind in run/w would get what peers send there."""
    actor, _ = shared
    inbox = sandboxed.home.worker_socket(inspect(sandboxed, actor)["pid"])
    denied = "PermissionError: [Errno 13] Permission denied"
    assert probe(sandboxed, actor, f"import os\nos.unlink({str(inbox)!r})").startswith(denied)
    assert probe(sandboxed, actor, f"import os\nos.rename({str(inbox)!r}, {str(inbox) + '.x'!r})").startswith(denied)
    bind = f"import socket\nsocket.socket(socket.AF_UNIX).bind({str(inbox.parent / 'x.sock')!r})"
    assert probe(sandboxed, actor, bind).startswith(denied)
    assert inbox.is_socket()


MANAGE = """from pathlib import Path
from theater.client import Client
from theater.paths import Home
try:
    with Client(Home(Path({home!r})), timeout=10) as c:
        result = [a["name"] for a in c.call("list")[0]["actors"]]
except Exception as e:
    result = f"{{type(e).__name__}}: {{e}}"
"""


def test_a_worker_cannot_use_the_management_socket(sandboxed, shared):
    """Without --user a worker runs as the server's user, whom the socket's mode lets in: native
    code in a worker could list, read, stop and start actors (one granted the home: the host key).
    The server refuses a request whose sender (SO_PEERCRED) is a worker or its child."""
    actor, _ = shared
    answer = probe(sandboxed, actor, MANAGE.format(home=str(sandboxed.home.root)))
    assert "Refused: the management socket takes no requests from an actor's worker" in answer, answer
    assert sandboxed.cli("list").code == 0                 # the operator's CLI is served as ever


FLOOD = """
import gc
from worker.chainlink import ChainLink
link = next(o for o in gc.get_objects() if isinstance(o, ChainLink))
for i in range({n}):
    link.emit("test/flood", i)
link.flush()
result = link.seq
"""


def test_a_worker_that_does_not_slow_itself_is_slowed_by_the_chain(sandboxed, tmp_path):
    """Python in a worker (as actor code escaped into it would run) records past its throttle,
    straight on its chain link: the chain reads its stream no faster than the limits the server
    told it (chain.rates), says so once, and loses nothing; the actor still answers."""
    from chain.rates import BACKLOG, BURST, SLACK, SLACK_EVENTS

    rate = 2000
    n = BACKLOG + int(BURST * (rate * SLACK + SLACK_EVENTS)) + 3 * rate     # past what goes at once
    actor = start_probe(sandboxed, tmp_path, "flooder", grant=f"[limits]\nevents_per_second = {rate}\n")
    pid = inspect(sandboxed, actor)["pid"]
    last = int(probe(sandboxed, actor, FLOOD.format(n=n)))
    log = sandboxed.home.logs / "server.log"
    said = f"actor {actor} (pid {pid}) writes events faster than its limits allow ({rate} events/s"
    wait_for(lambda: said in log.read_text(), timeout=30, what="the chain's line on the flooder")
    reader = ChainReader(sandboxed.home.chains_db)
    try:
        wait_for(lambda: reader.length(actor) > last, timeout=60, what="every event of the flood stored")
    finally:
        reader.close()
    assert probe(sandboxed, actor, "result = 'still here'") == "'still here'"
    assert sandboxed.cli("verify", actor).code == 0
    assert log.read_text().count(said) == 1


MALFORMED = """
import gc, json
from theater.errors import Timeout
from worker.loop import Loop
loop = next(o for o in gc.get_objects() if isinstance(o, Loop))
for header in {notices}:
    loop.control.send_multipart([json.dumps(header).encode()])
said = []
for header in {asks}:
    try:
        h, _ = loop.wait_reply(loop.ask(loop.control, header), timeout=8)
        said.append(h["k"] + ":" + h.get("code", ""))
    except Timeout:
        said.append("no answer")
result = said
"""
# answers to the very call that runs them (the server forwarded it with a rid)
FORGED_REPLIES = """
import gc, json
from worker.loop import Loop
from worker.mailbox import Incoming
loop = next(o for o in gc.get_objects() if isinstance(o, Loop))
call = next(o for o in gc.get_objects() if isinstance(o, Incoming) and o.what == "request" and o.route[0] == "control")
rid = call.header["rid"]
loop.control.send_multipart([json.dumps({"k": "reply", "rid": rid, "ok": False, "code": [1]}).encode()])
loop.control.send_multipart([json.dumps({"k": "reply", "rid": rid, "ok": True, "request_id": 1}).encode(), b"forged"])
"""


def test_a_workers_malformed_messages_are_answered_or_dropped_never_an_internal_error(shared, sandboxed):
    """Python in a worker (as actor code escaped into it would run) writes malformed messages on its
    control socket. A request whose id can be read is answered with a protocol error at once (it was
    dropped, its call left to wait out its time limit); the rest are dropped, said in one line a
    second at most. None is an internal error of the server: a traceback in its log each time, and an
    answer never given (a reply carrying `request_id` or a `code` not a string left its client waiting)."""
    actor, _ = shared
    notices = [{"k": "grant", "actor": actor, "pid": 1}, {"k": "ok", "re": "x", "types": 5},
               {"k": "reply", "rid": "x", "ok": True, "re": [1]}, {"k": "watch_peer", "actor": actor},
               {"k": "resolve", "id": 7, "actor": actor}]
    asks = [{"k": "resolve", "id": "r1", "actor": 5}, {"k": "spawn", "id": "r2"},
            {"k": "grant", "id": "r3", "actor": actor, "pid": 1}]
    said = probe(sandboxed, actor, MALFORMED.format(notices=notices, asks=asks))
    assert said == repr(["error:protocol"] * len(asks)), said
    assert probe(sandboxed, actor, FORGED_REPLIES) == "forged"      # the first is dropped, the second passed on
    assert probe(sandboxed, actor, "result = 'still here'") == "'still here'"
    log = (sandboxed.home.logs / "server.log").read_text()
    assert "internal error" not in log and "Traceback" not in log, log[-3000:]
    assert f"control message from pid {inspect(sandboxed, actor)['pid']} refused: malformed message" in log


def test_a_request_of_a_kind_no_worker_sends_is_answered_as_such(shared, sandboxed):
    """A worker's request of a kind the server takes from clients, or that the chain or the gateway
    answer, fell to the supervision, which ignores what it does not know: never answered, its call
    waited out its time limit. It is answered with a protocol error, as a client is for a worker's kind."""
    actor, _ = shared
    asks = [{"k": "ping", "id": "w1"}, {"k": "resume", "id": "w2", "actor": actor},
            {"k": "store_call", "id": "w3", "op": "new", "args": []}]
    said = probe(sandboxed, actor, MALFORMED.format(notices=[{"k": "ping"}, {"k": "keepalive"}], asks=asks))
    assert said == repr(["error:protocol"] * len(asks)), said
    assert probe(sandboxed, actor, "result = 'still here'") == "'still here'"
    log = (sandboxed.home.logs / "server.log").read_text()
    assert "internal error" not in log and "Traceback" not in log, log[-3000:]


SUBSCRIBE = """
import os, sys, zmq
sock = sys.rogue_sub = zmq.Context().socket(zmq.SUB)
sock.setsockopt(zmq.SUBSCRIBE, b"actor.")
sock.connect("ipc://" + os.environ["THEATER_HOME"] + "/run/events.sock")
result = "subscribed"
"""
HEARD = """
import sys
result = [sys.rogue_sub.recv_multipart()[0].decode() for _ in range(1) if sys.rogue_sub.poll(3000)]
"""


def test_a_worker_hears_no_other_actors_events_on_the_chains_feed(shared, sandboxed, tmp_path):
    """Red-team finding: run as the server's own user (no --user), a worker reaches run/events.sock,
    where the chain publishes each event it stores, data and all: it could subscribe to every
    actor's. The chain takes subscriptions from the server alone, whose own still come."""
    actor, _ = shared
    other = start_probe(sandboxed, tmp_path, "other", grant="")
    assert probe(sandboxed, actor, SUBSCRIBE) == "'subscribed'"
    with sandboxed.client() as c:
        c.call("subscribe", actor=other)
        assert probe(sandboxed, other, "result = 'for its own eyes'") == "'for its own eyes'"
        assert wait_for(lambda: c.next_push(1), timeout=30, what="the server's relay of the other's events")[0]["k"] \
            == "event"
    assert probe(sandboxed, actor, HEARD) == "[]"
    refused = f"refused a subscription to the events from pid {inspect(sandboxed, actor)['pid']}"
    log = sandboxed.home.logs / "server.log"
    wait_for(lambda: refused in log.read_text(), timeout=30, what="the chain's refusal")


def test_a_client_in_a_network_namespace_of_its_own_is_no_worker_for_that(tmp_path):
    """A worker is told by its cgroup, its descent from the fork server, or a worker's network
    namespace; another namespace alone (a client in a container, the socket mounted) is not one."""
    from supervisor.callers import Callers

    other = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        wait_for(lambda: os.readlink(f"/proc/{other.pid}/ns/net") != os.readlink("/proc/self/ns/net"),
                 what="the namespace of its own")
        assert not Callers(lambda: None, []).worker(other.pid)
        callers = Callers(lambda: None, [])
        callers.note(other.pid)                                                       # its hello
        assert callers.worker(other.pid)                                              # a worker's namespace
        assert Callers(lambda: os.getpid(), []).worker(other.pid)                     # the fork server's child
        # a process a worker left in its namespace is known by it after the worker is gone
        left = subprocess.Popen(["nsenter", f"--net=/proc/{other.pid}/ns/net", "sleep", "60"])
        try:
            wait_for(lambda: os.readlink(f"/proc/{left.pid}/ns/net") == os.readlink(f"/proc/{other.pid}/ns/net"),
                     what="the process left behind in its namespace")
            other.kill()
            other.wait()
            assert callers.worker(left.pid)
        finally:
            left.kill()
            left.wait()
    finally:
        other.kill()
        other.wait()


def test_a_worker_confined_ahead_is_confined_all_the_same(sandboxed, tmp_path, tcp_listener):
    """Most actors start in a spare that put up the usual confinement while it waited (worker.spare):
    the probes above, on one of them."""
    start_probe(sandboxed, tmp_path, "teacher", grant="")     # the first usual actor teaches the fork server
    wait_for(sandboxed.spares_confined_ahead, timeout=60, what="a spare confined ahead")
    actor = start_probe(sandboxed, tmp_path, "ahead", grant="")
    pid = inspect(sandboxed, actor)["pid"]
    wait_for(lambda: f"actor {actor} in spare {pid} (confined ahead)" in sandboxed.log_tail(2000), timeout=30,
             what="the fork server's note of the spare it gave")
    denied = "PermissionError: [Errno 13] Permission denied"
    assert probe(sandboxed, actor, f"result = open({str(sandboxed.home.host_key)!r}, 'rb').read()").startswith(denied)
    assert probe(sandboxed, actor, f"open({str(tmp_path / 'outside.txt')!r}, 'w')").startswith(denied)
    assert probe(sandboxed, actor, CONNECT.format(port=tcp_listener)) == "PermissionError: [Errno 1] " \
                                                                          "Operation not permitted"
    ns = probe(sandboxed, actor, "import os\nresult = os.readlink('/proc/self/ns/net')")
    assert ns.strip("'") != os.readlink(f"/proc/{sandboxed.pid}/ns/net")
    ex = killed_for(sandboxed, actor, "import os\nos.execv('/bin/true', ['true'])")
    assert ex["reason"] == "seccomp" and "(execve)" in ex["error"]


def test_ptrace_of_the_fork_server_kills_the_worker_and_the_stop_is_recorded(sandboxed, tmp_path):
    actor = start_probe(sandboxed, tmp_path)
    zygote = psutil.Process(inspect(sandboxed, actor)["pid"]).ppid()
    ex = killed_for(sandboxed, actor, f"import ctypes\nresult = ctypes.CDLL(None).ptrace(16, {zygote}, 0, 0)")
    assert ex["kind"] == "abnormal" and ex["reason"] == "seccomp"
    assert "(ptrace)" in ex["error"]
    assert inspect(sandboxed, actor)["last_exit"]["reason"] == "seccomp"
    assert psutil.pid_exists(zygote)


def test_execve_kills_the_worker_and_the_stop_is_recorded(sandboxed, tmp_path):
    actor = start_probe(sandboxed, tmp_path)
    ex = killed_for(sandboxed, actor, "import os\nos.execv('/bin/true', ['true'])")
    assert ex["reason"] == "seccomp" and "(execve)" in ex["error"]


def test_a_new_namespace_kills_the_worker(sandboxed, tmp_path):
    actor = start_probe(sandboxed, tmp_path)
    ex = killed_for(sandboxed, actor, "import ctypes\nresult = ctypes.CDLL(None).unshare(0x10000000)")
    assert ex["reason"] == "seccomp" and "(unshare)" in ex["error"]


# What a worker's sandbox refuses, and the answer each gets there; the replayer runs each again
# (tests/plugins/probe_handler.py), and its replay reproduces the record only if it gets the same.
STATUS = ("result = [x.split() for x in open('/proc/self/status')"
          " if x.split(':')[0] in ('CapEff', 'NoNewPrivs', 'Seccomp')]")
NETDEV = "result = [x.split(':')[0].strip() for x in open('/proc/net/dev').readlines()[2:]]"
CONFINED = [
    ("result = open({key!r}, 'rb').read()", "PermissionError: [Errno 13] Permission denied"),
    ("result = open('/etc/passwd').read()", "PermissionError: [Errno 13] Permission denied"),
    ("import os\nresult = os.listdir({home!r})", "PermissionError: [Errno 13] Permission denied"),
    ("open({outside!r}, 'w')", "PermissionError: [Errno 13] Permission denied"),
    ("import socket\nresult = socket.socket()", "PermissionError: [Errno 1] Operation not permitted"),
    (NETDEV, "['lo']"),
    (STATUS, "[['CapEff:', '0000000000000000'], ['NoNewPrivs:', '1'], ['Seccomp:', '2']]"),
]


def test_a_replay_runs_the_actor_confined_as_its_worker_was(sandboxed, tmp_path):
    """A replay runs an actor's component and record, which may be hostile, in a process the
    operator started (often as root). The replayer confines itself as a worker does before it
    runs the actor's code: no home, no /etc/passwd, no writes, no AF_INET socket, a network
    namespace of its own, no_new_privs, seccomp, no capability. --no-sandbox leaves the three
    layers out, as the server's does: the replayer reads the host key, and the replay diverges."""
    actor = start_probe(sandboxed, tmp_path, "replayed", grant="")
    paths = {"key": str(sandboxed.home.host_key), "home": str(sandboxed.home.root), "outside": str(tmp_path / "x")}
    for code, answer in CONFINED:
        assert probe(sandboxed, actor, code.format(**paths)).startswith(answer), code
    r = sandboxed.cli("replay", actor)
    assert (r.code, r.err) == (0, ""), r
    assert r.text.startswith(f"ok      {actor}  {len(CONFINED) + 1} calls in 1 incarnation(s)"), r.text
    r = sandboxed.cli("replay", actor, "--no-sandbox")
    key_read = next(e["seq"] for e in cli_events(sandboxed, actor) if e["type"] == "test:probe/probe/run")
    assert r.code == 5 and f"DIVERGED  {actor}  event {key_read + 1}: the replay produced wasm" in r.text, r


def test_a_replayer_without_landlock_or_a_namespace_keeps_its_other_layers_and_says_so(sandboxed, tmp_path):
    """On a kernel without Landlock, and one that refuses the network namespace it offered, the
    replayer leaves those out, as the server and the fork server do for workers, keeps the
    others, and says so on stderr (the CLI passes it on)."""
    actor = start_probe(sandboxed, tmp_path, "unlandlocked", grant="")
    for code in (STATUS, "import socket\nresult = socket.socket()"):
        probe(sandboxed, actor, code)
    replayer = ("import errno, sys\nfrom theater import _landlock\nfrom worker import replaysandbox\n"
                "_landlock.abi = lambda: 0\n"
                "def refused():\n    raise OSError(errno.EPERM, 'unshare: Operation not permitted')\n"
                "replaysandbox.own_network = refused\n"
                "from worker.__main__ import main\nsys.exit(main(sys.argv[1:]))")
    p = subprocess.run([sys.executable, "-c", replayer, "replay", "--home", str(sandboxed.home.root), actor],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0 and orjson.loads(p.stdout)["ok"], (p.stdout, p.stderr)
    assert "sandbox layer landlock is not in force: the kernel has no Landlock\n" in p.stderr, p.stderr
    assert "sandbox layer net is not in force: cannot make a network namespace: unshare: Operation not permitted" \
        in p.stderr, p.stderr


def test_the_cli_passes_on_a_layer_the_replayer_lacks(home, monkeypatch, capsys):
    from theater.cli import main as cli_main
    from theater.cli import replay as cli_replay

    # in this process, the module's plug-in would stay registered for every later test here
    # (the WIT signatures of test_wit then count its interface)
    monkeypatch.delenv("THEATER_PLUGINS", raising=False)

    report = {"ok": True, "actor": "a", "calls": 0, "incarnations": 0, "events": 0, "reproduced": 0}
    said = b"held to its compile memory limit ([compile] memory): 1 bytes more\n" \
           b"sandbox layer landlock is not in force: the kernel has no Landlock\n"
    monkeypatch.setattr(cli_replay.subprocess, "run",
                        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 0, orjson.dumps(report), said))
    assert cli_main(["--home", str(home.root), "replay", "a"]) == 0
    assert capsys.readouterr().err == "theater: replay: sandbox layer landlock is not in force: the kernel has " \
                                      "no Landlock\n"


def test_a_replayer_that_makes_a_fatal_call_is_killed_and_the_cli_says_so(sandboxed, tmp_path):
    """The worker's fatal calls kill the replayer at once (it has no fork server to report them
    to): here execve, made only in the replayer, as actor code escaped into it would."""
    actor = start_probe(sandboxed, tmp_path, "escaping", grant="")
    code = ("import os, sys\nif 'worker.replaysandbox' in sys.modules:\n    os.execv('/bin/true', ['true'])\n"
            "result = 'in the worker'")
    assert probe(sandboxed, actor, code) == "'in the worker'"
    r = sandboxed.cli("replay", actor)
    said = (r.text + r.err).strip()
    assert r.code == 1 and len(said.splitlines()) == 1, r
    assert "the replayer made a system call its sandbox forbids, and was killed (seccomp)" in said, r


def test_without_the_sandbox_the_same_probes_get_through(plugin_env, home, tmp_path, tcp_listener):
    """The tests above are not vacuous: with --no-sandbox the same code connects and reads."""
    s = OpsServer(home, "--no-sandbox").start()
    try:
        assert "theater-server: sandbox: off" in s.stdout
        actor = start_probe(s, tmp_path)
        assert probe(s, actor, CONNECT.format(port=tcp_listener)) == "'connected'"
        assert probe(s, actor, f"result = len(open({str(home.host_key)!r}, 'rb').read()) > 0") == "True"
        # but the management socket still knows a worker (the fork server's child, in its cgroup)
        assert "takes no requests from an actor's worker" in probe(s, actor, MANAGE.format(home=str(home.root)))
    finally:
        s.stop()


def test_a_layer_the_machine_lacks_is_left_out_and_said(monkeypatch):
    """A kernel without Landlock: the other layers stay, the start line says what is missing and why."""
    monkeypatch.setattr(_landlock, "abi", lambda: 0)
    layers = sandbox.detect()
    assert layers.args() == ["--sandbox", "net,seccomp"]
    assert "NOT in force: a confined filesystem view (the kernel has no Landlock)" in layers.describe()


def test_without_libseccomp_the_fork_server_still_loads_and_says_so():
    """pyseccomp raises at import when libseccomp.so.2 is missing: the fork server must not need it."""
    code = ("import sys; sys.modules['pyseccomp'] = None\n"
            "import worker.zygote\nfrom theater import sandbox\nprint(sandbox.detect().describe())")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "NOT in force: a system call allow-list (no libseccomp" in p.stdout


def _in_child(fn) -> int:
    """Runs ``fn`` in a forked child (restrictions are for good); its exit code."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = fn()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.skipif(_landlock.abi() < 4, reason="needs Landlock ABI 4 (Linux 6.7)")
def test_landlock_alone_refuses_reads_outside_and_tcp(tmp_path, tcp_listener):
    """The Landlock layer on its own (seccomp would refuse the socket first inside a worker)."""
    from theater import _linux

    inside, outside = tmp_path / "in", tmp_path / "out.txt"
    inside.mkdir()
    (inside / "f").write_text("ok")
    outside.write_text("secret")

    def child() -> int:
        _linux.no_new_privileges()
        _landlock.restrict([(str(inside), _landlock.READ)], _landlock.abi())
        if (inside / "f").read_text() != "ok":
            return 1
        try:
            outside.read_text()
            return 2
        except PermissionError:
            pass
        with socket.socket() as s:
            try:
                s.connect(("127.0.0.1", tcp_listener))
                return 3
            except PermissionError:
                return 0

    assert _in_child(child) == 0


@pytest.mark.skipif(_landlock.abi() < 1, reason="needs Landlock")
@pytest.mark.parametrize("openat2", [True, False], ids=["openat2", "without-openat2"])
def test_a_granted_directory_swapped_for_a_link_after_its_check_is_not_in_the_view(tmp_path, monkeypatch, openat2):
    """The server resolves a child's granted directory when it launches it and checks it against
    its parent's (sandbox.view, view_beyond); the worker opens it for its Landlock rule later. A
    parent that writes there could swap it for a link in between, and the worker took the link's
    target (anywhere: /etc) into its view, to read and write. It now fails its start instead."""
    if not openat2:
        monkeypatch.setattr(beneath, "HAVE_OPENAT2", False)      # a kernel without it
    parent, elsewhere = tmp_path / "parent", tmp_path / "elsewhere"
    (parent / "real").mkdir(parents=True)
    elsewhere.mkdir()
    (elsewhere / "shadow").write_text("secret")
    os.symlink("real", parent / "kid")
    kid = manifests.parse('name = "k"\nversion = "1"\ncomponent = "k.wat"\n[[handler]]\ntype = "filesystem"\n'
                          'path = "kid"\n')
    mine = manifests.parse('name = "p"\nversion = "1"\ncomponent = "p.wat"\n[[handler]]\n'
                           'type = "filesystem"\npath = "."\n')
    view = sandbox.view(kid, str(parent))
    assert view["write"] == [str((parent / "real").resolve())]         # resolved once, at the launch
    assert sandbox.view_beyond(view, sandbox.view(mine, str(parent))) is None
    assert "outside its parent's directories" in sandbox.view_beyond(view, sandbox.view(mine, str(elsewhere)))
    (parent / "real").rename(parent / "was")
    os.symlink(elsewhere, parent / "real")                              # swapped after the check

    def child() -> int:
        _linux.no_new_privileges()
        try:
            _landlock.restrict([(p, _landlock.READ | _landlock.WRITE) for p in view["write"]], _landlock.abi(),
                               exact=view["write"])
        except OSError as e:
            return 0 if "a symlink now" in str(e) else 1
        try:
            (elsewhere / "shadow").read_text()
            return 2                                                    # the link's target was granted
        except PermissionError:
            return 3

    assert _in_child(child) == 0


def test_a_new_dir_is_made_where_it_was_checked_not_where_a_link_swapped_in_leads(tmp_path):
    """A ``new_dir`` grant's directory is made by the worker before its Landlock view is up: made
    through a link swapped into its (resolved) path, it appeared wherever the link led."""
    parent, elsewhere = tmp_path / "parent", tmp_path / "elsewhere"
    (parent / "real").mkdir(parents=True)
    elsewhere.mkdir()
    beneath.make_dirs_exact(str(parent / "real" / "a" / "b"), 0o700)     # as os.makedirs, where nothing changed
    beneath.make_dirs_exact(str(parent / "real" / "a" / "b"), 0o700)
    assert (parent / "real" / "a" / "b").is_dir()
    wanted = str(parent / "real" / "new")                           # resolved at the launch
    (parent / "real").rename(parent / "was")
    os.symlink(elsewhere, parent / "real")
    with pytest.raises(OSError):
        beneath.make_dirs_exact(wanted, 0o700)
    assert not (elsewhere / "new").exists()


def test_what_a_granted_program_needs_to_execute(tmp_path):
    """The program, its ELF loader, a script's interpreter (through env too); nothing else."""
    ls = os.path.realpath(shutil.which("ls", path=SAFE_PATH))
    loader = executables.needed(ls, SAFE_PATH)
    assert loader[0] == ls and len(loader) == 2 and "ld-linux" in loader[1], loader
    script = tmp_path / "tool"
    script.write_text("#!/usr/bin/env python3\nprint(1)\n")
    python = os.path.realpath(shutil.which("python3", path=SAFE_PATH))
    needed = executables.needed(str(script), SAFE_PATH)
    assert needed[0] == str(script) and os.path.realpath("/usr/bin/env") in needed and python in needed
    assert set(needed) <= {str(script), os.path.realpath("/usr/bin/env"), python, loader[1]}, needed
    for line in ("#!/usr/bin/env -S python3 -u", "#!/usr/bin/env A=1 python3"):       # env's options, assignments
        script.write_text(line + "\n")
        assert python in executables.needed(str(script), SAFE_PATH), line
    git = shutil.which("git", path=SAFE_PATH)
    assert git is not None and "/usr/lib/git-core" in executables.needed(git, SAFE_PATH)     # its own parts
    (tmp_path / "loop").write_text(f"#!{tmp_path / 'loop'}\n")
    assert executables.needed(str(tmp_path / "loop"), SAFE_PATH) == [str(tmp_path / "loop")]
