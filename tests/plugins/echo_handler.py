"""The worker's half of the test-only ``echo`` handler: through the plug-in interface only."""

from __future__ import annotations

from worker.handlers.base import Functions, Handler, register


@register
class Echo(Handler):
    type = "echo"

    def functions(self) -> Functions:
        suffix = self.config.get("suffix", "").encode()
        return {"test:echo/echo": {"shout": lambda msg: msg.upper() + suffix}}
