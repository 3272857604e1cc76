"""Actor manifests (``manifest.toml``): parsed once, validated once, frozen.

Every error names the file, the key and what is allowed, e.g.::

    examples/counter/manifest.toml: [limits] memory = "lots": expected a size such as "64MiB"

A manifest is validated where it is read (the CLI, for a clear message before anything
starts) and again by the server, which never trusts a client.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from . import grants, mcptools
from ._units import parse_duration, parse_size
from .errors import ManifestError
from .paths import read_regular, within
from .protocol import MAX_INT, MAX_PAYLOAD

# Largest manifest file read; and largest component or init_state file, which must fit one
# message to the server and from the server to the worker.
MAX_MANIFEST_FILE = 1 << 20
MAX_FILE = MAX_PAYLOAD
# [limits] cpu is a share of one core; more than this many cores is a typo.
MAX_CPU = 1024
MAX_WASM_MEMORY = 4 << 30

RESTART_TYPES = ("permanent", "transient", "temporary")
STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
STATE_MODES = ("last", "initial")


@dataclass(frozen=True)
class Handler:
    type: str
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Backoff:
    min: float = 0.1
    max: float = 10.0
    jitter: float = 0.2


@dataclass(frozen=True)
class Restart:
    """How this actor is restarted by its supervisor, and how it supervises its own children."""

    type: str = "permanent"
    strategy: str = "one_for_one"
    intensity: int = 3
    period: float = 5.0
    shutdown: float | None = 5.0      # None = brutal_kill
    backoff: Backoff | None = None
    state: str = "last"


@dataclass(frozen=True)
class Limits:
    memory: int = 64 << 20            # linear memory of the component
    process_memory: int = 256 << 20   # the whole worker process (cgroup when writable)
    call_timeout: float = 30.0        # wall time of one export call
    fuel: int = 0                     # deterministic budget per call; 0 = off
    cpu: float = 0.0                  # share of one core; 0 = no limit
    mailbox: int = 1000               # queued messages before senders wait for room
    events_per_second: int = 10_000   # above this the actor is throttled (and that is recorded)
    event_bytes_per_second: int = 16 << 20   # the same for the bytes its events carry
    children: int = 100               # children it may have at once (granted supervisor); spawns beyond are refused
    descendants: int = 1000           # live actors beneath it, children's children included; spawns beyond refused

    @property
    def max_message(self) -> int:
        """The largest message (send, request, channel) the actor takes: a quarter of its linear
        memory (the message is copied into it, through the byte adapter's memory, which may hold
        two bytes a byte while it converts; and the actor needs room to answer), never more than
        one wire message carries."""
        return min(self.memory // 4, MAX_PAYLOAD)

    def too_large(self, actor_id: str, size: int) -> str | None:
        """Why a message of ``size`` bytes is refused before it reaches the actor, if it is."""
        if size <= self.max_message:
            return None
        return (f"a message of {size} bytes is over actor {actor_id}'s limit of {self.max_message} bytes "
                f"(a quarter of its [limits] memory, and at most {MAX_PAYLOAD})")


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    component: str
    source: str                        # the file it came from, for messages
    description: str = ""
    init_state: str | dict[str, Any] | None = None   # a JSON file path or an inline table
    handlers: tuple[Handler, ...] = ()
    restart: Restart = Restart()
    limits: Limits = Limits()
    limits_given: frozenset[str] = frozenset()     # the [limits] keys the manifest set itself
    tools: tuple[mcptools.Tool, ...] = ()          # [[mcp.tool]]: what it offers MCP clients

    def effective_limits(self, defaults: Limits) -> Limits:
        """The server's defaults, overridden by what this manifest says."""
        return replace(defaults, **{k: getattr(self.limits, k) for k in self.limits_given})

    @property
    def granted_imports(self) -> frozenset[str]:
        return frozenset(i for h in self.handlers for i in grants.SPECS[h.type].imports)

    def has_handler(self, type_: str) -> bool:
        return any(h.type == type_ for h in self.handlers)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load(path: str | Path) -> Manifest:
    p = Path(path)
    try:
        text = read_regular(p, MAX_MANIFEST_FILE).decode("utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{p}: no such manifest file") from None
    except (OSError, UnicodeDecodeError) as e:
        hint = f"; its manifest is {p / 'manifest.toml'}" if (p / "manifest.toml").is_file() else ""
        raise ManifestError(f"{p}: cannot read manifest: {reason(e)}{hint}") from None
    return parse(text, str(p))


