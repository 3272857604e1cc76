"""``theater:simple/random``: random bytes, integers, floats and UUIDs, recorded.

From the operating system's generator, or, when the grant gives a ``seed``, from a
generator seeded with it (each incarnation starts the same sequence again: for tests and
simulations, never for secrets). ``random-bytes`` beyond ``max_bytes`` (v0.2 default 1 MiB)
is refused and recorded as ``random/permission-denied``. Every value drawn is in the chain,
so a replay hands the actor the same values whatever the seed.
"""

from __future__ import annotations

import random
import uuid

from theater.grants import SPECS

from ..values import Err, Ok
from .base import Functions, Handler, register

INTERFACE = "theater:simple/random"
SPEC = SPECS["random"]


@register
class Random(Handler):
    type = "random"

    def functions(self) -> Functions:
        seed = self.config.get("seed")
        rng = random.Random(seed) if seed is not None else random.SystemRandom()
        limit = SPEC.value(self.config, "max_bytes")

        def random_bytes(length: int) -> Ok | Err:
            if length > limit:
                reason = f"{length} bytes is over the grant's max_bytes ({limit})"
                self.host.record("random/permission-denied", {"function": "random-bytes", "length": length,
                                                              "reason": reason})
                return Err(reason)
            return Ok(rng.randbytes(length))

        def random_range(low: int, high: int) -> Ok | Err:
            if low > high:
                return Err(f"min ({low}) is above max ({high})")
            return Ok(rng.randint(low, high))

        return {INTERFACE: {
            "random-bytes": random_bytes, "random-range": random_range, "random-float": lambda: Ok(rng.random()),
            "generate-uuid": lambda: Ok(str(uuid.UUID(bytes=rng.randbytes(16), version=4))),
        }}
