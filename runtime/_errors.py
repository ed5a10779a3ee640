"""The error hierarchy: every failure a caller can see is a `ConnectorError`.

Each error carries the fields a caller needs to act on it (which service, when
to retry, which field was wrong) as attributes, and a message in the words of
the PHP original. Errors pickle with their fields, so they cross process
boundaries (multiprocessing, the simulator's workers) intact.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "ActorCrashed",
    "CircuitBreakerOpen",
    "ConfigError",
    "ConnectionFailed",
    "ConnectorError",
    "CredentialRefreshFailed",
    "CredentialsExpired",
    "CredentialsNotFound",
    "DeadlineExceeded",
    "MalformedResponse",
    "Overloaded",
    "PaymentDeclined",
    "RateLimitExceeded",
    "ResponseTooLarge",
    "ServiceUnavailable",
    "ShuttingDown",
    "Timeout",
    "VendorError",
    "WebhookVerificationFailed",
]


def _seconds(value: float) -> str:
    """Whole seconds for a message, rounded up as the original did (42.1 s -> 43)."""
    if math.isinf(value):
        return "an unknown number of"
    return str(max(0, math.ceil(value)))


def _restore(cls: type[ConnectorError], fields: dict[str, Any], message: str) -> ConnectorError:
    error = cls.__new__(cls)
    error.__dict__.update(fields)
    error.args = (message,)
    return error


class ConnectorError(Exception):
    """Base of every error this package raises on purpose."""

    service: str | None

    def __init__(self, message: str, *, service: str | None = None, **fields: Any) -> None:
        super().__init__(message)
        self.service = service
        self.__dict__.update(fields)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), dict(self.__dict__), self.message))


class ConfigError(ConnectorError, ValueError):
    """A configuration or argument value is invalid; the message names the field."""

    field: str
    value: Any
    reason: str

    def __init__(self, field: str, value: Any, reason: str) -> None:
        super().__init__(
            f"invalid {field}={value!r}: {reason}", field=field, value=value, reason=reason
        )


class CircuitBreakerOpen(ConnectorError):
    """The service's breaker is open (or forced open): the call was not sent."""

    retry_after: float

    def __init__(self, service: str, retry_after: float) -> None:
        super().__init__(
            f"Circuit breaker is open for service '{service}'. "
            f"Retry in {_seconds(retry_after)} seconds",
            service=service,
            retry_after=retry_after,
        )


class RateLimitExceeded(ConnectorError):
    """The service's rate limit has no token now and the policy rejects instead of waiting."""

    limit: float
    window: float
    retry_after: float

    def __init__(self, service: str, limit: float, window: float, retry_after: float) -> None:
        super().__init__(
            f"Rate limit exceeded for service '{service}' ({limit:g} per {window:g} s). "
            f"Retry in {_seconds(retry_after)} seconds",
            service=service,
            limit=limit,
            window=window,
            retry_after=retry_after,
        )


class ConnectionFailed(ConnectorError):
    """Every attempt failed with a retryable error; `last_error` says what the last one was."""

    endpoint: str
    attempts: int
    last_error: str

    def __init__(self, service: str, endpoint: str, attempts: int, last_error: str) -> None:
        super().__init__(
            f"Failed to connect to service '{service}' at {endpoint} after {attempts} "
            f"attempt{'s' if attempts != 1 else ''}: {last_error}",
            service=service,
            endpoint=endpoint,
            attempts=attempts,
            last_error=last_error,
        )


class Timeout(ConnectorError, TimeoutError):
    """One attempt took longer than the policy's per-attempt timeout."""

    timeout: float

    def __init__(self, service: str, timeout: float) -> None:
        super().__init__(
            f"Request to service '{service}' timed out after {timeout:g} seconds",
            service=service,
            timeout=timeout,
        )


class Overloaded(ConnectorError):
    """The service's mailbox is full: the call was rejected at once, not dropped."""

    capacity: int

    def __init__(self, service: str, capacity: int) -> None:
        super().__init__(
            f"Service '{service}' is overloaded: its mailbox of {capacity} is full",
            service=service,
            capacity=capacity,
        )


class DeadlineExceeded(ConnectorError, TimeoutError):
    """The caller's deadline passed before the call could complete."""

    def __init__(self, service: str) -> None:
        super().__init__(f"Deadline exceeded for a call to service '{service}'", service=service)


