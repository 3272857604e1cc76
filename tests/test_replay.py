"""`theater replay`: recorded calls run again, host calls fed from the record, every event compared."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import subprocess
import sys

import orjson
import pytest

from theater.errors import TheaterError
from theater.events import decode_data, event_hash

from .conftest import ACTORS, EXAMPLES, ROOT, request_in_thread, run_cli, wait_for

COUNTER = EXAMPLES / "counter" / "manifest.toml"
MiB = 1 << 20
# Runs a command, then prints its status and the peak RSS of its processes (the replayer's too).
PEAK = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
        "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)")
# A sitecustomize that notes each replayer as it starts, and each compile process as it ends
# (with the threads it has then), as "pid parent command threads" lines in $THEATER_TEST_TRACE.
TRACE = """import atexit, os, sys
def _note():
    with open(os.environ["THEATER_TEST_TRACE"], "a") as f:
        f.write(f"{os.getpid()} {os.getppid()} {sys.argv[1]} {len(os.listdir('/proc/self/task'))}\\n")
if os.environ.get("THEATER_TEST_TRACE") and sys.argv[1:2] == ["replay"]:
    _note()
elif os.environ.get("THEATER_TEST_TRACE") and sys.argv[1:2] == ["compile"]:
    atexit.register(_note)
"""


def replay(server, *args: str):
    r = server.cli("replay", *args, "--json")
    return r.code, (orjson.loads(r.out) if r.out.strip() else None), r.err


def test_replay_reproduces_every_event(server):
    c = server.client()
    counter = c.start(COUNTER)["id"]
    pong = c.start(EXAMPLES / "ping-pong" / "pong.toml")["id"]
    ping = c.start(EXAMPLES / "ping-pong" / "ping.toml")["id"]
    for _ in range(3):
        c.request(counter, b"+1")
        assert c.request(ping, pong.encode()) == b"pong"
    for actor, calls in ((counter, 4), (ping, 4)):
        code, report, err = replay(server, actor)
        assert code == 0, err
        assert report["ok"] and report["calls"] == calls and report["incarnations"] == 1
        assert report["events"] == len(c.events(actor))


def test_get_chain_hands_the_actor_its_chain_and_replays_from_the_record(server):
    """get-chain is recorded by length and head only; the replay rebuilds the value from the
    record, and the actor's reply (the number of events it was given) must come out the same."""
    c = server.client()
    probe = c.start(ACTORS / "probe.toml")["id"]
    c.request(probe, b"sabc")
    counts = [int(c.request(probe, b"h")) for _ in range(2)]
    calls = [e for e in c.events(probe) if e.type == "theater:simple/runtime/get-chain"]
    # each call sees every event before its own host-call event
    assert counts == [e.seq for e in calls], (counts, [e.seq for e in calls])
    assert decode_data(calls[1].data)["output"]["length"] == counts[1]
    code, report, err = replay(server, probe)
    assert code == 0, err
    assert report["ok"] and report["calls"] == 4, report


def test_get_chain_hands_over_more_than_one_page_of_the_chain_and_replays(server):
    """The chain answers 2,000 events a page: get-chain gave the actor the first page of a longer
    chain. It gets the whole (within its message limit), and the replay rebuilds the same."""
    c = server.client()
    probe = c.start(ACTORS / "probe.toml")["id"]
    assert c.request(probe, b"n2500") == b"logged"
    count = int(c.request(probe, b"h"))
    (call,) = [e for e in c.events(probe) if e.type == "theater:simple/runtime/get-chain"]
    assert count == call.seq > 2500, (count, call.seq)
    code, report, err = replay(server, probe)
    assert code == 0 and report["ok"], err


