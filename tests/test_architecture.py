"""The layout's rules, checked: one import direction, and a deliberate public surface."""

from __future__ import annotations

import ast
import subprocess
import sys

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


# ---- inside each package: no import circles, no module too long to read in one sitting ----------

MAX_LINES = 400


def _module_name(path, root) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_graph(packages=PACKAGES, root=ROOT) -> dict[str, set[str]]:
    """Each module of ``packages`` -> the modules of the same packages it imports: every import
    statement, relative or absolute, including those under ``if TYPE_CHECKING``. ``from . import x``
    is an import of submodule ``x`` when there is one, else of the package itself."""
    files = {_module_name(p, root): p for pkg in packages for p in (root / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        here = name.split(".") if is_pkg else name.split(".")[:-1]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in files}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                    target = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    target = node.module or ""
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in files:
                        edges.add(sub)
                    elif target in files:
                        edges.add(target)
        graph[name] = edges - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}          # 1: on the current path, 2: done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return [*path[path.index(m):], m]
            if m not in state and (found := visit(m)):
                return found
        path.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_no_module_imports_a_module_that_imports_it_back():
    cycle = find_cycle(module_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_check_sees_type_checking_imports(tmp_path):
    """The check itself: a circle closed only under TYPE_CHECKING is still a circle."""
    pkg = tmp_path / "p"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import B\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import A\n")
    assert find_cycle(module_graph(("p",), tmp_path)) == ["p.a", "p.b", "p.a"]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_is_too_long_to_read_in_one_sitting(package):
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / package).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {long}"


def test_every_request_kind_declares_the_kind_that_answers_it():
    """One reply shape on the wire: a request (it carries an ``id``, or a ``rid``) is answered
    by a declared kind, and every declared answer is itself a kind of the protocol."""
    from theater import protocol

    for name, kind in protocol.KINDS.items():
        if "id" in kind.fields:
            assert kind.reply is not None, f"{name} is a request and declares no reply"
        if kind.reply is not None:
            assert kind.reply in protocol.KINDS, f"{name} is answered by an unknown kind {kind.reply!r}"
    assert protocol.KINDS["msg"].reply == "reply" and protocol.KINDS["append"].reply == "ack"


@pytest.mark.parametrize(("module", "heavy"), [
    ("theater.cli", ("wasmtime", "asyncio", "importlib.metadata", "cryptography")),
    ("supervisor.__main__", ("wasmtime", "asyncio", "prometheus_client")),
])
def test_commands_start_without_what_only_some_of_their_work_needs(module, heavy):
    """Every `theater` command is a new process, and tests and `theater run` start servers
    often: wasmtime (the CLI checks WAT with it in `build` only, the server parses WAT), asyncio
    (pulled in by pyzmq's monitor helpers, used only when a CURVE handshake fails), the
    metrics exporter's prometheus_client (--metrics only) and, in the CLI, cryptography (the
    commands that verify or print the host key) cost 40-130 ms each at every start."""
    code = f"import sys, {module}; print([m for m in {heavy!r} if m in sys.modules])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
