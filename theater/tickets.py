"""Tickets: which actor a message on a worker's inbox is from, as the server vouches.

A worker's inbox (``run/w/<pid>.sock``) is a unix socket that any process of the workers'
user can connect to, so neither the connection nor anything a peer writes proves who sent a
message. The server does: at each incarnation's hello it gives the worker a fresh secret key,
and when another actor resolves that one, it answers with the endpoint and that sender's
ticket, an HMAC of the sender's actor id under the key. The sender puts its id and ticket on
each message to that peer (``from``, ``t``); the receiver drops a message whose ticket does
not match. Only the server and the receiving worker hold the key: a ticket names one sender
to one incarnation of one actor, and nobody else can make one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_BYTES = 32
# 128 bits of the HMAC, as hex: more than anyone can guess, short on every message.
TICKET_CHARS = 32


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def ticket(key: bytes, sender: str) -> str:
    return hmac.new(key, sender.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:TICKET_CHARS]


def valid(key: bytes, sender: str, claimed: str) -> bool:
    """Whether ``claimed`` is ``sender``'s ticket under ``key`` (any text: compared as bytes)."""
    return hmac.compare_digest(ticket(key, sender).encode(), claimed.encode("utf-8", "surrogatepass"))
