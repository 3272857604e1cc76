"""Big components under the default limits (issue 11): compiled outside every worker, and a
death at the linear-memory limit named as such.

The first start of a component waits for ``python -m worker compile``, a process of its own
under the server's ``[compile]`` ceiling (a cgroup here, or RLIMIT_DATA with --no-cgroups);
workers only load what it wrote. The real component is the componentize-py counter
(tests/toolchains.py: 18 MB, CPython inside; Cranelift needs ~400 MiB for it, more than an
actor's default 256 MiB of process memory). A trap with a linear memory full is reported as
reason ``memory`` (see worker/memories.py for how that is known).
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import psutil
import pytest

from theater import protocol
from theater.errors import TheaterError
from theater.manifest import Limits
from theater.paths import Home
from worker import component

from .conftest import ACTORS, ROOT, Server, cmdline, wait_for
from .test_containment import (
    bodies,
    events,
    inspect,
    probe,
    request,
    start,
    wait_exit,
    wait_status,
    wasm_errors,
)

MiB = 1 << 20


@pytest.fixture
def flag_server(home: Home) -> Iterator[Callable[..., Server]]:
    """Starts a server on the test's home with extra flags (after the test wrote its server.toml)."""
    started: list[Server] = []

    def start_one(*flags: str) -> Server:
        started.append(Server(home, *flags))
        return started[-1].start()
    yield start_one
    for s in started:
        s.stop()


def py_manifest(tmp_path: Path, component_file: Path, name: str = "counter-py", limits: str = "") -> Path:
    """A manifest for a componentize-py actor (runtime + message-server), default limits unless given."""
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\nversion = "0.1.0"\ncomponent = "{component_file}"\n\n'
                    '[[handler]]\ntype = "runtime"\n\n[[handler]]\ntype = "message-server"\n\n'
                    '[restart]\ntype = "temporary"\n' + (f"\n[limits]\n{limits}\n" if limits else ""))
    return path


def cli_start_on_a_terminal(home: Home, manifest: Path) -> tuple[int, bytes, str]:
    """`theater start MANIFEST --json` with stderr on a terminal (stdout a pipe): code, stdout, stderr."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "theater", "--home", str(home.root), "start", str(manifest),
                             "--json", "--timeout", "600"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=slave, cwd=ROOT)
    os.close(slave)
    seen = bytearray()

    def drain() -> None:             # read as it comes: a full terminal buffer would block the CLI
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:          # EIO: the CLI closed its end
                return
            if not chunk:
                return
            seen.extend(chunk)
    reader = threading.Thread(target=drain)
    reader.start()
    try:
        out, _ = proc.communicate(timeout=660)
    finally:
        proc.kill()
        reader.join(10)
        os.close(master)
    return proc.returncode, out, seen.decode(errors="replace")


def uss(pid: int) -> int:
    return psutil.Process(pid).memory_full_info().uss


def compilers(server: Server) -> list[psutil.Process]:
    """The server's compile processes (python -m worker compile ...) still running."""
    return [p for p in server.descendants() if cmdline(p)[1:4] == ["-m", "worker", "compile"]]


def compile_lines(server: Server) -> list[str]:
    log = server.home.logs / "server.log"
    return [line for line in log.read_text().splitlines() if "compiling component" in line]


# --------------------------------------------------------------------------- compiling outside the worker


