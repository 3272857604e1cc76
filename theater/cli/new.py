"""``theater new``: a ready actor project, in Python or WAT, for the handlers asked for.

It writes ``NAME/`` with a manifest granting the handlers, a WIT world importing exactly their
interfaces (``wit/world.wit``, with ``theater:simple`` beside it in ``wit/deps``, the layout
componentize-py, cargo-component and wasm-tools read), the source with every export stubbed and
typed (``app.py``, or ``NAME.wat``), and a README. ``theater build NAME`` builds a Python one.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

from .. import grants
from ..errors import UsageError
from ..manifest import parse
from . import _output
from ._context import Context

WIT = Path(__file__).resolve().parent.parent / "wit"
GUEST = Path(__file__).resolve().parent.parent / "guest"
# Handlers every project gets: it logs, and it takes messages (so it can be talked to).
ALWAYS = ("runtime", "message-server")
# The handlers a project may ask for: those whose interfaces are in theater/wit.
OFFERED = ("runtime", "message-server", "supervisor", "http-client", "store", "timing", "random", "environment",
           "filesystem", "mcp-client")
# What a grant needs beside its type to be accepted (a starting point to edit).
GRANT_KEYS = {
    "http-client": 'allowed_hosts = []                 # hosts it may reach, e.g. ["api.openai.com"] '
                   "(docs/gateway.md)\n"
                   '# headers = { authorization = "Bearer ${secret:API_KEY}" }   # a server secret, never seen '
                   "by the actor\n",
    "store": '# max_bytes = "64MiB"\n',
    "filesystem": 'path = "data"                      # the only directory it sees, relative to this file\n'
                  "new_dir = true\n",
    "mcp-client": '[handler.servers.example]          # docs/mcp.md\nurl = "http://127.0.0.1:8000/mcp"\n'
                  'allowed_tools = ["*"]\n',
}
# A WIT name (the actor's, its world's and its folder's): lowercase words joined by "-".
NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z][a-z0-9]*)*")
MAX_NAME = 64


def new(args: argparse.Namespace, ctx: Context) -> int:
    """Write a new actor project in the folder NAME (a path; its last part names the actor).

    It grants runtime and message-server, plus each --handler; the WIT world imports exactly
    their interfaces. --lang python (the default) writes app.py, built by `theater build NAME`
    into NAME.wasm; --lang wat writes NAME.wat, which needs no build.
    """
    folder = Path(args.name)
    name = folder.name
    if not NAME.fullmatch(name) or len(name) > MAX_NAME:
        raise UsageError(f"NAME {name!r}: expected lowercase letters and digits in words joined by '-', starting "
                         f"with a letter, at most {MAX_NAME} characters (it names the actor and its WIT world)")
    handlers = list(ALWAYS)
    for h in args.handler or ():
        if h not in OFFERED:
            raise UsageError(f"--handler {h!r}: unknown handler (known: {', '.join(OFFERED)})")
        if h not in handlers:
            handlers.append(h)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UsageError(f"{folder}: already exists and is not an empty folder")
    files = _files(name, handlers, args.lang)
    parse(files["manifest.toml"], str(folder / "manifest.toml"))     # what it writes must start
    try:
        (folder / "wit" / "deps").mkdir(parents=True, exist_ok=True)
        shutil.copytree(WIT, folder / "wit" / "deps" / "theater-simple")
        for rel, text in files.items():
            (folder / rel).write_text(text)
    except OSError as e:
        raise UsageError(f"{folder}: cannot write the project: {e.strerror or e}") from None
    if ctx.json:
        _output.emit_json({"name": name, "path": str(folder), "lang": args.lang, "handlers": handlers,
                           "files": sorted([*files, "wit/deps/theater-simple/"])})
    else:
        build = f"theater build {folder} && " if args.lang == "python" else ""
        _output.line(f"wrote {folder}/ ({args.lang}; handlers: {', '.join(handlers)}); next: "
                     f"{build}theater run {folder / 'manifest.toml'}", sys.stderr)
    return 0


def _files(name: str, handlers: list[str], lang: str) -> dict[str, str]:
    component = f"{name}.wasm" if lang == "python" else f"{name}.wat"
    files = {"manifest.toml": _manifest(name, handlers, component), "wit/world.wit": _world(name, handlers),
             "README.md": _readme(name, handlers, lang, component), ".gitignore": "__pycache__/\n"}
    if lang == "python":
        files["app.py"] = _app(name, handlers)
        files[".gitignore"] += f"/{component}\n"
    else:
        wat = (GUEST / "actor.wat").read_text()
        files[component] = wat.replace("__LOGLEN__", str(len(f"{name} started"))).replace("__NAME__", name)
    return files


def _manifest(name: str, handlers: list[str], component: str) -> str:
    built = "built by `theater build` from app.py" if component.endswith(".wasm") else "compiled when it starts"
    out = [f'name = "{name}"', 'version = "0.1.0"', f'description = "{name}: a Theater actor"',
           f'component = "{component}"{" " * max(1, 30 - len(component))}# {built}',
           "init_state = {}                    # its first state (JSON); docs/writing-actors.md", ""]
    for h in handlers:
        out += ["[[handler]]", f'type = "{h}"']
        if h in GRANT_KEYS:
            out.append(GRANT_KEYS[h].rstrip("\n"))
        out.append("")
    out += ["[restart]", 'type = "permanent"                 # restarted after a failure; README.md, Manifests', "",
            "[limits]", '# memory = "64MiB"                 # linear memory; also process_memory, call_timeout, ...',
            ""]
    return "\n".join(out)


def _world(name: str, handlers: list[str]) -> str:
    imports = [i for h in handlers for i in grants.SPECS[h].imports]
    exports = ["theater:simple/actor", *(e for h in handlers for e in grants.SPECS[h].exports)]
    lines = [f"// The world {name} is built against: the interfaces its manifest grants, and the exports",
             "// the host calls. theater:simple is in deps/theater-simple (a copy of theater/wit).",
             f"package local:{name};", "", f"world {name} {{",
             *(f"    import {i};" for i in imports), *(f"    export {e};" for e in exports), "}", ""]
    return "\n".join(lines)


_MODULES = {"runtime": "runtime (log, get_chain, shutdown)",
            "message-server": "message_server_host (send, request, open_channel, respond_to_request, ...)",
            "supervisor": "supervisor (spawn, list_children, stop_child, ...)",
            "http-client": "http_client (send_http; the types in http_types)",
            "store": "store (new, store, get, label, get_by_label, ...)", "timing": "timing (now, sleep, deadline)",
            "random": "random (random_bytes, random_range, ...)", "environment": "environment (get_var, ...)",
            "filesystem": "filesystem (read_file, write_file, ...)", "mcp-client": "mcp_client (list_tools, call_tool)"}

_APP_HEAD = '''"""__NAME__: a Theater actor in Python, built into __NAME__.wasm by `theater build` (componentize-py).

