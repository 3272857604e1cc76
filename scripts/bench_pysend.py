"""One-way messages sent by a componentize-py actor, for ``scripts/bench.py --only python``.

The sender is the Python counter the tests build (tests/guests/counter-py): a request
``O<N> <actor>`` makes it send N numbered one-way messages in a loop, then one request, all
inside one call. The receiver is the WAT counter, whose reply to that closing request is
its count, so what arrived is known without reading chains. One sender, one receiver: the
figure is one Python sender's rate (``oneway_msgs_per_s`` is two WAT pairs at once).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from theater.client import Client

# As the bench's WAT actors: limits out of the way, and room for a long loop in one call.
LIMITS = """
[limits]
mailbox = 1000000
events_per_second = 10000000
event_bytes_per_second = "1GiB"
call_timeout = "600s"
"""


def py_oneway(c: Client, wasm: Path, counter: Path, tmp: Path, n: int) -> dict[str, Any]:
    """Sends/s from the Python sender to a counter (median of 3 runs of ``n``), and how many
    of each run did not arrive (a send that fails fails the run instead, with its reason)."""
    manifest = tmp / "sender-py.toml"
    manifest.write_text(f'name = "sender-py"\nversion = "0.1.0"\ncomponent = "{wasm}"\n'
                        '[[handler]]\ntype = "runtime"\n[[handler]]\ntype = "message-server"\n' + LIMITS)
    sender, receiver = c.start(manifest)["id"], c.start(counter)["id"]
    try:
        count = int(c.request(sender, f"O100 {receiver}".encode()))        # warm up
        if count != 101:        # a counter built before O<N> existed answers its own count
            print("  py_oneway skipped: the component does not send on O<N> <actor> (tests/guests/counter-py does)")
            return {}
        rates, lost = [], []
        for _ in range(3):
            t = time.perf_counter()
            got = int(c.request(sender, f"O{n} {receiver}".encode()))
            elapsed = time.perf_counter() - t
            delivered = got - count - 1                                   # - 1: the closing request
            count = got
            rates.append(delivered / elapsed)
            lost.append(n - delivered)
    finally:
        c.stop(sender)
        c.stop(receiver)
    return {"py_oneway_msgs_per_s": statistics.median(rates), "py_oneway_lost": max(lost)}
