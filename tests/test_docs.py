"""The docs against the code, in-process and cheap: what a newcomer copies from README.md and
docs/operations.md is accepted as written, and every server.toml key, theater-server option and
theater command the code has is in them (they drifted: four server.toml tables and five
commands were missing)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from supervisor.__main__ import _parser as server_parser
from theater import manifest
from theater.cli import _parser as cli_parser
from theater.config import ServerConfig, load_server_config
from theater.errors import ManifestError

from .conftest import ROOT

README = (ROOT / "README.md").read_text()
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()


def section(text: str, heading: str) -> str:
    """From the line ``heading`` to the next heading of its level or above (outside code blocks,
    where a line may begin with a TOML or shell comment)."""
    lines = text.splitlines(keepends=True)
    start = next(i for i, ln in enumerate(lines) if ln.rstrip("\n") == heading)
    level, fenced = len(heading.split(" ")[0]), False
    for i in range(start + 1, len(lines)):
        fenced ^= lines[i].startswith("```")
        if not fenced and re.match(rf"#{{1,{level}}} ", lines[i]):
            return "".join(lines[start:i])
    return "".join(lines[start:])


def toml_block(text: str) -> str:
    m = re.search(r"```toml\n(.*?)```", text, re.S)
    assert m, text[:200]
    return m.group(1)


def test_the_readme_manifest_is_accepted_as_written():
    m = manifest.parse(toml_block(section(README, "## Manifests")), "README.md")
    assert m.name == "counter" and m.limits.cpu == 0.5


def test_the_server_toml_example_is_the_defaults(tmp_path):
    path = tmp_path / "server.toml"
    path.write_text(toml_block(section(OPERATIONS, "## server.toml")))
    assert load_server_config(path) == ServerConfig(source=path)


def _allowed(path: Path, text: str) -> list[str]:
    """The keys the loader allows where ``text`` puts an unknown one (from its one-line refusal)."""
    path.write_text(text)
    with pytest.raises(ManifestError) as e:
        load_server_config(path)
    m = re.search(r"unknown key \(allowed: ([^)]*)\)", e.value.message)
    assert m, e.value.message
    return m.group(1).split(", ")


def test_every_server_toml_key_is_in_the_table(tmp_path):
    table = section(OPERATIONS, "## server.toml")
    path = tmp_path / "server.toml"
    tables = _allowed(path, "bogus = 1\n")
    assert "limits" in tables and "root" in tables
    for name in tables:
        keys = ["NAME"] if name == "secrets" else _allowed(path, f"[{name}]\nbogus = 1\n")
        for key in keys:
            assert f"`[{name}] {key}`" in table, f"[{name}] {key} is not in docs/operations.md's server.toml table"


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"]


def test_every_server_option_is_documented():
    table = section(OPERATIONS, "## theater-server options")
    synopsis = section(README, "## The server").split("`. It starts")[0]
    for option in _options(server_parser()):
        assert f"`{option}" in table, f"{option} is not in docs/operations.md's options table"
        assert option == "--version" or f"[{option}" in synopsis, f"{option} is not in README.md's synopsis"


def test_every_command_is_in_the_readme():
    table = section(README, "## The `theater` CLI")
    sub = next(a for a in cli_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name in sub.choices:
        assert re.search(rf"`(theater )?{name}\b", table), f"`theater {name}` is not in README.md's CLI section"
