"""The timing, random, environment and filesystem handlers in a real server (tests/actors/handlers.wat).

Each function round-trips; each limit and each escape is refused with Err and recorded as
``<handler>/permission-denied``; and every chain replays from the record alone (with the
granted directory gone and none of the variables set).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from theater import _landlock
from theater.errors import TheaterError
from theater.events import decode_data

from .conftest import ACTORS, ROOT, Server, request_in_thread, run_cli, wait_for

HANDLERS = ACTORS / "handlers.wat"


@pytest.fixture
def env_server(home, monkeypatch):
    """A server whose own environment holds variables an actor may or may not be granted."""
    for name, value in {"GREETING": "hej", "THEATER_T_ONE": "1", "THEATER_T_HIDDEN": "no",
                        "SECRET_TOKEN": "s3cr3t"}.items():
        monkeypatch.setenv(name, value)
    s = Server(home).start()
    try:
        yield s
    finally:
        s.stop()


def manifest(tmp_path: Path, timing: str = "", random: str = "", environment: str = "",
             filesystem: str = 'path = "data"\nnew_dir = true', limits: str = "") -> Path:
    path = tmp_path / "handlers.toml"
    path.write_text(f'name = "handlers"\nversion = "0.1.0"\ncomponent = "{HANDLERS}"\n'
                    '[[handler]]\ntype = "runtime"\n[[handler]]\ntype = "message-server"\n'
                    f'[[handler]]\ntype = "timing"\n{timing}\n[[handler]]\ntype = "random"\n{random}\n'
                    f'[[handler]]\ntype = "environment"\n{environment}\n'
                    f'[[handler]]\ntype = "filesystem"\n{filesystem}\n[limits]\n{limits}\n')
    return path


class Actor:
    def __init__(self, server: Server, path: Path) -> None:
        self.server = server
        self.client = server.client()
        self.id = self.client.start(path)["id"]

    def __call__(self, op: str, *args: bytes | str | int) -> bytes:
        """A request: integers as u64 and bytes as they are, then the strings separated by NUL."""
        raw = b"".join(struct.pack("<Q", a) if isinstance(a, int) else a for a in args if not isinstance(a, str))
        text = b"\0".join(a.encode() for a in args if isinstance(a, str))
        return self.client.request(self.id, op.encode() + raw + text)

    def events(self, kind: str) -> list[dict]:
        return [decode_data(e.data) for e in self.client.events(self.id) if e.type == kind]

    def denied(self, handler: str) -> list[dict]:
        return self.events(f"{handler}/permission-denied")

    def replays(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("GREETING", "THEATER_T_ONE", "SECRET_TOKEN")}
        r = run_cli(self.server.home, "replay", self.id, "--json", env=env)
        assert r.code == 0, r.err + r.text
        assert b'"ok": true' in r.out, r.out


def u64(reply: bytes) -> int:
    assert reply.startswith(b"ok:"), reply
    return struct.unpack("<Q", reply[3:])[0]


# ---- timing -------------------------------------------------------------------------------------

def test_timing_tells_the_time_waits_within_its_bounds_and_replays(server, tmp_path):
    a = Actor(server, manifest(tmp_path, timing='max_sleep_duration = "300ms"\nmin_sleep_duration = 10'))
    before = time.time_ns() // 1_000_000
    now = struct.unpack("<Q", a("N"))[0]
    assert before <= now <= time.time_ns() // 1_000_000
    assert a("S", 20) == b"ok"
    assert a("D", now - 1000) == b"ok"                      # passed already: no wait
    assert a("D", time.time_ns() // 1_000_000 + 50) == b"ok"
    assert a("S", 301).startswith(b"err:a wait of 301 ms is outside the grant")
    assert a("S", 5).startswith(b"err:a wait of 5 ms is outside the grant")
    assert a("D", time.time_ns() // 1_000_000 + 3_600_000).startswith(b"err:a wait of")
    assert [(d["function"], d.get("duration")) for d in a.denied("timing")] == \
        [("sleep", 301), ("sleep", 5), ("deadline", None)]
    sleeps = a.events("theater:simple/timing/sleep")
    assert sleeps[0] == {"input": [20], "output": {"ok": None}}
    a.replays()


def test_a_sleep_is_bounded_by_the_call_time_limit(server, tmp_path):
    a = Actor(server, manifest(tmp_path, limits='call_timeout = "2s"'))
    assert a("S", 5000).startswith(b"err:a wait of 5000 ms would outlast the call's time limit")
    assert a("S", 10) == b"ok"                               # the actor is fine


def test_a_sleeping_actor_still_answers_its_server_and_can_be_stopped(server, tmp_path):
    a = Actor(server, manifest(tmp_path))
    replies: list[bytes | Exception] = []

    def sleep() -> None:
        try:
            replies.append(a.server.client().request(a.id, b"S" + struct.pack("<Q", 25_000)))
        except TheaterError as e:
            replies.append(e)
    t = threading.Thread(target=sleep)
    t.start()
    try:
        wait_for(lambda: sum(b["event"] == "call" for b in a.events("wasm")) == 2, what="the sleep to begin")
        assert a.client.state(a.id) is None            # asked of the worker itself while it sleeps
        assert t.is_alive() and not replies            # ... and it still sleeps
    finally:
        a.client.stop(a.id)                            # ends the sleep (the server's stop grace, then SIGTERM)
        t.join(60)
    assert not t.is_alive() and len(replies) == 1, replies
    assert isinstance(replies[0], TheaterError) or replies[0].startswith(b"err:"), replies


# ---- random -------------------------------------------------------------------------------------

def test_random_draws_bytes_ranges_floats_and_uuids_within_the_grant(server, tmp_path):
    a = Actor(server, manifest(tmp_path, random="max_bytes = 64"))
    b = a("B", struct.pack("<I", 64))
    assert b.startswith(b"ok:") and len(b) == 3 + 64
    assert a("B", struct.pack("<I", 65)) == b"err:65 bytes is over the grant's max_bytes (64)"
    assert a.denied("random") == [{"function": "random-bytes", "length": 65,
                                   "reason": "65 bytes is over the grant's max_bytes (64)"}]
    assert {u64(a("R", 5, 7)) for _ in range(20)} <= {5, 6, 7}
    assert a("R", 7, 5).startswith(b"err:min (7) is above max (5)")
    f = struct.unpack("<d", a("F")[3:])[0]
    assert 0 <= f < 1
    u = a("U")
    assert u.startswith(b"ok:") and uuid.UUID(u[3:].decode()).version == 4
    recorded = a.events("theater:simple/random/random-bytes")[0]
    assert recorded == {"input": [64], "output": {"ok": b[3:]}}
    a.replays()


def test_a_seeded_grant_draws_the_same_values_in_every_actor(server, tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first, second = (Actor(server, manifest(tmp_path / d, random="seed = 42")) for d in ("one", "two"))
    draws = [(x("B", struct.pack("<I", 16)), x("U"), x("F")) for x in (first, second)]
    assert draws[0] == draws[1]
    first.replays()


# ---- environment --------------------------------------------------------------------------------

GRANT = 'allowed_vars = ["GREETING", "NOT_SET"]\nallowed_prefixes = ["THEATER_T_"]\ndenied_vars = ["THEATER_T_HIDDEN"]'


def test_environment_shows_the_granted_variables_only(env_server, tmp_path):
    a = Actor(env_server, manifest(tmp_path, environment=GRANT))
    assert a("g", "GREETING") == b"some:hej"
    assert a("g", "THEATER_T_ONE") == b"some:1"
    assert a("g", "NOT_SET") == b"none"                  # granted, but the server has none
    assert a("x", "GREETING") == b"1"
    for name in ("SECRET_TOKEN", "THEATER_T_HIDDEN", "PATH"):
        assert a("g", name) == b"none"                   # looks missing ...
        assert a("x", name) == b"0"
    assert a("L") == b""                                 # listing needs allow_list_all
    denied = [(d["function"], d.get("name")) for d in a.denied("environment")]
    assert denied == [("get-var", "SECRET_TOKEN"), ("exists", "SECRET_TOKEN"), ("get-var", "THEATER_T_HIDDEN"),
                      ("exists", "THEATER_T_HIDDEN"), ("get-var", "PATH"), ("exists", "PATH"), ("list-vars", None)]
    # ... and never reaches the worker or the chain
    pid = a.client.inspect(a.id)["pid"]
    assert b"s3cr3t" not in Path(f"/proc/{pid}/environ").read_bytes()
    assert not any(b"s3cr3t" in e.data for e in a.client.events(a.id))
    a.replays()


def test_environment_lists_the_granted_variables_when_the_grant_allows_it(env_server, tmp_path):
    a = Actor(env_server, manifest(tmp_path, environment=GRANT + "\nallow_list_all = true"))
    assert a("L") == b"GREETING=hej\nTHEATER_T_ONE=1\n"
    assert a.denied("environment") == []
    a.replays()


# ---- filesystem ---------------------------------------------------------------------------------

@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """tmp_path/data (the root a grant names, with sub/) and tmp_path/outside with a secret, linked
    from inside (relative and absolute links)."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("outside")
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "link").symlink_to("../outside")
    (tmp_path / "data" / "abs").symlink_to(tmp_path / "outside" / "secret")
    (tmp_path / "data" / "big").write_bytes(b"x" * 2000)
    return tmp_path


