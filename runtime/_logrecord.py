"""Integration log records: one per attempt and one per rejection, redacted at birth.

Times: ``created_at`` and the date filters are timezone-aware UTC datetimes
(microsecond resolution, what PostgreSQL's ``timestamptz`` keeps, so every
store returns exactly what was written); readings of the injected wall clock
(``now``) are float Unix seconds, as everywhere else in the runtime.

An `IntegrationLog` cannot hold a secret: its ``__post_init__``, which runs on
construction, on decoding and on `msgspec.structs.replace`, redacts the data
and the error message (see `connector._redaction`), and `IntegrationLog.create`
also removes the credential values the caller knows. Stores re-seal each record
they write, so a record's data mutated after construction is redacted again.
"""

from __future__ import annotations

import base64
import enum
import random
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from . import _validate as check
from ._errors import ConfigError
from ._redaction import redact, redact_text

__all__ = [
    "PERCENTILES",
    "IntegrationLog",
    "LogFilters",
    "LogMetrics",
    "LogStatus",
    "UlidGenerator",
    "build_metrics",
    "nearest_rank",
    "new_ulid",
]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")
_MAX_MS = (1 << 48) - 1
_RANDOM_BITS = 80
# A JSON "\u0000" escape not itself escaped: PostgreSQL's jsonb and text refuse
# NUL, so every store keeps U+FFFD in its place.
_JSON_NUL = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def _milliseconds(now: float) -> int:
    # Through whole microseconds, as created_at is: 4.156355 is 4156.355 ms in
    # intent, but 4156.3549999... as a product of floats. (Float seconds resolve
    # microseconds until about 2100.)
    ms = round(check.number("now", now) * 1_000_000) // 1000
    if not 0 <= ms <= _MAX_MS:
        raise ConfigError("now", now, "must be a Unix time between 1970 and 10889")
    return ms


# Crockford's alphabet from RFC 4648's, so the C base32 encoder does the work:
# 20 bytes hold the 128-bit value under 32 zero bits, and 32 base32 digits
# of which the first 6 carry only zeros and the last 26 are exactly the ULID.
_FROM_RFC4648 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _CROCKFORD)


def _encode_ulid(ms: int, randomness: int) -> str:
    value = (ms << _RANDOM_BITS) | randomness
    return base64.b32encode(value.to_bytes(20, "big"))[6:].decode("ascii").translate(_FROM_RFC4648)


def new_ulid(now_wallclock: float, rng: random.Random) -> str:
    """A ULID: 48-bit Unix milliseconds and 80 random bits, 26 Crockford base32 characters.

    ULIDs sort as text in time order (to the millisecond); `UlidGenerator` also
    orders the ones made within one millisecond.
    """
    return _encode_ulid(_milliseconds(now_wallclock), rng.getrandbits(_RANDOM_BITS))


class UlidGenerator:
    """Monotonic ULIDs: each one sorts after the one before, whatever the clock does.

    Within one millisecond (or when the wall clock steps back) the previous
    random part is incremented instead of drawn again, as the ULID spec's
    monotonic mode does; on the (2**-80) overflow the time part is carried.
    """

    __slots__ = ("_last_ms", "_last_random", "_rng")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._last_ms = -1
        self._last_random = 0

    def __call__(self, now_wallclock: float) -> str:
        ms = _milliseconds(now_wallclock)
        if ms > self._last_ms:
            self._last_ms = ms
            self._last_random = self._rng.getrandbits(_RANDOM_BITS)
        else:
            self._last_random += 1
            if self._last_random >> _RANDOM_BITS:
                self._last_ms += 1
                self._last_random = 0
        return _encode_ulid(self._last_ms, self._last_random)


class LogStatus(enum.StrEnum):
    """What became of one attempt, or why no attempt was made."""

    SUCCESS = "success"
    FAILED = "failed"
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    CIRCUIT_OPEN = "circuit_open"
    REJECTED = "rejected"


def _status(field: str, value: Any) -> LogStatus:
    try:
        return LogStatus(value)
    except ValueError:
        raise ConfigError(
            field, value, f"must be one of {', '.join(repr(s.value) for s in LogStatus)}"
        ) from None


