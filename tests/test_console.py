"""The web console (`theater-server --console`, docs/console.md) in headless Chromium, against a
real server: the tree shows a parent and its children, a stopped actor leaves the page without
a reload, an event holding `<script>` is shown as text, a tampered chain fails at the right event.
Each page's screenshot is written under the test's temporary folder.

Chromium is Debian's (`.ci/run` installs it), driven by Playwright (its own browser downloads are
never used). Every page also collects the browser's console errors (a script error, or anything
the Content-Security-Policy blocked): a page that logs one fails its test.
One server and one Chromium serve the module; each test starts actors of its own and opens its own tabs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from theater.events import encode_data
from theater.paths import Home

from .conftest import ACTORS, OpsServer, kill_all
from .test_supervision import spawn, write_parent, write_probe

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync"]
PROBE = ACTORS / "probe.toml"
WAIT = 30_000          # ms: generous, for a loaded 2-core machine


@pytest.fixture(scope="module")
def console() -> Iterator[tuple[OpsServer, str]]:
    """One server for the module: each test starts actors of its own and looks at those only."""
    root = Path(tempfile.mkdtemp(prefix="th-", dir="/tmp"))
    server = OpsServer(Home(root), "--console", "127.0.0.1:0").start()
    try:
        url = server.info()["console"]
        assert url.startswith("http://127.0.0.1:") and url in server.stdout
        yield server, url
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def chromium(tmp_path_factory) -> Iterator[Any]:
    """One Chromium for the module, with a fresh profile of its own."""
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    sync_api = pytest.importorskip("playwright.sync_api")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, args=FLAGS,
                                                        headless=True, viewport={"width": 1280, "height": 900})
        try:
            yield context
        finally:
            context.close()
            _kill_leftovers(profile)


class Browser:
    """The module's Chromium as one test sees it: ``page`` opens a tab that records console
    errors (a script error, or anything the Content-Security-Policy blocked)."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.errors: list[str] = []
        self.pages: list[Any] = []

    def page(self) -> Any:
        page = self.context.new_page()
        page.set_default_timeout(WAIT)
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.pages.append(page)
        return page


@pytest.fixture
def browser(chromium) -> Iterator[Browser]:
    b = Browser(chromium)
    try:
        yield b
    finally:
        for page in b.pages:
            page.close()
    assert not b.errors, b.errors


def _kill_leftovers(profile: Path) -> None:
    """Any Chromium process of this module's profile still alive (only those it started)."""
    mine = set()
    for p in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if str(profile) in " ".join(p.cmdline()):
                mine.add(p.pid)
    kill_all(mine)


def live(page: Any) -> None:
    """Waits until the page's stream is open (and where its actor's chain ends is known)."""
    page.wait_for_selector("#live.on")


def charted(page: Any) -> None:
    """Waits until the page's memory chart has drawn a sample (they come every two seconds)."""
    page.wait_for_selector("figure.chart[data-metric=rss] polyline:not([points=''])", state="attached")
    assert "MiB" in page.inner_text("figure.chart[data-metric=rss] .value")


def start(server: OpsServer, manifest: Path) -> str:
    with server.client() as c:
        return c.start(manifest)["id"]


# ---- the tree ----------------------------------------------------------------------------------------

def test_the_tree_shows_a_parent_and_its_children(console, browser, tmp_path):
    server, url = console
    parent = start(server, write_parent(tmp_path, "boss"))
    with server.client() as c:
        kids = [spawn(c, parent, write_probe(tmp_path, f"kid{i}")) for i in range(2)]
    page = browser.page()
    page.goto(url)
    node = f'li[data-actor="{parent}"]'
    page.wait_for_selector(node)
    for i, kid in enumerate(kids):
        child = page.locator(f'{node} > ul.children > li[data-actor="{kid}"]')
        assert child.locator("a.name").inner_text() == f"kid{i}"
        assert child.locator("a.name").get_attribute("href") == f"/actors/{kid}"
        assert "running" in child.locator(".status").inner_text()
    row = page.locator(f"{node} > .row")
    assert "boss" in row.inner_text() and "one_for_one" in row.inner_text() and "0 restarts" in row.inner_text()
    charted(page)
    page.screenshot(path=str(tmp_path / "tree.png"), full_page=True)

    page.click(f'li[data-actor="{kids[0]}"] a.name')             # an actor's page, from the tree
    page.wait_for_selector("#summary h1")
    assert "kid0" in page.inner_text("#summary h1")
    assert page.locator(f'#summary a[href="/actors/{parent}"]').count() == 1       # its parent, linked
    assert (tmp_path / "tree.png").stat().st_size > 0


