"""Nexus Connector: an actor-based resilient runtime for calling external services.

Everything public is re-exported here; the modules behind it are private.
"""

from ._breaker import Breaker, BreakerState, CircuitBreaker, CircuitBreakerState
from ._budget import RetryBudget, RetryBudgetLedger
from ._errors import (
    ActorCrashed,
    CircuitBreakerOpen,
    ConfigError,
    ConnectionFailed,
    ConnectorError,
    CredentialRefreshFailed,
    CredentialsNotFound,
    DeadlineExceeded,
    Overloaded,
    PaymentDeclined,
    RateLimitExceeded,
    ServiceUnavailable,
    ShuttingDown,
    Timeout,
    VendorError,
    WebhookVerificationFailed,
)
from ._idempotency import IdempotencyKey
from ._ratelimit import GCRA, Limiter, RateLimit, TokenBucket
from ._retry import DEFAULT_RETRYABLE_STATUSES, Backoff, Jitter, Retry
from ._retry_after import parse_retry_after

__all__ = [
    "DEFAULT_RETRYABLE_STATUSES",
    "GCRA",
    "ActorCrashed",
    "Backoff",
    "Breaker",
    "BreakerState",
    "CircuitBreaker",
    "CircuitBreakerOpen",
    "CircuitBreakerState",
    "ConfigError",
    "ConnectionFailed",
    "ConnectorError",
    "CredentialRefreshFailed",
    "CredentialsNotFound",
    "DeadlineExceeded",
    "IdempotencyKey",
    "Jitter",
    "Limiter",
    "Overloaded",
    "PaymentDeclined",
    "RateLimit",
    "RateLimitExceeded",
    "Retry",
    "RetryBudget",
    "RetryBudgetLedger",
    "ServiceUnavailable",
    "ShuttingDown",
    "Timeout",
    "TokenBucket",
    "VendorError",
    "WebhookVerificationFailed",
    "parse_retry_after",
]
