"""The replayer's sandbox: what of a worker's (``worker.sandbox``) it puts up around itself once it
has read all it needs (the chain, the components compiled), before any of the actor's code runs.

A replay runs a component and a record that come from an actor, which may be hostile, in a
process the operator started (often as root): wasm and the record's limits contain the
component; these layers contain the replayer should wasmtime not. The layers are a worker's,
decided and put up the same way (``theater.sandbox.detect``: one this machine lacks is left out
and said on stderr, which the CLI passes on; a network namespace the kernel refuses after all
too, as the fork server leaves it out; Landlock or seccomp refused ends the replay), and
``--no-sandbox`` turns the same three off as the server's does:

* always: no core dumps, ``no_new_privs``, no capability (as root, too);
* ``net``: a network namespace of its own (and, not being root, a user namespace);
* ``landlock``: reads only what every sandboxed process reads (``worker.sandbox.readable``: the
  interpreter, the system's libraries, ``/proc``), nothing of the home, and writes nowhere;
* ``seccomp``: the worker's allow-list without programs; a fatal call (``worker.syscalls.FATAL``)
  kills the replayer at once, there being no fork server to report it to.

Landlock, capabilities and a network namespace bind only the calling thread and the threads it
starts later: the replayer must have no other thread yet (checked).
"""

from __future__ import annotations

import os
import sys
import threading

from theater import _landlock as ll
from theater import _linux
from theater.paths import Home
from theater.sandbox import Layers

from .sandbox import SandboxError, drop_capabilities, own_network, python_dirs, readable


def confine(home: Home, layers: Layers) -> None:
    """Puts up ``layers`` around this process, for good. Raises SandboxError."""
    if threading.active_count() > 1 or len(os.listdir("/proc/self/task")) > 1:
        raise SandboxError("internal error: the replayer started a thread before it confined itself")
    bpf = None
    if "seccomp" in layers.on:
        from . import seccomp  # here: without libseccomp, a replay with the other layers still runs

        bpf = seccomp.build(False, kill=True)
    missing = dict(layers.missing)
    if "net" in layers.on:
        try:
            own_network()
        except OSError as e:
            missing["net"] = f"cannot make a network namespace: {e.strerror}"
    _linux.harden()
    drop_capabilities()
    if "landlock" in layers.on:
        # the module search path less its first entry: the current directory `python -m` put there
        search = sys.path if sys.flags.safe_path else sys.path[1:]
        try:
            ll.restrict(readable(python_dirs(home, search)), layers.landlock_abi)
        except OSError as e:
            raise SandboxError(f"Landlock refused the replayer's view: {e.strerror}") from None
    if bpf is not None:
        try:
            seccomp.load(bpf, listener=False)
        except OSError as e:
            raise SandboxError(str(e)) from None
    for layer, why in missing.items():
        print(f"sandbox layer {layer} is not in force: {why}", file=sys.stderr, flush=True)