Every export gets the state the host keeps for the actor and returns the new state first;
`json_state` makes that state a JSON value ({} at first). Raising `theater_actor.Err(...)`
(or any exception) fails the call and the actor, with that reason in its chain; its
supervisor decides what comes next. Host functions are in these modules of wit_world.imports:
__MODULES__
With the default build (WASI), print() works as well: what it writes is recorded, and
`theater run` shows it; a `theater build --no-wasi` build traps on it (use runtime.log).
"""

from theater_actor import json_state, text
from wit_world import exports
from wit_world.imports import runtime__TYPES__


class Actor(exports.Actor):
    @json_state
    def init(self, state: dict, params: tuple[str]) -> tuple[dict]:
        """On start and after a restart (state: the last committed one)."""
        (actor_id,) = params
        runtime.log(f"__NAME__ {actor_id} started")
        return (state,)
'''

_MESSAGES = '''

class MessageServerClient(exports.MessageServerClient):
    @json_state
    def handle_send(self, state: dict, params: tuple[bytes]) -> tuple[dict]:
        """A one-way message."""
        (data,) = params
        state["messages"] = state.get("messages", 0) + 1
        return (state,)

    @json_state
    def handle_request(self, state: dict, params: tuple[str, bytes]) -> tuple[dict, tuple[bytes | None]]:
        """A request; the reply (None: answer later with message_server_host.respond_to_request)."""
        request_id, data = params
        state["requests"] = state.get("requests", 0) + 1
        return (state, (f"hello, {text(data)}".encode(),))

    @json_state
    def handle_channel_open(self, state: dict,
                            params: tuple[str, bytes]) -> tuple[dict, tuple[types.ChannelAccept]]:
        """Someone opens a channel: accept it (with a first message, or None) or not."""
        channel_id, data = params
        return (state, (types.ChannelAccept(accepted=False, message=None),))

    @json_state
    def handle_channel_message(self, state: dict, params: tuple[str, bytes]) -> tuple[dict]:
        channel_id, data = params
        return (state,)

    @json_state
    def handle_channel_close(self, state: dict, params: tuple[str]) -> tuple[dict]:
        (channel_id,) = params
        return (state,)
'''

_CHILDREN = '''

class SupervisorHandlers(exports.SupervisorHandlers):
    @json_state
    def handle_child_error(self, state: dict, params: tuple[str, types.WitActorError]) -> tuple[dict]:
        """A child failed (its restart follows this actor's [restart] strategy)."""
        child_id, error = params
        runtime.log(f"child {child_id} failed: {error.error_type.name}")
        return (state,)

    @json_state
    def handle_child_exit(self, state: dict, params: tuple[str, bytes | None]) -> tuple[dict]:
        """A child ended normally, with the data it passed to shutdown."""
        child_id, data = params
        return (state,)

    @json_state
    def handle_child_external_stop(self, state: dict, params: tuple[str]) -> tuple[dict]:
        """A child was stopped from outside (theater stop)."""
        (child_id,) = params
        return (state,)
'''


def _app(name: str, handlers: list[str]) -> str:
    modules = "\n".join(f"    {_MODULES[h]}" for h in handlers)
    text = _APP_HEAD.replace("__MODULES__", modules).replace("__TYPES__", ", types").replace("__NAME__", name)
    return text + _MESSAGES + (_CHILDREN if "supervisor" in handlers else "")


def _readme(name: str, handlers: list[str], lang: str, component: str) -> str:
    if lang == "python":
        source = ("`app.py` (the actor; `theater_actor`, the helper it imports, comes with theater), "
                  "`wit/world.wit` (what it imports and exports), `manifest.toml` (what it is granted)")
        build = (f"```bash\npip install 'theater[python]'     # componentize-py, once\ntheater build .     "
                 f"               # app.py -> {component} (about a minute); --no-wasi: no WASI imports\n```\n\n")
    else:
        source = (f"`{component}` (the actor, component WAT), `wit/world.wit` (the world it may grow into), "
                  "`manifest.toml` (what it is granted)")
        build = "Nothing to build: the WAT is compiled when the actor starts (`theater build .` checks it).\n\n"
        if "supervisor" in handlers:
            build += ("`supervisor-handlers` (told when a child fails or ends) is not stubbed in WAT; an actor "
                      "without it is simply not told. tests/actors/parent.wat in theater's source exports it.\n\n")
    return (f"# {name}\n\nA Theater actor ({lang}). Handlers granted: {', '.join(handlers)}.\n\n"
            f"Files: {source}.\n\n## Build\n\n{build}## Run\n\n```bash\n"
            "theater run manifest.toml                  # starts a server if none runs; Ctrl-C stops it\n"
            f"theater message {name} world --request    # from another terminal: hello, world\n"
            f"theater events {name}                     # every call, recorded\n```\n\n"
            "To grant more (http-client, store, timing, ...), add a `[[handler]]` to the manifest and the "
            "interface to `wit/world.wit`, then build again. The guide: docs/writing-actors.md in "
            "theater's source.\n")


def _new_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="the project folder to create; its last part names the actor")
    p.add_argument("--lang", choices=("python", "wat"), default="python", help="the actor's language")
    p.add_argument("--handler", action="append", metavar="TYPE",
                   help=f"a handler to grant besides {' and '.join(ALWAYS)} (repeatable): {', '.join(OFFERED[2:])}")


COMMANDS = {"new": (new, "write a new actor project (Python or WAT)", _new_args)}
