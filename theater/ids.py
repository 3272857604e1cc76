"""Identifiers: actors (UUID v4), channels ("ch_" + 16 hex) and requests."""

from __future__ import annotations

import os
import uuid


def new_actor_id() -> str:
    return str(uuid.uuid4())


def new_channel_id() -> str:
    return "ch_" + os.urandom(8).hex()


def new_request_id() -> str:
    return os.urandom(8).hex()
