"""theater/wit against v0.2, and worker/wit.py's reading of it.

The expected strings below were written from the v0.2 WIT (colinrozzi/theater at 9e53b8b7,
crates/theater/wit/), so a signature that drifts from v0.2, or a WIT construct the parser
reads wrongly, shows up here as a readable diff.
"""

from __future__ import annotations

import shutil
import subprocess

from wasmtime import Engine
from wasmtime import component as wc

from worker.wit import render_func, signatures

from .toolchains import WIT

P = "theater:simple/"
STATE = "option<list<u8>>"
REQUEST = "record { method: string, uri: string, headers: list<tuple<string, string>>, body: option<list<u8>> }"
RESPONSE = "record { status: u16, headers: list<tuple<string, string>>, body: option<list<u8>> }"
REF = "record { hash: string }"
COMMAND = ("variant { success(record { stdout: string, stderr: string, exit-code: s32 }), "
           "error(record { message: string }) }")

V02 = {
    "http-client": {
        "send-http": f"func({REQUEST}) -> result<{RESPONSE}, string>",
    },
    "store": {
        "new": "func() -> result<string, string>",
        "store": f"func(string, list<u8>) -> result<{REF}, string>",
        "get": f"func(string, {REF}) -> result<list<u8>, string>",
        "exists": f"func(string, {REF}) -> result<bool, string>",
        "label": f"func(string, string, {REF}) -> result<_, string>",
        "get-by-label": f"func(string, string) -> result<option<{REF}>, string>",
        "remove-label": "func(string, string) -> result<_, string>",
        "remove-from-label": f"func(string, string, {REF}) -> result<_, string>",
        "store-at-label": f"func(string, string, list<u8>) -> result<{REF}, string>",
        "replace-content-at-label": f"func(string, string, list<u8>) -> result<{REF}, string>",
        "replace-at-label": f"func(string, string, {REF}) -> result<_, string>",
        "list-labels": "func(string) -> result<list<string>, string>",
        "list-all-content": f"func(string) -> result<list<{REF}>, string>",
        "calculate-total-size": "func(string) -> result<u64, string>",
    },
    "timing": {
        "now": "func() -> u64",
        "sleep": "func(u64) -> result<_, string>",
        "deadline": "func(u64) -> result<_, string>",
    },
    "random": {
        "random-bytes": "func(u32) -> result<list<u8>, string>",
        "random-range": "func(u64, u64) -> result<u64, string>",
        "random-float": "func() -> result<f64, string>",
        "generate-uuid": "func() -> result<string, string>",
    },
    "environment": {
        "get-var": "func(string) -> option<string>",
        "list-vars": "func() -> list<tuple<string, string>>",
        "exists": "func(string) -> bool",
    },
    "filesystem": {
        "read-file": "func(string) -> result<list<u8>, string>",
        "write-file": "func(string, string) -> result<_, string>",
        "list-files": "func(string) -> result<list<string>, string>",
        "delete-file": "func(string) -> result<_, string>",
        "create-dir": "func(string) -> result<_, string>",
        "delete-dir": "func(string) -> result<_, string>",
        "path-exists": "func(string) -> result<bool, string>",
        "execute-command": f"func(string, string, list<string>) -> result<{COMMAND}, string>",
        "execute-nix-command": f"func(string, string) -> result<{COMMAND}, string>",
    },
}


def test_handler_interfaces_parse_to_the_v02_signatures():
    sigs = signatures()
    for iface, funcs in V02.items():
        assert sigs[P + iface] == funcs, iface
    assert sigs[P + "http-types"] == {}            # types only, used by http-client
    assert sigs[P + "runtime"]["log"] == "func(string)"
    assert sigs[P + "message-server-client"]["handle-send"] == \
        f"func({STATE}, tuple<list<u8>>) -> result<tuple<{STATE}>, string>"


def test_every_interface_reads_as_a_real_component_types_it(wasm_tools, tmp_path):
    """A component built by wasm-tools from a world composed as worlds.wit documents (a world
    of one's own, theater/wit as a dependency) imports or exports every interface of the
    package; the parser must agree with it on every function's type."""
    wit = tmp_path / "wit"
    shutil.copytree(WIT, wit / "deps" / "theater-simple")
    handlers = ("store", "http-client", "timing", "random", "environment", "filesystem", "mcp-client")
    (wit / "world.wit").write_text(
        "package test:everything;\n\nworld everything {\n    include theater:simple/supervisor-actor;\n"
        + "".join(f"    import theater:simple/{h};\n" for h in handlers) + "}\n")
    subprocess.run([*wasm_tools, "component", "embed", "--dummy", str(wit), "--world", "everything",
                    "-o", str(tmp_path / "core.wasm")], check=True, capture_output=True)
    subprocess.run([*wasm_tools, "component", "new", str(tmp_path / "core.wasm"), "-o", str(tmp_path / "c.wasm")],
                   check=True, capture_output=True)

    engine = Engine()
    ty = wc.Component.from_file(engine, str(tmp_path / "c.wasm")).type
    found: dict[str, dict[str, str]] = {}
    for items in (ty.imports(engine), ty.exports(engine)):
        for name, ext in items.items():
            assert isinstance(ext.ty, wc.ComponentInstanceType), name
            found[name] = {f: render_func(fx.ty) for f, fx in ext.ty.exports(engine).items()
                           if isinstance(fx.ty, wc.FuncType)}
    assert found == signatures()
