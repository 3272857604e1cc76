"""A child gets no more than its parent: grants and limits handed down through ``spawn``.

Before this check an actor granted only ``supervisor`` could spawn a child with the
filesystem's root, a shell, the server's environment, any host with a server secret in a
header, and looser limits, then drive that child by messages (it read the host's signing
key). The rules are unit-tested on parsed manifests; a real parent's spawns show the
refusal reaches the actor as one line, and that a child within its parent still starts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from theater import attenuation, egress, grants
from theater.manifest import Limits, parse

from .conftest import ACTORS

BASE = "/srv/actors/parent"


def manifest(handlers: str = "", limits: str = "") -> object:
    text = f'name = "a"\nversion = "0.1.0"\ncomponent = "a.wasm"\n{handlers}\n'
    return parse(text + (f"[limits]\n{limits}\n" if limits else ""), "a.toml")


def beyond(parent: str, child: str, parent_limits: str = "", child_limits: str = "",
           child_base: str = BASE) -> str | None:
    return attenuation.beyond(manifest(parent, parent_limits), BASE, manifest(child, child_limits), child_base,
                              Limits())


def handler(type_: str, body: str = "") -> str:
    return f'[[handler]]\ntype = "{type_}"\n{body}\n'


HTTP = handler("http-client", 'allowed_hosts = ["api.example.com", "*.models.example", "127.0.0.1:8080"]\n'
                              'allowed_methods = ["POST"]\ntimeout = "10s"\n'
                              'headers = { authorization = "Bearer ${secret:KEY}" }')


def test_a_handler_type_the_parent_lacks_is_refused():
    why = beyond(handler("runtime") + handler("supervisor"), handler("runtime") + handler("filesystem", 'path = "/"'))
    assert why == "[[handler]] (filesystem): its parent has no filesystem grant (a child gets no more than its parent)"
    assert beyond(handler("runtime") + handler("supervisor"), handler("runtime")) is None


@pytest.mark.parametrize("child, needle", [
    ('allowed_hosts = ["evil.example.org"]', "allowed_hosts: 'evil.example.org' is not within"),
    ('allowed_hosts = ["*"]', "allowed_hosts: '*'"),
    ('allowed_hosts = ["*.example.com"]', "allowed_hosts: '*.example.com'"),
    ('allowed_hosts = ["api.example.com:8443"]', "api.example.com:8443"),
    ('allowed_hosts = ["localhost:8080"]', "localhost:8080"),
    ('allowed_hosts = ["127.0.0.2:8080"]', "127.0.0.2:8080"),
    ('allowed_hosts = ["api.example.com"]\nallowed_methods = ["POST", "DELETE"]', "allowed_methods: ['DELETE']"),
    ('allowed_hosts = ["api.example.com"]', "allowed_methods: ['DELETE', 'GET'"),     # the default methods
    ('allowed_hosts = ["api.example.com"]\nallowed_methods = ["POST"]\ntimeout = "11s"', "timeout: more than"),
    ('allowed_hosts = ["api.example.com"]\nallowed_methods = ["POST"]\nheaders = { x-steal = "${secret:KEY}" }',
     "headers x-steal: names a secret"),
    ('allowed_hosts = ["api.example.com"]\nallowed_methods = ["POST"]\nheaders = { authorization = "${secret:OTHER}" }',
     "headers authorization: names a secret"),
])
def test_an_http_grant_beyond_the_parents_is_refused(child, needle):
    why = beyond(HTTP, handler("http-client", child))
    assert why is not None and why.startswith("[[handler]] (http-client) ") and needle in why, why


@pytest.mark.parametrize("child", [
    'allowed_hosts = ["api.example.com"]\nallowed_methods = ["POST"]\ntimeout = "10s"',
    'allowed_hosts = ["a.models.example", "*.b.models.example", "127.0.0.1:8080"]\nallowed_methods = ["POST"]\n'
    'timeout = "5s"\nmax_response_bytes = "1KiB"',
    'allowed_hosts = ["api.example.com"]\nallowed_methods = ["POST"]\ntimeout = "1s"\n'
    'headers = { authorization = "Bearer ${secret:KEY}", accept = "text/plain" }',
])
def test_an_http_grant_within_the_parents_is_allowed(child):
    assert beyond(HTTP, handler("http-client", child)) is None


def test_host_patterns_cover_only_what_they_reach():
    p = egress.parse_pattern
    assert p("*").covers(p("a.example")) and p("*").covers(p("*.example")) and p("*").covers(p("*"))
    assert not p("*").covers(p("localhost")) and not p("*").covers(p("10.0.0.1"))
    assert p("*.example").covers(p("a.b.example")) and p("*.example").covers(p("*.b.example"))
    assert not p("*.example").covers(p("example")) and not p("*.example").covers(p("*"))
    assert not p("a.example").covers(p("a.example:8080")) and p("[::1]:80").covers(p("[::1]:80"))


@pytest.mark.parametrize("child, needle", [
    ('allowed_vars = ["HOME"]', "allowed_vars: 'HOME' is not granted"),
    ('allowed_vars = ["APP_SECRET"]', "allowed_vars: 'APP_SECRET'"),          # denied to the parent
    ('allowed_prefixes = ["A"]', "allowed_prefixes: 'A' is not within"),
    ('allowed_prefixes = ["APP_"]', "denied_vars: must deny 'APP_SECRET'"),
    ('allowed_vars = ["LANG"]\nallow_list_all = true', "allow_list_all"),
])
def test_an_environment_grant_beyond_the_parents_is_refused(child, needle):
    parent = handler("environment", 'allowed_vars = ["LANG"]\nallowed_prefixes = ["APP_"]\n'
                                    'denied_vars = ["APP_SECRET"]')
    why = beyond(parent, handler("environment", child))
    assert why is not None and needle in why, why
    assert beyond(parent, handler("environment", 'allowed_vars = ["LANG", "APP_X"]\nallowed_prefixes = ["APP_Y"]\n'
                                                 'denied_vars = ["APP_SECRET"]')) is None


def test_a_filesystem_grant_beyond_the_parents_is_refused(tmp_path):
    base = str(tmp_path)
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "out").symlink_to("/")
    parent = manifest(handler("filesystem", 'path = "data"\nallowed_commands = ["ls"]\nmax_file_size = "1MiB"'))

    def why(child: str) -> str | None:
        return attenuation.beyond(parent, base, manifest(handler("filesystem", child)), base, Limits())
    assert "path: / is outside" in why('path = "/"')
    assert "is outside" in why('path = "data/../.."')
    assert "is outside" in why('path = "data/out"')                     # a symlink is followed before the check
    assert "allowed_commands: 'sh'" in why('path = "data/sub"\nallowed_commands = ["ls", "sh"]')
    assert "max_file_size: more than" in why('path = "data/sub"')      # the default (8 MiB) is more
    assert "new_dir" in why('path = "data"\nnew_dir = true\nmax_file_size = "1KiB"')
    assert why('path = "data/sub"\nallowed_commands = ["ls"]\nmax_file_size = "1KiB"') is None
    assert why('path = "data/new"\nnew_dir = true\nmax_file_size = "1KiB"') is None


def test_other_grants_are_capped_by_the_parents():
    assert "max_bytes: more than" in beyond(handler("store", 'max_bytes = "1MiB"'), handler("store"))
    assert beyond(handler("store", 'max_bytes = "1MiB"'), handler("store", 'max_bytes = "1KiB"')) is None
    assert "max_sleep_duration" in beyond(handler("timing", "max_sleep_duration = 1000"), handler("timing"))
    assert "max_bytes" in beyond(handler("random", 'max_bytes = "1KiB"'), handler("random", 'max_bytes = "2KiB"'))
    assert beyond(handler("runtime") + handler("message-server"), handler("message-server")) is None
    assert "min_sleep_duration: less than its parent's (\"1s\")" in beyond(
        handler("timing", 'min_sleep_duration = "1s"'), handler("timing", "min_sleep_duration = 1"))


def test_a_plug_ins_grant_goes_down_only_as_it_is_and_from_the_same_directory(tmp_path, monkeypatch):
    monkeypatch.setitem(grants.SPECS, "echo", grants.Spec("echo", imports=("test:echo/echo",), keys={"suffix": str}))
    echo = handler("echo", 'suffix = "!"')
    assert "differs from its parent's grant" in beyond(echo, handler("echo", 'suffix = "?"'))
    assert beyond(echo, echo) is None
    assert "only to a child whose manifest is in its parent's directory" in beyond(echo, echo, child_base=str(tmp_path))


@pytest.mark.parametrize("parent, child, needle", [
    ('process_memory = "128MiB"', 'process_memory = "4GiB"',
     '[limits] process_memory = "4GiB": looser than its parent\'s ("128MiB")'),
    ('process_memory = "128MiB"', "", '[limits] process_memory = "256MiB": looser'),     # the server's default is more
    ('memory = "16MiB"', 'memory = "1GiB"', "[limits] memory"),
    ("cpu = 0.1", "cpu = 0", "[limits] cpu = none: looser than its parent's (0.1)"),
    ("cpu = 0.1", "", "[limits] cpu = none"),
    ("cpu = 0.1", "cpu = 0.5", "[limits] cpu = 0.5"),
    ("fuel = 1000", "fuel = 0", "[limits] fuel = none"),
    ('call_timeout = "5s"', "", '[limits] call_timeout = "30s": looser than its parent\'s ("5s")'),
    ("mailbox = 10", "mailbox = 11", "[limits] mailbox = 11"),
])
def test_looser_limits_are_refused(parent, child, needle):
    why = beyond("", "", parent, child)
    assert why is not None and why.startswith(needle), why


def test_limits_as_tight_or_tighter_are_allowed():
    assert beyond("", "", 'process_memory = "128MiB"\ncpu = 0.1\nfuel = 1000',
                  'process_memory = "64MiB"\ncpu = 0.1\nfuel = 10') is None
    assert beyond("", "", "", "cpu = 0.5\nfuel = 5") is None          # the parent has none


# ---- a real parent's spawns -------------------------------------------------------------------


@pytest.fixture
def parent(server, tmp_path: Path):
    folder = tmp_path / "p"
    (folder / "data").mkdir(parents=True)
    for name in ("parent.wat", "probe.wat"):
        shutil.copy(ACTORS / name, folder / name)
    (folder / "parent.toml").write_text((ACTORS / "parent.toml").read_text() + (
        '\n[[handler]]\ntype = "filesystem"\npath = "data"\n'
        '\n[limits]\nprocess_memory = "128MiB"\nmemory = "16MiB"\n'))
    with server.client(timeout=30) as c:
        yield c, c.start(folder / "parent.toml")["id"]


def kid(filesystem: str, limits: str = 'process_memory = "96MiB"\nmemory = "16MiB"') -> bytes:
    return (b'S' + ('name = "kid"\nversion = "0.1.0"\ncomponent = "probe.wat"\n'
                    '[[handler]]\ntype = "runtime"\n[[handler]]\ntype = "message-server"\n'
                    f'[[handler]]\ntype = "filesystem"\n{filesystem}\n[limits]\n{limits}\n').encode())


def test_a_parent_cannot_spawn_a_child_with_more_than_it_holds(parent):
    c, p = parent
    for ask, needle in [
        (kid('path = "/"\nallowed_commands = ["/bin/sh"]'), "path: / is outside its parent's directory"),
        (kid('path = "data"', 'process_memory = "4GiB"\nmemory = "16MiB"'), '[limits] process_memory = "4GiB": looser'),
        (kid('path = "data"') + b'[[handler]]\ntype = "environment"\nallow_list_all = true\n',
         "its parent has no environment grant"),
    ]:
        reply = c.request(p, ask).decode()
        assert reply.startswith("error: ") and "\n" not in reply and needle in reply, reply
    assert not [a for a in c.call("list")[0]["actors"] if a["name"] == "kid"]
    child = c.request(p, kid('path = "data"')).decode()                # within its parent: starts
    assert not child.startswith("error"), child
    assert c.inspect(child)["status"] == "running"


def test_a_childs_directory_swapped_for_a_link_after_the_spawn_is_refused_at_its_restart(server, tmp_path):
    """Review finding: the check ran once, at the spawn; a parent that replaced the child's
    directory with a link (it may delete directories, and run a program that makes links) then
    restarted the child gave it the link's target."""
    folder = tmp_path / "p"
    (folder / "data" / "x").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    for name in ("parent.wat", "probe.wat"):
        shutil.copy(ACTORS / name, folder / name)
    (folder / "parent.toml").write_text((ACTORS / "parent.toml").read_text() + (
        '\n[[handler]]\ntype = "filesystem"\npath = "data"\n'))
    with server.client(timeout=30) as c:
        p = c.start(folder / "parent.toml")["id"]
        child = c.request(p, kid('path = "data/x"', "") + b'[restart]\ntype = "temporary"\n').decode()
        assert not child.startswith("error"), child
        (folder / "data" / "x").rmdir()
        (folder / "data" / "x").symlink_to(tmp_path / "outside")
        reply = c.request(p, b"T" + child.encode()).decode()
        assert reply.startswith("error: ") and "is outside its parent's directory" in reply, reply
        info = c.inspect(child)
        assert info["status"] != "running", info
        assert "path: " in info["last_error"] and "is outside its parent's directory" in info["last_error"], info