def test_a_chain_query_is_bounded_in_bytes_as_in_events(tmp_path):
    """2,000 events of any size were held in the chain process at once for one query (up to
    gigabytes, for an actor's get-chain); a page now stops at QUERY_BYTES, with at least one event."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from chain.queries import QUERY_BYTES, Queries
    from chain.store import ChainStore
    from theater.chaindb import ChainReader

    store = ChainStore(tmp_path / "chains.db", Ed25519PrivateKey.generate())
    big = QUERY_BYTES // 3 + 1
    for i in range(5):
        store.append("a", "x", bytes([i]) * big, 1_000 + i)
    store.commit()
    queries = Queries(store, ChainReader(tmp_path / "chains.db"), Ed25519PrivateKey.generate(), dict)
    header, frames = queries.answer({"k": "query", "what": "events", "actor": "a"})
    assert (len(frames), header["more"]) == (2, True)
    header, frames = queries.answer({"k": "query", "what": "events", "actor": "a", "since": 4})
    assert (len(frames), header["more"]) == (1, False)


def test_replay_follows_restarts_and_reproduces_traps(server):
    c = server.client()
    probe = c.start(ACTORS / "probe.toml")["id"]
    c.request(probe, b"sabc")
    with pytest.raises(TheaterError):
        c.request(probe, b"t")         # the trap fails the request; the actor is restarted (permanent)
    wait_for(lambda: (i := c.inspect(probe))["status"] == "running" and i["restarts"] == 1,
             what="the restart")
    assert c.request(probe, b"eback") == b"back"
    code, report, err = replay(server, probe)
    assert code == 0, err
    assert report["ok"] and report["incarnations"] == 2 and report["calls"] == 5   # init, s, t, init, e


def test_a_changed_component_diverges_at_the_first_different_event(server, tmp_path):
    c = server.client()
    counter = c.start(COUNTER)["id"]
    c.request(counter, b"+1")
    c.request(counter, b"+1")
    # the same counter, counting by two: its first result differs from the record
    variant = tmp_path / "counter2.wat"
    variant.write_text((EXAMPLES / "counter" / "counter.wat").read_text().replace(
        "(i64.add (local.get $n) (i64.const 1))", "(i64.add (local.get $n) (i64.const 2))"))
    code, report, _ = replay(server, counter, "--component", str(variant))
    assert code == 5
    first_result = next(e.seq for e in c.events(counter)[4:] if e.type == "wasm")
    assert report["ok"] is False and report["seq"] == first_result + 1
    assert "the replay produced" in report["error"]
    human = server.cli("replay", counter, "--component", str(variant))
    assert human.code == 5 and f"event {first_result + 1}" in human.text


def test_replay_an_export_file(server, tmp_path):
    c = server.client()
    counter = c.start(COUNTER)["id"]
    c.request(counter, b"+1")
    out = tmp_path / "counter.jsonl"
    assert server.cli("export", counter, "-o", str(out)).code == 0
    code, report, err = replay(server, "--file", str(out), "--component", str(EXAMPLES / "counter" / "counter.wat"))
    assert code == 0, err
    assert report["ok"] and report["calls"] == 2


@pytest.mark.parametrize("odd", [b"\xff\x00", b"\x83\x01\x02\x03", b"\xa1\x61x\x01"],
                         ids=["not-cbor", "a-list", "no-keys"])
def test_a_record_whose_data_a_worker_wrote_as_it_liked_is_a_divergence_there(server, tmp_path, odd):
    """A worker writes its events' data, and actor code escaped into it may write anything that
    hashes: the replayer failed with an exception on such data (the CLI said only its last line);
    it is a divergence at that event, named, with the replay's report."""
    c = server.client()
    counter = c.start(COUNTER)["id"]
    c.request(counter, b"+1")
    out = tmp_path / "counter.jsonl"
    assert server.cli("export", counter, "-o", str(out)).code == 0
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    at = [d["seq"] for d in lines if d["type"] == "wasm"
          and decode_data(base64.b64decode(d["data"]))["event"] == "call"][-1]
    parent = bytes.fromhex(lines[at]["parent"]) if lines[at]["parent"] else None
    for d in lines[at:]:                # the chain written from there as a worker would: hashes that link
        if d["seq"] == at:
            d["data"] = base64.b64encode(odd).decode()
        d["parent"] = parent.hex() if parent else None
        parent = event_hash(d["actor"], d["seq"], parent, d["type"], base64.b64decode(d["data"]))
        d["hash"] = parent.hex()
    out.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in lines))
    code, report, err = replay(server, "--file", str(out), "--component", str(EXAMPLES / "counter" / "counter.wat"))
    assert code != 0 and report is not None, (code, err)
    assert (report["ok"], report["seq"]) == (False, at), report
    assert report["error"].startswith("the record's wasm event holds "), report


def test_a_timed_out_call_is_not_reproducible_and_says_so(server, tmp_path):
    manifest = tmp_path / "slow.toml"
    manifest.write_text((ACTORS / "probe.toml").read_text().replace('component = "probe.wat"',
                        f'component = "{ACTORS / "probe.wat"}"') + '\n[limits]\ncall_timeout = "300ms"\n'
                        '[restart]\ntype = "temporary"\n')
    c = server.client()
    probe = c.start(manifest)["id"]
    c.request(probe, b"eok")
    assert server.cli("message", probe, "l", "--request").code != 0
    code, report, err = replay(server, probe)
    assert code == 0, err
    assert report["ok"] and "not_reproducible_from" in report


