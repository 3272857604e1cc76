"""How an incarnation ended, classified: what the worker said, what the server did, what the kernel did.

The order of evidence: a kill the server decided (hang, escalation) is abnormal whatever
else happened; then the worker's own last words (its failure, or why it stopped); then a
stop someone asked for; then the kernel's verdict (the OOM killer, a signal, an exit status).
"""

from __future__ import annotations

import signal

from theater._linux import signal_name
from theater.errors import ActorFailed, ComponentError, ManifestError, Refused, TheaterError

from .launch import describe_status
from .registry import ActorRecord, Exit, ExitKind


def classify(rec: ActorRecord, status: int) -> Exit:
    """The exit of ``rec``'s current incarnation, given its wait status (or -signal)."""
    run = rec.run
    how, value = describe_status(status) if status >= 0 else ("signal", -status)
    code = value if how == "exit" else -value
    report = run.report
    if run.kill_reason:
        return Exit(ExitKind.ABNORMAL, run.kill_reason,
                    run.kill_detail or f"the server killed it ({run.kill_reason})", status=code)
    if report is not None:
        if run.stop_reason and report.kind == ExitKind.SHUTDOWN:
            return Exit(ExitKind.SHUTDOWN, run.stop_reason, None, status=code, by_parent=run.stop_by_parent)
        return Exit(report.kind, report.reason, report.error, report.data, code)
    if run.stop_reason:
        what = f"killed by {signal_name(value)} after its shutdown timeout" if how == "signal" else None
        return Exit(ExitKind.SHUTDOWN, run.stop_reason, what, status=code, by_parent=run.stop_by_parent)
    if how == "signal" and value == signal.SIGKILL and run.group is not None and run.group.oom_killed():
        return Exit(ExitKind.ABNORMAL, "oom", f"killed by the kernel: over its process memory limit "
                    f"({rec.spec.limits.process_memory} bytes)", status=code)
    if how == "signal":
        reason = "killed" if value == signal.SIGKILL else "signal"
        return Exit(ExitKind.ABNORMAL, reason, f"the worker process died of {signal_name(value)}", status=code)
    return Exit(ExitKind.ABNORMAL, "crash", f"the worker process exited with status {value}", status=code)


def seccomp(rec: ActorRecord, call: str | None) -> None:
    """The fork server killed the worker for a system call its seccomp filter forbids (``call``)."""
    if call:
        rec.run.kill_reason = "seccomp"
        rec.run.kill_detail = f"killed by its seccomp filter: the worker made a forbidden system call ({call})"


def reported(reason: str, error: str | None) -> Exit:
    """What a worker's last words say: it failed (``failed``) or it is stopping (``exiting``)."""
    if error is not None:
        return Exit(ExitKind.ABNORMAL, reason, error)
    return Exit(ExitKind.NORMAL if reason == "shutdown" else ExitKind.SHUTDOWN, reason)


def start_error(rec: ActorRecord, exit_: Exit) -> TheaterError:
    """Why a first start failed, as the kind of error it is (a bad component is bad input)."""
    kind = exit_.reason.removeprefix("start:")
    if kind == "component":
        return ComponentError(f"{rec.manifest.source}: component {rec.manifest.component!r}: {exit_.error}")
    if kind == "compile":       # too big or too slow to compile under the server's [compile] ceiling
        return Refused(f"{rec.manifest.source}: component {rec.manifest.component!r}: {exit_.error}")
    if kind == "manifest":
        return ManifestError(f"{exit_.error}")
    return ActorFailed(f"actor {rec.name} failed to start: {exit_.error or exit_.reason}")


def parent_news(exit_: Exit) -> str:
    """Which supervisor-handlers callback a parent hears for a child's exit."""
    if exit_.kind == ExitKind.ABNORMAL:
        return "child_error"
    if exit_.reason == "shutdown":
        return "child_exit"
    return "child_external_stop"
