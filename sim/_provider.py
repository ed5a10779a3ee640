"""Fake providers: a vendor's latency, errors, quota, concurrency and incidents.

A `FakeProvider` plugs in at the runtime's own HTTP seam, `connector.Transport`
(`HttpRequest` in, `HttpResponse` out), so everything the runtime does with a
real vendor's answer runs unchanged: status classification, Retry-After and
X-RateLimit-Reset handling, the limiter's pause, the breaker's verdicts,
timeouts. It skips httpx itself: building httpx request and response objects
costs more than the rest of a simulated call, and says nothing about policies.

What a request meets, in order: an outage window (error, refused, or hang
until the window ends), the provider's concurrency limit (reject at once),
its quota (answered with 429 and a Retry-After), a brownout's extra errors,
the configured error rates, then the work: a slot of the concurrency limit
(queued for, in ``queue`` mode) held for the latency drawn.
"""

from __future__ import annotations

import email.utils
import heapq
import math
import random
from collections.abc import Awaitable, Callable
from typing import Literal

import anyio
import msgspec

from connector import ConfigError, HttpRequest, HttpResponse, TransportFailure
from connector import _validate as check

from ._distributions import Constant, Latency

__all__ = [
    "Brownout",
    "Concurrency",
    "FakeProvider",
    "Outage",
    "ProviderModel",
    "ProviderStats",
    "Quota",
    "SimulatedBug",
]

RetryAfterFormat = Literal["seconds", "decimal", "http-date", "reset", "none"]
_RETRY_AFTER_FORMATS = ("seconds", "decimal", "http-date", "reset", "none")
# Error kinds besides HTTP statuses: a connection reset after the provider got the
# request, a refused connection (it never did), and a bug in our own client code.
_SPECIAL_ERRORS = ("reset", "refused", "crash")
# Virtual Unix time at t = 0 when nobody says otherwise: 2023-11-14T22:13:20Z.
DEFAULT_EPOCH = 1_700_000_000.0


class SimulatedBug(Exception):
    """Raised by a provider's ``crash`` error kind: a bug in the client, so a crash."""


def _status(field: str, value: int) -> int:
    check.integer(field, value, 100)
    if value > 599:
        raise ConfigError(field, value, "must be an HTTP status 100-599")
    return value


def _window(start: float, end: float) -> None:
    check.non_negative("start", start)
    if check.number("end", end) <= start:
        raise ConfigError("end", end, f"must be after start ({start:g})")


