"""Every validated field of the policy structs: a bad value is a ConfigError naming it.

The same checks run whether a struct is built in Python or decoded by msgspec;
decoding reports them as a `msgspec.ValidationError` carrying our message.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import pytest

from connector import Breaker, ConfigError, IdempotencyKey, RateLimit, Retry, RetryBudget

NAN = math.nan
INF = math.inf
HEX = "0123456789abcdef" * 2

# Fields every instance needs besides the one under test.
REQUIRED: dict[type[Any], dict[str, Any]] = {
    Breaker: {},
    RateLimit: {"rate": 10},
    Retry: {},
    RetryBudget: {},
    IdempotencyKey: {"value": HEX, "created_at": 0.0},
}

# (struct, the bad keyword arguments, the field the error names, the bad value)
BAD: list[tuple[type[Any], dict[str, Any], str, Any]] = [
    # Breaker
    (Breaker, {"failure_threshold": 0}, "failure_threshold", 0),
    (Breaker, {"failure_threshold": -1}, "failure_threshold", -1),
    (Breaker, {"failure_threshold": 2.5}, "failure_threshold", 2.5),
    (Breaker, {"failure_threshold": True}, "failure_threshold", True),
    (Breaker, {"failure_threshold": "5"}, "failure_threshold", "5"),
    (Breaker, {"failure_threshold": None}, "failure_threshold", None),  # no rule left
    (Breaker, {"failure_rate_threshold": 0.0}, "failure_rate_threshold", 0.0),
    (Breaker, {"failure_rate_threshold": 1.5}, "failure_rate_threshold", 1.5),
    (Breaker, {"failure_rate_threshold": -0.1}, "failure_rate_threshold", -0.1),
    (Breaker, {"failure_rate_threshold": NAN}, "failure_rate_threshold", NAN),
    (Breaker, {"failure_rate_threshold": INF}, "failure_rate_threshold", INF),
    (Breaker, {"failure_rate_threshold": True}, "failure_rate_threshold", True),
    (Breaker, {"sliding_window": "rolling"}, "sliding_window", "rolling"),
    (Breaker, {"window_size": 0}, "window_size", 0),
    (Breaker, {"window_size": 1.5}, "window_size", 1.5),
    (Breaker, {"window_size": True}, "window_size", True),
    (Breaker, {"minimum_calls": 0}, "minimum_calls", 0),
    (Breaker, {"slow_call_duration": 0}, "slow_call_duration", 0),
    (Breaker, {"slow_call_duration": -1.0}, "slow_call_duration", -1.0),
    (Breaker, {"slow_call_duration": NAN}, "slow_call_duration", NAN),
    (Breaker, {"slow_call_rate_threshold": 0}, "slow_call_rate_threshold", 0),
    (Breaker, {"slow_call_rate_threshold": 1.01}, "slow_call_rate_threshold", 1.01),
    (Breaker, {"open_duration": 0}, "open_duration", 0),
    (Breaker, {"open_duration": -5.0}, "open_duration", -5.0),
    (Breaker, {"open_duration": INF}, "open_duration", INF),
    (Breaker, {"open_duration": NAN}, "open_duration", NAN),
    (Breaker, {"open_duration": True}, "open_duration", True),
    (Breaker, {"open_duration_multiplier": 0.5}, "open_duration_multiplier", 0.5),
    (Breaker, {"open_duration_multiplier": NAN}, "open_duration_multiplier", NAN),
    (Breaker, {"max_open_duration": 30.0}, "max_open_duration", 30.0),  # below open_duration
    (Breaker, {"max_open_duration": INF}, "max_open_duration", INF),
    (Breaker, {"open_duration_multiplier": 2.0}, "max_open_duration", None),  # missing
    (Breaker, {"half_open_probes": 0}, "half_open_probes", 0),
    (Breaker, {"half_open_probes": True}, "half_open_probes", True),
    (Breaker, {"success_threshold": 0}, "success_threshold", 0),
    (Breaker, {"success_threshold": 1.0}, "success_threshold", 1.0),
    # RateLimit
    (RateLimit, {"rate": 0}, "rate", 0),
    (RateLimit, {"rate": -1.0}, "rate", -1.0),
    (RateLimit, {"rate": NAN}, "rate", NAN),
    (RateLimit, {"rate": INF}, "rate", INF),
    (RateLimit, {"rate": True}, "rate", True),
    (RateLimit, {"rate": "2"}, "rate", "2"),
    (RateLimit, {"period": 0}, "period", 0),
    (RateLimit, {"period": -60.0}, "period", -60.0),
    (RateLimit, {"period": INF}, "period", INF),
    (RateLimit, {"burst": 0}, "burst", 0),
    (RateLimit, {"burst": 1.5}, "burst", 1.5),
    (RateLimit, {"burst": True}, "burst", True),
    (RateLimit, {"mode": "drop"}, "mode", "drop"),
    (RateLimit, {"algorithm": "leaky_bucket"}, "algorithm", "leaky_bucket"),
    # Retry
    (Retry, {"attempts": 0}, "attempts", 0),
    (Retry, {"attempts": -3}, "attempts", -3),
    (Retry, {"attempts": 2.0}, "attempts", 2.0),
    (Retry, {"attempts": True}, "attempts", True),
    (Retry, {"initial_delay": -1.0}, "initial_delay", -1.0),
    (Retry, {"initial_delay": NAN}, "initial_delay", NAN),
    (Retry, {"initial_delay": INF}, "initial_delay", INF),
    (Retry, {"multiplier": 0.5}, "multiplier", 0.5),
    (Retry, {"multiplier": NAN}, "multiplier", NAN),
    (Retry, {"multiplier": False}, "multiplier", False),
    (Retry, {"max_delay": 0.5}, "max_delay", 0.5),  # below initial_delay
    (Retry, {"max_delay": INF}, "max_delay", INF),
    (Retry, {"jitter": "random"}, "jitter", "random"),
    (Retry, {"jitter": None}, "jitter", None),
    (Retry, {"retryable_statuses": frozenset({99})}, "retryable_statuses", 99),
    (Retry, {"retryable_statuses": frozenset({600})}, "retryable_statuses", 600),
    (Retry, {"retryable_statuses": frozenset({True})}, "retryable_statuses", True),
    (Retry, {"retryable_statuses": frozenset({"503"})}, "retryable_statuses", "503"),
    (Retry, {"retryable_statuses": 503}, "retryable_statuses", 503),
    (Retry, {"deadline": 0}, "deadline", 0),
    (Retry, {"deadline": -1.0}, "deadline", -1.0),
    (Retry, {"deadline": INF}, "deadline", INF),
    # RetryBudget
    (RetryBudget, {"ratio": -0.1}, "ratio", -0.1),
    (RetryBudget, {"ratio": NAN}, "ratio", NAN),
    (RetryBudget, {"ratio": True}, "ratio", True),
    (RetryBudget, {"min_per_second": -1.0}, "min_per_second", -1.0),
    (RetryBudget, {"min_per_second": INF}, "min_per_second", INF),
    (RetryBudget, {"window": 0}, "window", 0),
    (RetryBudget, {"window": -10.0}, "window", -10.0),
    (RetryBudget, {"window": NAN}, "window", NAN),
    # IdempotencyKey
    (IdempotencyKey, {"value": "not-a-key"}, "idempotency_key", "not-a-key"),
    (IdempotencyKey, {"value": HEX.upper()}, "idempotency_key", HEX.upper()),
    (IdempotencyKey, {"value": 12345}, "idempotency_key", 12345),
    (IdempotencyKey, {"created_at": NAN}, "created_at", NAN),
    (IdempotencyKey, {"created_at": "now"}, "created_at", "now"),
    (IdempotencyKey, {"created_at": True}, "created_at", True),
    (IdempotencyKey, {"ttl": 0}, "ttl", 0),
    (IdempotencyKey, {"ttl": -1.0}, "ttl", -1.0),
    (IdempotencyKey, {"ttl": INF}, "ttl", INF),
]


def _id(case: tuple[type[Any], dict[str, Any], str, Any]) -> str:
    struct, kwargs, _, _ = case
    return f"{struct.__name__}-" + "-".join(f"{k}={v!r}" for k, v in kwargs.items())


@pytest.mark.parametrize(("struct", "kwargs", "field", "value"), BAD, ids=map(_id, BAD))
def test_bad_value_names_field_and_value(
    struct: type[Any], kwargs: dict[str, Any], field: str, value: Any
) -> None:
    with pytest.raises(ConfigError) as caught:
        struct(**{**REQUIRED[struct], **kwargs})
    error = caught.value
    assert error.field == field
    assert error.value is value or error.value == value
    assert field in str(error)
    assert repr(value) in str(error)
    assert error.reason


@pytest.mark.parametrize(
    ("struct", "data", "field"),
    [
        (Breaker, {"open_duration": -1}, "open_duration"),
        (Breaker, {"failure_rate_threshold": 2}, "failure_rate_threshold"),
        (Breaker, {"window_size": "ten"}, "window_size"),
        (Breaker, {"half_open_probes": True}, "half_open_probes"),
        (Breaker, {"failure_treshold": 3}, "failure_treshold"),  # a typo is not ignored
        (RateLimit, {"rate": 0}, "rate"),
        (RateLimit, {}, "rate"),
        (RateLimit, {"rate": 1, "mode": "drop"}, "mode"),
        (Retry, {"jitter": "random"}, "jitter"),
        (Retry, {"retryable_statuses": [500, 600]}, "retryable_statuses"),
        (RetryBudget, {"window": 0}, "window"),
        (IdempotencyKey, {"value": "x", "created_at": 0}, "idempotency_key"),
    ],
)
def test_decoding_bad_config_names_the_field(
    struct: type[Any], data: dict[str, Any], field: str
) -> None:
    with pytest.raises(msgspec.ValidationError, match=field):
        msgspec.convert(data, struct)


def test_decoding_good_config() -> None:
    data = {"failure_threshold": None, "failure_rate_threshold": 0.5, "sliding_window": "time"}
    assert msgspec.convert(data, Breaker) == Breaker(
        failure_threshold=None, failure_rate_threshold=0.5, sliding_window="time"
    )
    retry = msgspec.convert({"retryable_statuses": [503]}, Retry)
    assert retry.retryable_statuses == frozenset({503})
    for policy in (Breaker(), RateLimit(rate=3), Retry(), RetryBudget()):
        assert msgspec.convert(msgspec.to_builtins(policy), type(policy)) == policy


def test_policies_are_immutable() -> None:
    with pytest.raises(AttributeError):
        Breaker().open_duration = 1.0  # type: ignore[misc]
