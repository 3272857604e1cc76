"""The fuzz targets (tests/fuzz_targets.py), 100 inputs each, and every input kept in
tests/fuzz_corpus/ (what long runs found: each one is a regression test).

Bounded by hypothesis's example count (no deadline), not by time: the suite stays predictable
on a loaded machine. Long coverage-guided runs: ``python scripts/fuzz.py --minutes N``.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from theater import protocol

from .fuzz_targets import EXPECTED, TARGETS, TYPES

CORPUS = Path(__file__).resolve().parent / "fuzz_corpus"
# deterministic (derandomize, no example database): the same inputs on every run and machine
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                database=None)


def run(target: str, data: bytes) -> None:
    with contextlib.suppress(EXPECTED):
        TARGETS[target](data)


def corpus() -> list[tuple[str, Path]]:
    return sorted((d.name, f) for d in CORPUS.iterdir() if d.is_dir() for f in d.iterdir() if f.is_file())


@pytest.mark.parametrize(("target", "path"), corpus(), ids=lambda v: v if isinstance(v, str) else v.name)
def test_every_kept_input_still_passes(target, path):
    run(target, path.read_bytes())


@pytest.mark.parametrize("target", sorted(TARGETS))
@FUZZ
@given(data=st.binary(max_size=512))
def test_random_bytes(target, data):
    run(target, data)


# JSON values two levels deep (a recursive strategy costs seconds to draw; the targets'
# decoders are not recursive beyond that)
_scalar = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
_json = _scalar | st.lists(_scalar, max_size=3) | st.dictionaries(st.text(max_size=6), _scalar, max_size=3)


@FUZZ
@given(kind=st.sampled_from(sorted(protocol.KINDS)), fields=st.dictionaries(
    st.sampled_from(["id", "re", "actor", "name", "what", "seq", "types", "limit", "data", "mode", "reason"])
    | st.text(max_size=6), _json, max_size=8), frames=st.lists(st.binary(max_size=16), max_size=3))
def test_protocol_messages_of_every_kind(kind, fields, frames):
    run("protocol", b"\x00\xff".join([json.dumps({**fields, "k": kind}).encode(), *frames]))


_toml_value = st.one_of(st.integers(-2**70, 2**70).map(str), st.text(max_size=12).map(json.dumps),
                        st.sampled_from(["true", "false", "[]", "{}", '"64MiB"', '"5s"', "1.5", "-0", "inf", "nan",
                                         '["a", 1]', '{ min = "1ms" }', '"../x"', '"/etc/passwd"']))
_keys = st.sampled_from(["name", "version", "component", "description", "init_state", "type", "memory", "cpu",
                         "mailbox", "call_timeout", "intensity", "period", "strategy", "path", "allowed_hosts",
                         "backoff", "state", "fuel", "unknown"])


@FUZZ
@given(top=st.lists(st.tuples(_keys, _toml_value), max_size=6),
       tables=st.lists(st.tuples(st.sampled_from(["[restart]", "[limits]", "[[handler]]", "[other]"]),
                                 st.lists(st.tuples(_keys, _toml_value), max_size=4)), max_size=4))
def test_manifests_near_valid(top, tables):
    lines = ['name = "fuzz"', 'component = "x.wasm"', *(f"{k} = {v}" for k, v in top)]
    for header, pairs in tables:
        lines += [header, *(f"{k} = {v}" for k, v in pairs)]
    run("manifest", "\n".join(lines).encode())


@FUZZ
@given(index=st.integers(0, len(TYPES) - 1), data=st.binary(min_size=0, max_size=256))
def test_codec_every_type(index, data):
    run("codec", bytes([index]) + data)


@FUZZ
@given(lines=st.lists(st.dictionaries(st.sampled_from(["actor", "seq", "parent", "type", "data", "hash", "time",
                                                        "stamp", "sig"]), _json, max_size=9), min_size=1, max_size=4))
def test_exports_of_event_like_lines(lines):
    run("export", b"\n".join(json.dumps(line).encode() for line in lines))
