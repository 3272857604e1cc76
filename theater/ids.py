"""Identifiers: actors (UUID v4), channels ("ch_" + 16 hex) and requests."""

from __future__ import annotations

import os
import re
import uuid

# An actor is named by its full id, its name, or an id prefix this long at least: a shorter one
# would too often be a name (or a word) that happens to begin some id.
MIN_PREFIX = 4
MAX_NAME = 128
_ID_LIKE = re.compile(rf"^[0-9a-f-]{{{MIN_PREFIX},}}$")


def new_actor_id() -> str:
    return str(uuid.uuid4())


def new_channel_id() -> str:
    return "ch_" + os.urandom(8).hex()


def new_request_id() -> str:
    return os.urandom(8).hex()


def ambiguous_name(key: str, ids: list[str], see: str | None) -> str:
    """What to say when a name (or a prefix) fits several actors: which, and what to give
    instead, pointing a person to the command ``see`` (None: the asker is an actor)."""
    shown = ", ".join(i[:8] for i in ids[:5]) + (", ..." if len(ids) > 5 else "")
    return (f"{key!r} names {len(ids)} actors ({shown}): give an id or a unique prefix of one"
            + (f" (see `{see}`)" if see else ""))


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name an actor, or None: commands take a name where they take an id,
    so a name must never read as an id or an id prefix; and it is shown in terminals, process
    titles and logs, so it is printable text."""
    if len(name) > MAX_NAME:
        return f"at most {MAX_NAME} characters"
    if not name.isprintable():
        return "only printable characters (no control or formatting characters)"
    if _ID_LIKE.match(name):
        return "reads as an actor id or the start of one (only hex digits and dashes): add another letter"
    return None