@pytest.mark.timeout(900)       # builds the guest the first time; the server compiles 18 MB, slowly here
def test_a_python_actor_starts_under_the_default_limits_and_a_cached_start_costs_as_much(
        server, counter_py_stub, tmp_path):
    manifest = py_manifest(tmp_path, counter_py_stub)
    code, out, err = cli_start_on_a_terminal(server.home, manifest)
    assert code == 0, err
    first = orjson.loads(out)["id"]
    # while it compiled (seconds), the terminal said so, on one line rewritten in place
    assert f"compiling {counter_py_stub.name} (18." in err, err
    assert inspect(server, first)["limits"]["process_memory"] == Limits().process_memory
    assert request(server, first, b"+1") == b"1"
    (started,) = bodies(events(server, first), "lifecycle/start")
    assert started["compiled"]["seconds"] > 0 and started["compiled"]["bytes"] == counter_py_stub.stat().st_size

    # the second start loads what the compile left in the cache: no compile, the same memory
    second = start(server, manifest)
    assert request(server, second, b"+1") == b"1"
    (again,) = bodies(events(server, second), "lifecycle/start")
    assert again["compiled"] is None
    assert len(compile_lines(server)) == 1
    # measured side by side: pages of the compiled file that one worker alone maps count as its
    # own, so a worker measured alone would carry the whole file
    first_uss, second_uss = (uss(inspect(server, a)["pid"]) for a in (first, second))
    assert first_uss <= 2 * second_uss, (first_uss, second_uss)

    # the fork server loads it for later spawns (worker.preload): the workers forked after that
    # inherit it mapped, and the descriptor wasmtime maps its memory image from
    (cwasm,) = (str(p) for p in server.home.cache.rglob("*.cwasm"))
    zygote = server.fork_server()
    wait_for(lambda: cwasm in Path(f"/proc/{zygote.pid}/maps").read_text(), timeout=60,
             what="the fork server to load the component")
    for _ in range(3):      # the spares forked before it was loaded (two at most) load it themselves
        assert request(server, start(server, manifest), b"+1") == b"1"


def test_concurrent_starts_of_one_component_share_one_compile(server, tmp_path):
    own = tmp_path / "probe.wat"        # a component this home has never seen
    own.write_text((ACTORS / "probe.wat").read_text() + "\n;; concurrent starts\n")
    manifests = [probe(tmp_path, f"twin{i}", component=own) for i in range(2)]
    with server.client(timeout=120) as c:
        for i, m in enumerate(manifests):      # both requests are sent before the server answers either
            c.sock.send_multipart(protocol.encode(
                {"k": "start", "id": f"s{i}", "manifest": m.read_text(), "source": str(m), "base": str(tmp_path),
                 "has_state": False}, own.read_bytes()))
        ids = {}
        while len(ids) < 2:
            assert c.sock.poll(120_000), "no answer to the starts"
            header, _ = protocol.decode(c.sock.recv_multipart())
            if header.get("re", "").startswith("s"):
                assert header["k"] == "ok", header
                ids[header["re"]] = header["id"]
    assert len(compile_lines(server)) == 1, compile_lines(server)
    waited = [bodies(events(server, a), "lifecycle/start")[0]["compiled"] for a in ids.values()]
    assert waited[0] and waited[0] == waited[1]          # both waited for the same compile
    assert all(request(server, a, b"eok") == b"ok" for a in ids.values())


def test_a_worker_never_compiles_and_says_so_when_asked_to(tmp_path):
    engine = component.make_engine(False)
    home = Home(tmp_path)
    with pytest.raises(TheaterError) as e:
        component.load_compiled(engine, home.compiled("ab" * 32, False), home.shape("ab" * 32))
    assert "internal error: no compiled form" in e.value.message
    assert "compiles every component before it starts a worker" in e.value.message


def one_line_refusal(server: Server, manifest: Path) -> str:
    r = server.cli("start", str(manifest), "--timeout", "600", timeout=660)
    assert r.code == 7 and r.out == b"", (r.code, r.out, r.err)       # refused
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    return lines[0]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("flags", [(), ("--no-cgroups",)], ids=["cgroup", "rlimit"])
def test_a_component_too_big_for_the_compile_ceiling_is_refused_saying_how_to_raise_it(
        flag_server, home, counter_py_stub, tmp_path, flags):
    home.ensure()
    (home.root / "server.toml").write_text('[compile]\nmemory = "160MiB"\n')
    server = flag_server(*flags)
    line = one_line_refusal(server, py_manifest(tmp_path, counter_py_stub))
    assert "too big to compile (18." in line and "compile memory ceiling (160MiB)" in line, line
    assert f"raise `memory` under [compile] in {home.root / 'server.toml'}" in line, line
    assert server.client().call("list")[0]["actors"] == []     # a new actor that never started is forgotten
    assert not list(home.cache.rglob("*.cwasm"))
    # the compile process is gone, and so is its cgroup
    assert not compilers(server)
    group_parent = Path("/sys/fs/cgroup/memory") / f"theater-{server.pid}"
    wait_for(lambda: not list(group_parent.glob("compile-*")), what="the compile's cgroup to be removed")