def _text(field: str, value: Any, *, optional: bool = False) -> str | None:
    """A non-empty string without NUL (which PostgreSQL cannot store), or None if optional."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(field, value, "must be a non-empty string")
    if "\x00" in value:
        raise ConfigError(field, value, "must not contain NUL characters")
    return value


def _utc(field: str, value: Any) -> datetime:
    """``value`` as a UTC datetime; a naive datetime is refused, not guessed at."""
    if not isinstance(value, datetime):
        raise ConfigError(field, value, "must be a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigError(field, value, "must be timezone-aware")
    return value.astimezone(UTC)


def _data(field: str, value: Any) -> dict[str, Any] | None:
    """Redacted and normalised to what a JSON column gives back (string keys, lists)."""
    if value is None:
        return None
    # The offending data is named by its type only: it may hold what redaction hides.
    if not isinstance(value, Mapping):
        raise ConfigError(field, type(value).__name__, "must be a mapping or None")
    try:
        raw = msgspec.json.encode(redact(value))
    except (TypeError, ValueError) as error:
        raise ConfigError(field, "<data>", f"must be JSON-serialisable: {error}") from None
    if b"\\u0000" in raw:
        raw = _JSON_NUL.sub(rb"\1\\ufffd", raw)
    result: dict[str, Any] = msgspec.json.decode(raw)
    return result


class IntegrationLog(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One attempt at (or one refusal of) a call to an external service.

    ``duration_ms`` is None when no request was sent (a rejection); metrics'
    latencies count only records that have one. ``attempt_number`` counts from 1.
    """

    id: str
    tenant_id: str | None = None
    service_name: str
    endpoint: str
    method: str
    status: LogStatus
    http_status_code: int | None = None
    duration_ms: float | None = None
    request_data: dict[str, Any] | None = None
    response_data: dict[str, Any] | None = None
    error_message: str | None = None
    attempt_number: int = 1
    created_at: datetime

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or _ULID.fullmatch(self.id) is None:
            raise ConfigError("id", self.id, "must be a 26-character ULID")
        _text("tenant_id", self.tenant_id, optional=True)
        _text("service_name", self.service_name)
        if not isinstance(self.endpoint, str) or "\x00" in self.endpoint:
            raise ConfigError("endpoint", self.endpoint, "must be a string without NUL")
        _text("method", self.method)
        set_ = msgspec.structs.force_setattr
        set_(self, "status", _status("status", self.status))
        code = self.http_status_code
        if code is not None:
            check.integer("http_status_code", code, 100)
            if code > 599:
                raise ConfigError("http_status_code", code, "must be <= 599")
        if self.duration_ms is not None:
            set_(self, "duration_ms", check.non_negative("duration_ms", self.duration_ms))
        check.integer("attempt_number", self.attempt_number, 1)
        set_(self, "created_at", _utc("created_at", self.created_at))
        set_(self, "request_data", _data("request_data", self.request_data))
        set_(self, "response_data", _data("response_data", self.response_data))
        if self.error_message is not None:
            if not isinstance(self.error_message, str):
                raise ConfigError("error_message", self.error_message, "must be a string")
            message = redact_text(self.error_message).replace("\x00", "\ufffd")
            set_(self, "error_message", message)

    @classmethod
    def create(
        cls,
        *,
        service_name: str,
        endpoint: str,
        method: str,
        status: LogStatus | str,
        now: float,
        ids: Callable[[float], str],
        tenant_id: str | None = None,
        http_status_code: int | None = None,
        duration_ms: float | None = None,
        request_data: Mapping[Any, Any] | None = None,
        response_data: Mapping[Any, Any] | None = None,
        error_message: str | None = None,
        attempt_number: int = 1,
        secrets: Iterable[str] = (),
    ) -> IntegrationLog:
        """A record stamped ``now`` (wall clock, Unix seconds) with id ``ids(now)``.

        ``secrets`` are credential values in use for this call (an API key, a
        token): they are removed wherever they appear, in data or message.
        ``ids`` is usually a `UlidGenerator`.
        """
        known = tuple(secrets)
        if known:
            request_data = redact(request_data, known)
            response_data = redact(response_data, known)
            if isinstance(error_message, str):
                error_message = redact_text(error_message, known)
        return cls(
            id=ids(now),
            tenant_id=tenant_id,
            service_name=service_name,
            endpoint=endpoint,
            method=method,
            status=_status("status", status),
            http_status_code=http_status_code,
            duration_ms=duration_ms,
            request_data=request_data,  # type: ignore[arg-type]  # normalised in __post_init__
            response_data=response_data,  # type: ignore[arg-type]
            error_message=error_message,
            attempt_number=attempt_number,
            created_at=datetime.fromtimestamp(check.number("now", now), UTC),
        )


