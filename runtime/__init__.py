"""Nexus Connector: an actor-based resilient runtime for calling external services.

Everything public is re-exported here; the modules behind it are private.
"""

from ._actor import TransportFactory
from ._breaker import Breaker, BreakerState, CircuitBreaker, CircuitBreakerState
from ._budget import RetryBudget, RetryBudgetLedger
from ._classify import ExceptionClassifier, Verdict
from ._clock import Clock, WallClock
from ._credential_crypto import (
    SECRET_KEY_ENV,
    CredentialCipher,
    generate_key,
)
from ._credential_manager import (
    DEFAULT_REFRESH_MARGIN,
    CredentialManager,
    Refresher,
)
from ._credentials import (
    AuthMethod,
    CredentialInfo,
    Credentials,
    CredentialStore,
)
from ._credstore_memory import (
    MemoryCredentialStore,
)
from ._credstore_sqlite import (
    SqliteCredentialStore,
)
from ._errors import (
    ActorCrashed,
    CircuitBreakerOpen,
    ConfigError,
    ConnectionFailed,
    ConnectorError,
    CredentialRefreshFailed,
    CredentialsExpired,
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
from ._events import (
    ActorRestarted,
    AttemptFinished,
    BreakerTransition,
    CallRejected,
    Event,
    EventBus,
    RetryScheduled,
    ServiceStopped,
    Subscription,
)
from ._http import HttpRequest, HttpResponse, Transport, TransportFailure
from ._idempotency import IdempotencyKey
from ._idempotency_store import IdempotencyStore, MemoryIdempotencyStore
from ._policy import ServicePolicy, Supervision
from ._ratelimit import GCRA, Limiter, LimiterState, RateLimit, TokenBucket
from ._retry import DEFAULT_RETRYABLE_STATUSES, Backoff, Jitter, Retry
from ._retry_after import parse_retry_after
from ._runtime import Runtime
from ._service import Service
from ._state_store import CellState, MemoryStateStore, StateStore
from ._webhooks import (
    HmacVerifier,
    StripeVerifier,
    TimestampedHmacVerifier,
    TimestampedSignature,
    TwilioVerifier,
    sign_webhook,
)

__all__ = [
    "DEFAULT_REFRESH_MARGIN",
    "DEFAULT_RETRYABLE_STATUSES",
    "GCRA",
    "SECRET_KEY_ENV",
    "ActorCrashed",
    "ActorRestarted",
    "AttemptFinished",
    "AuthMethod",
    "Backoff",
    "Breaker",
    "BreakerState",
    "BreakerTransition",
    "CallRejected",
    "CellState",
    "CircuitBreaker",
    "CircuitBreakerOpen",
    "CircuitBreakerState",
    "Clock",
    "ConfigError",
    "ConnectionFailed",
    "ConnectorError",
    "CredentialCipher",
    "CredentialInfo",
    "CredentialManager",
    "CredentialRefreshFailed",
    "CredentialStore",
    "Credentials",
    "CredentialsExpired",
    "CredentialsNotFound",
    "DeadlineExceeded",
    "Event",
    "EventBus",
    "ExceptionClassifier",
    "HmacVerifier",
    "HttpRequest",
    "HttpResponse",
    "IdempotencyKey",
    "IdempotencyStore",
    "Jitter",
    "Limiter",
    "LimiterState",
    "MemoryCredentialStore",
    "MemoryIdempotencyStore",
    "MemoryStateStore",
    "Overloaded",
    "PaymentDeclined",
    "RateLimit",
    "RateLimitExceeded",
    "Refresher",
    "Retry",
    "RetryBudget",
    "RetryBudgetLedger",
    "RetryScheduled",
    "Runtime",
    "Service",
    "ServicePolicy",
    "ServiceStopped",
    "ServiceUnavailable",
    "ShuttingDown",
    "SqliteCredentialStore",
    "StateStore",
    "StripeVerifier",
    "Subscription",
    "Supervision",
    "Timeout",
    "TimestampedHmacVerifier",
    "TimestampedSignature",
    "TokenBucket",
    "Transport",
    "TransportFactory",
    "TransportFailure",
    "TwilioVerifier",
    "VendorError",
    "Verdict",
    "WallClock",
    "WebhookVerificationFailed",
    "generate_key",
    "parse_retry_after",
    "sign_webhook",
]
