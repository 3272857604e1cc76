"""A browser's load on the web console, for ``scripts/bench.py --console``.

``Viewer`` does what the console's pages do in a browser, without one: it opens the tree page
and holds its live stream, fetching the tree again on every ``actors`` notice (as the page's
script does), and keeps a tab open on every running actor: its page, its samples, and its live
stream, read as events arrive. Tabs of actors that are gone are closed. The bench then measures
its figures as usual, with the console on and these pages open; ``seen`` counts the live
notices the viewer read (a viewer that read none was not looking).

The viewer runs in a process of its own (``python bench_console.py URL``, stopped by SIGTERM,
printing ``seen``), as a browser would: in the bench's process its threads would take the GIL
from the client whose round trips are being measured.
"""

from __future__ import annotations

import contextlib
import http.client
import signal
import sys
import threading
from urllib.parse import urlsplit

import orjson


class Viewer:
    def __init__(self, url: str) -> None:
        u = urlsplit(url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.stopping = threading.Event()
        self.tabs: dict[str, http.client.HTTPConnection] = {}
        self.lock = threading.Lock()
        self.seen = 0
        self.tree: http.client.HTTPConnection | None = None

    def start(self) -> Viewer:
        self._get("/")
        self.tree = self._follow("/api/stream", self._tree_changed)
        self._tree_changed()
        return self

    def stop(self) -> None:
        self.stopping.set()
        with self.lock:
            conns = [*self.tabs.values(), *([self.tree] if self.tree else [])]
            self.tabs.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(2) if conn.sock else None
            conn.close()

    def _get(self, path: str) -> bytes:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request("GET", path)
            return conn.getresponse().read()
        finally:
            conn.close()

    def _follow(self, path: str, on_actors: object = None) -> http.client.HTTPConnection:
        """Holds a live stream open in a thread, reading every notice (and reacting to ``actors``)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=None)
        conn.request("GET", path)
        response = conn.getresponse()

        def read() -> None:
            with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
                while not self.stopping.is_set():
                    line = response.readline()
                    if not line:
                        return
                    if line.startswith(b"event: "):
                        self.seen += 1
                        if line.startswith(b"event: actors") and callable(on_actors):
                            on_actors()
        threading.Thread(target=read, daemon=True).start()
        return conn

    def _tree_changed(self) -> None:
        """What the tree page does on a notice, and a tab opened (or closed) per actor."""
        if self.stopping.is_set():
            return
        with contextlib.suppress(OSError, http.client.HTTPException):
            self._get("/fragments/tree")
            running = {a["id"] for a in orjson.loads(self._get("/api/actors"))["actors"]}
            with self.lock:
                for gone in set(self.tabs) - running:
                    self.tabs.pop(gone).close()
                for actor in running - set(self.tabs):
                    self._get(f"/actors/{actor}")
                    self._get(f"/api/samples?actor={actor}")
                    self.tabs[actor] = self._follow(f"/api/stream?actor={actor}")


def main(url: str) -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    viewer = Viewer(url).start()
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM})
    viewer.stop()
    print(viewer.seen, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