class Quota(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The provider's own rate limit: ``limit`` requests per ``period`` seconds.

    ``kind="bucket"`` is a token bucket of ``limit`` tokens refilled over
    ``period`` (at most ``limit + limit / period * T`` in any ``T`` seconds);
    ``"window"`` resets a count at every multiple of ``period`` (SendGrid's
    style). Past it the provider answers ``status`` with a hint in the
    ``retry_after`` format: ``seconds`` (Retry-After, whole seconds rounded
    up), ``decimal`` (Retry-After with milliseconds), ``http-date``
    (Retry-After as a date), ``reset`` (X-RateLimit-Reset as a Unix time) or
    ``none``. ``per_tenant`` gives each tenant (API key) its own quota.
    """

    limit: int
    period: float = 1.0
    kind: Literal["bucket", "window"] = "bucket"
    status: int = 429
    retry_after: RetryAfterFormat = "seconds"
    per_tenant: bool = False

    def __post_init__(self) -> None:
        check.integer("limit", self.limit, 1)
        check.positive("period", self.period)
        check.one_of("kind", self.kind, ("bucket", "window"))
        _status("status", self.status)
        check.one_of("retry_after", self.retry_after, _RETRY_AFTER_FORMATS)
        check.boolean("per_tenant", self.per_tenant)

    @property
    def rate(self) -> float:
        """Sustained requests per second."""
        return self.limit / self.period


class Concurrency(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """At most ``limit`` requests in progress; more are rejected with ``status``
    (``over="reject"``) or wait for a slot in arrival order (``"queue"``)."""

    limit: int
    over: Literal["reject", "queue"] = "reject"
    status: int = 429

    def __post_init__(self) -> None:
        check.integer("limit", self.limit, 1)
        check.one_of("over", self.over, ("reject", "queue"))
        _status("status", self.status)


class Outage(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """From ``start`` to ``end`` (seconds) nothing works.

    ``mode="error"`` answers ``status`` at once (with ``retry_after`` seconds
    if set), ``"refused"`` refuses connections, ``"hang"`` accepts requests and
    answers none of them: each ends with a connection reset when the window
    closes, unless the policy's timeout cuts it first.
    """

    start: float
    end: float
    mode: Literal["error", "refused", "hang"] = "error"
    status: int = 503
    retry_after: float | None = None

    def __post_init__(self) -> None:
        _window(self.start, self.end)
        check.one_of("mode", self.mode, ("error", "refused", "hang"))
        _status("status", self.status)
        if self.retry_after is not None:
            check.non_negative("retry_after", self.retry_after)


class Brownout(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """From ``start`` to ``end`` the provider is slow (x ``latency_factor``) and flaky."""

    start: float
    end: float
    latency_factor: float = 1.0
    error_rate: float = 0.0
    status: int = 503

    def __post_init__(self) -> None:
        _window(self.start, self.end)
        check.positive("latency_factor", self.latency_factor)
        if not 0 <= check.number("error_rate", self.error_rate) <= 1:
            raise ConfigError("error_rate", self.error_rate, "must be in [0, 1]")
        _status("status", self.status)


class ProviderModel(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything a fake vendor does; see the module docstring for the order.

    ``errors`` maps an HTTP status (``"503"``) or ``"reset"``, ``"refused"``,
    ``"crash"`` to the probability that a request ends that way.
    ``reject_latency`` is how long answers take that skip the work (quota,
    concurrency and outage rejections, refused connections).
    """

    latency: Latency = msgspec.field(default_factory=lambda: Constant(value=0.1))
    errors: dict[str, float] = msgspec.field(default_factory=dict)
    reject_latency: float = 0.005
    quota: Quota | None = None
    concurrency: Concurrency | None = None
    outages: list[Outage] = msgspec.field(default_factory=list)
    brownouts: list[Brownout] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        total = 0.0
        for kind, probability in self.errors.items():
            if kind not in _SPECIAL_ERRORS:
                try:
                    _status(f"errors.{kind}", int(kind))
                except ValueError:
                    raise ConfigError(
                        f"errors.{kind}",
                        probability,
                        f"keys are HTTP statuses or one of {', '.join(_SPECIAL_ERRORS)}",
                    ) from None
            if not 0 <= check.number(f"errors.{kind}", probability) <= 1:
                raise ConfigError(f"errors.{kind}", probability, "must be a probability in [0, 1]")
            total += probability
        if total > 1 + 1e-9:
            raise ConfigError("errors", self.errors, "probabilities must add up to at most 1")
        check.non_negative("reject_latency", self.reject_latency)


class ProviderStats:
    """What the provider saw: requests, how each ended, peaks (``peak_in_flight``:
    the most requests accepted and not yet answered, in service or queued)."""

    __slots__ = (
        "_count",
        "_second",
        "peak_in_flight",
        "peak_rate",
        "requests",
        "statuses",
        "throttled",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.throttled = 0  # answered with the quota's status, past the quota
        self.statuses: dict[str, int] = {}
        self.peak_in_flight = 0
        self.peak_rate = 0  # most requests received within one whole second
        self._second = -1
        self._count = 0

    def arrived(self, now: float) -> None:
        self.requests += 1
        second = int(now)
        if second == self._second:
            self._count += 1
        else:
            self._second = second
            self._count = 1
        self.peak_rate = max(self.peak_rate, self._count)

    def ended(self, kind: str) -> None:
        self.statuses[kind] = self.statuses.get(kind, 0) + 1


class _BucketQuota:
    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, quota: Quota) -> None:
        self.capacity = float(quota.limit)
        self.rate = quota.rate
        self.tokens = self.capacity
        self.updated = 0.0

    def take(self, now: float) -> float:
        """0 when a request may pass (and counts it), else the seconds until one may."""
        tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate


class _WindowQuota:
    __slots__ = ("limit", "period", "used", "window")

    def __init__(self, quota: Quota) -> None:
        self.limit = quota.limit
        self.period = quota.period
        self.window = -1
        self.used = 0

    def take(self, now: float) -> float:
        window = math.floor(now / self.period)
        if window != self.window:
            self.window = window
            self.used = 0
        if self.used < self.limit:
            self.used += 1
            return 0.0
        return (window + 1) * self.period - now


_QuotaState = _BucketQuota | _WindowQuota
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class FakeProvider:
    """A vendor in virtual time behind the runtime's `Transport` seam.

    Its state (quota, requests in progress) is the vendor's, so it outlives
    the client: a restarted service gets the same provider back, and `aclose`
    closes nothing. Latencies and errors come from the two streams given.
    ``clock`` and ``sleep`` default to anyio's; the simulator passes the
    loop's own, resolved once. ``on_request(now)`` is called as each request
    arrives, in the sender's task.
    """

    def __init__(
        self,
        model: ProviderModel,
        *,
        latency_rng: random.Random,
        error_rng: random.Random,
        clock: Clock = anyio.current_time,
        sleep: Sleep = anyio.sleep,
        wall_clock: Clock | None = None,
        on_request: Callable[[float], None] | None = None,
    ) -> None:
        self.model = model
        self._on_request = on_request
        self.stats = ProviderStats()
        # When each request the provider accepted will be answered, soonest first,
        # and (in "queue" mode) when each of its slots frees. A client that gives
        # up (a timeout) does not stop the work: as on a real server, its slot
        # stays busy until then.
        self._finishing: list[float] = []
        self._slots: list[float] = []
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock or (lambda: DEFAULT_EPOCH + clock())
        self._latency = model.latency.sampler(latency_rng)
        self._draw_error = error_rng.random
        self._errors: list[tuple[float, str]] = []
        threshold = 0.0
        for kind, probability in model.errors.items():
            if probability > 0:
                threshold += probability
                self._errors.append((threshold, kind))
        self._incidents = bool(model.outages or model.brownouts)
        self._quotas: dict[str | None, _QuotaState] = {}
        self._responses: dict[int, HttpResponse] = {}

    async def aclose(self) -> None:
        """The client closed its connections; the vendor carries on."""

    async def send(self, request: HttpRequest, tenant_id: str | None = None) -> HttpResponse:
        model = self.model
        now = self._clock()
        self.stats.arrived(now)
        if self._on_request is not None:
            self._on_request(now)
        if self._incidents:
            for outage in model.outages:
                if outage.start <= now < outage.end:
                    return await self._outage(outage, now)
        concurrency = model.concurrency
        if (
            concurrency is not None
            and concurrency.over == "reject"
            and self.in_progress(now) >= concurrency.limit
        ):
            return await self._reject(concurrency.status)
        quota = model.quota
        if quota is not None:
            wait = self._quota(quota, tenant_id).take(now)
            if wait > 0.0:
                self.stats.throttled += 1
                return await self._reject(quota.status, self._throttle_headers(quota, wait))
        factor = 1.0
        if self._incidents:
            for brownout in model.brownouts:
                if brownout.start <= now < brownout.end:
                    factor *= brownout.latency_factor
                    if brownout.error_rate and self._draw_error() < brownout.error_rate:
                        return await self._answer(brownout.status, self._latency() * factor)
        kind = "200"
        if self._errors:
            u = self._draw_error()
            for threshold, error in self._errors:
                if u < threshold:
                    kind = error
                    break
        if kind == "crash":
            self.stats.ended(kind)
            raise SimulatedBug("simulated bug in the client")
        if kind == "refused":
            return await self._refuse()
        latency = self._latency() * factor
        if kind == "reset":
            await self._work(latency)
            self.stats.ended(kind)
            raise TransportFailure("simulated connection reset by peer", sent=True)
        return await self._answer(int(kind), latency)

    # -- the paths a request takes ---------------------------------------------

    async def _work(self, seconds: float) -> None:
        """Do ``seconds`` of work on one of the provider's slots, first come first served.

        In ``queue`` mode the provider is a FIFO multi-server queue with known
        service times: a request takes the slot that frees first (at once if
        one is free) and is answered ``seconds`` after it started.
        """
        now = self._clock()
        start = now
        concurrency = self.model.concurrency
        if concurrency is not None and concurrency.over == "queue":
            slots = self._slots
            if len(slots) >= concurrency.limit:
                start = max(now, heapq.heappop(slots))
            heapq.heappush(slots, start + seconds)
        heapq.heappush(self._finishing, start + seconds)
        self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.in_progress(now))
        await self._sleep(start + seconds - now)

    def in_progress(self, now: float) -> int:
        """Requests accepted and not answered by ``now``: in service or queued."""
        finishing = self._finishing
        while finishing and finishing[0] <= now:
            heapq.heappop(finishing)
        return len(finishing)

    async def _answer(self, status: int, latency: float) -> HttpResponse:
        await self._work(latency)
        self.stats.ended(str(status))
        return self._response(status)

    async def _reject(self, status: int, headers: dict[str, str] | None = None) -> HttpResponse:
        await self._sleep(self.model.reject_latency)
        self.stats.ended(str(status))
        if headers is None:
            return self._response(status)
        return HttpResponse(status=status, headers=headers, content=_body(status))

    async def _refuse(self) -> HttpResponse:
        await self._sleep(self.model.reject_latency)
        self.stats.ended("refused")
        raise TransportFailure("simulated connection refused", sent=False)

    async def _outage(self, outage: Outage, now: float) -> HttpResponse:
        if outage.mode == "refused":
            return await self._refuse()
        if outage.mode == "hang":
            await self._sleep(outage.end - now)
            self.stats.ended("reset")
            raise TransportFailure("simulated connection reset by peer", sent=True)
        headers = None
        if outage.retry_after is not None:
            headers = {"Retry-After": f"{math.ceil(outage.retry_after)}"}
        return await self._reject(outage.status, headers)

    # -- state -----------------------------------------------------------------

    def _quota(self, quota: Quota, tenant_id: str | None) -> _QuotaState:
        key = tenant_id if quota.per_tenant else None
        state = self._quotas.get(key)
        if state is None:
            state = self._quotas[key] = (
                _BucketQuota(quota) if quota.kind == "bucket" else _WindowQuota(quota)
            )
        return state

    def _throttle_headers(self, quota: Quota, wait: float) -> dict[str, str] | None:
        style = quota.retry_after
        if style == "seconds":
            return {"Retry-After": str(math.ceil(wait))}
        if style == "decimal":
            return {"Retry-After": f"{wait:.3f}"}
        if style == "http-date":
            at = math.ceil(self._wall_clock() + wait)
            return {"Retry-After": email.utils.formatdate(at, usegmt=True)}
        if style == "reset":
            return {"X-RateLimit-Reset": str(math.ceil(self._wall_clock() + wait))}
        return None

    def _response(self, status: int) -> HttpResponse:
        response = self._responses.get(status)
        if response is None:
            response = self._responses[status] = HttpResponse(
                status=status, content=_body(status) if status >= 400 else b""
            )
        return response


def _body(status: int) -> bytes:
    return b'{"error": "simulated HTTP %d"}' % status