class ServiceUnavailable(ConnectorError):
    """The service's actor was stopped (restart intensity exceeded, or never started)."""

    reason: str

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(
            f"Service '{service}' is unavailable: {reason}", service=service, reason=reason
        )


class ActorCrashed(ConnectorError):
    """A bug inside the service's actor failed the call in flight; the actor restarts."""

    cause: str

    def __init__(self, service: str, cause: str) -> None:
        super().__init__(
            f"The actor of service '{service}' crashed: {cause}", service=service, cause=cause
        )


class ShuttingDown(ConnectorError):
    """The runtime is stopping: the call was not (or no longer) going to be sent."""

    def __init__(self, service: str) -> None:
        super().__init__(f"Service '{service}' is shutting down", service=service)


class VendorError(ConnectorError):
    """The provider answered with an error that is the caller's own (a non-retryable 4xx)."""

    status: int
    body: str

    def __init__(self, service: str, status: int, body: str, **fields: Any) -> None:
        super().__init__(
            f"Service '{service}' answered HTTP {status}: {body}",
            service=service,
            status=status,
            body=body,
            **fields,
        )


class PaymentDeclined(VendorError):
    """The payment provider declined the card; never retried, never counted by the breaker."""

    decline_code: str
    reason: str

    def __init__(
        self, service: str, decline_code: str, reason: str, status: int = 402, body: str = ""
    ) -> None:
        super().__init__(service, status, body or reason, decline_code=decline_code, reason=reason)
        self.args = (f"Payment declined by '{service}' ({decline_code}): {reason}",)


class CredentialsNotFound(ConnectorError):
    """No active credentials are stored for this (service, tenant)."""

    tenant_id: str | None

    def __init__(self, service: str, tenant_id: str | None) -> None:
        whose = f"tenant '{tenant_id}'" if tenant_id is not None else "the default tenant"
        super().__init__(
            f"No credentials found for service '{service}' and {whose}",
            service=service,
            tenant_id=tenant_id,
        )


class CredentialRefreshFailed(ConnectorError):
    """Refreshing an OAuth2 token failed; the stored credential was left unchanged."""

    tenant_id: str | None
    reason: str

    def __init__(self, service: str, tenant_id: str | None, reason: str) -> None:
        super().__init__(
            f"Refreshing credentials for service '{service}' failed: {reason}",
            service=service,
            tenant_id=tenant_id,
            reason=reason,
        )


class WebhookVerificationFailed(ConnectorError):
    """An incoming webhook's signature, timestamp or format did not verify."""

    reason: str

    def __init__(self, reason: str) -> None:
        super().__init__(f"Webhook verification failed: {reason}", reason=reason)


class CredentialsExpired(CredentialsNotFound):
    """The stored credentials have expired and cannot be refreshed, so none are usable.

    A `CredentialsNotFound`, since a caller handles both the same way: store
    fresh credentials. ``reason`` says why no refresh was possible.
    """

    reason: str

    def __init__(
        self, service: str, tenant_id: str | None, reason: str = "they cannot be refreshed"
    ) -> None:
        super().__init__(service, tenant_id)
        self.reason = reason
        whose = f"tenant '{tenant_id}'" if tenant_id is not None else "the default tenant"
        self.args = (f"Credentials for service '{service}' and {whose} have expired: {reason}",)


class ResponseTooLarge(ConnectorError):
    """The provider's response body was larger than the configured cap; reading stopped there.

    Not retried and not a provider failure: the same request would get the
    same body. Raise the cap (``max_response_bytes``) if the body is expected.
    """

    status: int
    limit: int

    def __init__(self, service: str | None, status: int, limit: int) -> None:
        who = f"service '{service}'" if service is not None else "the provider"
        super().__init__(
            f"Response from {who} (HTTP {status}) is larger than the limit of {limit} bytes",
            service=service,
            status=status,
            limit=limit,
        )


class MalformedResponse(ConnectorError):
    """The provider's response could not be read as declared (not JSON, a broken encoding).

    ``reason`` says what was wrong, never what the body held.
    """

    status: int
    reason: str

    def __init__(self, service: str | None, status: int, reason: str) -> None:
        who = f"service '{service}'" if service is not None else "the provider"
        super().__init__(
            f"Malformed response from {who} (HTTP {status}): {reason}",
            service=service,
            status=status,
            reason=reason,
        )
