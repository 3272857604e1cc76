"""supervisor.launch.OutputRelay: workers' output lines into the server's log, at most
MAX_LINES a second, what is past that counted (not split line by line: see its comment)."""

from __future__ import annotations

import os

from supervisor import launch
from supervisor.launch import OutputRelay


def test_lines_are_copied_whole_up_to_the_budget_and_the_rest_counted(monkeypatch):
    now = [10.0]
    monkeypatch.setattr(launch.time, "monotonic", lambda: now[0])
    out: list[str] = []
    relay = OutputRelay(out.append)
    r, w = os.pipe()
    os.set_blocking(r, False)
    try:
        os.write(w, b"one\ntwo\nhal")
        relay.read(r)
        os.write(w, b"f\n" + b"".join(b"line %d\n" % i for i in range(500)) + b"tail")
        relay.read(r)
        assert out[:3] == ["one", "two", "half"] and len(out) == OutputRelay.MAX_LINES
        assert out[-1] == f"line {OutputRelay.MAX_LINES - 4}"
        assert relay.dropped == 503 - OutputRelay.MAX_LINES and relay.partial == b"tail"
        now[0] += 1.0                                   # the next second: the count is said, then more lines
        os.write(w, b"!\nnext\n")
        relay.read(r)
        assert out[-3:] == [f"theater-server: {503 - OutputRelay.MAX_LINES} worker log lines dropped (over "
                            f"{OutputRelay.MAX_LINES}/s)", "tail!", "next"]
        os.write(w, b"x" * 10_000 + b"\n")              # a long line is cut, not kept whole
        relay.read(r)
        assert len(out[-1]) == 4096
        os.close(w)
        assert relay.read(r) is False
    finally:
        os.close(r)
