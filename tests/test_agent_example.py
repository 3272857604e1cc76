"""examples/agent, the worked LLM agent: built by ``theater build`` (cached), run against a stub
chat-completions server on loopback started by the test, then replayed offline with it gone.

One test, because every step needs the one before: the conversation grows across requests
(the model sees it), the API key is a server secret that reaches the model's server and
nothing else, the transcript is in the store, and the chain alone reproduces it all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from .conftest import ROOT, Server
from .toolchains import built_project, precompiled

AGENT = ROOT / "examples" / "agent"
KEY = "sk-test-agent-5e1f"


class Model:
    """A stub OpenAI-compatible chat-completions server: it answers with the number of messages
    it got and the last one, and records every request."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        model = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                model.seen.append({"path": self.path, "auth": self.headers.get("authorization"), "body": body})
                content = f"#{len(body['messages'])}: you said {body['messages'][-1]['content']}"
                out = json.dumps({"id": "c1", "object": "chat.completion", "model": body["model"],
                                  "choices": [{"index": 0, "finish_reason": "stop",
                                               "message": {"role": "assistant", "content": content}}]}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *_: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Idempotent: the test stops it midway, and again on the way out."""
        self.httpd.shutdown()
        self.httpd.server_close()


def project(folder: Path, port: int) -> Path:
    """examples/agent with its component built, pointed at the stub on ``port``."""
    shutil.copytree(AGENT, folder, ignore=shutil.ignore_patterns("__pycache__", "*.wasm"))
    shutil.copyfile(built_project(AGENT), folder / "agent.wasm")
    text = (folder / "manifest.toml").read_text()
    text = text.replace("https://api.openai.com/v1/chat/completions", f"http://127.0.0.1:{port}/v1/chat/completions")
    text = re.sub(r'allowed_hosts = \["api.openai.com"\]', f'allowed_hosts = ["127.0.0.1:{port}"]', text)
    (folder / "manifest.toml").write_text(text)
    return folder / "manifest.toml"


@pytest.mark.timeout(1800)      # on a cache miss: componentize-py (~1 min), then Cranelift (~40 s)
def test_the_agent_talks_to_a_model_keeps_transcripts_and_replays_offline(home, tmp_path):
    home.ensure()
    config = home.root / "server.toml"
    config.write_text(f'[secrets]\nOPENAI_API_KEY = "{KEY}"\n')
    os.chmod(config, 0o600)
    model, server = Model(), Server(home)
    try:
        manifest = project(tmp_path / "agent", model.port)
        precompiled(home, manifest.parent / "agent.wasm")
        server.start()
        actor = converse(server, model, manifest)
        server.stop()
        # offline: no server, no model, no store
        r = server.cli("replay", actor, "--json", timeout=600)
    finally:
        model.stop()
        server.stop()
    assert r.code == 0, (r.out, r.err)
    report = orjson.loads(r.out)
    assert report["ok"] is True and report["calls"] >= 5, report


def converse(server: Server, model: Model, manifest: Path) -> str:
    """Two questions, the transcript, a question with the model gone; the agent's id."""
    r = server.cli("start", str(manifest), timeout=600)
    assert r.code == 0, r.err
    actor = r.text.strip()

    first = server.cli("message", "agent", "hello", "--request")
    assert first.code == 0 and first.out == b"#2: you said hello", (first.out, first.err)
    second = server.cli("message", "agent", "and again", "--request")
    assert second.out == b"#4: you said and again", (second.out, second.err)
    # the model saw the system prompt and the conversation so far, and the key from the secret
    assert [m["role"] for m in model.seen[1]["body"]["messages"]] == ["system", "user", "assistant", "user"]
    assert model.seen[1]["body"]["messages"][2]["content"] == "#2: you said hello"
    assert {s["auth"] for s in model.seen} == {f"Bearer {KEY}"} and model.seen[0]["path"] == "/v1/chat/completions"

    transcript = server.cli("message", "agent", "/transcript", "--request")
    assert [m["content"] for m in orjson.loads(transcript.out)] == \
        ["hello", "#2: you said hello", "and again", "#4: you said and again"]
    state = orjson.loads(server.cli("state", "agent").out)
    assert state["turns"] == 2 and len(state["messages"]) == 4
    stored = server.home.root / "store" / state["store"] / "objects" / state["transcript"]
    assert orjson.loads(stored.read_bytes()) == orjson.loads(transcript.out)
    events = server.cli("events", "agent", "--json")
    assert b"send-http" in events.out and KEY.encode() not in events.out

    model.stop()                 # no model from here on
    down = server.cli("message", "agent", "are you there?", "--request")
    assert down.out.startswith(b"error: the model could not be reached"), (down.out, down.err)
    assert orjson.loads(server.cli("state", "agent").out)["turns"] == 2     # nothing changed
    assert server.cli("stop", "agent").code == 0
    return actor
