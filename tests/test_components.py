"""Components as the server stores them: by the SHA-256 of their wasm, WAT converted once."""

from __future__ import annotations

from supervisor import components

from .conftest import EXAMPLES


def test_a_wat_source_is_converted_once_and_again_if_its_file_is_gone(home, monkeypatch):
    data = (EXAMPLES / "counter" / "counter.wat").read_bytes()
    converted: list[str] = []
    real = components.to_wasm
    monkeypatch.setattr(components, "to_wasm", lambda data, what, file="": converted.append(what) or real(data, what))
    home.ensure()
    sha = components.store(home, data, "counter")
    assert components.store(home, data, "counter") == sha and converted == ["counter"]
    (home.components / f"{sha}.wasm").unlink()
    assert components.store(home, data, "counter") == sha and len(converted) == 2
    assert (home.components / f"{sha}.wasm").read_bytes().startswith(components.WASM_MAGIC)
    binary = (home.components / f"{sha}.wasm").read_bytes()
    assert components.store(home, binary, "binary") == sha and len(converted) == 3   # binaries: as they are