def test_filesystem_functions_round_trip_beneath_the_root(server, tree):
    a = Actor(server, manifest(tree, filesystem='path = "data"'))
    assert a("w", "notes.txt", "hello") == b"ok"
    assert (tree / "data" / "notes.txt").read_text() == "hello"
    assert a("r", "notes.txt") == b"ok:hello"
    assert a("c", "sub/deeper") == b"ok"
    assert (tree / "data" / "sub" / "deeper").is_dir()
    assert a("w", "sub/deeper/f", "x") == b"ok"
    assert a("l", "") == b"ok:abs\nbig\nlink\nnotes.txt\nsub\n"
    assert a("l", "sub") == b"ok:deeper\n"
    assert a("p", "notes.txt") == b"ok:1"
    assert a("p", "nothing") == b"ok:0"
    assert a("d", "notes.txt") == b"ok"
    assert a("r", "notes.txt").startswith(b"err:read-file 'notes.txt'")
    assert a("e", "sub") == b"ok"
    assert not (tree / "data" / "sub").exists()
    assert a("e", "").startswith(b"err:")                 # not the root itself
    assert a.denied("filesystem") == []
    reads = a.events("theater:simple/filesystem/read-file")
    assert reads[0] == {"input": ["notes.txt"], "output": {"ok": b"hello"}}
    shutil.rmtree(tree / "data")                          # a replay needs no files
    a.replays()


