"""Components are compiled before their workers start, each in a short-lived process of its own.

A worker only loads a compiled component (an mmap). Compiling is done here, by
``python -m worker compile`` (see worker/compiler.py), so it is charged to no actor: Cranelift
needs ~400 MiB and ~20 s of CPU for an 18 MB componentize-py component, more than an actor's
default process memory. Never in the server itself (its memory is every actor's), never in the
fork server (a fork after compiling deadlocks wasmtime's thread pool).

One job per component and engine flavour: concurrent starts of the same component wait for the
same process. At most ``PARALLEL`` compile at once; the rest wait their turn. Each has the
``[compile]`` ceiling of server.toml: a cgroup of its own (made and limited before the process
may begin: it waits for "go" on its stdin), else RLIMIT_DATA; and a timeout, after which it is
killed. The start timeout of the actor counts from when its worker is forked, after the compile.
While a job runs, whoever asked to be told (``watch``) hears how long it has been, every second.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from theater._linux import signal_name
from theater._units import format_size
from theater.compiling import ending
from theater.config import Compile
from theater.paths import Home

from .compiled import Compiled
from .launch import ForkServer, clean_env
from .limits import Controller, Group, RlimitGroup
from .registry import ActorRecord, Status

log = logging.getLogger("theater.server")

# Compiles at a time: each may use both cores (Cranelift compiles functions in parallel) and
# up to its memory ceiling.
PARALLEL = 2
# Tasks a compile process may have: Python, and a compile thread per core.
COMPILE_PIDS = 256
# How often a waiting client hears how long the compile has taken so far.
PROGRESS_INTERVAL = 1.0


@dataclass
class Outcome:
    """What a start waited for: ``compiled`` (seconds, peak, bytes) when it waited for a compile,
    or ``reason`` ("component": not a valid component; "compile": could not be compiled) and
    ``error`` when the component cannot be started."""

    compiled: dict[str, Any] | None = None
    reason: str | None = None
    error: str | None = None


Then = Callable[[Outcome], None]


@dataclass(eq=False)
class Job:
    sha: str
    fuel: bool
    size: int
    asked: float                                   # clock, when the first start asked
    waiters: list[Then] = field(default_factory=list)
    watchers: list[Callable[[float, int], None]] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    group: Group | None = None
    output: IO[bytes] | None = None
    compiled: Compiled | None = None               # where its output goes, until it is in the cache
    timed_out: bool = False


class Compiles:
    def __init__(self, home: Home, config: Compile, source: str, limits: Controller,
                 later: Callable[[float, Callable[[], None]], Any], clock: Callable[[], float],
                 user: tuple[int, int] | None = None) -> None:
        self.home = home
        self.config = config
        self.source = source                       # the server.toml that sets [compile], for messages
        self.limits = limits
        self.later = later
        self.clock = clock
        self.user = user
        self.jobs: dict[tuple[str, bool], Job] = {}
        self.queue: list[Job] = []
        self._names = 0

    def then_spawn(self, rec: ActorRecord, launcher: ForkServer, confine: dict[str, Any],
                   failed: Callable[[ActorRecord, Outcome], None]) -> None:
        """Forks the actor's worker once its component is compiled (at once when it is cached); its
        start timeout counts from the fork. ``failed`` hears of a component that cannot be compiled,
        or (an outcome without error) of an actor stopped meanwhile, which is not started."""
        run, spec = rec.run, rec.spec
        fuel = spec.limits.fuel > 0

        def compiled(outcome: Outcome) -> None:
            if rec.run is not run:
                return                              # relaunched meanwhile: that launch waits for itself
            if rec.status not in (Status.STARTING, Status.RESTARTING):
                return failed(rec, Outcome())
            if outcome.error is not None:
                return failed(rec, outcome)
            run.compiled, run.launched, run.last_seen = outcome.compiled, self.clock(), self.clock()
            launcher.spawn(rec.actor_id, rec.name, spec.component, fuel, confine)
        self.ensure(spec.component, fuel, compiled)

    def ensure(self, sha: str, fuel: bool, then: Then) -> None:
        """Calls ``then`` at once when the component is compiled already, else when its compile ends."""
        if self.home.compiled(sha, fuel).exists() and self.home.shape(sha).exists():
            then(Outcome())
            return
        job = self.jobs.get((sha, fuel))
        if job is None:
            wasm = self.home.components / f"{sha}.wasm"
            job = self.jobs[(sha, fuel)] = Job(sha, fuel, wasm.stat().st_size if wasm.exists() else 0, self.clock())
            self.queue.append(job)
            self.later(PROGRESS_INTERVAL, lambda: self._progress(job))
        job.waiters.append(then)
        self._next()

    def watch(self, sha: str, fuel: bool, tell: Callable[[float, int], None]) -> None:
        """``tell(seconds so far, component bytes)`` every second while this component compiles."""
        job = self.jobs.get((sha, fuel))
        if job is not None:
            job.watchers.append(tell)

    def _progress(self, job: Job) -> None:
        if self.jobs.get((job.sha, job.fuel)) is not job:
            return
        for tell in job.watchers:
            tell(self.clock() - job.asked, job.size)
        self.later(PROGRESS_INTERVAL, lambda: self._progress(job))

    # ---- processes -----------------------------------------------------------------------

    def _next(self) -> None:
        while self.queue and sum(1 for j in self.jobs.values() if j.proc is not None) < PARALLEL:
            self._start(self.queue.pop(0))

    def _start(self, job: Job) -> None:
        """The compile process, confined before it begins: its cgroup is made and limited first,
        it joins it, and only then is told to go."""
        ceiling = self.config.memory
        self._names += 1
        try:
            job.group = self.limits.create(f"compile-{self._names}", ceiling, 0, COMPILE_PIDS)
        except OSError as e:
            log.error("compile of %s: no cgroup for it (%s); limiting it with RLIMIT_DATA", job.sha[:12], e)
            job.group = RlimitGroup(ceiling)
        cmd = [sys.executable, "-m", "worker", "compile", "--home", str(self.home.root), job.sha,
               *(["--fuel"] if job.fuel else []),
               *(["--data-limit", str(ceiling)] if isinstance(job.group, RlimitGroup) else []),
               *(["--user", f"{self.user[0]}:{self.user[1]}"] if self.user else [])]
        job.output = tempfile.TemporaryFile()  # noqa: SIM115 - read and closed when the process ends
        try:
            job.compiled = Compiled(self.home, job.sha, job.fuel, self.user[1] if self.user else None)
            cmd += ["--out", ",".join(map(str, job.compiled.fds))]
            job.proc = subprocess.Popen(cmd, env=clean_env(self.home), cwd=self.home.root, stdin=subprocess.PIPE,
                                        stdout=job.output, stderr=job.output, pass_fds=job.compiled.fds)
        except OSError as e:
            job.output.close()
            return self._done(job, Outcome(reason="compile", error=f"the compile process did not start ({e})"))
        job.compiled.close_fds()
        assert job.proc.stdin is not None
        try:
            job.group.admit(job.proc.pid)
            job.proc.stdin.write(b"go\n")
        except OSError as e:                        # never compile unconfined: give up on it
            log.error("compile of %s: could not confine its process (%s)", job.sha[:12], e)
            job.proc.kill()
        with contextlib.suppress(OSError):
            job.proc.stdin.close()
        log.info("compiling component %s (%s) in process %d", job.sha[:12], _mb(job.size), job.proc.pid)
        self.later(self.config.timeout, lambda: self._too_slow(job))

    def _too_slow(self, job: Job) -> None:
        if job.proc is not None and job.proc.poll() is None:
            job.timed_out = True
            job.proc.kill()

    def reap(self) -> None:
        """Finishes every job whose process has ended (after SIGCHLD, and on the server's tick)."""
        for job in [j for j in self.jobs.values() if j.proc is not None and j.proc.poll() is not None]:
            self._finish(job)
        self._next()

    def _finish(self, job: Job) -> None:
        assert job.proc is not None and job.output is not None and job.group is not None
        status = job.proc.returncode
        job.output.seek(0)
        out = job.output.read()[-65536:]
        job.output.close()
        outcome = self._outcome(job, status, out)
        if outcome.error is None:
            outcome = self._publish(job, outcome)
        if outcome.error is None:
            log.info("compiled component %s in %.1fs, peak %.0f MiB", job.sha[:12], self.clock() - job.asked,
                     (outcome.compiled or {}).get("peak", 0) / 2**20)
        else:
            log.error("compile of %s failed: %s%s", job.sha[:12], outcome.error,
                      f"\n{out.decode(errors='replace')[-2000:]}" if outcome.reason == "compile" else "")
        self._done(job, outcome)

    def _publish(self, job: Job, outcome: Outcome) -> Outcome:
        assert job.compiled is not None
        try:
            job.compiled.publish()
        except OSError as e:
            return Outcome(reason="compile", error=f"the compiled component could not be stored in the cache ({e})")
        return outcome

    def _done(self, job: Job, outcome: Outcome) -> None:
        """The job is over: its group and its unpublished output go, and every start that
        waited for it goes on."""
        if job.group is not None:
            job.group.remove_soon(self.later)
        if job.compiled is not None:
            job.compiled.discard()
        del self.jobs[(job.sha, job.fuel)]
        for then in job.waiters:
            try:
                then(outcome)
            except Exception:
                log.exception("theater-server: internal error after a compile (continuing)")

    def _outcome(self, job: Job, status: int, out: bytes) -> Outcome:
        how, said = ending(status, out)
        if how == "ok":
            return Outcome(compiled={k: said[k] for k in ("seconds", "peak", "bytes") if k in said})
        if how == "invalid":
            return Outcome(reason="component", error=str(said["error"]))
        if job.timed_out:
            return Outcome(reason="compile", error=(
                f"compiling it ({_mb(job.size)}) took longer than the compile timeout ({self.config.timeout:g}s); "
                f"raise `timeout` under [compile] in {self.source}"))
        if how == "memory" or (job.group is not None and job.group.oom_killed()):
            return Outcome(reason="compile", error=(
                f"too big to compile ({_mb(job.size)}) within the compile memory ceiling "
                f"({format_size(self.config.memory)}); raise `memory` under [compile] in {self.source}"))
        what = f"status {status}" if status >= 0 else signal_name(-status)
        return Outcome(reason="compile", error=f"the compile process failed ({what}); see the server log")

    def close(self) -> None:
        """Server shutdown: compiles still running are killed (the next start compiles again)."""
        for job in self.jobs.values():
            if job.proc is not None and job.proc.poll() is None:
                job.proc.kill()
                job.proc.wait()
            if job.group is not None and job.group.path is not None:
                job.group.remove(timeout=1.0)
            if job.compiled is not None:
                job.compiled.discard()
            if job.output is not None:
                job.output.close()
        self.jobs.clear()
        self.queue.clear()


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"
