"""theater.capacity: the default bound on live actors follows the memory and pids the server may
use, its cgroup's limits included (the systemd unit's MemoryMax=8G, TasksMax=16384), on fake
/proc and /sys/fs/cgroup trees."""

from __future__ import annotations

from pathlib import Path

from theater.capacity import ACTOR_MEMORY, ACTOR_PIDS, host_actors


def tree(tmp_path: Path, cgroup: str, files: dict[str, str]) -> tuple[Path, Path]:
    proc, cgroups = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "sys" / "kernel").mkdir(parents=True)
    (proc / "sys" / "kernel" / "pid_max").write_text("4194304\n")
    (proc / "self" / "cgroup").write_text(cgroup)
    for name, text in files.items():
        (cgroups / name).parent.mkdir(parents=True, exist_ok=True)
        (cgroups / name).write_text(text)
    return proc, cgroups


def test_under_the_systemd_units_limits_v2(tmp_path):
    proc, cgroups = tree(tmp_path, "0::/system.slice/theater-server.service/server\n", {
        "memory.max": "max\n",                                           # the root: never read as a limit
        "system.slice/memory.max": "max\n",
        "system.slice/theater-server.service/memory.max": f"{8 << 30}\n",   # an ancestor's limit counts
        "system.slice/theater-server.service/server/memory.max": "max\n",
        "system.slice/theater-server.service/pids.max": "16384\n",
    })
    assert host_actors(proc, cgroups) == min((8 << 30) // ACTOR_MEMORY, 16384 // ACTOR_PIDS) == 1024


def test_v1_hierarchies_and_their_unlimited_value(tmp_path):
    proc, cgroups = tree(tmp_path, "9:pids:/box\n4:memory:/box/inner\n0::/\n", {
        "memory/box/inner/memory.limit_in_bytes": "9223372036854771712\n",   # v1's "no limit"
        "memory/box/memory.limit_in_bytes": f"{2 << 30}\n",
        "pids/box/pids.max": "max\n",
    })
    assert host_actors(proc, cgroups) == (2 << 30) // ACTOR_MEMORY == 256


def test_no_cgroup_limits_leave_the_hosts(tmp_path):
    proc, cgroups = tree(tmp_path, "0::/\n", {})
    assert host_actors(proc, cgroups) == host_actors(proc, tmp_path / "nowhere") >= 500     # on this 24 GiB machine
