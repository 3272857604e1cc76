"""``theater:simple/http-client``: ``send-http``, made by the gateway process, never by the worker.

The request goes to the gateway (``worker.gateway``), which checks it against the grant,
places the grant's headers (secrets included: their values never come here), makes it and
answers with the response. A refusal by the grant comes back as ``denied``: the actor gets
``Err`` and its chain an ``http-client/permission-denied`` event with what was asked. The
call's event records the request as the actor made it and the response as it got it, body
included, so a replay needs no network.
"""

from __future__ import annotations

from typing import Any

from ..values import Err, Ok, errors_as_err, record
from .base import Functions, Handler, register

INTERFACE = "theater:simple/http-client"
DENIED = "http-client/permission-denied"
# The gateway is given the call's remaining time less this share, so that its answer (a
# timeout, at worst) comes back while the actor can still handle it.
TIME_SHARE = 0.9


@register
class HttpClient(Handler):
    type = "http-client"

    def functions(self) -> Functions:
        host = self.host

        def send_http(req: dict[str, Any]) -> Ok | Err:
            body = req["body"]
            header: dict[str, Any] = {"k": "http", "method": req["method"], "uri": req["uri"],
                                      "headers": [list(h) for h in req["headers"]], "has_body": body is not None}
            left = host.call_time_left()
            if left is not None:
                header["timeout"] = max(0.001, left * TIME_SHARE)
            host.before_effect()
            reply, frames = host.ask_gateway(header, *([body] if body is not None else []))
            if "denied" in reply:
                host.record(DENIED, {"method": req["method"], "uri": req["uri"], "reason": reply["denied"]})
                return Err(f"permission denied: {reply['denied']}")
            if "err" in reply:
                return Err(reply["err"])
            value = reply["value"]
            return Ok(record(status=value["status"], headers=[tuple(h) for h in value["headers"]],
                             body=frames[0] if reply.get("has_body") and frames else None))
        return {INTERFACE: {"send-http": errors_as_err(send_http)}}
