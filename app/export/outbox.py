"""Delivery rules of the outbox (pure): what an answer means for a batch, and when to try again.

A record is `pending` until a central node accepts the batch that carries it (`sent`). A `4xx`
other than `429` will not heal by itself (bad signature, unknown node, refused body): the batch is
`parked`, kept and reported, and not retried until an operator runs `chiso export retry-parked`.
Everything else (`429`, `5xx`, a network error) is retried with capped exponential backoff and
jitter, the records staying where they are.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

PENDING, SENT, PARKED = "pending", "sent", "parked"
STATES = (PENDING, SENT, PARKED)

# The transitions an outbox row may take; anything else is a bug.
TRANSITIONS = {
    (PENDING, SENT),  # the central node accepted the batch
    (PENDING, PARKED),  # the central node refused it for good
    (PARKED, PENDING),  # chiso export retry-parked
}

SEND, RETRY, PARK = "sent", "retry", "park"


def classify(status: int | None) -> str:
    """What an HTTP answer means for the batch: SEND (delivered), RETRY later, or PARK it.

    `None` stands for no answer at all (connection refused, timeout).
    """
    if status is None or status == 429 or status >= 500:
        return RETRY
    if 200 <= status < 300:
        return SEND
    return PARK  # 3xx (misconfigured URL) and every other 4xx


def next_state(state: str, outcome: str) -> str:
    """The state of a row after a delivery outcome."""
    if state != PENDING:
        raise ValueError(f"only pending records are delivered, not {state}")
    return {SEND: SENT, PARK: PARKED, RETRY: PENDING}[outcome]


@dataclass
class Backoff:
    """Capped exponential backoff with jitter: try n waits between half and all of min(cap, base * 2^n)."""

    base: float = 1.0
    cap: float = 300.0
    failures: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def ceiling(self, failures: int | None = None) -> float:
        n = self.failures if failures is None else failures
        return min(self.cap, self.base * 2 ** min(n, 62))

    def failed(self, retry_after: float | None = None) -> float:
        """Count one failure; the seconds to wait before the next try (at least any Retry-After)."""
        self.failures += 1
        ceiling = self.ceiling(self.failures - 1)
        delay = ceiling / 2 + self.rng.uniform(0, ceiling / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap))
        return delay

    def succeeded(self) -> None:
        self.failures = 0
