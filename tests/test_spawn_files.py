"""What a spawn may read (issue 16, findings 1 and 13).

An actor granted ``supervisor`` hands the server a manifest (a path or TOML text), and that
manifest names a component and maybe an init_state file. The server reads those files, so
each must be inside the parent's own manifest directory (no absolute paths, no ``..`` or
symlink out of it) and a regular file (a FIFO must not block the server in open()). A
manifest or init_state file that fails to parse, however deeply nested, is one clear line
back to the actor, never a traceback in the server's log. Driven through tests/actors/parent.wat:
``S<manifest>`` spawns and replies the child id or "error: <reason>".
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import wasmtime

from theater import beneath, digests
from theater.paths import read_regular, within
from worker.adapter import _leb128

from .conftest import ACTORS, Server

SECRET = b'{"password": "hunter2"}'


def child_toml(component: str = "probe.wat", extra: str = "") -> str:
    return (f'name = "kid"\nversion = "0.1.0"\ncomponent = "{component}"\n{extra}\n'
            '[[handler]]\ntype = "runtime"\n\n[[handler]]\ntype = "message-server"\n')


@pytest.fixture
def family(server: Server, tmp_path: Path):
    """A running parent whose manifest directory is tmp_path/a/b; a secret two levels up, in tmp_path/x."""
    secret = tmp_path / "x" / "creds.json"
    secret.parent.mkdir()
    secret.write_bytes(SECRET)
    (secret.parent / "m.toml").write_text(child_toml(str(ACTORS / "probe.wat")))
    folder = tmp_path / "a" / "b"
    folder.mkdir(parents=True)
    for name in ("parent.wat", "probe.wat"):
        shutil.copy(ACTORS / name, folder / name)
    shutil.copy(ACTORS / "parent.toml", folder / "parent.toml")
    with server.client(timeout=30) as c:
        parent = c.start(folder / "parent.toml")["id"]
        yield c, parent, folder, secret


def refused(c, parent: str, manifest: str, *needles: str) -> str:
    reply = c.request(parent, b"S" + manifest.encode()).decode()
    assert reply.startswith("error: "), reply
    assert "\n" not in reply and "hunter2" not in reply, reply
    for needle in needles:
        assert needle in reply, (needle, reply)
    return reply


def answers_promptly(server: Server) -> None:
    """`theater list` answers (the server is not stuck in an open() or a parse)."""
    r = server.cli("list", "--timeout", "15", timeout=30)
    assert r.code == 0, r.err + server.log_tail()


def test_a_spawn_reads_only_regular_files_inside_the_parents_directory(server, family):
    c, parent, folder, secret = family
    os.symlink(secret, folder / "link.json")
    os.symlink(secret.parent, folder / "up")
    os.symlink("loop", folder / "loop")
    os.mkfifo(folder / "fifo.wasm")
    os.mkfifo(folder / "fifo.json")
    (folder / "ok.json").write_text('{"v": 1}')

    refused(c, parent, child_toml(extra='init_state = "../../x/creds.json"'), "init_state", "outside")
    refused(c, parent, child_toml(extra=f'init_state = "{secret}"'), "init_state", "relative")
    refused(c, parent, child_toml(extra='init_state = "link.json"'), "init_state", "outside")
    refused(c, parent, child_toml(extra='init_state = "up/creds.json"'), "init_state", "outside")
    refused(c, parent, child_toml(extra='init_state = "fifo.json"'), "init_state", "FIFO")
    answers_promptly(server)
    refused(c, parent, child_toml(component="fifo.wasm"), "component", "FIFO")
    answers_promptly(server)
    refused(c, parent, child_toml(component=str(ACTORS / "probe.wat")), "component", "relative")
    refused(c, parent, child_toml(component="../../../probe.wat"), "component")
    refused(c, parent, child_toml(component="/dev/zero"), "component")
    refused(c, parent, child_toml(component="."), "component", "directory")
    # the manifest itself, given as a path
    refused(c, parent, "../../x/m.toml", "outside")
    refused(c, parent, str(secret.parent / "m.toml"), "relative")
    refused(c, parent, "up/m.toml", "outside")
    # a symlink loop (Path.resolve raised RuntimeError: an internal error, a traceback each time)
    refused(c, parent, "loop/m.toml", "loop of symbolic links")
    refused(c, parent, child_toml(component="loop/x.wasm"), "component", "loop of symbolic links")
    refused(c, parent, child_toml(extra='init_state = "loop/s.json"'), "init_state", "loop of symbolic links")
    answers_promptly(server)

    # inside the directory (even by way of ..) a spawn works, and its init_state arrives
    kid = c.request(parent, b"S" + child_toml(extra='init_state = "../b/ok.json"').encode()).decode()
    assert not kid.startswith("error"), kid
    assert c.request(parent, b"G" + kid.encode()) == b'{"v":1}'
    assert "Traceback" not in (server.home.logs / "server.log").read_text()


@pytest.mark.parametrize("openat2", [True, False], ids=["openat2", "without-openat2"])
def test_a_file_checked_inside_the_parents_directory_is_read_from_there_whatever_is_swapped_in(
        tmp_path, monkeypatch, openat2):
    """The check (``within``) resolves the path, the read opens it again: an actor that can write in
    its directory could swap a folder or the file for a symlink out of it in between, and have the
    server (root, often) read any file as its child's manifest, component or state. The read does
    not leave the directory (openat2's RESOLVE_BENEATH; without openat2, what was opened is checked)."""
    if not openat2:
        monkeypatch.setattr(beneath, "HAVE_OPENAT2", False)      # a kernel without it
    root, elsewhere = tmp_path / "parent", tmp_path / "elsewhere"
    for d in (root / "sub", elsewhere):
        d.mkdir(parents=True)
        (d / "state.json").write_bytes(SECRET if d == elsewhere else b"{}")
    os.symlink("sub", root / "link")                            # a link that stays inside is fine
    assert read_regular(within(root, "link/state.json"), 100, root=root) == b"{}"

    checked = within(root, "sub/state.json")
    (root / "sub").rename(root / "was")
    os.symlink(elsewhere, root / "sub")                         # the folder swapped for a link out
    with pytest.raises(OSError, match=r"outside|changed since it was checked"):
        read_regular(checked, 100, root=root)
    checked = within(root, "was/state.json")
    os.symlink(elsewhere / "state.json", root / "was" / "new")
    os.replace(root / "was" / "new", root / "was" / "state.json")    # the file itself
    with pytest.raises(OSError, match=r"outside|changed since it was checked"):
        read_regular(checked, 100, root=root)


def test_a_manifest_or_init_state_that_fails_to_parse_is_an_err(server, family):
    """Finding 13: nested 5,000 deep, a manifest is an Err of one line, not an internal error."""
    c, parent, folder, _ = family
    refused(c, parent, child_toml() + "deep = " + "[" * 5000 + "]" * 5000 + "\n", "TOML", "deep")
    refused(c, parent, child_toml() + "deep = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n", "TOML", "deep")
    (folder / "deep.toml").write_text(child_toml() + "deep = " + "[" * 5000 + "]" * 5000 + "\n")
    refused(c, parent, "deep.toml", "deep.toml", "TOML", "deep")
    (folder / "deep.json").write_text("[" * 5000 + "]" * 5000)
    refused(c, parent, child_toml(extra='init_state = "deep.json"'), "init_state", "deep")
    refused(c, parent, child_toml(extra="init_state = " + "{a = " * 300 + "1" + "}" * 300), "init_state", "deep")
    (folder / "bad.json").write_bytes(b"\xff{")
    refused(c, parent, child_toml(extra='init_state = "bad.json"'), "init_state", "JSON")
    answers_promptly(server)
    log = (server.home.logs / "server.log").read_text()
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]


