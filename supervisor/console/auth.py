"""Who may read the console.

On loopback, with no token asked for, anyone on this host may (as with the metrics); the
``Host`` header must then name a loopback address, so that a web page elsewhere cannot reach
the console through a name it points at 127.0.0.1 (DNS rebinding). Off loopback, or with
``--console-token``, every request must show the token (``theater.console_token``): as
``Authorization: Bearer TOKEN`` (scripts), as the cookie a browser got for it, or once as
``?token=TOKEN``, which sets that cookie and redirects to the same page without it. The token
file is read at each request: a new token (``theater console --token --rotate``) ends every
old cookie at once, and a deleted one lets nobody in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlencode

from theater import console_token
from theater.endpoints import host_name, loopback_host_header
from theater.paths import Home

COOKIE = "theater_console"


@dataclass
class Refusal:
    status: int
    message: str
    headers: list[tuple[str, str]] = field(default_factory=list)


class Guard:
    def __init__(self, home: Home, require_token: bool) -> None:
        self.home = home
        self.require_token = require_token

    def check(self, headers: Message, path: str, query: dict[str, list[str]]) -> Refusal | None:
        """None if the request may go on; else how to answer it instead."""
        if not self.require_token:
            host = headers.get("Host", "")
            if not loopback_host_header(host):
                return Refusal(403, f"Host {host_name(host)!r} is not a loopback name: this console answers "
                                    f"http://127.0.0.1:PORT/ or http://localhost:PORT/ only")
            return None
        token = console_token.read(self.home)
        if token is None:
            return Refusal(401, f"this console has no access token ({console_token.path(self.home)} is missing): "
                                f"run `theater console --token` on the server's host")
        bearer = headers.get("Authorization", "")
        if bearer.startswith("Bearer ") and console_token.matches(bearer[7:].strip(), token):
            return None
        if console_token.matches(_cookie(headers), console_token.cookie_value(token)):
            return None
        given = query.get("token", [""])[0]
        if given and console_token.matches(given, token):
            rest = {k: v for k, v in query.items() if k != "token"}
            # a path of this console only: "/\\evil.example/" is "//evil.example/" to a browser
            target = "/" + path.replace("\\", "/").lstrip("/") + (f"?{urlencode(rest, doseq=True)}" if rest else "")
            cookie = f"{COOKIE}={console_token.cookie_value(token)}; Path=/; HttpOnly; SameSite=Strict"
            return Refusal(303, "signed in", [("Location", target), ("Set-Cookie", cookie)])
        return Refusal(401, "this console needs its access token: open it once as http://HOST:PORT/?token=TOKEN "
                            "(`theater console --token` prints it), or send \"Authorization: Bearer TOKEN\"")


def _cookie(headers: Message) -> str:
    jar = SimpleCookie()
    try:
        jar.load(headers.get("Cookie", ""))
    except CookieError:
        return ""
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else ""
