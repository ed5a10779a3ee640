"""The error hierarchy: fields, messages in the original's words, pickling, base classes."""

from __future__ import annotations

import math
import pickle
from typing import Any

import pytest

import connector._errors
from connector import (
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
from connector._errors import CredentialsExpired, MalformedResponse, ResponseTooLarge

# (error, its fields, its message)
CASES: list[tuple[ConnectorError, dict[str, Any], str]] = [
    (
        CircuitBreakerOpen("sendgrid", 42),
        {"service": "sendgrid", "retry_after": 42},
        "Circuit breaker is open for service 'sendgrid'. Retry in 42 seconds",
    ),
    (
        CircuitBreakerOpen("sendgrid", 41.2),
        {"service": "sendgrid", "retry_after": 41.2},
        "Circuit breaker is open for service 'sendgrid'. Retry in 42 seconds",
    ),
    (
        CircuitBreakerOpen("sendgrid", math.inf),  # forced open: no known end
        {"service": "sendgrid", "retry_after": math.inf},
        "Circuit breaker is open for service 'sendgrid'. Retry in an unknown number of seconds",
    ),
    (
        RateLimitExceeded("twilio", 5, 60, 12.0),
        {"service": "twilio", "limit": 5, "window": 60, "retry_after": 12.0},
        "Rate limit exceeded for service 'twilio' (5 per 60 s). Retry in 12 seconds",
    ),
    (
        ConnectionFailed("stripe", "https://api.stripe.com/v1/charges", 3, "connect timeout"),
        {
            "service": "stripe",
            "endpoint": "https://api.stripe.com/v1/charges",
            "attempts": 3,
            "last_error": "connect timeout",
        },
        "Failed to connect to service 'stripe' at https://api.stripe.com/v1/charges "
        "after 3 attempts: connect timeout",
    ),
    (
        ConnectionFailed("s3", "/bucket", 1, "refused"),
        {"service": "s3", "endpoint": "/bucket", "attempts": 1, "last_error": "refused"},
        "Failed to connect to service 's3' at /bucket after 1 attempt: refused",
    ),
    (
        Timeout("s3", 2.5),
        {"service": "s3", "timeout": 2.5},
        "Request to service 's3' timed out after 2.5 seconds",
    ),
    (
        Overloaded("sendgrid", 100),
        {"service": "sendgrid", "capacity": 100},
        "Service 'sendgrid' is overloaded: its mailbox of 100 is full",
    ),
    (
        DeadlineExceeded("fedex"),
        {"service": "fedex"},
        "Deadline exceeded for a call to service 'fedex'",
    ),
    (
        ServiceUnavailable("fedex", "restarted 4 times in 30 s"),
        {"service": "fedex", "reason": "restarted 4 times in 30 s"},
        "Service 'fedex' is unavailable: restarted 4 times in 30 s",
    ),
    (
        ActorCrashed("fedex", "KeyError: 'id'"),
        {"service": "fedex", "cause": "KeyError: 'id'"},
        "The actor of service 'fedex' crashed: KeyError: 'id'",
    ),
    (
        ShuttingDown("fedex"),
        {"service": "fedex"},
        "Service 'fedex' is shutting down",
    ),
    (
        VendorError("sendgrid", 400, "invalid email"),
        {"service": "sendgrid", "status": 400, "body": "invalid email"},
        "Service 'sendgrid' answered HTTP 400: invalid email",
    ),
    (
        PaymentDeclined("stripe", "insufficient_funds", "Your card has insufficient funds."),
        {
            "service": "stripe",
            "status": 402,
            "body": "Your card has insufficient funds.",
            "decline_code": "insufficient_funds",
            "reason": "Your card has insufficient funds.",
        },
        "Payment declined by 'stripe' (insufficient_funds): Your card has insufficient funds.",
    ),
    (
        CredentialsNotFound("sendgrid", "acme"),
        {"service": "sendgrid", "tenant_id": "acme"},
        "No credentials found for service 'sendgrid' and tenant 'acme'",
    ),
    (
        CredentialsNotFound("sendgrid", None),
        {"service": "sendgrid", "tenant_id": None},
        "No credentials found for service 'sendgrid' and the default tenant",
    ),
    (
        CredentialsExpired("gmail", "acme", "no refresh token"),
        {"service": "gmail", "tenant_id": "acme", "reason": "no refresh token"},
        "Credentials for service 'gmail' and tenant 'acme' have expired: no refresh token",
    ),
    (
        CredentialRefreshFailed("gmail", "acme", "invalid_grant"),
        {"service": "gmail", "tenant_id": "acme", "reason": "invalid_grant"},
        "Refreshing credentials for service 'gmail' failed: invalid_grant",
    ),
    (
        WebhookVerificationFailed("signature mismatch"),
        {"service": None, "reason": "signature mismatch"},
        "Webhook verification failed: signature mismatch",
    ),
    (
        ConfigError("rate", -1, "must be > 0"),
        {"service": None, "field": "rate", "value": -1, "reason": "must be > 0"},
        "invalid rate=-1: must be > 0",
    ),
    (
        ResponseTooLarge("s3", 200, 1024),
        {"service": "s3", "status": 200, "limit": 1024},
        "Response from service 's3' (HTTP 200) is larger than the limit of 1024 bytes",
    ),
    (
        MalformedResponse(None, 200, "not JSON"),
        {"service": None, "status": 200, "reason": "not JSON"},
        "Malformed response from the provider (HTTP 200): not JSON",
    ),
]
IDS = [f"{type(error).__name__}-{i}" for i, (error, _, _) in enumerate(CASES)]


@pytest.mark.parametrize(("error", "fields", "message"), CASES, ids=IDS)
def test_fields_and_message(error: ConnectorError, fields: dict[str, Any], message: str) -> None:
    assert str(error) == message
    assert error.message == message
    assert isinstance(error, ConnectorError)
    for name, value in fields.items():
        assert getattr(error, name) == value, name


@pytest.mark.parametrize(("error", "fields", "message"), CASES, ids=IDS)
def test_pickle_round_trip(error: ConnectorError, fields: dict[str, Any], message: str) -> None:
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert str(again) == message
    assert again.args == error.args
    assert vars(again) == vars(error)
    for name, value in fields.items():
        assert getattr(again, name) == value, name


def test_every_error_is_in_the_table() -> None:
    """A new error must be added above, so its message and pickling are checked too."""
    exported = {getattr(connector._errors, name) for name in connector._errors.__all__}
    assert exported == {type(error) for error, _, _ in CASES} | {ConnectorError}


def test_base_classes() -> None:
    assert issubclass(ConfigError, ValueError)
    assert issubclass(Timeout, TimeoutError)
    assert issubclass(DeadlineExceeded, TimeoutError)
    assert issubclass(PaymentDeclined, VendorError)
    assert issubclass(CredentialsExpired, CredentialsNotFound)
    with pytest.raises(ValueError, match="invalid window=0"):
        raise ConfigError("window", 0, "must be > 0")
    with pytest.raises(TimeoutError):
        raise Timeout("s3", 1.0)


def test_wait_in_a_message_rounds_up_and_never_goes_negative() -> None:
    assert str(CircuitBreakerOpen("x", 0.0001)).endswith("Retry in 1 seconds")
    assert str(CircuitBreakerOpen("x", 0.0)).endswith("Retry in 0 seconds")
    assert str(CircuitBreakerOpen("x", -3.0)).endswith("Retry in 0 seconds")
    assert str(RateLimitExceeded("x", 2, 1, 0.5)).endswith("Retry in 1 seconds")
