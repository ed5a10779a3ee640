"""Nexus Connector: an actor-based resilient runtime for calling external services.

Everything public is re-exported here; the modules behind it are private.
"""

from ._actor import TransportFactory
from ._asgi import (
    ConnectorState,
    connector_lifespan,
    connector_state,
    service_dependency,
)
from ._auth import (
    Auth,
    Authenticator,
    hmac_signature,
)
from ._breaker import Breaker, BreakerState, CircuitBreaker, CircuitBreakerState
from ._budget import RetryBudget, RetryBudgetLedger
from ._bulk import (
    BulkFailure,
    BulkResult,
)
from ._classify import ExceptionClassifier, Verdict
from ._clock import Clock, WallClock
from ._config import (
    ConfigFileError,
    ConnectorConfig,
    load_config,
)
from ._configured import (
    ConfiguredRuntime,
)
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
from ._email import (
    AddressValidation,
    Attachment,
    EmailMessage,
    EmailReceipt,
    EmailService,
    EmailStatistics,
)
from ._endpoint import (
    Endpoint,
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
    MalformedResponse,
    Overloaded,
    PaymentDeclined,
    RateLimitExceeded,
    ResponseTooLarge,
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
    LogBufferFull,
    RetryScheduled,
    ServiceStopped,
    Subscription,
)
from ._formats import (
    check_email_address,
    check_phone_number,
)
from ._http import HttpRequest, HttpResponse, Transport, TransportFailure
from ._http_service import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_HTTP_TIMEOUT,
    ApiResponse,
    HttpService,
)
from ._httpx_transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    HttpxTransport,
)
from ._idempotency import IdempotencyKey
from ._idempotency_redis import (
    RedisIdempotencyStore,
)
from ._idempotency_sqlite import (
    SqliteIdempotencyStore,
)
from ._idempotency_store import IdempotencyStore, MemoryIdempotencyStore
from ._log_writer import (
    LogsNotWritten,
    LogWriter,
)
from ._logrecord import (
    IntegrationLog,
    LogFilters,
    LogMetrics,
    LogStatus,
    UlidGenerator,
    new_ulid,
)
from ._logstore import (
    DEFAULT_RETENTION_DAYS,
    MAX_QUERY_LIMIT,
    LogStore,
    TenantLogView,
)
from ._logstore_memory import (
    MemoryLogStore,
)
from ._logstore_postgres import (
    PostgresLogStore,
)
from ._logstore_sqlite import (
    SqliteLogStore,
)
from ._outbox import (
    DeferReason,
    Deferred,
    Outbox,
    OutboxEntry,
    OutboxPolicy,
    OutboxStatus,
    OutboxUnavailable,
)
from ._outbox_dispatcher import (
    OutboxDispatcher,
)
from ._outbox_events import (
    CallDeferred,
    OutboxDeadLettered,
    OutboxDelivered,
    OutboxRetryScheduled,
)
from ._outbox_memory import (
    MemoryOutbox,
)
from ._outbox_postgres import (
    PostgresOutbox,
)
from ._outbox_sqlite import (
    SqliteOutbox,
)
from ._payments import (
    CaptureMethod,
    CaptureRequest,
    CaptureResult,
    ChargeRequest,
    ChargeResult,
    Money,
    PaymentGateway,
    PaymentIntent,
    PaymentIntentRequest,
    PaymentStatus,
    RefundReason,
    RefundRequest,
    RefundResult,
    RefundStatus,
    currency_exponent,
)
from ._policy import ServicePolicy, Supervision
from ._ratelimit import GCRA, Limiter, LimiterState, RateLimit, TokenBucket
from ._redaction import (
    REDACTED,
    is_secret_key,
    redact,
    redact_text,
)
from ._redis_state import (
    RedisSharedState,
)
from ._redis_state_store import (
    RedisStateStore,
)
from ._retry import DEFAULT_RETRYABLE_STATUSES, Backoff, Jitter, Retry
from ._retry_after import parse_retry_after
from ._runtime import Runtime
from ._service import Service
from ._shared_events import (
    FallbackMode,
    SharedStateRestored,
    SharedStateUnavailable,
)
from ._shared_gate import (
    SharedGate,
)
from ._shared_state import (
    Admission,
    BreakerStatus,
    FallbackSharedState,
    MemorySharedState,
    SharedPolicyState,
    SharedStateError,
)
from ._shipping import (
    Address,
    Parcel,
    Shipment,
    ShipmentCancellation,
    ShipmentRequest,
    ShippingProvider,
    ShippingRate,
    TrackingEvent,
    TrackingInfo,
    TrackingStatus,
)
from ._sms import (
    AccountBalance,
    PhoneNumberInfo,
    SmsMessage,
    SmsReceipt,
    SmsService,
)
from ._sqlite_state_store import (
    CellStateCodec,
    SqliteStateStore,
)
from ._state_store import CellState, MemoryStateStore, StateStore
from ._storage import (
    CloudStorage,
    FileUpload,
    SignedMethod,
    SignedUrl,
    StoredFile,
    StoredObject,
)
from ._webhook_sender import (
    WebhookSender,
)
from ._webhooks import (
    HmacVerifier,
    StripeVerifier,
    TimestampedHmacVerifier,
    TimestampedSignature,
    TwilioVerifier,
    sign_webhook,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HTTP_TIMEOUT",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_REFRESH_MARGIN",
    "DEFAULT_RETENTION_DAYS",
    "DEFAULT_RETRYABLE_STATUSES",
    "GCRA",
    "MAX_QUERY_LIMIT",
    "REDACTED",
    "SECRET_KEY_ENV",
    "AccountBalance",
    "ActorCrashed",
    "ActorRestarted",
    "Address",
    "AddressValidation",
    "Admission",
    "ApiResponse",
    "Attachment",
    "AttemptFinished",
    "Auth",
    "AuthMethod",
    "Authenticator",
    "Backoff",
    "Breaker",
    "BreakerState",
    "BreakerStatus",
    "BreakerTransition",
    "BulkFailure",
    "BulkResult",
    "CallDeferred",
    "CallRejected",
    "CaptureMethod",
    "CaptureRequest",
    "CaptureResult",
    "CellState",
    "CellStateCodec",
    "ChargeRequest",
    "ChargeResult",
    "CircuitBreaker",
    "CircuitBreakerOpen",
    "CircuitBreakerState",
    "Clock",
    "CloudStorage",
    "ConfigError",
    "ConfigFileError",
    "ConfiguredRuntime",
    "ConnectionFailed",
    "ConnectorConfig",
    "ConnectorError",
    "ConnectorState",
    "CredentialCipher",
    "CredentialInfo",
    "CredentialManager",
    "CredentialRefreshFailed",
    "CredentialStore",
    "Credentials",
    "CredentialsExpired",
    "CredentialsNotFound",
    "DeadlineExceeded",
    "DeferReason",
    "Deferred",
    "EmailMessage",
    "EmailReceipt",
    "EmailService",
    "EmailStatistics",
    "Endpoint",
    "Event",
    "EventBus",
    "ExceptionClassifier",
    "FallbackMode",
    "FallbackSharedState",
    "FileUpload",
    "HmacVerifier",
    "HttpRequest",
    "HttpResponse",
    "HttpService",
    "HttpxTransport",
    "IdempotencyKey",
    "IdempotencyStore",
    "IntegrationLog",
    "Jitter",
    "Limiter",
    "LimiterState",
    "LogBufferFull",
    "LogFilters",
    "LogMetrics",
    "LogStatus",
    "LogStore",
    "LogWriter",
    "LogsNotWritten",
    "MalformedResponse",
    "MemoryCredentialStore",
    "MemoryIdempotencyStore",
    "MemoryLogStore",
    "MemoryOutbox",
    "MemorySharedState",
    "MemoryStateStore",
    "Money",
    "Outbox",
    "OutboxDeadLettered",
    "OutboxDelivered",
    "OutboxDispatcher",
    "OutboxEntry",
    "OutboxPolicy",
    "OutboxRetryScheduled",
    "OutboxStatus",
    "OutboxUnavailable",
    "Overloaded",
    "Parcel",
    "PaymentDeclined",
    "PaymentGateway",
    "PaymentIntent",
    "PaymentIntentRequest",
    "PaymentStatus",
    "PhoneNumberInfo",
    "PostgresLogStore",
    "PostgresOutbox",
    "RateLimit",
    "RateLimitExceeded",
    "RedisIdempotencyStore",
    "RedisSharedState",
    "RedisStateStore",
    "Refresher",
    "RefundReason",
    "RefundRequest",
    "RefundResult",
    "RefundStatus",
    "ResponseTooLarge",
    "Retry",
    "RetryBudget",
    "RetryBudgetLedger",
    "RetryScheduled",
    "Runtime",
    "Service",
    "ServicePolicy",
    "ServiceStopped",
    "ServiceUnavailable",
    "SharedGate",
    "SharedPolicyState",
    "SharedStateError",
    "SharedStateRestored",
    "SharedStateUnavailable",
    "Shipment",
    "ShipmentCancellation",
    "ShipmentRequest",
    "ShippingProvider",
    "ShippingRate",
    "ShuttingDown",
    "SignedMethod",
    "SignedUrl",
    "SmsMessage",
    "SmsReceipt",
    "SmsService",
    "SqliteCredentialStore",
    "SqliteIdempotencyStore",
    "SqliteLogStore",
    "SqliteOutbox",
    "SqliteStateStore",
    "StateStore",
    "StoredFile",
    "StoredObject",
    "StripeVerifier",
    "Subscription",
    "Supervision",
    "TenantLogView",
    "Timeout",
    "TimestampedHmacVerifier",
    "TimestampedSignature",
    "TokenBucket",
    "TrackingEvent",
    "TrackingInfo",
    "TrackingStatus",
    "Transport",
    "TransportFactory",
    "TransportFailure",
    "TwilioVerifier",
    "UlidGenerator",
    "VendorError",
    "Verdict",
    "WallClock",
    "WebhookSender",
    "WebhookVerificationFailed",
    "check_email_address",
    "check_phone_number",
    "connector_lifespan",
    "connector_state",
    "currency_exponent",
    "generate_key",
    "hmac_signature",
    "is_secret_key",
    "load_config",
    "new_ulid",
    "parse_retry_after",
    "redact",
    "redact_text",
    "service_dependency",
    "sign_webhook",
]