ESCAPES = [("r", ["../outside/secret"]), ("r", ["/etc/passwd"]), ("r", ["link/secret"]), ("r", ["abs"]),
           ("r", ["sub/../../outside/secret"]), ("w", ["link/planted", "x"]), ("w", ["abs", "overwritten"]),
           ("l", ["link"]), ("d", ["link/secret"]), ("c", ["link/newdir"]), ("e", ["../outside"]),
           ("p", ["link/secret"]), ("p", ["/"])]


def test_filesystem_refuses_and_records_every_way_out(server, tree):
    a = Actor(server, manifest(tree, filesystem='path = "data"'))
    for op, args in ESCAPES:
        reply = a(op, *args)
        assert reply.startswith(b"err:") and (b"outside the granted directory" in reply or b"is absolute" in reply), \
            (op, args, reply)
    assert [d["path"] for d in a.denied("filesystem")] == [args[0] for _, args in ESCAPES]
    assert (tree / "outside" / "secret").read_text() == "outside"
    assert sorted(p.name for p in (tree / "outside").iterdir()) == ["secret"]
    a.replays()


def test_filesystem_refuses_files_over_its_size_limit(server, tree):
    a = Actor(server, manifest(tree, filesystem='path = "data"\nmax_file_size = "1KiB"'))
    assert a("r", "big") == b"err:'big' is 2000 bytes, over the grant's max_file_size (1024)"
    assert a("w", "new", "y" * 1025) == b"err:1025 bytes is over the grant's max_file_size (1024)"
    assert not (tree / "data" / "new").exists()
    assert [d["function"] for d in a.denied("filesystem")] == ["read-file", "write-file"]
    a.replays()


def _command(reply: bytes) -> tuple[int, str, str]:
    assert reply.startswith(b"ok:success:"), reply
    code = struct.unpack("<i", reply[11:15])[0]
    out, _, err = reply[15:].partition(b"\0")
    return code, out.decode(), err.decode()


