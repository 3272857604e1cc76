"""`theater-server --metrics`: Prometheus text over HTTP, scraped and parsed with the library's
own parser, counting what happened to real actors; and every bad --metrics refused in one line."""

from __future__ import annotations

import http.client
import urllib.request
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import (
    ACTORS,
    EXAMPLES,
    OpsServer,
    cli_start,
    one_line_error,
    refuses_a_port_in_use,
    run_server,
    wait_for,
)

COUNTER = EXAMPLES / "counter" / "manifest.toml"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, metric: str, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


def slow_probe(tmp_path: Path) -> Path:
    """The probe, restarted after a failure, with a call time limit a busy loop runs into."""
    path = tmp_path / "slow.toml"
    path.write_text(f'name = "slow"\nversion = "0.1.0"\ncomponent = "{ACTORS / "probe.wat"}"\n\n'
                    '[[handler]]\ntype = "runtime"\n\n[[handler]]\ntype = "message-server"\n\n'
                    '[restart]\ntype = "permanent"\n\n[limits]\ncall_timeout = "300ms"\n')
    return path


def test_a_scrape_counts_actors_requests_spawns_exits_limits_and_the_chain(home, tmp_path):
    server = OpsServer(home, "--metrics", "127.0.0.1:0", "--max-actors", "2").start()
    try:
        url = server.info()["metrics"]
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/metrics"), url
        assert url in server.stdout                                   # said where, with the port bound
        counter = cli_start(server, COUNTER)
        for _ in range(3):
            assert server.cli("message", counter, "+1", "--request").code == 0
        slow = cli_start(server, slow_probe(tmp_path))
        r = server.cli("message", slow, "l", "--request")           # loops: stopped by its call time limit
        assert r.code != 0
        with server.client() as c:
            wait_for(lambda: (i := c.inspect(slow))["status"] == "running" and i["restarts"] == 1,
                     what="the slow probe restarted")
        third = server.cli("start", COUNTER)                          # past --max-actors: refused, counted
        assert third.code == 7 and "--max-actors" in third.err, third

        def settled() -> Samples | None:
            s = scrape(url)
            # (a mailbox is as its worker's last heartbeat saw it: one sent while a message waited
            # says 1 until the next, up to two seconds on)
            return s if value(s, "theater_actor_restarts_total") == 1 and \
                value(s, "theater_actors", status="running") == 2 and \
                value(s, "theater_actor_mailbox", actor=counter, name="counter") == 0 and \
                value(s, "theater_actors_refused_total", bound="max_actors") == 1 else None
        s = wait_for(settled, timeout=30, what="a snapshot with the restart")
        # a page elsewhere that points a name of its own at 127.0.0.1 (DNS rebinding) reads nothing
        port = int(url.split(":")[2].split("/")[0])
        for host, status in (("evil.example", 403), (f"evil.example:{port}", 403), (f"localhost:{port}", 200),
                             (f"127.0.0.1:{port}", 200)):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                conn.request("GET", "/metrics", headers={"Host": host})
                assert conn.getresponse().status == status, host
            finally:
                conn.close()
    finally:
        server.stop()

    assert value(s, "theater_actors", status="failed") == 0
    assert value(s, "theater_actor_exits_total", kind="abnormal") == 1
    assert value(s, "theater_actor_limit_stops_total", limit="call_timeout") == 1
    assert value(s, "theater_actors_refused_total", bound="children") == 0
    assert value(s, "theater_actor_spawn_seconds_count") == 3          # two starts and a restart
    assert 0 < value(s, "theater_actor_spawn_seconds_sum") < 60 * 3
    assert value(s, "theater_request_seconds_count", kind="request") >= 4
    assert value(s, "theater_request_seconds_count", kind="start") == 3           # the refused one too
    assert value(s, "theater_request_seconds_bucket", kind="request", le="+Inf") >= 4
    for actor, name in ((counter, "counter"), (slow, "slow")):
        assert value(s, "theater_actor_mailbox", actor=actor, name=name) == 0
        assert value(s, "theater_actor_resident_bytes", actor=actor, name=name) > 1 << 20
        assert value(s, "theater_actor_cpu_seconds_total", actor=actor, name=name) >= 0
    assert value(s, "theater_chain_up") == 1
    assert value(s, "theater_chain_events_total") > 10
    assert value(s, "theater_chain_commit_seconds_count") > 0
    assert value(s, "theater_chain_slowed_total") == 0                  # honest workers slow themselves
    assert value(s, "process_resident_memory_bytes") > 0                # the server itself


def test_metrics_and_the_console_are_off_by_default(server, home):
    info = orjson.loads((home.run / "server.json").read_bytes())
    assert info["metrics"] is None and info["console"] is None


@pytest.mark.parametrize("args, needle", [
    (("--metrics", "nonsense"), "expected HOST:PORT"),
    (("--metrics", "127.0.0.1:99999"), "expected HOST:PORT"),
    (("--metrics", "0.0.0.0:9464"), "--metrics-remote"),
    (("--metrics", "[::]:9464"), "--metrics-remote"),
    (("--metrics-remote",), "goes with --metrics"),
])
def test_bad_metrics_addresses(home, args, needle):
    one_line_error(run_server("--home", str(home.root), *args), "theater-server: ", needle)
    assert not (home.run / "server.json").exists()


def test_a_metrics_port_in_use(home):
    refuses_a_port_in_use(home, "--metrics")


def test_without_prometheus_client_it_says_how_to_get_it(home, tmp_path):
    shadow = tmp_path / "shadow" / "prometheus_client"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed')\n")
    r = run_server("--home", str(home.root), "--metrics", "127.0.0.1:0", env={"PYTHONPATH": str(shadow.parent)})
    one_line_error(r, "theater-server: ", "pip install 'theater[metrics]'")
