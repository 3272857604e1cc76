"""theater.manifest, in-process: every table refuses keys it does not know, and every key it knows
is read into the setting it names (a typo in either direction must not pass silently)."""

from __future__ import annotations

import re

import pytest

from theater import admission
from theater import manifest as manifests
from theater.capacity import host_actors
from theater.config import load_server_config
from theater.errors import ManifestError

HEAD = 'name = "a"\nversion = "1"\ncomponent = "a.wat"\n'


def parse(extra: str) -> manifests.Manifest:
    return manifests.parse(HEAD + extra, "m.toml")


def refusal(extra: str) -> str:
    """The one line a manifest with ``extra`` is refused with (naming the file first)."""
    with pytest.raises(ManifestError) as e:
        parse(extra)
    assert e.value.message.startswith("m.toml: "), e.value.message
    return e.value.message


@pytest.mark.parametrize(("text", "where"), [
    ('colour = "blue"\n', "colour"),
    ('[restart]\nintensty = 3\n', "[restart] intensty"),
    ('[restart]\nbackoff = { min = "1s", maks = "2s" }\n', "[restart] backoff maks"),
    ('[limits]\nmemroy = "64MiB"\n', "[limits] memroy"),
    ('[[handler]]\ntype = "runtime"\npath = "/"\n', "(runtime) path"),
])
def test_every_table_refuses_unknown_keys(text, where):
    message = refusal(text)
    assert where in message and "allowed" in message


@pytest.mark.parametrize(("text", "where"), [
    ("colour = 1\n", "colour"),
    ("[root]\nintensty = 3\n", "[root] intensty"),
    ('[limits]\nmemroy = "64MiB"\n', "[limits] memroy"),
])
def test_server_config_refuses_unknown_keys(tmp_path, text, where):
    path = tmp_path / "server.toml"
    path.write_text(text)
    with pytest.raises(ManifestError) as e:
        load_server_config(path)
    assert str(path) in e.value.message and where in e.value.message


@pytest.mark.parametrize(("text", "says"), [
    ("[limits]\ncpu = inf\n", "at most 1024"),                  # once: the start hung, a traceback in the log
    ("[limits]\ncpu = nan\n", "at most 1024"),
    ("[limits]\ncall_timeout = 1e400\n", "at most 366 days"),   # once: a worker's internal error
    ('[limits]\ncall_timeout = "9999999h"\n', "at most 366 days"),
    ("[limits]\nfuel = 99999999999999999999\n", "from 0 to 9223372036854775807"),
    ("[restart]\nintensity = 99999999999999999999\n", "from 0 to"),   # once: `inspect` failed
    ("[restart]\nperiod = 1e400\n", "at most 366 days"),              # once: a CLI traceback
    ("[restart]\nshutdown = 1e400\n", "at most 366 days"),
    ('[limits]\nmemory = "5GiB"\n', "at most 4GiB"),
    ('[limits]\nprocess_memory = "2000TiB"\n', "at most 1024TiB"),
    (f"[limits]\ncall_timeout = {10**400}\n", "at most 366 days"),       # float() would overflow
    (f'[limits]\nprocess_memory = "1{"0" * 310}B"\n', "at most 1024TiB"),  # and int(inf)
    ('[limits]\nmemory = "0B"\n', "at least 64KiB (one wasm page)"),
    ('[limits]\nevent_bytes_per_second = "0B"\n', "at least 64KiB a second (less would hold up every call"),
    ("[limits]\ndescendants = -1\n", "[limits] descendants = -1: expected an integer from 0 to 9223372036854775807"),
    ('[limits]\ndescendants = "lots"\n', "[limits] descendants = 'lots': expected an integer from 0 to"),
])
def test_numbers_past_what_they_reach_are_refused_where_they_are_read(text, says):
    assert says in refusal(text)
    assert parse('[limits]\nmemory = "4GiB"\nprocess_memory = "8GiB"\ncpu = 1024\n').limits.memory == 4 << 30


def test_every_restart_option_is_read():
    r = parse('[restart]\ntype = "transient"\nstrategy = "rest_for_one"\nintensity = 7\nperiod = "9s"\n'
              'shutdown = "250ms"\nstate = "initial"\nbackoff = { min = "20ms", max = "3s", jitter = 0.5 }\n').restart
    assert r == manifests.Restart(type="transient", strategy="rest_for_one", intensity=7, period=9.0, shutdown=0.25,
                                  backoff=manifests.Backoff(0.02, 3.0, 0.5), state="initial")
    assert parse('[restart]\nshutdown = "brutal_kill"\n').restart.shutdown is None
    assert parse("").restart == manifests.Restart()


def test_every_limit_is_read():
    lim = parse('[limits]\nmemory = "1MiB"\nprocess_memory = "100MiB"\ncall_timeout = "2s"\nfuel = 5\ncpu = 0.25\n'
                'mailbox = 9\nevents_per_second = 11\nevent_bytes_per_second = "1MiB"\nchildren = 3\ndescendants = 7\n'
                ).limits
    assert lim == manifests.Limits(memory=1 << 20, process_memory=100 << 20, call_timeout=2.0, fuel=5, cpu=0.25,
                                   mailbox=9, events_per_second=11, event_bytes_per_second=1 << 20, children=3,
                                   descendants=7)


