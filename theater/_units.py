"""Durations ("250ms", "5s") and sizes ("64MiB") as manifests and flags write them."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
               "KB": 1000, "MB": 1000**2, "GB": 1000**3}


def parse_duration(value: object) -> float:
    """Seconds from "250ms", "5s", "2m", "1h" or a bare number of seconds; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as \"250ms\" or \"5s\"")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    raise ValueError("expected a duration such as \"250ms\", \"5s\", \"2m\" or \"1h\"")


def parse_size(value: object) -> int:
    """Bytes from "64MiB", "512KiB", "1GiB" or a bare integer; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as \"64MiB\"")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])
    raise ValueError("expected a size such as \"64MiB\", \"512KiB\" or \"1GiB\"")


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