def test_execute_command_runs_only_listed_programs_without_a_shell_inside_the_root(server, tree):
    a = Actor(server, manifest(tree, filesystem='path = "data"\nallowed_commands = ["echo", "pwd", "/usr/bin/env"]'))
    assert _command(a("X", "sub", "pwd")) == (0, f"{(tree / 'data' / 'sub').resolve()}\n", "")
    assert _command(a("X", "", "echo", "a b", "$HOME", ";", "ls")) == (0, "a b $HOME ; ls\n", "")
    assert _command(a("X", "", "/usr/bin/env")) == (0, "PATH=/usr/local/bin:/usr/bin:/bin\nGIT_CONFIG_NOSYSTEM=1\n", "")
    assert a("X", "", "ls") == b"err:'ls' is not in the grant's allowed_commands"
    assert a("X", "", "/bin/echo", "hi") == b"err:'/bin/echo' is not in the grant's allowed_commands"
    assert a("X", "../outside", "pwd").startswith(b"err:'../outside' leads outside")
    assert a("Y", "", "nix build") == b"err:no grant allows nix commands"
    denied = [(d["function"], d.get("command")) for d in a.denied("filesystem")]
    assert denied == [("execute-command", "ls"), ("execute-command", "/bin/echo"), ("execute-command", None),
                      ("execute-nix-command", "nix build")]
    shutil.rmtree(tree / "data")
    a.replays()


def _libc() -> str:
    """The real path of this machine's libc, an ELF file under /usr/lib that runs as a program."""
    maps = Path("/proc/self/maps").read_text().split()
    return next(os.path.realpath(w) for w in maps if os.path.basename(w).startswith("libc.so"))


@pytest.mark.skipif(not _landlock.abi(), reason="no Landlock on this kernel: the workers' filesystem view is off")
def test_a_granted_program_cannot_start_other_programs_from_the_library_folders(server, tree):
    """Red-team finding: granting any program made all of /usr/lib and /lib executable, so
    ``find -exec`` ran programs the grant did not list by their paths. Only the granted programs
    and their loader are executable now (the loader, run itself, still runs what the worker may
    read: docs/isolation.md says so)."""
    a = Actor(server, manifest(tree, filesystem='path = "data"\nnew_dir = true\nallowed_commands = ["find"]'))
    code, out, err = _command(a("X", "", "find", ".", "-maxdepth", "0", "-exec", _libc(), ";"))
    assert "GNU C Library" not in out and "Permission denied" in err, (code, out, err)
    assert _command(a("X", "", "find", ".", "-maxdepth", "0")) == (0, ".\n", "")     # find itself still runs


def test_git_runs_under_the_workers_view(server, tree):
    """git stops at a system config it cannot read (/etc/gitconfig is outside the view): the
    README's own example grant did not work before commands were told to skip it. And it runs
    its own parts from its exec path (worker.executables.HELPERS)."""
    a = Actor(server, manifest(tree, filesystem='path = "data"\nnew_dir = true\nallowed_commands = ["git"]'))
    assert _command(a("X", "", "git", "init", "-q", "."))[0] == 0
    assert a("w", "f.txt\0hello") == b"ok"
    assert _command(a("X", "", "git", "add", "f.txt"))[0] == 0
    assert _command(a("X", "", "git", "status", "--short", "f.txt")) == (0, "A  f.txt\n", "")
    # git runs its own parts as /usr/lib/git-core/git (another file than /usr/bin/git)
    assert _command(a("X", "", "git", "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-q", "-m", "x")) == \
        (0, "", "")
    assert _command(a("X", "", "git", "gc", "-q")) == (0, "", "")


def test_execute_command_is_killed_at_its_timeout_with_what_it_started(server, tree):
    a = Actor(server, manifest(tree, filesystem='path = "data"\nallowed_commands = ["sleep"]\n'
                                                 'command_timeout = "1s"'))
    pid = a.client.inspect(a.id)["pid"]
    assert a("X", "", "sleep", "120") == b"ok:error:sleep did not finish within 1s and was killed"
    assert not [p for p in psutil.Process(pid).children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]
    assert a("o") == b"ok"                                   # the actor is fine


