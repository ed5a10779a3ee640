"""Random streams forked from one seed, one per component.

Every source of chance in a run (the runtime's jitter, each workload's
arrivals and tenant draws, each provider's latencies and errors) gets its own
`random.Random`, seeded from the run's seed and the component's name. A
component's draws then do not shift when another component changes: two policy
variants run with one seed see the same arrivals and the same provider
latencies (common random numbers), so their difference is the policies'.
"""

from __future__ import annotations

import hashlib
import random

__all__ = ["fork"]


def fork(seed: int, *names: str) -> random.Random:
    """The stream of the component ``names`` under ``seed``; the same on every machine.

    Seeding from a SHA-256 digest (not from ``hash()``, which varies per
    process) keeps the stream independent of PYTHONHASHSEED.
    """
    label = "/".join((str(seed), *names)).encode()
    return random.Random(hashlib.sha256(label).digest())