def test_a_call_whose_worker_was_killed_replays_up_to_the_kill(server, tmp_path):
    """The record of a call whose worker was SIGKILLed ends without a result, at the server's
    lifecycle/exit: its host calls are compared as far as they go, then that incarnation's
    replay ends there and says why, and the next one replays. A change before the kill is
    still a divergence."""
    manifest = tmp_path / "throttled.toml"
    manifest.write_text((ACTORS / "probe.toml").read_text().replace('component = "probe.wat"',
                        f'component = "{ACTORS / "probe.wat"}"') + "\n[limits]\nevents_per_second = 100\n")
    c = server.client()
    probe = c.start(manifest)["id"]
    t, _ = request_in_thread(server, probe, b"n1000000")     # logs "spam" for hours at 100 events/s
    call = wait_for(lambda: next((e.seq for e in c.events(probe) if e.type == "wasm"
                                  and decode_data(e.data)["function"].endswith("handle-request")), None),
                    timeout=30, what="the call")
    wait_for(lambda: len(c.events(probe, since=call, types=["theater:simple/runtime/log"])) >= 10,
             timeout=30, what="the call's logs")
    os.kill(c.inspect(probe)["pid"], signal.SIGKILL)
    t.join(60)
    wait_for(lambda: (i := c.inspect(probe))["status"] == "running" and i["restarts"] == 1,
             timeout=30, what="the restart")
    assert c.request(probe, b"eback") == b"back"
    exit_ = next(e for e in c.events(probe, since=call) if e.type == "lifecycle/exit")
    assert decode_data(exit_.data)["reason"] == "killed"
    code, report, err = replay(server, probe)
    assert code == 0, (err, report)
    assert report["ok"] and report["incarnations"] == 2 and report["calls"] == 4, report   # init, n, init, e
    assert report["not_reproducible_from"] == call, report
    assert report["not_reproducible_why"] == "the worker died during this call (killed)", report
    human = server.cli("replay", probe)
    assert human.code == 0 and f"not reproducible from event {call}: the worker died" in human.text
    # the same actor logging "spaM": the first log of the killed call diverges
    variant = tmp_path / "probe-spam.wat"
    variant.write_text((ACTORS / "probe.wat").read_text().replace('"spam"', '"spaM"'))
    code, report, _ = replay(server, probe, "--component", str(variant))
    assert code == 5 and report["seq"] == call + 1, report
    assert "the replay produced theater:simple/runtime/log" in report["error"], report


def test_a_replayed_call_that_never_ends_is_a_divergence_not_a_hang(server, tmp_path):
    """The record has each call finish in microseconds: a replay that loops is stopped after
    20 times that, at least 5 s, and reported at that call."""
    c = server.client()
    counter = c.start(COUNTER)["id"]
    c.request(counter, b"+1")
    looping = tmp_path / "counter-loops.wat"
    text = (EXAMPLES / "counter" / "counter.wat").read_text()
    step = "(call $utoa (i64.add (local.get $n) (i64.const 1)))"
    assert text.count(step) == 1
    looping.write_text(text.replace(step, "(loop br 0)\n" + step))
    code, report, err = replay(server, counter, "--component", str(looping))
    assert code == 5, err
    call = next(e.seq for e in c.events(counter)
                if e.type == "wasm" and decode_data(e.data)["function"].endswith("handle-request"))
    assert report["ok"] is False and report["seq"] == call
    assert "the call runs past 5s" in report["error"], report


def test_every_cut_call_is_named_and_only_what_was_made_again_is_counted(server, tmp_path):
    """Two incarnations each ended in a call cut short by its time limit: the replay names both
    (it named only the first), and counts as reproduced only the events it made again, not the
    host's lifecycle records nor what followed each cut."""
    manifest = tmp_path / "slow.toml"
    manifest.write_text((ACTORS / "probe.toml").read_text().replace('component = "probe.wat"',
                        f'component = "{ACTORS / "probe.wat"}"') + '\n[limits]\ncall_timeout = "300ms"\n')
    c = server.client()
    probe = c.start(manifest)["id"]
    for restarts in (1, 2):
        assert server.cli("message", probe, "l", "--request").code != 0
        wait_for(lambda n=restarts: (i := c.inspect(probe))["status"] == "running" and i["restarts"] == n,
                 timeout=30, what=f"restart {restarts}")
    cut = [e.seq for e in c.events(probe) if e.type == "wasm" and decode_data(e.data).get("event") == "call"
           and decode_data(e.data)["function"].endswith("handle-request")]
    code, report, err = replay(server, probe)
    assert code == 0, (err, report)
    assert [x["seq"] for x in report["not_reproducible"]] == cut, report
    assert report["not_reproducible_from"] == cut[0], report
    records = [e for e in c.events(probe) if e.type.startswith("lifecycle/")]
    assert report["reproduced"] == report["events"] - len(records) - len(cut), report    # each cut: its error event
    human = server.cli("replay", probe)
    assert human.code == 0 and f"event {cut[0]}: the call was cut short" in human.text
    assert f"event {cut[1]}: the call was cut short" in human.text, human.text


