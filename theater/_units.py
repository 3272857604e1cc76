"""Durations ("250ms", "5s") and sizes ("64MiB") as manifests and flags write them."""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
               "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4}
# Beyond these a value is a typo, and would overflow what it reaches (a timer's milliseconds,
# SQLite's integers, a cgroup's file): refused where it is read, not where it breaks.
MAX_DURATION = 366 * 86400.0
MAX_SIZE = 1 << 50


def parse_duration(value: object) -> float:
    """Seconds from "250ms", "5s", "2m", "1h" or a bare number of seconds; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as \"250ms\" or \"5s\"")
    seconds = None
    if isinstance(value, int) and value > MAX_DURATION:     # float() of 10**400 overflows
        seconds = math.inf
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if seconds is None:
        raise ValueError("expected a duration such as \"250ms\", \"5s\", \"2m\" or \"1h\"")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if not math.isfinite(seconds) or seconds > MAX_DURATION:
        raise ValueError(f"expected a duration of at most {MAX_DURATION / 86400:.0f} days")
    return seconds


def parse_size(value: object) -> int:
    """Bytes from "64MiB", "512KiB", "1GiB" or a bare integer; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as \"64MiB\"")
    size = None
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        n = float(m.group(1)) * _SIZE_UNITS[m.group(2)]
        size = int(n) if math.isfinite(n) else MAX_SIZE + 1
    if size is None:
        raise ValueError("expected a size such as \"64MiB\", \"512KiB\" or \"1GiB\"")
    if size < 0:
        raise ValueError("a size cannot be negative")
    if size > MAX_SIZE:
        raise ValueError("expected a size of at most 1024TiB")
    return size


def format_size(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return f"{n}B"


def human_size(n: float) -> str:
    """Bytes for people, about three figures: "812 B", "5.9 MiB", "212 MiB", "1.2 GiB"."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            v = n / factor
            return f"{v:.1f} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{n:.0f} B"


def human_duration(seconds: float) -> str:
    """A duration as a manifest writes it: "250ms", "30s", "5m", "1.5h"."""
    for unit, factor in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= factor and (seconds / factor) * 10 == int((seconds / factor) * 10):
            return f"{seconds / factor:g}{unit}"
    return f"{seconds * 1000:g}ms"