def test_a_path_with_a_nul_byte_is_an_err(server, family):
    """A NUL in the manifest's path, its component or its init_state: os.stat raised ValueError,
    which left the spawn unanswered until the parent's call timed out."""
    c, parent, _, _ = family
    refused(c, parent, "probe.toml\0", "NUL")
    refused(c, parent, "probe\0.toml", "NUL")
    refused(c, parent, child_toml(component="probe\\u0000.wat"), "component", "NUL")
    refused(c, parent, child_toml(extra='init_state = "s\\u0000.json"'), "init_state", "NUL")
    answers_promptly(server)
    log = (server.home.logs / "server.log").read_text()
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]


def test_a_parents_request_the_server_breaks_on_is_answered():
    """An error the server did not expect in a parent's request (a bug, as the NUL byte's
    ValueError was) is logged and answered, not left for the parent's call to wait out."""
    from types import SimpleNamespace

    from supervisor import children

    class Registry:
        def live_children(self, _parent):
            raise RuntimeError("a bug")

    said: list = []
    services = SimpleNamespace(registry=Registry(), outbox=SimpleNamespace(to_worker=lambda *a: said.append(a)))
    parent = SimpleNamespace(actor_id="p", children=["c"])
    children.handle(services, parent, {"k": "children", "id": "r1"}, [])
    ((to, answer),) = said
    assert (to, answer["k"], answer["re"]) == ("p", "error", "r1"), answer
    assert answer["error"] == "internal error in the server: RuntimeError: a bug", answer


def test_a_component_spawned_again_unchanged_is_not_read_again(server, family):
    """The server reads and hashes a child's component file once; later spawns of the same,
    unchanged file name the stored component (a componentize-py child is 18 MB: read and hashed
    in the server's loop at every spawn otherwise). A changed file is read again."""
    c, parent, folder, _ = family
    wasm = wasmtime.wat2wasm((folder / "probe.wat").read_text())
    big = folder / "big.wasm"
    big.write_bytes(_padded(wasm, b"\1"))
    size = big.stat().st_size
    _wait_until_settled(big)

    def spawn() -> tuple[str, int]:
        before = _bytes_read(server.pid)
        child = c.request(parent, b"S" + child_toml(component="big.wasm").encode()).decode()
        assert not child.startswith("error"), child
        return c.inspect(child)["component"], _bytes_read(server.pid) - before

    first, read = spawn()
    assert read >= size
    again, read = spawn()
    assert again == first and read < size // 2, read
    big.write_bytes(_padded(wasm, b"\2"))           # same size, other bytes
    _wait_until_settled(big)
    changed, read = spawn()
    assert changed != first and read >= size


def _padded(wasm: bytes, fill: bytes) -> bytes:
    """``wasm`` with an 8 MiB custom section appended (a big, valid component)."""
    body = _leb128(7) + b"padding" + fill * (8 << 20)
    return wasm + b"\0" + _leb128(len(body)) + body


def _wait_until_settled(path: Path) -> None:
    """Until the file's last change is older than digests.SETTLED (only then is it remembered)."""
    while time.time_ns() - path.stat().st_ctime_ns <= digests.SETTLED * 1e9:
        time.sleep(0.05)


def _bytes_read(pid: int) -> int:
    """What the process has read with read(2) and its kin so far (/proc/PID/io)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError(f"no rchar in /proc/{pid}/io")
