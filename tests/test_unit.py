"""`theater-server unit`: a systemd unit for this installation that systemd accepts, whose
ExecStart runs what is installed here; the one in scripts/ is the same generator's output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.unit import render

from .conftest import ROOT, one_line_error, run_server

USER = "nobody"           # exists on every Debian host; the workers' user


def unit_file(tmp_path: Path, *args: str) -> tuple[Path, str]:
    r = run_server("unit", *args)
    assert r.code == 0 and not r.err, r.err
    path = tmp_path / "theater-server.service"
    path.write_bytes(r.out)
    return path, r.text


def directives(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_the_unit_runs_this_installation(tmp_path):
    _, text = unit_file(tmp_path, "--user", USER)
    d = directives(text)
    command = d["ExecStart"].split()
    program = Path(command[0])
    assert program.is_absolute() and program.parent == Path(sys.executable).parent, command
    if program.name != "theater-server":
        assert command[1:3] == ["-m", "supervisor"], command
    r = subprocess.run([*command[: command.index("--home")], "--version"], capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout.decode().startswith("theater-server "), r
    assert command[command.index("--home") + 1] == "/var/lib/theater"
    assert command[command.index("--user") + 1] == USER
    assert "--log-stdout" in command


def test_the_unit_is_a_hardened_notify_service(tmp_path):
    _, text = unit_file(tmp_path, "--user", USER, "--home", "/srv/theater")
    d = directives(text)
    assert d["Type"] == "notify" and d["NotifyAccess"] == "main"
    assert int(d["WatchdogSec"].removesuffix("s")) >= 10
    assert d["Delegate"] == "yes"                        # the workers' cgroups
    assert d["ReadWritePaths"] == "/srv/theater"
    assert "StateDirectory" not in d                      # only for homes under /var/lib
    for key, value in {"ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
                       "KillMode": "mixed", "RestrictNamespaces": "net"}.items():   # the workers' netns only
        assert d[key] == value, key
    assert d["ProtectHome"] in ("yes", "read-only")
    # what would stop the server from making cgroups, or wasmtime from compiling
    for absent in ("ProtectControlGroups", "ProtectKernelTunables", "MemoryDenyWriteExecute", "User",
                   "PrivateUsers"):
        assert absent not in d, absent


@pytest.mark.parametrize("args", [("--user", USER), ("--home", "/srv/theater")])
def test_systemd_analyze_verify_accepts_it(tmp_path, args):
    if shutil.which("systemd-analyze") is None:
        why = "systemd-analyze is not installed (apt-get install systemd; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(why)                # under CI a missing tool fails, as the toolchains do
        pytest.skip(why)
    path, _ = unit_file(tmp_path, *args)
    r = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=120)
    ours = [line for line in (r.stdout + r.stderr).splitlines() if path.name in line]
    assert r.returncode == 0 and not ours, r.stdout + r.stderr


def test_the_unit_in_scripts_is_the_generators():
    committed = (ROOT / "scripts" / "theater-server.service").read_text()
    expected = render("/var/lib/theater", "theater-actors", "/opt/theater/bin/theater-server")
    assert committed == expected, ("scripts/theater-server.service is stale: regenerate it with "
                                   "`theater-server unit --user theater-actors --exec /opt/theater/bin/theater-server`")


@pytest.mark.parametrize("args, needle", [
    (("--user", "no-such-user-here"), "no such user"),
    (("--user", "Not A Name"), "not a user name"),
    (("--home", "/srv/the ater"), "spaces"),
    (("--home", "/srv/100%"), "'%'"),
    (("--home", "/"), "expected a directory"),
    (("--exec", "bin/theater-server"), "absolute path"),
])
def test_bad_input(args, needle):
    one_line_error(run_server("unit", *args), "theater-server unit: ", needle)
