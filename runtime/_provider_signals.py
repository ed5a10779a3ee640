"""How long a provider asked us to stay quiet, from its response headers.

Retry-After (RFC 9110, seconds or an HTTP-date) wins; then the IETF draft's
RateLimit-Reset (seconds); then X-RateLimit-Reset as SendGrid, GitHub and
others send it (a Unix time when large, else seconds).
"""

from __future__ import annotations

import math

from ._http import HttpResponse
from ._retry_after import parse_retry_after

__all__ = ["quiet_period"]

# Below this, an X-RateLimit-Reset is a number of seconds; above, a Unix time.
_UNIX_TIME_THRESHOLD = 1_000_000_000


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def quiet_period(response: HttpResponse, wall_now: float) -> float | None:
    """Seconds before the next request may go, or None when the response does not say."""
    retry_after = parse_retry_after(response.header("retry-after"), wall_now)
    if retry_after is not None:
        return retry_after
    reset = _number(response.header("ratelimit-reset"))
    if reset is not None:
        return reset
    reset = _number(response.header("x-ratelimit-reset"))
    if reset is None:
        return None
    return max(0.0, reset - wall_now) if reset >= _UNIX_TIME_THRESHOLD else reset
