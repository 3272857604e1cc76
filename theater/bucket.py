"""A token bucket: a rate, with a burst of some seconds of it. The worker paces its actor's
events with two (worker.throttle), the chain paces each worker again (chain.rates), and the
server budgets each worker's asks (supervisor.inbox).
"""

from __future__ import annotations


class Bucket:
    """Tokens refilled at ``rate`` up to ``seconds`` of it (a ``credit`` above that is kept until
    spent); a ``take`` may leave a debt, which the caller waits out."""

    def __init__(self, rate: float, now: float, seconds: float = 1.0, credit: float = 0.0) -> None:
        self.rate = rate
        self.size = rate * seconds
        self.tokens = self.size + credit
        self.at = now

    def take(self, amount: float, now: float) -> float:
        """Takes ``amount`` (a negative one gives); seconds until the bucket is out of debt (0:
        it is not in debt)."""
        tokens = self.tokens
        if tokens < self.size:
            tokens = min(self.size, tokens + (now - self.at) * self.rate)
        self.tokens, self.at = tokens - amount, now
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def allows(self, amount: float, now: float) -> bool:
        """Takes ``amount`` if the bucket holds it; whether it did (a refusal leaves no debt)."""
        if self.take(amount, now) == 0.0:
            return True
        self.tokens += amount
        return False

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.at) * self.rate >= self.size