@pytest.mark.timeout(300)
def test_a_compile_over_its_time_limit_is_stopped_and_refused(flag_server, home, counter_py_stub, tmp_path):
    home.ensure()
    (home.root / "server.toml").write_text('[compile]\ntimeout = "1s"\n')       # 18 MB takes far longer
    server = flag_server()
    line = one_line_refusal(server, py_manifest(tmp_path, counter_py_stub))
    assert "took longer than the compile timeout (1s); raise `timeout` under [compile]" in line, line
    wait_for(lambda: not compilers(server), what="the compile process to be gone")


def test_an_unknown_compile_key_in_server_toml_stops_the_server_with_one_line(home):
    home.ensure()
    (home.root / "server.toml").write_text('[compile]\nmemroy = "2GiB"\n')
    p = subprocess.run([sys.executable, "-m", "supervisor", "--home", str(home.root)], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=30, cwd=ROOT)
    err = p.stderr.decode().strip()
    assert p.returncode != 0 and len(err.splitlines()) == 1, err
    assert "[compile] memroy: unknown key (allowed: memory, timeout)" in err, err


# --------------------------------------------------------------------------- deaths named by their limit


def test_a_trap_with_linear_memory_full_is_a_memory_limit_stop_and_other_traps_are_not(server, tmp_path):
    hog = start(server, probe(tmp_path, "hog"))            # the default 64 MiB of linear memory
    plain = start(server, probe(tmp_path, "plain"))
    with pytest.raises(TheaterError) as e:
        request(server, hog, b"a16")                       # 1 MiB at a time until refused, then a trap
    assert "(memory)" in e.value.message, e.value.message
    with pytest.raises(TheaterError):
        request(server, plain, b"t")

    for actor, reason in ((hog, "memory"), (plain, "trap")):
        info = wait_status(server, actor, "failed")
        assert info["last_exit"]["reason"] == reason, info["last_exit"]
        evs = wait_exit(server, actor)
        (error,) = wasm_errors(evs)
        assert error["reason"] == reason
        assert bodies(evs, "lifecycle/exit")[-1]["reason"] == reason
    (error,) = wasm_errors(events(server, hog))
    assert f"of its {64 * MiB} bytes, the memory limit" in error["error"] and "unreachable" in error["error"]
    rows = {r["id"]: r for r in server.client().call("top")[0]["actors"]}
    assert (rows[hog]["last_exit"], rows[plain]["last_exit"]) == ("memory", "trap")
    top = server.cli("top")
    assert top.code == 0 and "LAST EXIT" in top.text and "memory" in top.text, top.text


@pytest.mark.timeout(900)       # builds the guest the first time; the server compiles 18 MB
def test_a_python_actor_that_allocates_without_end_is_a_memory_limit_stop(server, hog_py, tmp_path):
    hog = start(server, py_manifest(tmp_path, hog_py, "hog-py", 'memory = "32MiB"'))
    assert request(server, hog, b"count") == b"0"
    with pytest.raises(TheaterError) as e:
        request(server, hog, b"alloc", timeout=120)
    assert "(memory)" in e.value.message, e.value.message
    info = wait_status(server, hog, "failed")
    assert info["last_exit"]["reason"] == "memory", info["last_exit"]
    (error,) = wasm_errors(wait_exit(server, hog))
    assert error["reason"] == "memory" and f"of its {32 * MiB} bytes" in error["error"], error
