"""Identifiers: actors (UUID v4), channels ("ch_" + 16 hex) and requests."""

from __future__ import annotations

import os
import uuid

from .errors import UsageError


def new_actor_id() -> str:
    return str(uuid.uuid4())


def new_channel_id() -> str:
    return "ch_" + os.urandom(8).hex()


def new_request_id() -> str:
    return os.urandom(8).hex()


def check_actor_id(value: str) -> str:
    """Returns the canonical form of an actor id, or raises UsageError naming what is allowed."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise UsageError(f"{value!r} is not an actor id (expected a UUID such as "
                         f"3f0e8c1e-2b7a-4c55-9a51-0d7c2f1e9b6a)") from None


def short(actor_id: str) -> str:
    """The first 8 hex digits, as `theater list` prints them."""
    return actor_id[:8]