def test_stopping_an_actor_updates_the_pages_without_a_reload(console, browser, tmp_path):
    server, url = console
    gone = start(server, write_probe(tmp_path, "goner"))
    stays = start(server, write_probe(tmp_path, "stayer"))
    tree = browser.page()
    tree.goto(url)
    tree.wait_for_selector(f'li[data-actor="{gone}"]')
    live(tree)
    tree.evaluate("window.sameDocument = true")
    actor = browser.page()
    actor.goto(f"{url}actors/{gone}")
    live(actor)
    actor.evaluate("window.sameDocument = true")

    with server.client() as c:
        c.stop(gone)
    tree.wait_for_selector(f'li[data-actor="{gone}"]', state="detached")
    assert tree.locator(f'li[data-actor="{stays}"]').count() == 1
    actor.wait_for_selector("#status:has-text('stopped')")      # (the CSP allows no eval: no wait_for_function)
    for page in (tree, actor):
        assert page.evaluate("window.sameDocument") is True       # updated in place, not reloaded
    tree.screenshot(path=str(tmp_path / "tree-after-stop.png"), full_page=True)


# ---- escaping ------------------------------------------------------------------------------------------

PAYLOAD = '<script>window.pwned = 1</script><img src="x" onerror="window.pwned = 2"><b>bold</b>'


def test_an_event_holding_script_is_shown_as_text(console, browser, tmp_path):
    server, url = console
    probe = start(server, PROBE)
    page = browser.page()
    page.goto(f"{url}actors/{probe}")
    live(page)
    with server.client() as c:
        c.request(probe, b"o" + PAYLOAD.encode())                            # the probe logs it

    def check(p: Any, where: str) -> None:
        p.wait_for_selector(f"{where} :text('window.pwned = 1')")
        assert "<script>window.pwned = 1</script>" in p.inner_text(where)
        assert p.locator(f"{where} script, {where} img, {where} b").count() == 0
        assert p.evaluate("typeof window.pwned") == "undefined"

    check(page, "#latest")                      # arrived live, over the stream
    charted(page)
    page.screenshot(path=str(tmp_path / "actor.png"), full_page=True)
    page.reload()
    check(page, "#latest")                      # rendered by the server
    page.goto(f"{url}actors/{probe}/chain")
    check(page, "table.chain")
    assert "Verified" in page.inner_text("#verify")
    page.screenshot(path=str(tmp_path / "chain.png"), full_page=True)


# ---- a tampered chain ----------------------------------------------------------------------------------

def test_a_tampered_chain_shows_failing_at_the_right_event(console, browser, tmp_path):
    server, url = console
    probe = start(server, PROBE)
    with server.client() as c:
        for _ in range(6):
            assert c.request(probe, b"n3") == b"logged"     # three "spam" log events each
        spam = [e.seq for e in c.events(probe) if e.to_json()["body"] == {"input": ["spam"], "output": None}]
    bad = spam[len(spam) // 2]
    db = sqlite3.connect(server.home.chains_db, timeout=30, isolation_level=None)
    try:
        aid = db.execute("SELECT aid FROM actors WHERE actor = ?", (probe,)).fetchone()[0]
        db.execute("UPDATE events SET data = ? WHERE aid = ? AND seq = ?",
                   (encode_data({"input": ["eggs"], "output": None}), aid, bad))
    finally:
        db.close()

    page = browser.page()
    page.goto(f"{url}actors/{probe}/chain?limit=500")
    verdict = page.inner_text("#verify")
    assert f"failed at event {bad}:" in verdict, verdict
    row = page.locator(f"tr#e{bad}")
    assert "bad" in row.get_attribute("class")
    assert "first bad event" in row.inner_text() and "eggs" in row.inner_text()
    assert page.locator("tr.bad").count() == 1                        # that event, and no other
    page.screenshot(path=str(tmp_path / "chain-tampered.png"), full_page=True)

    page.click("#verify a")                                           # the link to it, on its own page
    page.wait_for_selector(f"tr#e{bad}.bad")
    assert page.url.endswith(f"#e{bad}")
