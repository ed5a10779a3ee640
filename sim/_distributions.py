"""Latency distributions of a fake provider, as scenario files name them.

Each is a msgspec struct tagged by ``kind`` (``{ kind = "lognormal", median =
0.12, p99 = 0.9 }``) with a `sampler` that draws seconds from a given stream.
Planners usually know a vendor's percentiles, not its parameters, so the
lognormal takes a median and either ``sigma`` or a p99, and ``empirical``
interpolates a table of percentiles.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable

import msgspec

from connector import ConfigError
from connector import _validate as check

__all__ = ["Constant", "Empirical", "Exponential", "Latency", "LogNormal"]

# The standard normal's 99th percentile: a lognormal's p99 is median * exp(Z99 * sigma).
_Z99 = 2.3263478740408408

Sampler = Callable[[], float]


class Constant(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag_field="kind",
    tag="constant",
):
    """Every request takes ``value`` seconds."""

    value: float

    def __post_init__(self) -> None:
        check.non_negative("value", self.value)

    @property
    def mean(self) -> float:
        return self.value

    def sampler(self, rng: random.Random) -> Sampler:
        value = self.value
        return lambda: value


class Exponential(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag_field="kind",
    tag="exponential",
):
    """Memoryless service times of the given ``mean`` (the M in M/M/c)."""

    mean: float

    def __post_init__(self) -> None:
        check.positive("mean", self.mean)

    def sampler(self, rng: random.Random) -> Sampler:
        rate = 1.0 / self.mean
        draw = rng.expovariate
        return lambda: draw(rate)


class LogNormal(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag_field="kind",
    tag="lognormal",
):
    """A lognormal with this ``median`` and either ``sigma`` or ``p99`` (seconds)."""

    median: float
    sigma: float | None = None
    p99: float | None = None

    def __post_init__(self) -> None:
        check.positive("median", self.median)
        if (self.sigma is None) == (self.p99 is None):
            raise ConfigError("sigma", self.sigma, "give exactly one of sigma and p99")
        if self.sigma is not None:
            check.positive("sigma", self.sigma)
        if self.p99 is not None and check.positive("p99", self.p99) <= self.median:
            raise ConfigError("p99", self.p99, f"must be above the median ({self.median:g})")

    @property
    def shape(self) -> float:
        if self.sigma is not None:
            return self.sigma
        assert self.p99 is not None
        return math.log(self.p99 / self.median) / _Z99

    @property
    def mean(self) -> float:
        return self.median * math.exp(self.shape**2 / 2)

    def sampler(self, rng: random.Random) -> Sampler:
        mu, sigma = math.log(self.median), self.shape
        draw = rng.lognormvariate
        return lambda: draw(mu, sigma)


class Empirical(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag_field="kind",
    tag="empirical",
):
    """Latencies read off a table of percentiles: ``{ "50" = 0.1, "99" = 0.8 }``.

    Between two given percentiles the value is interpolated linearly; below
    the lowest it falls to 0 s at p0 (give ``"0"`` to set a floor); above the
    highest it stays at the highest value.
    """

    percentiles: dict[str, float]

    def __post_init__(self) -> None:
        if not self.percentiles:
            raise ConfigError("percentiles", self.percentiles, "give at least one percentile")
        previous = -1.0
        for q, value in self._points():
            if value < previous:
                raise ConfigError(
                    f"percentiles.{_label(q)}", value, "must not be below a lower percentile's"
                )
            previous = value

    def _points(self) -> list[tuple[float, float]]:
        points = []
        for key, value in self.percentiles.items():
            try:
                q = float(key)
            except ValueError:
                raise ConfigError("percentiles", key, "keys must be percentiles 0-100") from None
            if not 0 <= q <= 100:
                raise ConfigError("percentiles", key, "keys must be percentiles 0-100")
            points.append((q, check.non_negative(f"percentiles.{key}", value)))
        return sorted(points)

    def _table(self) -> tuple[list[float], list[float]]:
        points = self._points()
        if points[0][0] > 0:
            points.insert(0, (0.0, 0.0))
        if points[-1][0] < 100:
            points.append((100.0, points[-1][1]))
        return [q for q, _ in points], [v for _, v in points]

    @property
    def mean(self) -> float:
        qs, vs = self._table()
        return sum(
            (q1 - q0) / 100 * (v0 + v1) / 2
            for q0, q1, v0, v1 in zip(qs, qs[1:], vs, vs[1:], strict=False)
        )

    def sampler(self, rng: random.Random) -> Sampler:
        qs, vs = self._table()
        draw = rng.random

        def sample() -> float:
            u = draw() * 100
            i = bisect.bisect_right(qs, u)
            if i >= len(qs):
                return vs[-1]
            q0, q1 = qs[i - 1], qs[i]
            v0, v1 = vs[i - 1], vs[i]
            return v0 + (v1 - v0) * (u - q0) / (q1 - q0) if q1 > q0 else v1

        return sample


def _label(q: float) -> str:
    return f"{q:g}"


Latency = Constant | Exponential | LogNormal | Empirical