def test_a_job_a_program_puts_in_a_group_of_its_own_does_not_outlive_the_call(server, tree):
    """Red-team finding: only the program's own process group was killed, and a granted program
    may start a session or group of its own: a shell's background job (``set -m``) ran on with
    init as its parent, after the call, the actor's stop and the server's. The worker is the
    subreaper of what it starts now, and kills what is left of it at the end of the call."""
    a = Actor(server, manifest(tree, filesystem='path = "data"\nnew_dir = true\nallowed_commands = ["bash"]'))
    job_script = "set -m; (while :; do sleep 0.05; done) >/dev/null 2>&1 & echo $!"     # holds no pipe of the call's
    code, out, _ = _command(a("X", "", "bash", "-c", job_script))
    job = int(out)
    try:
        assert code == 0
        wait_for(lambda: not psutil.pid_exists(job) or psutil.Process(job).status() == psutil.STATUS_ZOMBIE,
                 timeout=30, what="the background job to be gone")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(job, signal.SIGKILL)            # red, it would outlive the test too
    assert a("o") == b"ok"


def test_a_deep_chain_of_such_jobs_is_killed_to_its_end(server, tree):
    """Each kill hands the worker the killed one's children: a chain of jobs each in a group of
    its own, 150 deep, outlived a bound of 100 rounds; the end of a call now kills to the end."""
    (tree / "data").mkdir(exist_ok=True)
    (tree / "data" / "chain.sh").write_text('n=$1\nif [ "$n" -gt 0 ]; then set -m; bash chain.sh $((n-1)) & fi\n'
                                            'exec sleep 60\n')
    a = Actor(server, manifest(tree, filesystem='path = "data"\nallowed_commands = ["bash", "sleep"]\n'
                                                 'command_timeout = "3s"'))
    data = str((tree / "data").resolve())

    def left() -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if p.info["cmdline"] == ["sleep", "60"] and p.cwd() == data:
                    found.append(p)
        return found
    try:
        assert a("X", "", "bash", "chain.sh", "150") == b"ok:error:bash did not finish within 3s and was killed"
        wait_for(lambda: not left(), timeout=20, what="every job of the chain to be gone")
    finally:
        for p in left():
            p.kill()                            # red, they would outlive the test


def test_what_a_worker_killed_left_running_does_not_outlive_it(server, tree):
    """A worker killed (kill -9, the OOM killer, its time limit) while a granted program ran left
    the program and its jobs to init: nothing killed them. The fork server is their subreaper
    now: it kills them, a chain of jobs each in a session of its own to its end, and reaps them,
    and reports only the worker's exit to the server."""
    (tree / "data").mkdir(exist_ok=True)
    (tree / "data" / "jobs.sh").write_text(
        "echo $$ >> pids\n"
        "setsid bash -c 'echo $$ >> pids; setsid sleep 300 & echo $! >> pids; wait' &\n"
        "wait\n")
    a = Actor(server, manifest(tree, filesystem='path = "data"\nallowed_commands = ["bash", "setsid", "sleep"]\n'
                                                 'command_timeout = "300s"'))
    worker = a.client.inspect(a.id)["pid"]
    pids = tree / "data" / "pids"
    call, _ = request_in_thread(server, a.id, b"X\0bash\0jobs.sh")
    jobs: list[psutil.Process] = []
    try:
        # the program, its job in a session of its own, and that job's own
        wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 3, timeout=30,
                 what="the program and its jobs to start")
        jobs = [psutil.Process(int(p)) for p in pids.read_text().split()]
        # each in a session of its own (the last echoes its pid as it forks, before its setsid())
        wait_for(lambda: all(os.getsid(p.pid) == p.pid for p in jobs), timeout=30, what="each job's own session")
        os.kill(worker, signal.SIGKILL)
        # gone means reaped: a zombie is still running for psutil
        wait_for(lambda: not any(p.is_running() for p in jobs), timeout=30, what="the program and its jobs to be gone")
    finally:
        for p in jobs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()                        # red, they would outlive the test
        call.join(60)
    # the server saw the worker's exit, and only that one: the actor (permanent) is restarted
    info = wait_for(lambda: (i := a.client.inspect(a.id))["status"] == "running" and i["restarts"] == 1 and i,
                    timeout=30, what="the actor to be restarted")
    assert info["pid"] != worker and "SIGKILL" in info["last_error"], info
    assert a("o") == b"ok"
    reported = {int(pid) for pid in re.findall(r"zygote: worker (\d+) exited", server.log_tail(100_000))}
    assert worker in reported and not reported & {p.pid for p in jobs}, reported


