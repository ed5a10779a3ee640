"""`ServicePolicy`: every policy of one registered service, validated as a whole."""

from __future__ import annotations

from typing import Literal

import msgspec

from . import _validate as check
from ._breaker import Breaker
from ._budget import RetryBudget
from ._ratelimit import RateLimit
from ._retry import Retry

__all__ = ["KeyBy", "ServicePolicy", "Supervision"]

KeyBy = Literal["tenant", "endpoint"]


class Supervision(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Restart a crashed service's instance with backoff; stop it past the intensity.

    More than ``max_restarts`` restarts within ``within`` seconds stops the
    service (Erlang's one_for_one intensity; default 3 in 30 s).
    """

    max_restarts: int = 3
    within: float = 30.0
    backoff_initial: float = 0.1
    backoff_max: float = 5.0

    def __post_init__(self) -> None:
        check.integer("max_restarts", self.max_restarts, 0)
        check.positive("within", self.within)
        check.non_negative("backoff_initial", self.backoff_initial)
        check.at_least("backoff_max", self.backoff_max, self.backoff_initial)


class ServicePolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The policies of one service.

    ``None`` turns a policy off (no breaker, no rate limit, no budget, no
    timeout). ``timeout`` bounds each attempt; ``max_concurrency`` is the
    bulkhead and ``mailbox`` the most calls that may wait for a token, a slot or
    a restart. With ``key_by``, each tenant (or endpoint) gets its own actor
    with its own copy of these policies, passivated after ``idle_timeout``.
    ``idempotent`` says whether calls may be retried after the provider may
    have seen them (a per-call idempotency key also makes them so).
    """

    breaker: Breaker | None = msgspec.field(default_factory=Breaker)
    rate_limit: RateLimit | None = None
    retry: Retry = msgspec.field(default_factory=Retry)
    retry_budget: RetryBudget | None = msgspec.field(default_factory=RetryBudget)
    timeout: float | None = None
    max_concurrency: int = 100
    mailbox: int = 1000
    key_by: KeyBy | None = None
    idle_timeout: float = 300.0
    idempotent: bool = False
    breaker_counts_429: bool = False
    supervision: Supervision = msgspec.field(default_factory=Supervision)

    def __post_init__(self) -> None:
        _check_type("breaker", self.breaker, Breaker)
        _check_type("rate_limit", self.rate_limit, RateLimit)
        _check_type("retry", self.retry, Retry, optional=False)
        _check_type("retry_budget", self.retry_budget, RetryBudget)
        _check_type("supervision", self.supervision, Supervision, optional=False)
        if self.timeout is not None:
            check.positive("timeout", self.timeout)
        check.integer("max_concurrency", self.max_concurrency, 1)
        check.integer("mailbox", self.mailbox, 0)
        if self.key_by is not None:
            check.one_of("key_by", self.key_by, ("tenant", "endpoint"))
        check.positive("idle_timeout", self.idle_timeout)
        check.boolean("idempotent", self.idempotent)
        check.boolean("breaker_counts_429", self.breaker_counts_429)


def _check_type(field: str, value: object, kind: type, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, kind):
        check.fail(field, value, f"must be a {kind.__name__}" + (" or None" if optional else ""))
