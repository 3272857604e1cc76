"""The layout's rules, checked: one import direction, and a deliberate public surface."""

from __future__ import annotations

import ast

import pytest

import theater

from .conftest import ROOT

PACKAGES = ("theater", "supervisor", "worker", "chain")


def imports_of(package: str) -> set[str]:
    """Top-level packages each module of ``package`` imports (absolute imports only)."""
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


def test_theater_imports_none_of_the_processes():
    assert imports_of("theater") <= {"theater"}


@pytest.mark.parametrize("package", ["supervisor", "worker", "chain"])
def test_each_process_imports_only_theater(package):
    assert imports_of(package) <= {"theater", package}


def test_public_surface_is_deliberate():
    assert sorted(theater.__all__) == [
        "ActorFailed", "Checkpoint", "ComponentError", "Event", "Home", "Manifest", "ManifestError", "NotFound",
        "ProtocolError", "Refused", "TheaterError", "Timeout", "Unreachable", "UsageError", "VerifyError",
        "__version__", "verify_chain",
    ]
    for name in theater.__all__:
        assert hasattr(theater, name), name