def _alive(p: psutil.Process) -> bool:
    """Running, and no zombie (one whose parent is init, in a container, may stay one): gone between
    two looks counts as gone."""
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("flags", [(), ("--no-cgroups",)], ids=["cgroups", "rlimits"])
def test_what_a_granted_program_started_does_not_outlive_a_server_killed_outright(home, tree, flags):
    """The server SIGKILLed (a crash, kill -9, the OOM killer) while a granted program ran, its
    jobs each in a session of its own: the fork server dies with the server, the worker is told
    (its parent-death signal), gives up the call and kills what the program started, to its end.
    With cgroups and without them (rlimit mode, where no cgroup is there to kill them)."""
    (tree / "data").mkdir(exist_ok=True)
    (tree / "data" / "jobs.sh").write_text(
        "echo $$ >> pids\n"
        "setsid bash -c 'echo $$ >> pids; setsid sleep 300 & echo $! >> pids; wait' &\n"
        "wait\n")
    server = Server(home, *flags).start()
    jobs: list[psutil.Process] = []
    asking = None
    try:
        a = Actor(server, manifest(tree, filesystem='path = "data"\nallowed_commands = ["bash", "setsid", "sleep"]\n'
                                                     'command_timeout = "300s"'))
        asking = subprocess.Popen([sys.executable, "-m", "theater", "--home", str(home.root), "message", a.id,
                                   "--request", "--file", "-"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, cwd=ROOT)
        assert asking.stdin is not None
        asking.stdin.write(b"X\0bash\0jobs.sh")
        asking.stdin.close()
        pids = tree / "data" / "pids"
        wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 3, timeout=30,
                 what="the program and its jobs to start")
        jobs = [psutil.Process(int(p)) for p in pids.read_text().split()]
        wait_for(lambda: all(os.getsid(p.pid) == p.pid for p in jobs), timeout=30, what="each job's own session")
        server.remember()
        server.proc.kill()
        server.proc.wait(30)
        wait_for(lambda: not any(_alive(p) for p in jobs), timeout=30, what="the program and its jobs to be gone")
    finally:
        for p in jobs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()                        # red, they would outlive the test
        if asking is not None:
            asking.kill()
            asking.wait()
        server.stop()


def test_a_grant_that_cannot_be_honoured_is_refused_at_start_in_one_line(server, tmp_path):
    r = server.cli("start", str(manifest(tmp_path, filesystem='path = "missing"')))
    assert r.code != 0
    assert r.err.count("\n") == 1 and "Traceback" not in r.err, r.err
    assert "handlers.toml: [[handler]] (filesystem) path = 'missing': no such directory" in r.err, r.err
    assert "new_dir = true" in r.err
    with contextlib.suppress(FileNotFoundError):
        assert not (tmp_path / "missing").exists()
    created = manifest(tmp_path, filesystem='path = "made"\nnew_dir = true')
    assert server.cli("start", str(created)).code == 0
    assert (tmp_path / "made").is_dir()


@pytest.mark.parametrize("handler, line, says", [
    ("timing", 'max_sleep_duration = "forever"', "[[handler]] #3 (timing) max_sleep_duration = 'forever': expected"),
    ("random", "seed = -1", "[[handler]] #4 (random) seed = -1: expected an integer from 0 to 2^64 - 1"),
    ("environment", 'allowed_vars = ["A=B"]', "(environment) allowed_vars = ['A=B']: expected a list of variable"),
    ("environment", 'allowed_prefixes = [""]', "(environment) allowed_prefixes = ['']: expected a list of non-empty"),
    ("filesystem", 'path = "d"\nallowed_commands = ["bin/ls"]', "(filesystem) allowed_commands = ['bin/ls']: expected"),
    ("filesystem", "new_dir = true", "[[handler]] #6 (filesystem) path: missing"),
    ("filesystem", 'path = "d"\nwhatever = 1', "(filesystem) whatever: unknown key"),
])
def test_bad_grant_keys_are_refused_in_one_line(server, tmp_path, handler, line, says):
    kwargs = {handler: line}
    r = server.cli("start", str(manifest(tmp_path, **kwargs)))
    assert r.code == 2 and r.err.count("\n") == 1, r.err
    assert says in r.err, r.err
    assert re.match(r"^theater: .*handlers\.toml: ", r.err) or "handlers.toml:" in r.err
