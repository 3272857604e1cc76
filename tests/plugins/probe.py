"""A test-only hook that runs Python inside a worker after its sandbox is up: ``probe`` grants
``test:probe/probe.run``, which executes the bytes it is given.

It exists only for the tests (tests/test_sandbox.py): loaded by ``THEATER_PLUGINS=tests.plugins.probe``,
never shipped or registered otherwise. The worker imports ``tests.plugins.probe_handler``.
"""

from __future__ import annotations

from theater import grants

WIT = """package test:probe;

interface probe {
    /// Runs `code` (Python) in the worker; the value it leaves in `result`, or its exception.
    run: func(code: list<u8>) -> list<u8>;
}
"""

grants.register(grants.Spec("probe", imports=("test:probe/probe",), wit=WIT, worker="tests.plugins.probe_handler"))
