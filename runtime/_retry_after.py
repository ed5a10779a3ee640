"""Reading a provider's Retry-After header (RFC 9110 section 10.2.3)."""

from __future__ import annotations

import email.utils
import math
import re
from datetime import UTC

__all__ = ["parse_retry_after"]

# ASCII digits only: float() would also take "1e3", "1_000", "inf" and other
# scripts' digits, none of which is a delay-seconds.
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def parse_retry_after(value: str | bytes | None, now_wallclock: float) -> float | None:
    """Seconds to wait from ``now_wallclock`` (a Unix time), or None when unreadable.

    Accepts delay-seconds (``"120"``, and decimals some providers send) and an
    HTTP-date (``"Wed, 21 Oct 2015 07:28:00 GMT"``, or the obsolete RFC 850 and
    asctime forms RFC 9110 still asks recipients to read); a date already past
    gives 0. Anything else, negative or non-finite gives None; it never raises,
    since a provider's malformed header must not become our crash.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
            return None
    text = value.strip()
    if not text:
        return None
    if _SECONDS.fullmatch(text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # asctime has no zone: HTTP dates are GMT
    try:
        return max(0.0, when.timestamp() - now_wallclock)
    except (OverflowError, OSError, ValueError):
        return None