def test_server_config_root_flags_are_read(tmp_path):
    path = tmp_path / "server.toml"
    path.write_text('[root]\nstrategy = "one_for_all"\nintensity = 9\nperiod = "30s"\nmax_actors = 12\n'
                    '[limits]\nmailbox = 5\n')
    c = load_server_config(path)
    assert (c.strategy, c.intensity, c.period, c.max_actors, c.limits.mailbox) == ("one_for_all", 9, 30.0, 12, 5)
    assert load_server_config(tmp_path / "none.toml").max_actors == host_actors() >= 500   # on this machine
    path.write_text("[root]\nmax_actors = 0\n")
    with pytest.raises(ManifestError, match=r"server.toml: \[root\] max_actors = 0: expected an integer from 1 to"):
        load_server_config(path)


def test_a_project_folder_given_for_its_manifest_is_pointed_to_it(tmp_path):
    """`theater run hello` after `theater build hello` (which takes the folder): the one line
    says which file to give."""
    (tmp_path / "manifest.toml").write_text(HEAD)
    with pytest.raises(ManifestError) as e:
        manifests.load(tmp_path)
    assert e.value.message == (f"{tmp_path}: cannot read manifest: not a regular file (a directory); "
                               f"its manifest is {tmp_path / 'manifest.toml'}")
    (tmp_path / "manifest.toml").unlink()                         # no manifest inside: nothing to point to
    with pytest.raises(ManifestError) as e:
        manifests.load(tmp_path)
    assert e.value.message.endswith("not a regular file (a directory)")


# ---- [[mcp.tool]]: the tools an actor offers MCP clients ----------------------------------------

def test_mcp_tools_are_read():
    m = parse('[[mcp.tool]]\nname = "forecast"\ndescription = "The weather"\n'
              'input_schema = { type = "object", properties = { city = { type = "string" } }, required = ["city"] }\n'
              '[[mcp.tool]]\nname = "now"\ndescription = "The time"\n')
    assert [t.to_dict() for t in m.tools] == [
        {"name": "forecast", "description": "The weather",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        {"name": "now", "description": "The time", "input_schema": {"type": "object"}}]
    assert parse("").tools == ()


@pytest.mark.parametrize(("text", "says"), [
    ('[mcp]\ntools = []\n', "[mcp] tools: unknown key (allowed: tool)"),
    ('mcp = 3\n', "mcp: expected an [mcp] table"),
    ('[[mcp.tool]]\nname = "a.b"\ndescription = "x"\n', "[[mcp.tool]] #1 name = 'a.b': expected 1 to 64 letters"),
    ('[[mcp.tool]]\ndescription = "x"\n', "[[mcp.tool]] #1 name = None"),
    ('[[mcp.tool]]\nname = "a"\n', "[[mcp.tool]] #1 (a) description: missing"),
    ('[[mcp.tool]]\nname = "a"\ndescription = "x"\n[[mcp.tool]]\nname = "a"\ndescription = "y"\n',
     "[[mcp.tool]] #2 name = 'a': declared twice"),
    ('[[mcp.tool]]\nname = "a"\ndescription = "x"\nschema = {}\n', "[[mcp.tool]] #1 schema: unknown key"),
    ('[[mcp.tool]]\nname = "a"\ndescription = "x"\ninput_schema = { type = "string" }\n',
     "(a) input_schema: expected a JSON Schema table with type = \"object\""),
    ('[[mcp.tool]]\nname = "a"\ndescription = "x"\ninput_schema = { type = "object", default = 1979-05-27 }\n',
     "'1979-05-27' is not a JSON value"),
    ('[[mcp.tool]]\nname = "a"\ndescription = "x"\ninput_schema = { type = "object", required = "b" }\n',
     "(a) input_schema required: expected a list"),
])
def test_bad_mcp_tools_get_one_line_naming_the_table_and_key(text, says):
    with pytest.raises(ManifestError) as e:
        parse(text)
    assert e.value.message.startswith("m.toml: ") and says in e.value.message, e.value.message


@pytest.mark.parametrize("head, extra, why", [
    ('name = "cafe"', "", "m.toml: name = 'cafe': reads as an actor id or the start of one"),
    ('name = "dead-beef-1"', "", "reads as an actor id"),
    ('name = "a\\u202eb"', "", "only printable characters"),
    (f'name = "{"n" * 129}"', "", "at most 128 characters"),
    ('name = "x"', '[limits]\nprocess_memory = "4MiB"\n', "[limits] process_memory = 4MiB: must be at least 16MiB"),
    ('name = "x"', '[[mcp.tool]]\nname = "t"\ndescription = "d"\ninput_schema = { type = "object", properties = '
                   '{ s = { type = "string", pattern = "^(a+)+$" } } }\n',
     "[[mcp.tool]] t input_schema.properties.s.pattern: not allowed (theater mcp evaluates no regular expression"),
    ('name = "x"', '[[mcp.tool]]\nname = "t"\ndescription = "d"\ninput_schema = { type = "object", properties = '
                   '{ s = { "$ref" = "#/x" } }, x = { pattern = "^(a+)+$" } }\n',
     "[[mcp.tool]] t input_schema.properties.s.$ref: not allowed"),
])
def test_a_new_actor_meets_the_admission_rules_a_saved_one_need_not(head, extra, why):
    m = manifests.parse(f'{head}\nversion = "1"\ncomponent = "a.wasm"\n{extra}', "m.toml")   # a saved one parses
    with pytest.raises(ManifestError, match=re.escape(why)):
        admission.check(m)
    assert admission.check(parse("")).name
