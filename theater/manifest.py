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

from ._units import parse_duration, parse_size
from .errors import ManifestError

# Handler type -> the interface it grants (imports) and the config keys it accepts beside
# `type`. (The exports that go with each, message-server-client and supervisor-handlers, are
# the actor's to offer: the host calls those it finds.)
HANDLERS: dict[str, dict[str, Any]] = {
    "runtime": {"imports": ("theater:simple/runtime",), "keys": ()},
    "message-server": {"imports": ("theater:simple/message-server-host",), "keys": ()},
    "supervisor": {"imports": ("theater:simple/supervisor",), "keys": ()},
}

RESTART_TYPES = ("permanent", "transient", "temporary")
STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
DURABILITY = ("process", "machine")     # server.toml [chain] durability
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
    mailbox: int = 1000               # queued messages before senders are refused
    events_per_second: int = 10_000   # above this the actor is throttled (and that is recorded)
    event_bytes_per_second: int = 16 << 20   # the same for the bytes its events carry


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

    def effective_limits(self, defaults: Limits) -> Limits:
        """The server's defaults, overridden by what this manifest says."""
        return replace(defaults, **{k: getattr(self.limits, k) for k in self.limits_given})

    @property
    def granted_imports(self) -> frozenset[str]:
        return frozenset(i for h in self.handlers for i in HANDLERS[h.type]["imports"])

    def has_handler(self, type_: str) -> bool:
        return any(h.type == type_ for h in self.handlers)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load(path: str | Path) -> Manifest:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{p}: no such manifest file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"{p}: cannot read manifest: {e}") from None
    return parse(text, str(p))


def parse(text: str, source: str = "manifest.toml") -> Manifest:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ManifestError(f"{source}: not valid TOML: {e}") from None
    return _Checker(source).manifest(doc)


def resolve_init_state(manifest: Manifest, base_dir: str | Path) -> bytes | None:
    """The initial state as JSON bytes: an inline table, or a JSON file relative to the manifest."""
    init = manifest.init_state
    if init is None:
        return None
    if isinstance(init, dict):
        return orjson.dumps(init)
    path = Path(base_dir) / init
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ManifestError(f"{manifest.source}: init_state = {init!r}: cannot read {path}: "
                            f"{e.strerror or e}") from None
    try:
        return orjson.dumps(orjson.loads(raw))
    except orjson.JSONDecodeError as e:
        raise ManifestError(f"{manifest.source}: init_state = {init!r}: {path} is not JSON: {e}") from None


@dataclass(frozen=True)
class ServerConfig:
    """``$THEATER_HOME/server.toml``: defaults for actors, and the root supervisor's flags."""

    limits: Limits = Limits()
    strategy: str = "one_for_one"
    intensity: int = 3
    period: float = 5.0
    durability: str = "process"      # [chain]: when an acknowledged event is safe (docs/chain-format.md)


def load_server_config(path: Path) -> ServerConfig:
    """Reads server.toml if it exists (every key optional); ManifestError names file and key."""
    if not path.exists():
        return ServerConfig()
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ManifestError(f"{path}: cannot read server config: {e}") from None
    c = _Checker(str(path))
    c.unknown(doc, {"limits", "root", "chain"}, "")
    root, chain = doc.get("root", {}), doc.get("chain", {})
    if not isinstance(root, dict):
        raise c.fail("root", "expected a [root] table")
    if not isinstance(chain, dict):
        raise c.fail("chain", "expected a [chain] table")
    c.unknown(root, {"strategy", "intensity", "period"}, "[root]")
    c.unknown(chain, {"durability"}, "[chain]")
    d = ServerConfig()
    strategy = root.get("strategy", d.strategy)
    if strategy not in STRATEGIES:
        raise c.fail(f"[root] strategy = {strategy!r}", f"expected one of {', '.join(STRATEGIES)}")
    durability = chain.get("durability", d.durability)
    if durability not in DURABILITY:
        raise c.fail(f"[chain] durability = {durability!r}", f"expected one of {', '.join(DURABILITY)} "
                     f"(acknowledged once written, surviving any process; or once fsynced, surviving the machine)")
    return ServerConfig(limits=c.limits(doc.get("limits", {})), strategy=strategy,
                        intensity=c.integer(root, "intensity", "[root]", d.intensity, minimum=0),
                        period=c.duration(root, "period", "[root]", d.period, positive=True), durability=durability)


class _Checker:
    """Validates one parsed TOML document; every message starts with the source file."""

    TOP = {"name", "version", "component", "description", "init_state", "handler", "restart", "limits"}

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
        assert name is not None and version is not None and component is not None
        return Manifest(
            name=name, version=version, component=component, source=self.source,
            description=description, init_state=init,
            handlers=self.handlers(doc.get("handler", [])),
            restart=self.restart(doc.get("restart", {})),
            limits=self.limits(doc.get("limits", {})),
            limits_given=frozenset(doc.get("limits", {})) if isinstance(doc.get("limits"), dict) else frozenset(),
        )

    def handlers(self, raw: Any) -> tuple[Handler, ...]:
        if not isinstance(raw, list) or not all(isinstance(h, dict) for h in raw):
            raise self.fail("handler", "expected [[handler]] tables")
        out: list[Handler] = []
        seen: set[str] = set()
        for i, h in enumerate(raw):
            where = f"[[handler]] #{i + 1}"
            type_ = self.string(h, "type", where, required=True)
            if type_ not in HANDLERS:
                raise self.fail(f"{where} type = {type_!r}",
                                f"unknown handler type (allowed: {', '.join(HANDLERS)})")
            if type_ in seen:
                raise self.fail(f"{where} type = {type_!r}", "granted twice")
            seen.add(type_)
            config = {k: v for k, v in h.items() if k != "type"}
            self.unknown(config, ("type", *HANDLERS[type_]["keys"]), f"{where} ({type_})")
            out.append(Handler(type_, config))
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
        if isinstance(cpu, bool) or not isinstance(cpu, int | float) or cpu < 0:
            raise self.fail(f"[limits] cpu = {cpu!r}", "expected a share of one core such as 0.5 (0 = no limit)")
        return Limits(
            memory=self.size(raw, "memory", d.memory),
            process_memory=self.size(raw, "process_memory", d.process_memory),
            call_timeout=self.duration(raw, "call_timeout", "[limits]", d.call_timeout, positive=True),
            fuel=self.integer(raw, "fuel", "[limits]", d.fuel, minimum=0),
            cpu=float(cpu),
            mailbox=self.integer(raw, "mailbox", "[limits]", d.mailbox, minimum=1),
            events_per_second=self.integer(raw, "events_per_second", "[limits]", d.events_per_second, minimum=1),
            event_bytes_per_second=self.size(raw, "event_bytes_per_second", d.event_bytes_per_second),
        )

    def size(self, raw: dict[str, Any], key: str, default: int) -> int:
        value = raw.get(key, default)
        try:
            n = parse_size(value)
        except ValueError as e:
            raise self.fail(f"[limits] {key} = {value!r}", str(e)) from None
        if n < 64 << 10:
            raise self.fail(f"[limits] {key} = {value!r}", "must be at least 64KiB (one wasm page)")
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
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(f"{where} {key} = {value!r}", f"expected an integer >= {minimum}")
        return value
