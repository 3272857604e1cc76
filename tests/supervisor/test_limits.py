"""supervisor.limits against the real kernel (cgroup v1 here, as root) and fake v1/v2 trees.

Children are real `python -c` processes that confine *themselves* as workers do (join the
group's cgroups, or lower their data rlimit) using a pickled Group, then misbehave. Every
process is killed by pid and every group removed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pickle
import resource
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor import cgroupfs
from supervisor.limits import (
    Cgroup1Controller,
    Cgroup2Controller,
    CgroupGroup,
    Group,
    RlimitController,
    RlimitGroup,
    detect,
)
from theater import _linux

MiB = 1 << 20
ROOT = Path(__file__).resolve().parents[2]
V1_MEMORY = Path("/sys/fs/cgroup/memory")

PRELUDE = """\
import base64, os, pickle, resource, sys
from theater import _linux
group = pickle.loads(base64.b64decode(sys.argv[1]))
if group.path is not None:      # as a spare does: make (here: find) the group and move in
    assert _linux.join_new_cgroups([str(d.parent) for d in group.dirs], group.path.name), "join failed"
elif group.memory:              # as a worker does without cgroups
    _linux.lower_limit(resource.RLIMIT_DATA, group.memory)
"""


def _v1_usable() -> str | None:
    """Why the real cgroup v1 tests can't run here, or None if they can."""
    if os.geteuid() != 0:
        return "needs root to create cgroups"
    if not (V1_MEMORY / "cgroup.procs").exists():
        return "no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory"
    return None


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()


@pytest.fixture
def v1() -> Iterator[Cgroup1Controller]:
    why = _v1_usable()
    if why:
        pytest.skip(why)
    ctrl = detect(base_name="theater-test")
    if not isinstance(ctrl, Cgroup1Controller):
        ctrl.close()
        pytest.skip(f"not a cgroup v1 host: {ctrl.describe()}")
    try:
        yield ctrl
    finally:
        ctrl.close()
        for parent in ctrl.parents.values():
            assert not parent.exists(), f"close() left {parent}"


@contextlib.contextmanager
def made(ctrl: Cgroup1Controller, memory: int = 0, cpu: float = 0.0, pids: int = 0) -> Iterator[CgroupGroup]:
    group = ctrl.create(f"t-{uuid.uuid4().hex[:8]}", memory, cpu, pids)
    assert isinstance(group, CgroupGroup)
    try:
        yield group
    finally:
        for d in group.dirs:  # anything still inside was started by this test
            for pid in (d / "cgroup.procs").read_text().split() if d.exists() else ():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        group.remove(timeout=2.0)
        for d in group.dirs:
            assert not d.exists(), f"remove() left {d}"


