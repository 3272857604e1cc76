"""Everything in $THEATER_HOME is private to its owner (issue 16, finding 4).

chains.db, its WAL and the server log were 0644 in a 0755 home: any local user read every
event and state. Folders are 0700 and files 0600 now (the server's umask is 077, the layout is
made 0700, and a home an older server left open is closed at start). Under --user, workers
get what they need through their group only: never anything for other users.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from theater.paths import Home

from .conftest import ACTORS, EXAMPLES, ROGUE_ENV, ROOT, Server, cli_start, rogue_command, run_cli

COUNTER = EXAMPLES / "counter" / "manifest.toml"


def entries(home: Home) -> Iterator[tuple[Path, os.stat_result]]:
    for top, dirs, files in os.walk(home.root):
        for name in (top, *(os.path.join(top, n) for n in dirs + files)):
            yield Path(name), os.lstat(name)


def busy_home(server: Server, tmp_path: Path) -> None:
    """A home with an actor running, one stopped, events stored and logged."""
    for manifest in (COUNTER, ACTORS / "probe.toml"):
        r = server.cli("start", str(manifest), "--json")
        assert r.code == 0, r.err
        actor = orjson.loads(r.out)["id"]
        assert server.cli("message", actor, "e1", "--request").code == 0
    assert server.cli("stop", actor).code == 0
    must = [server.home.chains_db, Path(f"{server.home.chains_db}-wal"), Path(f"{server.home.chains_db}-shm"),
            server.home.logs / "server.log", server.home.host_key, server.home.run / "server.lock",
            server.home.management_socket]
    for path in must:
        assert path.exists(), path
    assert list(server.home.actors.glob("*.json")) and list(server.home.components.glob("*.wasm"))
    assert any(p.suffix == ".cwasm" for p in server.home.cache.rglob("*"))


def private(home: Home) -> list[str]:
    """What in the home its owner's group or other users could use (should be nothing)."""
    return [f"{oct(stat.S_IMODE(st.st_mode))} {p}" for p, st in entries(home)
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077]


def test_everything_in_the_home_is_private(server, tmp_path):
    busy_home(server, tmp_path)
    assert private(server.home) == []


def test_a_home_left_open_is_made_private_at_start(home, tmp_path):
    s = Server(home).start()
    try:
        busy_home(s, tmp_path)
    finally:
        s.stop()
    for p, st in entries(home):             # as a server before issue 16 left it (and worse)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(p, stat.S_IMODE(st.st_mode) | (0o755 if stat.S_ISDIR(st.st_mode) else 0o644))
    assert private(home)
    s = Server(home).start()
    try:
        assert private(home) == []
        assert s.cli("list").code == 0
    finally:
        s.stop()


def test_a_cli_started_home_is_private(home, tmp_path):
    """`theater run` makes the home itself (then its embedded server runs in it)."""
    manifest = tmp_path / "hello.toml"
    manifest.write_text((EXAMPLES / "hello" / "manifest.toml").read_text().replace(
        'component = "hello.wat"', f'component = "{EXAMPLES / "hello" / "hello.wat"}"'))
    root = home.root
    os.rmdir(root)
    r = run_cli(home, "run", str(manifest), timeout=120)
    assert r.code == 0, r.err
    assert private(home) == [], (r.err, private(home))


@pytest.mark.skipif(os.geteuid() != 0, reason="--user needs a server running as root")
def test_under_user_workers_get_access_through_their_group_only(home, tmp_path):
    nobody = pwd.getpwnam("nobody")
    s = Server(home, "--user", "nobody").start()
    try:
        busy_home(s, tmp_path)
        group = grp.getgrgid(nobody.pw_gid).gr_name
        opened = {}
        for p, st in entries(home):
            if stat.S_ISLNK(st.st_mode):
                continue
            assert not st.st_mode & 0o007, f"{oct(st.st_mode)} {p}: open to every user"
            if st.st_mode & 0o070:
                assert st.st_gid == nobody.pw_gid, f"{p}: group {st.st_gid}, not the workers' ({group})"
                opened[p.relative_to(home.root).as_posix()] = stat.S_IMODE(st.st_mode) & 0o070
        # traverse (not list) the home, run/ and run/w, read components and compiled components;
        # the four sockets workers use, and the inboxes; all of it the server user's: workers
        # make, rename or remove nothing there
        assert opened.pop(".") == 0o010 and opened.pop("run") == 0o010 and opened.pop("run/w") == 0o010, opened
        shared = [n for n in opened if n.split("/")[0] in ("components", "cache")]
        assert {n for n in shared if opened[n] == 0o050} == {n for n in shared if (home.root / n).is_dir()}
        assert {n for n in shared if opened[n] == 0o040} == {n for n in shared if not (home.root / n).is_dir()}
        assert any(n.endswith(".cwasm") for n in shared), shared
        inboxes = [n for n in opened if n.startswith("run/w/")]
        assert inboxes and all(opened[n] == 0o060 for n in inboxes), opened
        assert all((home.root / n).stat().st_uid == os.getuid() for n in [*shared, *inboxes, "run/w"])
        assert set(opened) - {*shared, *inboxes} <= {"run/control.sock", "run/chain.sock", "run/chain-stream.sock",
                                                      "run/gateway.sock"}
    finally:
        s.stop()


def test_the_workers_user_cannot_replace_a_compiled_component(user_server, worker_user):
    """Compiled components are native code the fork server and every worker trust: the compile
    process (as the workers' user) writes through descriptors of the server's files, and the
    cache is the server user's (supervisor/compiled.py). A process of that user can read them,
    but can neither replace nor remove one."""
    actor = cli_start(user_server, EXAMPLES / "counter" / "manifest.toml")
    with user_server.client() as c:
        assert c.request(actor, b"+1") == b"1"          # compiled as that user, stored, loaded
        sha = c.inspect(actor)["component"]
    home = user_server.home
    for path in (home.compiled(sha, False), home.shape(sha)):
        st = path.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (os.getuid(), 0o640), path
        out = subprocess.run(rogue_command(worker_user, "replace", str(path)), capture_output=True, cwd=ROOT,
                             env=ROGUE_ENV, timeout=60)
        assert orjson.loads(out.stdout) == {"unlink": "PermissionError", "rename": "PermissionError",
                                            "bind": "PermissionError"}, out
    assert not list(home.cache.rglob(".compiling-*"))      # nothing left of the compile's files


def test_a_cache_the_workers_user_wrote_to_is_emptied_at_start(home, worker_user, tmp_path):
    """An older version let the compile process (as the workers' user) write the cache: at start
    nothing there is trusted, and no link planted there leads the server's chown elsewhere."""
    user = pwd.getpwnam(worker_user)
    secret = tmp_path / "secret"
    secret.write_text("root's")
    secret.chmod(0o600)
    forged = home.cache / "some-version" / "epoch" / "forged.cwasm"
    forged.parent.mkdir(parents=True)
    forged.write_bytes(b"native code of the workers' user")
    for p in (forged, forged.parent, forged.parent.parent, home.cache):
        os.chown(p, user.pw_uid, user.pw_gid)
    (forged.parent / "link").symlink_to(secret)
    s = Server(home, "--user", worker_user).start()
    try:
        st = secret.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (os.getuid(), os.getgid(), 0o600)
        assert not forged.exists() and not (forged.parent / "link").is_symlink()
        st = home.cache.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (os.getuid(), user.pw_gid, 0o2750)
        assert "holds files the server's user did not make" in (home.logs / "server.log").read_text()
    finally:
        s.stop()