def parse(text: str, source: str = "manifest.toml") -> Manifest:
    return Checker(source).manifest(read_toml(text, source))


def read_toml(text: str, source: str) -> dict[str, Any]:
    """The parsed document; any failure to parse is a ManifestError of one line naming ``source``.
    tomllib recurses once per nesting level, so a deep enough document raises RecursionError
    (issue 16, finding 13); anything else it raises is bad input too, not a bug of ours."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ManifestError(f"{source}: not valid TOML: {reason(e)}") from None
    except RecursionError:
        raise ManifestError(f"{source}: not valid TOML: nested too deeply") from None
    except Exception as e:
        raise ManifestError(f"{source}: not valid TOML: {type(e).__name__}: {reason(e)}") from None


def reason(e: BaseException) -> str:
    """The first line of what went wrong (an OSError's strerror without its errno)."""
    text = (e.strerror if isinstance(e, OSError) and e.strerror else str(e)).strip()
    return text.splitlines()[0] if text else type(e).__name__


def component_path(manifest: Manifest, base_dir: str | Path, root: str | Path | None = None) -> Path:
    """Where the component file is, relative to ``base_dir``. With ``root`` (the manifest came
    from an actor), it must stay inside ``root``: see ``theater.paths.within``."""
    return _path(manifest, "component", manifest.component, base_dir, root)


def read_component(manifest: Manifest, path: Path, root: str | Path | None = None) -> bytes:
    """The bytes of the component file at ``path`` (from ``component_path``; not leaving ``root``)."""
    return _read_at(manifest, "component", manifest.component, path, root)


def resolve_init_state(manifest: Manifest, base_dir: str | Path, root: str | Path | None = None) -> bytes | None:
    """The initial state as JSON bytes: an inline table, or a JSON file relative to the manifest
    (inside ``root`` if given, as for the component)."""
    init = manifest.init_state
    if init is None:
        return None
    if isinstance(init, str):
        raw = _read(manifest, "init_state", init, base_dir, root)
        try:
            init = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise ManifestError(f"{manifest.source}: init_state = {manifest.init_state!r}: not JSON: "
                                f"{reason(e)}") from None
    try:
        return orjson.dumps(init)
    except orjson.JSONEncodeError as e:      # nested deeper than orjson writes (255 levels)
        raise ManifestError(f"{manifest.source}: init_state: {reason(e)} (nested too deeply)") from None


def _read(manifest: Manifest, key: str, given: str, base_dir: str | Path, root: str | Path | None) -> bytes:
    return _read_at(manifest, key, given, _path(manifest, key, given, base_dir, root), root)


def _path(manifest: Manifest, key: str, given: str, base_dir: str | Path, root: str | Path | None) -> Path:
    try:
        return within(root, given, base_dir) if root is not None else Path(base_dir) / given
    except OSError as e:
        raise _unreadable(manifest, key, given, e) from None


def _read_at(manifest: Manifest, key: str, given: str, path: Path, root: str | Path | None) -> bytes:
    try:
        return read_regular(path, MAX_FILE, root=root)
    except OSError as e:
        raise _unreadable(manifest, key, given, e) from None


def _unreadable(manifest: Manifest, key: str, given: str, e: OSError) -> ManifestError:
    return ManifestError(f"{manifest.source}: {key} = {given!r}: cannot read it: {reason(e)}")


class Checker:
    """Validates one parsed TOML document; every message starts with the source file."""

    TOP = {"name", "version", "component", "description", "init_state", "handler", "restart", "limits", "mcp"}

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, msg: str) -> ManifestError:
        return ManifestError(f"{self.source}: {where}: {msg}")

    def unknown(self, table: dict[str, Any], allowed: set[str] | tuple[str, ...], where: str) -> None:
        for key in table:
            if key not in allowed:
                place = f"{where} {key}" if where else key
                raise self.fail(place, f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def string(self, doc: dict[str, Any], key: str, where: str = "", required: bool = False) -> str | None:
        place = f"{where} {key}".strip()
        if key not in doc:
            if required:
                raise self.fail(place, "missing (a string is required)")
            return None
        value = doc[key]
        if not isinstance(value, str):
            raise self.fail(f"{place} = {value!r}", "expected a string")
        if required and not value.strip():
            raise self.fail(place, "must not be empty")
        return value

    def manifest(self, doc: dict[str, Any]) -> Manifest:
        self.unknown(doc, self.TOP, "")
        name = self.string(doc, "name", required=True)
        version = self.string(doc, "version", required=True)
        component = self.string(doc, "component", required=True)
        description = self.string(doc, "description") or ""
        init = doc.get("init_state")
        if init is not None and not isinstance(init, str | dict):
            raise self.fail(f"init_state = {init!r}", "expected a path to a JSON file or an inline table")
        for key, path in (("component", component), ("init_state", init)):
            if isinstance(path, str) and "\0" in path:      # os calls raise ValueError on it
                raise self.fail(f"{key} = {path!r}", "a path may not contain a NUL byte")
        assert name is not None and version is not None and component is not None
        return Manifest(
            name=name, version=version, component=component, source=self.source,
            description=description, init_state=init,
            handlers=self.handlers(doc.get("handler", [])),
            restart=self.restart(doc.get("restart", {})),
            limits=self.limits(doc.get("limits", {})),
            limits_given=frozenset(doc.get("limits", {})) if isinstance(doc.get("limits"), dict) else frozenset(),
            tools=self.tools(doc.get("mcp", {})),
        )

    def tools(self, raw: Any) -> tuple[mcptools.Tool, ...]:
        try:
            return mcptools.check(raw)
        except ValueError as e:
            where, _, msg = str(e).partition(": ")
            raise self.fail(where, msg) from None

    def handlers(self, raw: Any) -> tuple[Handler, ...]:
        if not isinstance(raw, list) or not all(isinstance(h, dict) for h in raw):
            raise self.fail("handler", "expected [[handler]] tables")
        out: list[Handler] = []
        seen: set[str] = set()
        for i, h in enumerate(raw):
            where = f"[[handler]] #{i + 1}"
            type_ = self.string(h, "type", where, required=True)
            spec = grants.SPECS.get(type_ or "")
            if spec is None:
                raise self.fail(f"{where} type = {type_!r}",
                                f"unknown handler type (allowed: {', '.join(grants.SPECS)})")
            if type_ in seen:
                raise self.fail(f"{where} type = {type_!r}", "granted twice")
            seen.add(spec.type)
            self.unknown(h, ("type", *spec.keys), f"{where} ({type_})")
            for key in spec.required:
                if key not in h:
                    raise self.fail(f"{where} ({type_}) {key}", "missing (this handler requires it)")
            config = {}
            for key, check in spec.keys.items():
                if key in h:
                    try:
                        config[key] = check(h[key])
                    except ValueError as e:      # a table's message names the part of it that is wrong
                        shown = "" if isinstance(h[key], dict) else f" = {h[key]!r}"
                        raise self.fail(f"{where} ({type_}) {key}{shown}", str(e)) from None
            out.append(Handler(spec.type, config))
        return tuple(out)

    def restart(self, raw: Any) -> Restart:
        if not isinstance(raw, dict):
            raise self.fail("restart", "expected a [restart] table")
        self.unknown(raw, {f for f in Restart.__dataclass_fields__}, "[restart]")
        d = Restart()
        return Restart(
            type=self.choice(raw, "type", RESTART_TYPES, d.type),
            strategy=self.choice(raw, "strategy", STRATEGIES, d.strategy),
            intensity=self.integer(raw, "intensity", "[restart]", d.intensity, minimum=0),
            period=self.duration(raw, "period", "[restart]", d.period, positive=True),
            shutdown=self.shutdown(raw, d.shutdown),
            backoff=self.backoff(raw.get("backoff")),
            state=self.choice(raw, "state", STATE_MODES, d.state),
        )

    def choice(self, raw: dict[str, Any], key: str, allowed: tuple[str, ...], default: str) -> str:
        value = raw.get(key, default)
        if value not in allowed:
            raise self.fail(f"[restart] {key} = {value!r}", f"expected one of {', '.join(allowed)}")
        return value

    def shutdown(self, raw: dict[str, Any], default: float | None) -> float | None:
        value = raw.get("shutdown", default)
        if value == "brutal_kill" or value is None:
            return None
        try:
            return parse_duration(value)
        except ValueError as e:
            raise self.fail(f"[restart] shutdown = {value!r}", f"{e}, or \"brutal_kill\"") from None

    def backoff(self, raw: Any) -> Backoff | None:
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise self.fail("[restart] backoff", "expected an inline table such as "
                            "{ min = \"100ms\", max = \"10s\", jitter = 0.2 }")
        self.unknown(raw, {"min", "max", "jitter"}, "[restart] backoff")
        d = Backoff()
        lo = self.duration(raw, "min", "[restart] backoff", d.min, positive=True)
        hi = self.duration(raw, "max", "[restart] backoff", d.max, positive=True)
        jitter = raw.get("jitter", d.jitter)
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter <= 1:
            raise self.fail(f"[restart] backoff jitter = {jitter!r}", "expected a number from 0 to 1")
        if hi < lo:
            raise self.fail("[restart] backoff", f"max ({raw.get('max')}) is below min ({raw.get('min')})")
        return Backoff(lo, hi, float(jitter))

    def limits(self, raw: Any) -> Limits:
        if not isinstance(raw, dict):
            raise self.fail("limits", "expected a [limits] table")
        self.unknown(raw, {f for f in Limits.__dataclass_fields__}, "[limits]")
        d = Limits()
        cpu = raw.get("cpu", d.cpu)
        if isinstance(cpu, bool) or not isinstance(cpu, int | float) or not 0 <= cpu <= MAX_CPU:
            raise self.fail(f"[limits] cpu = {cpu!r}", f"expected a share of one core such as 0.5 (0 = no limit, "
                                                      f"at most {MAX_CPU})")
        memory = self.size(raw, "memory", d.memory)
        if memory > MAX_WASM_MEMORY:
            raise self.fail(f"[limits] memory = {raw['memory']!r}", "a wasm32 linear memory holds at most 4GiB")
        return Limits(
            memory=memory,
            process_memory=self.size(raw, "process_memory", d.process_memory),
            call_timeout=self.duration(raw, "call_timeout", "[limits]", d.call_timeout, positive=True),
            fuel=self.integer(raw, "fuel", "[limits]", d.fuel, minimum=0),
            cpu=float(cpu),
            mailbox=self.integer(raw, "mailbox", "[limits]", d.mailbox, minimum=1),
            events_per_second=self.integer(raw, "events_per_second", "[limits]", d.events_per_second, minimum=1),
            children=self.integer(raw, "children", "[limits]", d.children, minimum=0),
            descendants=self.integer(raw, "descendants", "[limits]", d.descendants, minimum=0),
            event_bytes_per_second=self.size(raw, "event_bytes_per_second", d.event_bytes_per_second,
                                             least="64KiB a second (less would hold up every call: each "
                                                   "records hundreds of bytes)"),
        )

    def size(self, raw: dict[str, Any], key: str, default: int, where: str = "[limits]",
             least: str = "64KiB (one wasm page)") -> int:
        value = raw.get(key, default)
        try:
            n = parse_size(value)
        except ValueError as e:
            raise self.fail(f"{where} {key} = {value!r}", str(e)) from None
        if n < 64 << 10:
            raise self.fail(f"{where} {key} = {value!r}", f"must be at least {least}")
        return n

    def duration(self, raw: dict[str, Any], key: str, where: str, default: float, positive: bool = False) -> float:
        value = raw.get(key, default)
        try:
            s = parse_duration(value)
        except ValueError as e:
            raise self.fail(f"{where} {key} = {value!r}", str(e)) from None
        if positive and s <= 0:
            raise self.fail(f"{where} {key} = {value!r}", "must be greater than zero")
        return s

    def integer(self, raw: dict[str, Any], key: str, where: str, default: int, minimum: int) -> int:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_INT:
            raise self.fail(f"{where} {key} = {value!r}", f"expected an integer from {minimum} to {MAX_INT}")
        return value