def run_child(procs: list[subprocess.Popen], group: Group, body: str, timeout: float = 15) -> subprocess.Popen:
    blob = base64.b64encode(pickle.dumps(group)).decode()
    p = subprocess.Popen(
        [sys.executable, "-c", PRELUDE + body, blob],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    procs.append(p)
    p.out, p.err = p.communicate(timeout=timeout)  # type: ignore[attr-defined]
    return p


# ---------------------------------------------------------------- real cgroup v1


def test_detect_picks_cgroup_v1_here(v1: Cgroup1Controller) -> None:
    assert v1.kind == "cgroup1"
    text = v1.describe()
    assert text.startswith("cgroup v1 (")
    assert "process memory" in text
    assert v1.parents["memory"] == V1_MEMORY / f"theater-test-{os.getpid()}"
    assert v1.parents["memory"].is_dir()


def test_what_a_dead_servers_actors_left_is_killed_by_the_next_one(procs: list[subprocess.Popen]) -> None:
    """A server killed outright leaves its groups, and in them what its workers started in a
    session of their own (the workers die with the server; such a job is no child of theirs).
    The next server kills those and removes the groups."""
    if why := _v1_usable():
        pytest.skip(why)
    dead = subprocess.Popen(["true"])
    dead.wait()                                         # a pid no server has any more
    group = V1_MEMORY / f"theater-sweep-{dead.pid}" / "w-1"
    group.mkdir(parents=True)
    job = subprocess.Popen(["sleep", "600"], start_new_session=True)
    procs.append(job)
    cgroupfs.write(group / "cgroup.procs", job.pid)
    ctrl = detect(base_name="theater-sweep")
    try:
        assert job.wait(timeout=30) == -signal.SIGKILL
        assert not group.parent.exists()
    finally:
        ctrl.close()
        if group.exists():
            cgroupfs.remove_tree(group.parent, kill=True)


def test_limits_are_written(v1: Cgroup1Controller) -> None:
    with made(v1, memory=64 * MiB, cpu=0.2, pids=5) as g:
        mem = g.dirs[0]
        assert int((mem / "memory.limit_in_bytes").read_text()) == 64 * MiB
        if (mem / "memory.memsw.limit_in_bytes").exists():
            assert int((mem / "memory.memsw.limit_in_bytes").read_text()) == 64 * MiB
        by_name = {d.parent.parent.name: d for d in g.dirs}
        if "cpu" in by_name:
            assert int((by_name["cpu"] / "cpu.cfs_quota_us").read_text()) == 20_000
            assert int((by_name["cpu"] / "cpu.cfs_period_us").read_text()) == 100_000
        if "pids" in by_name:
            assert (by_name["pids"] / "pids.max").read_text().strip() == "5"
    with made(v1) as g:  # 0 = unlimited
        by_name = {d.parent.parent.name: d for d in g.dirs}
        if "cpu" in by_name:
            assert int((by_name["cpu"] / "cpu.cfs_quota_us").read_text()) == -1
        if "pids" in by_name:
            assert (by_name["pids"] / "pids.max").read_text().strip() == "max"


def test_memory_limit_oom_kills_the_child(v1: Cgroup1Controller, procs: list[subprocess.Popen]) -> None:
    body = """
blocks, chunk = [], b"\\x01" * (1 << 20)
for _ in range(200):
    blocks.append(bytearray(chunk))  # a copy: every page is touched
print("survived 200 MiB", flush=True)
"""
    with made(v1, memory=64 * MiB) as g:
        p = run_child(procs, g, body)
        assert p.returncode == -signal.SIGKILL, (p.returncode, p.out, p.err)
        assert "survived" not in p.out
        assert g.oom_killed()
        peak = g.memory_peak()
        assert peak is not None and 32 * MiB < peak <= 64 * MiB


def test_cpu_quota_throttles(v1: Cgroup1Controller, procs: list[subprocess.Popen]) -> None:
    if "cpu" not in v1.parents:
        pytest.skip("no cgroup v1 cpu hierarchy")
    body = """
import time
t0, c0 = time.monotonic(), time.process_time()
while time.monotonic() - t0 < 1.0:
    pass
print(time.process_time() - c0)
"""
    with made(v1, cpu=0.2) as g:
        p = run_child(procs, g, body)
        assert p.returncode == 0, p.err
        used = float(p.out)
        assert 0.05 < used < 0.45, f"cpu time over 1 s wall at 20% quota: {used:.3f} s"


def test_pids_limit_stops_forks(v1: Cgroup1Controller, procs: list[subprocess.Popen]) -> None:
    if "pids" not in v1.parents:
        pytest.skip("no cgroup v1 pids hierarchy")
    body = """
r, w = os.pipe()
kids, fails = [], 0
for _ in range(20):
    try:
        pid = os.fork()
    except OSError:
        fails += 1
        continue
    if pid == 0:
        os.close(w)
        os.read(r, 1)  # EOF once the parent closes its end or dies
        os._exit(0)
    kids.append(pid)
os.close(w)
for k in kids:
    os.waitpid(k, 0)
print(len(kids), fails)
"""
    with made(v1, pids=5) as g:
        p = run_child(procs, g, body)
        assert p.returncode == 0, p.err
        ok, fails = map(int, p.out.split())
        assert fails > 0
        assert ok <= 4  # the child itself is the fifth


# ---------------------------------------------------------------- rlimits


def test_rlimit_group_applies_limits_and_wasmtime_still_works(procs: list[subprocess.Popen]) -> None:
    ctrl = RlimitController(reason="constructed by the test")
    assert ctrl.kind == "rlimit"
    group = ctrl.create("a1", 256 * MiB, 0.5, 5)
    assert isinstance(group, RlimitGroup) and group.path is None
    body = """
import json, resource
import wasmtime
from wasmtime import component
engine = wasmtime.Engine()
store = wasmtime.Store(engine)
comp = component.Component(engine, wasmtime.wat2wasm("(component)"))
component.Linker(engine).instantiate(store, comp)
try:
    big = bytearray(400 << 20)
    alloc = "ok"
except MemoryError:
    alloc = "MemoryError"
print(json.dumps({"data": resource.getrlimit(resource.RLIMIT_DATA), "alloc": alloc}))
"""
    p = run_child(procs, group, body, timeout=30)
    assert p.returncode == 0, p.err
    got = json.loads(p.out)
    assert got["data"] == [256 * MiB, 256 * MiB]
    assert got["alloc"] == "MemoryError"
    assert resource.getrlimit(resource.RLIMIT_DATA)[0] != 256 * MiB  # the parent is untouched


def test_harden(procs: list[subprocess.Popen]) -> None:
    body = """
import json, resource
from theater._linux import harden
harden(nofile=64)
um = os.umask(0)
print(json.dumps({"core": resource.getrlimit(resource.RLIMIT_CORE),
                  "nofile": resource.getrlimit(resource.RLIMIT_NOFILE), "umask": um}))
"""
    p = run_child(procs, RlimitGroup(0), body)
    assert p.returncode == 0, p.err
    got = json.loads(p.out)
    assert got == {"core": [0, 0], "nofile": [64, 64], "umask": 0o077}


def test_fallback_to_rlimits_without_cgroups(tmp_path: Path) -> None:
    ctrl = detect(root=tmp_path / "cg", proc=tmp_path / "proc")
    assert isinstance(ctrl, RlimitController) and ctrl.kind == "rlimit"
    text = ctrl.describe()
    assert "no writable cgroup" in text and "RLIMIT_DATA" in text
    assert "not a cgroup2 mount" in text and "no cgroup v1 memory hierarchy" in text
    ctrl.close()


# ---------------------------------------------------------------- fake trees


def fake_v2(tmp_path: Path, controllers: str = "cpuset cpu io memory pids") -> tuple[Path, Path]:
    root, proc = tmp_path / "cg", tmp_path / "proc"
    svc = root / "system.slice" / "theater.service"
    svc.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids\n")
    (svc / "cgroup.controllers").write_text(controllers + "\n")
    (svc / "cgroup.subtree_control").write_text("")
    (svc / "cgroup.procs").write_text(f"{os.getpid()}\n")
    (proc / "self").mkdir(parents=True)
    (proc / "mounts").write_text(f"tmpfs /run tmpfs rw 0 0\ncgroup2 {root} cgroup2 rw,nosuid 0 0\n")
    (proc / "self" / "cgroup").write_text("0::/system.slice/theater.service\n")
    return root, proc


def test_cgroup2_layout_and_limits_on_fake_tree(tmp_path: Path) -> None:
    root, proc = fake_v2(tmp_path)
    svc = root / "system.slice" / "theater.service"
    ctrl = detect(base_name="th", root=root, proc=proc)
    assert isinstance(ctrl, Cgroup2Controller) and ctrl.kind == "cgroup2"
    parent = svc / f"th-{os.getpid()}"
    assert ctrl.parent == parent
    assert ctrl.describe() == f"cgroup v2 ({parent}): process memory, cpu, pids"
    # the server left X for the X/server leaf before controllers were enabled in X
    assert (svc / "server" / "cgroup.procs").read_text() == str(os.getpid())
    assert (svc / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    assert (parent / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"

    g = ctrl.create("a1", 64 * MiB, 0.5, 10)
    assert isinstance(g, CgroupGroup) and g.path == parent / "a1"
    leaf = parent / "a1"
    assert (leaf / "memory.max").read_text() == str(64 * MiB)
    assert (leaf / "cpu.max").read_text() == "50000 100000"
    assert (leaf / "pids.max").read_text() == "10"
    assert (leaf / "memory.oom.group").read_text() == "1"
    assert not (leaf / "memory.swap.max").exists()  # only written where the kernel has it

    (parent / "a2").mkdir()
    (parent / "a2" / "memory.swap.max").write_text("max")
    g2 = ctrl.create("a2", 0, 0.0, 0)
    assert (parent / "a2" / "memory.max").read_text() == "max"
    assert (parent / "a2" / "memory.swap.max").read_text() == "0"
    assert (parent / "a2" / "cpu.max").read_text() == "max 100000"
    assert (parent / "a2" / "pids.max").read_text() == "max"
    assert ctrl.create("a3", MiB, 0.001, 1).path is not None
    assert (parent / "a3" / "cpu.max").read_text() == "1000 100000"  # kernel minimum quota

    (leaf / "cgroup.procs").touch()                             # the kernel's file, on a fake tree
    assert _linux.join_new_cgroups([str(parent)], "a1")      # what a worker does: writes its pid
    assert (leaf / "cgroup.procs").read_text() == str(os.getpid())
    assert not g.oom_killed() and g.memory_peak() is None
    (leaf / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 1\noom_kill 0\noom_group_kill 0\n")
    assert not g.oom_killed()
    (leaf / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\noom_group_kill 1\n")
    assert g.oom_killed()
    (leaf / "memory.peak").write_text("12345678\n")
    assert g.memory_peak() == 12345678

    for f in leaf.iterdir():  # cgroupfs rmdir ignores control files; a plain dir doesn't
        f.unlink()
    g.remove()
    assert not leaf.exists()
    g.remove()  # twice is fine
    g2.remove()  # plain dir with files: rmdir fails, must not raise
    ctrl.close()  # likewise


def test_cgroup2_detect_is_idempotent_from_server_leaf(tmp_path: Path) -> None:
    root, proc = fake_v2(tmp_path)
    svc = root / "system.slice" / "theater.service"
    (proc / "self" / "cgroup").write_text("0::/system.slice/theater.service/server\n")
    (svc / "server").mkdir()
    ctrl = detect(base_name="th", root=root, proc=proc)
    assert isinstance(ctrl, Cgroup2Controller) and ctrl.parent == svc / f"th-{os.getpid()}"


def _record_writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, str]]:
    writes: list[tuple[Path, str]] = []
    real = cgroupfs.write

    def spy(path: Path, value: str | int) -> None:
        writes.append((path, str(value)))
        real(path, value)

    monkeypatch.setattr(cgroupfs, "write", spy)
    return writes


def test_cgroup2_moves_every_process_of_its_own_cgroup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, proc = fake_v2(tmp_path)
    svc = root / "system.slice" / "theater.service"
    (svc / "cgroup.procs").write_text(f"77\n{os.getpid()}\n")  # 77: e.g. a wrapper shell
    writes = _record_writes(monkeypatch)
    detect(base_name="th", root=root, proc=proc)
    moved = [v for p, v in writes if p == svc / "server" / "cgroup.procs"]
    assert set(moved) == {"77", str(os.getpid())}
    # ... and only then are controllers enabled (the no-internal-processes rule)
    order = [p.name for p, _ in writes]
    assert order.index("cgroup.subtree_control") > max(i for i, n in enumerate(order) if n == "cgroup.procs")


def test_cgroup2_at_namespace_root_moves_only_the_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, proc = fake_v2(tmp_path)
    (root / "cgroup.subtree_control").write_text("")
    (root / "cgroup.procs").write_text(f"1\n{os.getpid()}\n")
    (proc / "self" / "cgroup").write_text("0::/\n")
    writes = _record_writes(monkeypatch)
    ctrl = detect(base_name="th", root=root, proc=proc)
    assert isinstance(ctrl, Cgroup2Controller) and ctrl.parent == root / f"th-{os.getpid()}"
    assert [v for p, v in writes if p.name == "cgroup.procs"] == [str(os.getpid())]  # pid 1 stays


def test_cgroup2_without_memory_controller_falls_back(tmp_path: Path) -> None:
    root, proc = fake_v2(tmp_path, controllers="cpu pids")
    ctrl = detect(root=root, proc=proc)
    assert isinstance(ctrl, RlimitController)
    assert "memory controller not delegated" in ctrl.describe()
    assert not (root / "system.slice" / "theater.service" / "server").exists()  # no side effects


def test_cgroup1_on_fake_tree(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    for h in ("memory", "cpu"):  # no pids hierarchy
        (root / h).mkdir(parents=True)
        (root / h / "cgroup.procs").write_text("")
    ctrl = detect(base_name="th", root=root, proc=tmp_path / "proc")
    assert isinstance(ctrl, Cgroup1Controller) and ctrl.kind == "cgroup1"
    assert ctrl.describe() == f"cgroup v1 ({root}/memory/th-{os.getpid()}): process memory, cpu; not enforced: pids"
    g = ctrl.create("a1", 32 * MiB, 1.5, 3)
    mem, cpu = root / "memory" / f"th-{os.getpid()}" / "a1", root / "cpu" / f"th-{os.getpid()}" / "a1"
    assert isinstance(g, CgroupGroup) and g.dirs == (mem, cpu)
    assert (mem / "memory.limit_in_bytes").read_text() == str(32 * MiB)
    assert not (mem / "memory.memsw.limit_in_bytes").exists()
    assert (cpu / "cpu.cfs_quota_us").read_text() == "150000"
    assert (cpu / "cpu.cfs_period_us").read_text() == "100000"
    for d in (mem, cpu):
        (d / "cgroup.procs").touch()
    assert _linux.join_new_cgroups([str(mem.parent), str(cpu.parent)], "a1")
    assert (mem / "cgroup.procs").read_text() == str(os.getpid()) == (cpu / "cgroup.procs").read_text()
    (mem / "memory.failcnt").write_text("3\n")  # old kernel: failcnt is the only hint
    assert g.oom_killed()
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    assert not g.oom_killed()  # oom_kill, when present, wins over failcnt
    (mem / "memory.max_usage_in_bytes").write_text("4096\n")
    assert g.memory_peak() == 4096
    with pytest.raises(ValueError):
        ctrl.create("../escape", 0, 0, 0)
