"""Workloads: when calls arrive, at which service, for which tenant.

A workload's rate (calls per second) is its base ``rate`` times a diurnal
curve times the factors of the bursts active at that moment. Arrivals are a
Poisson process (``poisson``, thinned from the peak rate when the rate
varies, after Lewis and Shedler) or evenly spaced (``constant``). Several
workloads may target one service, or several services at once.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Iterator
from typing import Literal

import msgspec

from connector import ConfigError
from connector import _validate as check

__all__ = ["Burst", "Diurnal", "Workload"]


class Burst(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """From ``start`` to ``end`` (seconds) the rate is multiplied by ``factor``."""

    start: float
    end: float
    factor: float

    def __post_init__(self) -> None:
        check.non_negative("start", self.start)
        if check.number("end", self.end) <= self.start:
            raise ConfigError("end", self.end, f"must be after start ({self.start:g})")
        check.positive("factor", self.factor)


class Diurnal(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A daily (or any ``period``) cosine: the rate swings by +-``amplitude``, top at ``peak``."""

    amplitude: float
    period: float = 86_400.0
    peak: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= check.number("amplitude", self.amplitude) < 1:
            raise ConfigError("amplitude", self.amplitude, "must be in [0, 1)")
        check.positive("period", self.period)
        check.number("peak", self.peak)

    def factor(self, t: float) -> float:
        return 1.0 + self.amplitude * math.cos(2 * math.pi * (t - self.peak) / self.period)


class Workload(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Calls to ``service`` from ``start`` to ``end`` (default: the scenario's end).

    ``tenants`` maps tenant ids to weights (empty: calls carry no tenant).
    ``deadline`` bounds each call (seconds); ``idempotency_keys`` gives each
    call its own key, which makes a non-idempotent request safe to retry.
    """

    service: str
    rate: float
    arrivals: Literal["poisson", "constant"] = "poisson"
    start: float = 0.0
    end: float | None = None
    bursts: list[Burst] = msgspec.field(default_factory=list)
    diurnal: Diurnal | None = None
    tenants: dict[str, float] = msgspec.field(default_factory=dict)
    deadline: float | None = None
    idempotency_keys: bool = False
    cost: float = 1.0

    def __post_init__(self) -> None:
        if not self.service:
            raise ConfigError("service", self.service, "must name a service")
        check.positive("rate", self.rate)
        check.one_of("arrivals", self.arrivals, ("poisson", "constant"))
        check.non_negative("start", self.start)
        if self.end is not None and check.number("end", self.end) <= self.start:
            raise ConfigError("end", self.end, f"must be after start ({self.start:g})")
        for tenant, weight in self.tenants.items():
            check.positive(f"tenants.{tenant}", weight)
        if self.deadline is not None:
            check.positive("deadline", self.deadline)
        check.boolean("idempotency_keys", self.idempotency_keys)
        check.positive("cost", self.cost)

    def rate_at(self, t: float) -> float:
        """Calls per second at ``t``."""
        rate = self.rate
        if self.diurnal is not None:
            rate *= self.diurnal.factor(t)
        for burst in self.bursts:
            if burst.start <= t < burst.end:
                rate *= burst.factor
        return rate

    @property
    def peak_rate(self) -> float:
        """An upper bound of `rate_at` (the envelope thinning draws from)."""
        rate = self.rate
        if self.diurnal is not None:
            rate *= 1.0 + self.diurnal.amplitude
        for burst in self.bursts:
            rate *= max(1.0, burst.factor)
        return rate

    def times(self, rng: random.Random, end: float) -> Iterator[float]:
        """Arrival times in ``[start, min(end, self.end))``, in order."""
        stop = end if self.end is None else min(end, self.end)
        steady = self.diurnal is None and not self.bursts
        t = self.start
        if self.arrivals == "constant":
            while True:
                t += 1.0 / self.rate_at(t)
                if t >= stop:
                    return
                yield t
        peak = self.peak_rate
        gap, accept = rng.expovariate, rng.random
        while True:
            t += gap(peak)
            if t >= stop:
                return
            if steady or accept() * peak < self.rate_at(t):
                yield t

    def tenant_picker(self, rng: random.Random) -> Callable[[], str | None]:
        """Draws a tenant by weight for each call (always None without tenants)."""
        if not self.tenants:
            return lambda: None
        names = list(self.tenants)
        if len(names) == 1:
            only = names[0]
            return lambda: only
        bounds = []
        total = 0.0
        for weight in self.tenants.values():
            total += weight
            bounds.append(total)
        draw = rng.random

        def pick() -> str:
            return names[min(bisect.bisect_right(bounds, draw() * total), len(names) - 1)]

        return pick
