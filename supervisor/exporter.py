"""The metrics over HTTP, in Prometheus's text format (``--metrics HOST:PORT``).

prometheus_client (an optional extra: ``pip install 'theater[metrics]'``) serves them from
threads of its own. A scrape never touches the server's loop or its sockets: it reads the
loop's latest ``metrics.Snapshot`` (one reference, swapped whole once a second: consistent,
at most a second old), reads each worker's memory and CPU with psutil, and asks the chain
process for its counts on a socket and a ZeroMQ context of its own.

The metrics carry actor ids and names and have no authentication: they listen on loopback
unless ``--metrics-remote`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psutil
import zmq

from theater import protocol
from theater._histogram import Histogram
from theater.endpoints import host_name, host_port, is_loopback, loopback_host_header
from theater.errors import ProtocolError, UsageError

from .metrics import Metrics
from .room import BOUNDS

try:
    import prometheus_client
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
except ImportError:             # the extra is not installed: --metrics says how to get it
    prometheus_client = None

# How long a scrape waits for the chain process's counts before leaving them out.
CHAIN_TIMEOUT = 1.0


def parse_address(value: str, remote: bool) -> tuple[str, int]:
    """``HOST:PORT`` (or a bare PORT, on 127.0.0.1); a host off loopback only with ``remote``."""
    host, port = host_port(value, "--metrics", 9464)
    if not remote and not is_loopback(host):
        raise UsageError(f"--metrics {value}: {host} is reachable from other hosts and the metrics have no "
                         f"authentication; listen on loopback (127.0.0.1:PORT), or add --metrics-remote")
    return host, port


class Exporter:
    """A prometheus_client collector over the server's metrics; ``start`` serves it."""

    def __init__(self, metrics: Metrics, chain_endpoint: str) -> None:
        self.metrics = metrics
        self.chain_endpoint = chain_endpoint
        self.ctx: zmq.Context | None = None
        self.httpd: Any = None
        self.url = ""

    def start(self, host: str, port: int) -> str:
        """Listens (in prometheus_client's threads); the URL to scrape, with the port bound."""
        if prometheus_client is None:
            raise UsageError("--metrics needs the prometheus_client package: pip install 'theater[metrics]'")
        registry = prometheus_client.CollectorRegistry()
        registry.register(self)
        prometheus_client.ProcessCollector(registry=registry)      # the server process itself
        try:
            self.httpd, _ = prometheus_client.start_http_server(port, host, registry)
        except OSError as e:
            raise UsageError(f"--metrics {host}:{port}: cannot listen there: {e.strerror or e}") from None
        if is_loopback(host):       # answered only under a loopback name: no page elsewhere reads it
            self.httpd.set_app(_loopback_only(self.httpd.get_app(), host))
        self.ctx = zmq.Context(io_threads=1)
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.httpd.server_port}/metrics"
        return self.url

    def close(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        if self.ctx is not None:
            self.ctx.destroy(linger=0)
            self.ctx = None

    # ---- a scrape (prometheus_client's thread) ------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        snap = self.metrics.snapshot
        actors = GaugeMetricFamily("theater_actors", "Actors the server knows, by status.", labels=["status"])
        for status, n in sorted(snap.by_status.items()):
            actors.add_metric([status], n)
        yield actors
        yield CounterMetricFamily("theater_actor_restarts", "Actor restarts (by supervision or on request).",
                                  value=snap.restarts)
        yield _by_label(CounterMetricFamily, "theater_actor_exits", "Ended actor processes, by exit kind "
                        "(normal: it stopped itself; shutdown: it was stopped; abnormal: it failed).", "kind",
                        {k: snap.exits.get(k, 0) for k in ("normal", "shutdown", "abnormal")})
        yield _by_label(CounterMetricFamily, "theater_actor_limit_stops", "Actors stopped by one of their "
                        "limits, by limit.", "limit", snap.limit_stops)
        yield _by_label(CounterMetricFamily, "theater_actors_refused", "New actors (starts, spawns, restarts of "
                        "ended ones) refused by a bound on live actors, by bound.", "bound",
                        {k: snap.refused.get(k, 0) for k in BOUNDS})
        yield _histogram("theater_actor_spawn_seconds", "From an actor's launch to its init done.", snap.spawn)
        requests = HistogramMetricFamily("theater_request_seconds", "Client requests, from their arrival at "
                                         "the server to its answer, by kind.", labels=["kind"])
        for kind, h in sorted(snap.requests.items()):
            requests.add_metric([kind], h.cumulative(), sum_value=h.sum)
        yield requests
        yield from self._per_actor(snap.actors)
        yield from self._chain()

    def _per_actor(self, rows: Any) -> Iterator[Metric]:
        labels = ["actor", "name"]
        mailbox = GaugeMetricFamily("theater_actor_mailbox", "Messages waiting in an actor's mailbox "
                                    "(from its last heartbeat).", labels=labels)
        memory = GaugeMetricFamily("theater_actor_resident_bytes", "Resident memory of an actor's worker "
                                   "process.", labels=labels)
        cpu = CounterMetricFamily("theater_actor_cpu_seconds", "CPU time (user and system) of an actor's "
                                  "current worker process.", labels=labels)
        for row in rows:
            mailbox.add_metric([row.id, row.name], row.mailbox)
            if row.pid is None:
                continue
            try:
                p = psutil.Process(row.pid)
                with p.oneshot():
                    rss, times = p.memory_info().rss, p.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue            # it ended since the snapshot
            memory.add_metric([row.id, row.name], rss)
            cpu.add_metric([row.id, row.name], times.user + times.system)
        yield from (mailbox, memory, cpu)

    def _chain(self) -> Iterator[Metric]:
        stats = self._ask_chain()
        yield GaugeMetricFamily("theater_chain_up", "Whether the chain process answered this scrape.",
                                value=1 if stats is not None else 0)
        if stats is None:
            return
        yield CounterMetricFamily("theater_chain_events", "Events the chain process made durable since it "
                                  "started.", value=stats["events"])
        yield _histogram("theater_chain_commit_seconds", "One group commit of the chain (link, sign, write, "
                         "fsync).", Histogram.from_wire(stats["commit_seconds"]))
        yield CounterMetricFamily("theater_chain_slowed", "Times the chain slowed a worker that wrote events "
                                  "faster than its actor's limits allow (a worker slows itself first: a bug, or "
                                  "a compromised worker).", value=stats["slowed"])

    def _ask_chain(self) -> dict[str, Any] | None:
        if self.ctx is None:
            return None
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(self.chain_endpoint)
            sock.send_multipart(protocol.encode({"k": "query", "id": "metrics", "what": "stats"}))
            if not sock.poll(CHAIN_TIMEOUT * 1000):
                return None
            header, _ = protocol.decode(sock.recv_multipart())
            return header if header["k"] == "ok" and isinstance(header.get("commit_seconds"), dict) else None
        except (zmq.ZMQError, ProtocolError, KeyError, ValueError):
            return None
        finally:
            sock.close()


def _loopback_only(app: Callable[..., Any], host: str) -> Callable[..., Any]:
    """A WSGI app that answers 403 to a request whose Host header names neither loopback nor
    ``host`` (the name it was told to listen on, which resolves to loopback)."""
    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        given = environ.get("HTTP_HOST", "")
        if not loopback_host_header(given) and host_name(given).lower() != host.lower():
            start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8")])
            return [f"the metrics answer a loopback name (localhost, 127.0.0.1, [::1]) or {host} only\n".encode()]
        return app(environ, start_response)
    return guarded


def _by_label(family: Any, name: str, doc: str, label: str, values: dict[str, int]) -> Metric:
    m = family(name, doc, labels=[label])
    for key, n in sorted(values.items()):
        m.add_metric([key], n)
    return m


def _histogram(name: str, doc: str, h: Histogram) -> Metric:
    m = HistogramMetricFamily(name, doc)
    m.add_metric([], h.cumulative(), sum_value=h.sum)
    return m