def _probe(tmp_path, name: str, limits: str):
    manifest = tmp_path / f"{name}.toml"
    manifest.write_text((ACTORS / "probe.toml").read_text().replace('component = "probe.wat"', f'component = '
                        f'"{ACTORS / "probe.wat"}"').replace('name = "probe"', f'name = "{name}"')
                        + f'\n[limits]\n{limits}\n[restart]\ntype = "temporary"\n')
    return manifest


def _replay_peak(server, actor: str) -> tuple[int, int]:
    """`theater replay ACTOR`'s exit status, and the most memory one of its processes held."""
    p = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "theater", "--home", str(server.home.root),
                        "replay", actor], capture_output=True, timeout=120, cwd=ROOT, check=True)
    code, peak = p.stdout.split()
    return int(code), int(peak)


def test_a_replay_holds_the_component_to_the_linear_memory_its_record_says(server, tmp_path):
    """A probe held to 2MiB of linear memory grows it until refused ("g" touches every page it
    gets): its replay had no limit and grew it to 4GiB. Each lifecycle/start now records the
    limits, and the replay grows the memory as far as the actor did: its peak is that of
    replaying a probe that never grew, give or take a little."""
    c = server.client()
    limits = 'memory = "2MiB"\nprocess_memory = "1GiB"'
    small, idle = (c.start(_probe(tmp_path, name, limits))["id"] for name in ("small", "idle"))
    assert c.request(small, b"g") == b"grow-failed"
    assert c.request(idle, b"eok") == b"ok"
    start = next(e for e in c.events(small) if e.type == "lifecycle/start")
    assert decode_data(start.data)["limits"] == {"fuel": 0, "memory": 2 * MiB, "process_memory": 1 << 30}
    (idle_code, idle_peak), (code, peak) = (_replay_peak(server, actor) for actor in (idle, small))
    assert idle_code == code == 0
    assert peak < idle_peak + 4 * MiB, (peak, idle_peak)


def test_compiling_a_component_for_a_replay_is_held_to_the_compile_memory_and_timeout(server, tmp_path):
    """A component the replay has not seen (--component) is compiled within [compile] memory and
    [compile] timeout, as the server's compile step is: past either the replay says which limit
    in one line (exit 1), not "the replayer failed"."""
    c = server.client()
    probe = c.start(_probe(tmp_path, "compiled", 'memory = "2MiB"'))["id"]
    assert c.request(probe, b"eok") == b"ok"
    (server.home.root / "server.toml").write_text('[compile]\nmemory = "1MiB"\n')
    other = tmp_path / "other.wat"
    other.write_text((ACTORS / "probe.wat").read_text().replace('"grow-failed"', '"grow-failed!"'))
    r = server.cli("replay", probe, "--component", str(other))
    said = (r.out.decode() + r.err).strip()
    assert r.code == 1 and len(said.splitlines()) == 1, r
    assert "the replay reached its compile memory limit ([compile] memory)" in said, r
    (server.home.root / "server.toml").write_text('[compile]\ntimeout = "1ms"\n')
    r = server.cli("replay", probe, "--component", str(other))
    assert r.code == 1 and r.out.decode().startswith("LIMIT "), r
    assert "the replay reached its compile timeout ([compile] timeout)" in r.out.decode(), r


