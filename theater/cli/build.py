"""``theater build``: a project's source into the component its manifest names.

A Python actor (``app.py`` beside ``manifest.toml``, its world in ``wit/``) is built by
componentize-py, an optional dependency (``pip install 'theater[python]'``), with the actor
helper ``theater_actor`` on its Python path: that module lives in ``theater/guest/``, which is
shipped with theater but never imported by the host (it runs inside the component). A WAT
actor needs no build (it is compiled when it starts): its text is checked. Rust and JavaScript
actors are built by their own toolchains (docs/writing-actors.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from .. import manifest
from ..errors import ComponentError, TheaterError, UsageError
from . import _output
from ._context import Context

GUEST = Path(__file__).resolve().parent.parent / "guest"
WORLD = re.compile(r"^\s*world\s+(%?[a-z][a-z0-9-]*)\s*\{", re.M)
INSTALL = "pip install 'theater[python]'"


def build(args: argparse.Namespace, ctx: Context) -> int:
    """Build the actor in DIR (default: here) into the component its manifest.toml names.

    Python (app.py): componentize-py against the single world in DIR/wit, with WASI (print
    works; --no-wasi: no WASI imports at all, and print traps). Its output is shown; the
    component is replaced only when the build succeeds. --dry-run prints the command instead.
    WAT: checked only (it is compiled when the actor starts).
    """
    folder = Path(args.dir)
    path = folder if folder.is_file() else folder / "manifest.toml"
    folder = path.parent
    m = manifest.load(path)
    out = folder / m.component
    if m.component.endswith(".wat"):
        return _check_wat(ctx, out)
    app = folder / f"{args.app}.py"
    if not app.is_file():
        raise UsageError(f"{folder}: no {app.name}: `theater build` builds Python actors (and checks WAT ones); "
                         "for Rust and JavaScript see docs/writing-actors.md")
    _check_links(folder / "wit")
    world = args.world or _world(folder / "wit")
    where = folder.resolve()
    cmd = [*_componentize_py(), "-d", str(where / "wit"), "-w", world, "componentize",
           *(["--stub-wasi"] if args.no_wasi else []), "-p", str(where), "-p", str(GUEST), args.app]
    if args.dry_run:
        _output.line(shlex.join([*cmd, "-o", str(out.resolve())]))
        return 0
    if not ctx.json:
        _output.line(f"building {out} from {app.name} with componentize-py (about a minute)...", sys.stderr)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=".build-", dir=where) as tmp:
        built = Path(tmp) / "component.wasm"
        # its own backtrace (Rust's) tells a user nothing about their code
        proc = subprocess.run([*cmd, "-o", str(built)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              cwd=where, env={**os.environ, "RUST_BACKTRACE": "0", "RUST_LIB_BACKTRACE": "0"})
        if proc.returncode != 0 or not built.is_file():
            raise _failed(out.name, proc.returncode, proc.stdout.decode(errors="replace"), [where, GUEST])
        os.replace(built, out)
    seconds = time.monotonic() - started
    size = out.stat().st_size
    if ctx.json:
        _output.emit_json({"component": str(out), "bytes": size, "seconds": round(seconds, 1),
                           "wasi": not args.no_wasi})
    else:
        _output.line(f"built {out} ({size / 1e6:.1f} MB) in {seconds:.0f}s", sys.stderr)
    return 0


def _componentize_py() -> list[str]:
    """The componentize-py command of this installation, or one line saying how to get it."""
    beside = Path(sys.executable).parent / "componentize-py"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("componentize-py")
    if found:
        return [found]
    if importlib.util.find_spec("componentize_py") is not None:
        return [sys.executable, "-c", "import sys, componentize_py; sys.argv[0] = 'componentize-py'; "
                                      "componentize_py.script()"]
    raise TheaterError(f"componentize-py is not installed, and a Python actor needs it to build: {INSTALL}")


def _failed(name: str, status: int, said: str, paths: list[Path]) -> TheaterError:
    """componentize-py's failure as the user's error, on stderr: what Python said about their
    code (a syntax error with its caret, an import's traceback) or where in their WIT the
    innermost cause is, with their paths; the error, theater's last line, is that cause. The
    componentize-py script's own traceback, the outer causes and Rust's backtrace are left out.
    Output of another shape is shown whole."""
    text = said.replace("\r\n", "\n")
    for i, p in enumerate(paths):            # componentize-py mounts each -p directory as /<i>
        text = text.replace(f'"/{i}/', f'"{p}/')
    head, _, causes = text.partition("\nCaused by:\n")
    _, marker, python = head.partition("AssertionError: ")
    cause = _innermost(causes.partition("\nStack backtrace:")[0])
    if not (marker and cause):
        for ln in text.rstrip("\n").splitlines():
            _output.line(ln, sys.stderr)
        return TheaterError(f"building {name} failed: componentize-py exited with status {status} "
                            "(its messages are above)")
    summary, *where = cause
    python = python.strip("\n")
    shown = (python.splitlines() if "\n" in python else []) + where
    for ln in shown:
        _output.line(ln, sys.stderr)
    at = next((ln.strip()[4:] for ln in where if ln.strip().startswith("--> ")), None)
    return TheaterError(f"building {name} failed: {summary}" + (f" ({at})" if at else ""))


def _innermost(causes: str) -> list[str]:
    """The last of anyhow's causes ("N: ..." when there are several): its line, then the lines
    that show where (a WIT file's line and caret), dedented."""
    lines = textwrap.dedent(causes.strip("\n")).splitlines()
    starts = [i for i, ln in enumerate(lines) if re.match(r"\d+: ", ln)]
    last = lines[starts[-1]:] if starts else lines
    if not last or not last[0].strip():
        return []
    first = re.sub(r"^\d+: ", "", last[0]).strip()
    return [first, *textwrap.dedent("\n".join(last[1:])).rstrip().splitlines()]


def _check_links(wit: Path) -> None:
    """A link in the project's WIT that leads nowhere, said with its name: a copied project (
    examples/agent links theater's WIT) got "No such file or directory (os error 2)", naming nothing."""
    for entry in (*wit.glob("*"), *wit.glob("deps/*")):
        if entry.is_symlink() and not entry.exists():
            raise UsageError(f"{entry}: a link to {os.readlink(entry)}, which is not there; put a copy of the "
                             f"WIT it stands for there (theater's own: {Path(manifest.__file__).parent / 'wit'})")


def _world(wit: Path) -> str:
    """The one world declared in ``wit/*.wit`` (not in its deps)."""
    names = [n for f in sorted(wit.glob("*.wit")) for n in WORLD.findall(f.read_text())] if wit.is_dir() else []
    if len(names) != 1:
        found = f"worlds {', '.join(names)}" if names else "no world"
        raise UsageError(f"{wit}: expected one WIT world, found {found} (name one with --world)")
    return names[0].lstrip("%")


def _check_wat(ctx: Context, path: Path) -> int:
    import wasmtime  # here: every other command starts faster without it (~50 ms)

    try:
        wasmtime.wat2wasm(path.read_text())
    except OSError as e:
        raise ComponentError(f"{path}: cannot read: {e.strerror or e}") from None
    except wasmtime.WasmtimeError as e:
        first = str(e).strip().splitlines()
        raise ComponentError(f"{path}: not valid WAT: {first[0] if first else e}") from None
    if ctx.json:
        _output.emit_json({"component": str(path), "checked": True})
    else:
        _output.line(f"{path}: valid WAT; nothing to build (it is compiled when the actor starts)", sys.stderr)
    return 0


def _build_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", nargs="?", default=".", help="the project folder, or its manifest (default: .)")
    p.add_argument("--no-wasi", action="store_true",
                   help="build with no WASI imports (componentize-py --stub-wasi): print() traps")
    p.add_argument("--world", help="the WIT world to build against (default: the one in DIR/wit)")
    p.add_argument("--app", default="app", help="the Python module holding the actor (default: app)")
    p.add_argument("--dry-run", action="store_true", help="print the componentize-py command, run nothing")


COMMANDS = {"build": (build, "build an actor project into its component (Python: componentize-py)", _build_args)}
