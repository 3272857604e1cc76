"""``theater:simple/environment``: the server's environment variables the grant names, no others.

The worker itself runs with a clean environment; the server hands it the granted values
with its start-up answer (``theater.grants.granted_environment``: ``allowed_vars``,
``allowed_prefixes``, minus ``denied_vars``), so a variable outside the grant never reaches
the worker's memory. Names are checked here by the same rule: to the actor, a variable
outside the grant looks like a missing one; the chain records the refusal
(``environment/permission-denied``). ``list-vars`` answers only when the grant sets
``allow_list_all`` (else empty, and recorded as refused).
"""

from __future__ import annotations

from theater import grants

from .base import Functions, Handler, register

INTERFACE = "theater:simple/environment"


@register
class Environment(Handler):
    type = "environment"

    def functions(self) -> Functions:
        granted = self.host.environ

        def permitted(function: str, name: str) -> bool:
            if grants.variable_granted(self.config, name):
                return True
            self.host.record("environment/permission-denied", {"function": function, "name": name,
                                                               "reason": "not granted"})
            return False

        def list_vars() -> list[tuple[str, str]]:
            if self.config.get("allow_list_all", False):
                return sorted(granted.items())
            self.host.record("environment/permission-denied", {"function": "list-vars",
                                                               "reason": "allow_list_all is not set"})
            return []

        return {INTERFACE: {
            "get-var": lambda name: granted.get(name) if permitted("get-var", name) else None,
            "exists": lambda name: name in granted if permitted("exists", name) else False,
            "list-vars": list_vars,
        }}

