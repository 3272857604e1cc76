"""HTTP request overhead through the gateway, against the same request made directly from Python.

Used by ``scripts/bench.py --only http``. A loopback HTTP/1.1 server (keep-alive, a small
body) runs in a process of its own. Direct: ``httpx.Client`` GETs from this process. Through
the gateway: ``tests/actors/agent.wat`` makes the same GET once per message; each request's
time is the gap between the actor's call event and its ``send-http`` event in its chain (the
worker -> gateway -> server round trip and back, with the grant's checks and the
recording), so the client's own round trip to the actor is not counted.
"""

from __future__ import annotations

import itertools
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import agent  # noqa: E402  (the agent's manifest and message format)

_SERVER = textwrap.dedent("""
    import sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True      # headers and body go in two writes: no 40 ms delayed-ACK stall
        def do_GET(self):
            self.send_response(200); self.send_header("content-length", "2"); self.end_headers()
            self.wfile.write(b"ok")
        def log_message(self, *a): pass
    s = ThreadingHTTPServer(("127.0.0.1", 0), H)
    print(s.server_address[1], flush=True)
    s.serve_forever()
""")


def http_overhead(client: Any, tmp: Path, n: int) -> dict[str, float]:
    """``client``: a theater Client of the bench's server."""
    web = subprocess.Popen([sys.executable, "-c", _SERVER], stdout=subprocess.PIPE)
    try:
        assert web.stdout is not None
        port = int(web.stdout.readline())
        url = f"http://127.0.0.1:{port}/x"
        with httpx.Client() as h:
            for _ in range(50):
                h.get(url)
            direct = []
            for _ in range(n):
                t = time.perf_counter()
                h.get(url)
                direct.append((time.perf_counter() - t) * 1e6)
        m = agent.manifest(tmp, name="http-bench", http=f'allowed_hosts = ["127.0.0.1:{port}"]\n'
                                                        '[limits]\nevents_per_second = 10000000')
        actor = client.start(m)["id"]
        msg = agent.message("H", "GET", url)
        for _ in range(50):
            client.request(actor, msg)
        for _ in range(n):
            client.request(actor, msg)
        time.sleep(0.5)
        evs = list(client.events(actor))[-3 * n:]
        gaps = [(b.time_ns - a.time_ns) / 1000 for a, b in itertools.pairwise(evs)
                if a.type == "wasm" and b.type == "theater:simple/http-client/send-http"]
        client.stop(actor)
    finally:
        web.kill()
        web.wait()
    return {"http_direct_p50_us": statistics.median(direct), "http_gateway_p50_us": statistics.median(gaps),
            "http_gateway_overhead_p50_us": statistics.median(gaps) - statistics.median(direct)}