class LogFilters(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which records a query or a metric covers; None means "any".

    ``date_from`` and ``date_to`` are inclusive. ``tenant_id=None`` means every
    tenant, which only operator code should ask for: code acting for one
    tenant reads through `TenantLogView`, which pins it.
    """

    service_name: str | None = None
    status: LogStatus | None = None
    tenant_id: str | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None

    def __post_init__(self) -> None:
        _text("service_name", self.service_name, optional=True)
        _text("tenant_id", self.tenant_id, optional=True)
        set_ = msgspec.structs.force_setattr
        if self.status is not None:
            set_(self, "status", _status("status", self.status))
        if self.date_from is not None:
            set_(self, "date_from", _utc("date_from", self.date_from))
        if self.date_to is not None:
            set_(self, "date_to", _utc("date_to", self.date_to))
            if self.date_from is not None and self.date_to < self.date_from:
                raise ConfigError("date_to", self.date_to, "must not be before date_from")

    def matches(self, record: IntegrationLog) -> bool:
        return (
            (self.service_name is None or record.service_name == self.service_name)
            and (self.status is None or record.status == self.status)
            and (self.tenant_id is None or record.tenant_id == self.tenant_id)
            and (self.date_from is None or record.created_at >= self.date_from)
            and (self.date_to is None or record.created_at <= self.date_to)
        )


class LogMetrics(msgspec.Struct, frozen=True, kw_only=True):
    """A service's outcomes over a period (for one tenant, or all when ``tenant_id`` is None).

    ``failure_count`` is every record that is not a success, rejections
    included. ``success_rate`` is a percentage rounded to 2 decimals, None when
    there was no traffic. Latencies are in milliseconds over the records that
    have a duration, None when none has: the mean rounded to 3 decimals (so
    stores that sum in different orders agree), percentiles by nearest rank.
    """

    service_name: str
    tenant_id: str | None
    date_from: datetime | None
    date_to: datetime | None
    success_count: int
    failure_count: int
    success_rate: float | None
    avg_duration_ms: float | None
    p50_duration_ms: float | None
    p95_duration_ms: float | None
    p99_duration_ms: float | None

    @property
    def total_count(self) -> int:
        return self.success_count + self.failure_count


PERCENTILES = (50, 95, 99)


def nearest_rank(count: int, percent: int) -> int:
    """The 1-based rank of the ``percent``-th percentile of ``count`` sorted values.

    Nearest rank, ``ceil(percent / 100 * count)`` in exact integer arithmetic:
    always a value that was observed, and what PostgreSQL's
    ``percentile_disc`` returns.
    """
    return max(1, -(-percent * count // 100))


def build_metrics(
    filters: LogFilters,
    *,
    total: int,
    successes: int,
    mean_duration_ms: float | None,
    percentiles: Mapping[int, float] | None,
) -> LogMetrics:
    """Metrics from a store's aggregates, rounded the one way every store shares."""
    assert filters.service_name is not None  # metrics are per service
    return LogMetrics(
        service_name=filters.service_name,
        tenant_id=filters.tenant_id,
        date_from=filters.date_from,
        date_to=filters.date_to,
        success_count=successes,
        failure_count=total - successes,
        success_rate=round(successes * 100 / total, 2) if total else None,
        avg_duration_ms=None if mean_duration_ms is None else round(mean_duration_ms, 3),
        p50_duration_ms=percentiles[50] if percentiles else None,
        p95_duration_ms=percentiles[95] if percentiles else None,
        p99_duration_ms=percentiles[99] if percentiles else None,
    )