def test_a_component_the_cache_lacks_is_compiled_for_the_replay_in_a_compile_process(server, tmp_path):
    """The replayer may start no thread before it confines itself, so it compiled a component the
    cache lacked on one thread: twice as long as the server on 2 cores. The server's compile step
    does it now, a child of the replayer with wasmtime's compile threads, and writes the cache:
    the next replay compiles nothing. Where the cache is not the replayer's to write (another
    user's, read-only), it compiles into temporary files and leaves nothing there; and what
    another user's cache holds it does not load."""
    c = server.client()
    counter = c.start(COUNTER)["id"]
    c.request(counter, b"+1")
    shim, trace = tmp_path / "shim", tmp_path / "trace"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(TRACE)
    env = {**os.environ, "THEATER_TEST_TRACE": str(trace),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")]))}
    cache = server.home.cache

    def replayed(given) -> list[list[str]]:
        trace.write_text("")
        r = run_cli(server.home, "replay", counter, "--component", str(given), env=env)
        assert r.code == 0 and r.out.startswith(b"ok "), r
        return [line.split() for line in trace.read_text().splitlines()]

    given = tmp_path / "counter.wat"
    given.write_bytes((EXAMPLES / "counter" / "counter.wat").read_bytes())
    key = "given-" + hashlib.sha256(given.read_bytes()).hexdigest()
    (replayer, compiler) = replayed(given)
    assert (replayer[2], compiler[2], compiler[1]) == ("replay", "compile", replayer[0]), (replayer, compiler)
    assert int(compiler[3]) > 1, compiler                 # it compiled with wasmtime's compile threads
    assert server.home.compiled(key, False).exists() and server.home.shape(key).exists()
    assert [note[2] for note in replayed(given)] == ["replay"]

    other = tmp_path / "other.wat"
    other.write_bytes(given.read_bytes() + b"\n;; another component\n")
    dirs = [cache, *(d for d in cache.rglob("*") if d.is_dir())]
    kept = sorted(cache.rglob("*"))
    for d in dirs:        # another user's cache (as root, who writes anywhere), else one it cannot write
        os.chown(d, 65534, -1) if os.geteuid() == 0 else d.chmod(0o500)
    try:
        assert [note[2] for note in replayed(other)] == ["replay", "compile"]
        # and what another user's cache holds is not loaded (native code, run as it is): compiled again
        root = os.geteuid() == 0
        assert [note[2] for note in replayed(given)] == (["replay", "compile"] if root else ["replay"])
    finally:
        for d in dirs:
            os.chown(d, os.geteuid(), -1) if os.geteuid() == 0 else d.chmod(0o700)
    assert sorted(cache.rglob("*")) == kept


def test_a_call_that_used_up_its_fuel_replays_alike(server, tmp_path):
    """Fuel is deterministic, and a call that used it up is recorded as such: its replay ran
    without fuel, so the same call ran on (a busy loop: "runs past 5s", a divergence). Each start
    records its fuel, and the replay gives every call the same."""
    c = server.client()
    fueled = c.start(_probe(tmp_path, "fueled", "fuel = 100000"))["id"]
    assert c.request(fueled, b"eok") == b"ok"
    with pytest.raises(TheaterError, match="fuel"):
        c.request(fueled, b"w5")
    wait_for(lambda: c.inspect(fueled)["status"] == "failed", timeout=30, what="the fueled probe to fail")
    failed = [decode_data(e.data) for e in c.events(fueled) if e.type == "wasm"][-1]
    assert (failed["reason"], failed["error"]) == ("fuel", "call used up its fuel (100000)"), failed
    r = server.cli("replay", fueled)
    assert r.code == 0 and r.out.decode().startswith("ok ") and " 3 calls " in r.out.decode(), r


def test_a_component_changed_after_it_was_hashed_is_not_compiled_under_the_old_hash(tmp_path):
    """The replayer names a --component's cache entry by the SHA-256 of the bytes it read; the
    compile step reads the file again, later, in another process. A file changed in between was
    compiled and cached under the first bytes' name, and loaded for them from then on (by the
    next replay, and by the server for a stored component): the step now refuses bytes that are
    not the digest it was given."""
    from theater.config import Compile
    from theater.errors import ComponentError
    from theater.paths import Home
    from worker.replaycompile import Compiler

    home = Home.resolve(str(tmp_path / "home"))
    home.ensure()
    named = (EXAMPLES / "counter" / "counter.wat").read_bytes()
    wasm = tmp_path / "counter.wat"
    wasm.write_bytes(named + b"\n;; changed after it was hashed\n")
    digest = hashlib.sha256(named).hexdigest()
    compiler = Compiler(home, Compile(), tmp_path / "server.toml")
    with pytest.raises(ComponentError, match="changed since it was named"):
        compiler.compile(wasm, digest, "given-" + digest, False)
    assert not home.compiled("given-" + digest, False).exists()
    digest = hashlib.sha256(wasm.read_bytes()).hexdigest()     # as read: compiled and cached
    compiler.compile(wasm, digest, "given-" + digest, False)
    assert home.compiled("given-" + digest, False).exists()
