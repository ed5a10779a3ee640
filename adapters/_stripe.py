"""`StripePaymentGateway`: the `PaymentGateway` protocol over Stripe's v1 API.

Every call goes through one `HttpService` (breaker, limiter, retries, bulkhead,
credentials, integration log) as a form-encoded POST with ``Authorization:
Bearer <secret key>`` and a pinned ``Stripe-Version``:

- `charge`: a PaymentIntent created and confirmed at once
  (``POST /v1/payment_intents`` with ``confirm=true``), redirect-based methods
  off, so the answer is final (or ``requires_action`` for 3-D Secure);
- `create_payment_intent`: a PaymentIntent the customer confirms with its
  ``client_secret``; ``capture_method="manual"`` only authorises;
- `capture_authorization`: ``POST /v1/payment_intents/{id}/capture``, all or
  part (``amount_to_capture``);
- `refund`: ``POST /v1/refunds`` of a PaymentIntent (or a charge, ``ch_``/``py_``).

Idempotency: each mutating call sends ``Idempotency-Key: <operation>:<key>``
derived from the caller's key, so the same logical operation always sends the
same header: the runtime's retries, a restarted process and another worker
all get Stripe's saved answer instead of a second payment. The runtime's own
single flight uses that same key. Without a caller's key one is made per call,
which covers the runtime's retries only. Stripe saves a decline under its key
too: charging again with another card is a new operation and needs a new key.

A declined card (402 ``card_error``) is `PaymentDeclined`, neither retried nor
counted by the breaker; other refusals are `VendorError` with Stripe's message
and ``error_type``, ``code`` and ``param`` attributes. 429, 409 (the key is in
use by a request still running) and 5xx are retried.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Mapping
from typing import Any, Final, TypeVar

import msgspec

from connector._auth import Auth
from connector._credential_manager import CredentialManager
from connector._endpoint import Endpoint
from connector._errors import ConfigError, MalformedResponse, PaymentDeclined, VendorError
from connector._http_service import HttpService
from connector._idempotency import IdempotencyKey
from connector._payments import (
    CaptureRequest,
    CaptureResult,
    ChargeRequest,
    ChargeResult,
    Money,
    PaymentIntent,
    PaymentIntentRequest,
    PaymentStatus,
    RefundRequest,
    RefundResult,
    RefundStatus,
    check_idempotency_key,
)
from connector._policy import ServicePolicy
from connector._ratelimit import RateLimit
from connector._retry import DEFAULT_RETRYABLE_STATUSES, Retry
from connector._runtime import Runtime

from ._stripe_encoding import FormValue, encode_form, from_stripe_amount, to_stripe_amount

__all__ = [
    "DEFAULT_STRIPE_API_VERSION",
    "DEFAULT_STRIPE_URL",
    "StripePaymentGateway",
    "stripe_idempotency_key",
]

T = TypeVar("T")

DEFAULT_STRIPE_URL: Final = "https://api.stripe.com"
# The version stripe-python pins (stripe/_api_version.py); the account's default
# would otherwise apply, and it changes when someone upgrades the account.
DEFAULT_STRIPE_API_VERSION: Final = "2026-06-24.dahlia"
DEFAULT_TIMEOUT: Final = 45.0  # seconds per attempt, the original's payment timeout
DEFAULT_RATE_LIMIT: Final = RateLimit.per_second(100)
# stripe-python retries 409 too: another request with the same key was still
# running, and trying again later gets its saved answer.
DEFAULT_RETRY: Final = Retry(retryable_statuses=DEFAULT_RETRYABLE_STATUSES | {409})

_MAX_KEY_LENGTH: Final = 255
_VERSION: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(\.[a-z]+)?")
_FORM: Final = {"Content-Type": "application/x-www-form-urlencoded"}
_CREATE_INTENT: Final = Endpoint.create("/v1/payment_intents").with_headers(_FORM)
_CAPTURE: Final = Endpoint.create("/v1/payment_intents/{id}/capture").with_headers(_FORM)
_REFUNDS: Final = Endpoint.create("/v1/refunds").with_headers(_FORM)

_PAYMENT_STATUSES: Final[dict[str, PaymentStatus]] = {
    "requires_payment_method": "pending",
    "requires_confirmation": "pending",
    "processing": "pending",
    "requires_action": "requires_action",
    "requires_capture": "requires_capture",
    "succeeded": "succeeded",
    "canceled": "canceled",
}
_REFUND_STATUSES: Final[dict[str, RefundStatus]] = {
    "pending": "pending",
    "requires_action": "pending",
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "canceled",
}
_ERROR_START: Final = re.compile(r'[ \t\r\n]*\{[ \t\r\n]*"error"[ \t\r\n]*:[ \t\r\n]*\{')


class _Charge(msgspec.Struct):
    receipt_url: str | None = None


class _Intent(msgspec.Struct):
    id: str
    amount: int
    currency: str
    status: str
    capture_method: str = "automatic"
    amount_received: int = 0
    client_secret: str | None = None
    latest_charge: str | _Charge | None = None


class _Refund(msgspec.Struct):
    id: str
    amount: int
    currency: str
    status: str
    payment_intent: str | None = None
    charge: str | None = None


def stripe_idempotency_key(operation: str, key: str) -> str:
    """The ``Idempotency-Key`` for ``operation`` under the caller's ``key``: ``op:key``.

    The operation keeps one caller key from naming two different requests (a
    charge and its refund). A result over Stripe's 255 characters uses the
    key's SHA-256 instead, so it is still the same for the same key.
    """
    derived = f"{operation}:{key}"
    if len(derived) <= _MAX_KEY_LENGTH:
        return derived
    return f"{operation}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


class StripePaymentGateway:
    """A `PaymentGateway` over Stripe (see the module docstring).

    ``credentials`` holds each tenant's secret key under the service ``name``,
    as ``bearer_token`` credentials (``data={"token": "sk_live_..."}``).
    ``api_version`` is sent as ``Stripe-Version``. Policies default to a 45 s
    timeout per attempt, 100 requests per second and `DEFAULT_RETRY`; any
    `ServicePolicy` field given by keyword (``timeout=``, ``rate_limit=``,
    ``retry=``, ``breaker=``, ...) replaces its default. ``rng`` draws the keys
    of calls made without one (None: the OS's randomness, since two processes
    seeded alike would give two payments one key).
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        credentials: CredentialManager | None = None,
        name: str = "stripe",
        base_url: str = DEFAULT_STRIPE_URL,
        api_version: str = DEFAULT_STRIPE_API_VERSION,
        rng: random.Random | None = None,
        **policy: Any,
    ) -> None:
        if credentials is None:
            raise ConfigError(
                "credentials", None, "is required: a CredentialManager with Stripe's secret key"
            )
        if not isinstance(api_version, str) or _VERSION.fullmatch(api_version) is None:
            raise ConfigError("api_version", api_version, "must look like 2026-06-24.dahlia")
        if rng is not None and not isinstance(rng, random.Random):
            raise ConfigError("rng", rng, "must be a random.Random or None")
        policy.setdefault("timeout", DEFAULT_TIMEOUT)
        policy.setdefault("rate_limit", DEFAULT_RATE_LIMIT)
        policy.setdefault("retry", DEFAULT_RETRY)
        self.name = name
        self.api_version = api_version
        self._runtime = runtime
        self._rng = rng
        self._http = HttpService(
            runtime,
            name,
            base_url=base_url,
            headers={"Stripe-Version": api_version},
            credentials=credentials,
            auth=Auth(),
            **policy,
        )

    def __repr__(self) -> str:
        return f"<StripePaymentGateway {self.name!r} version={self.api_version!r}>"

    @property
    def policy(self) -> ServicePolicy:
        """The service's policies, defaults included."""
        return self._http.policy

    async def charge(
        self,
        request: ChargeRequest,
        *,
        idempotency_key: str | IdempotencyKey | None = None,
        tenant_id: str | None = None,
    ) -> ChargeResult:
        """Charge at once: a PaymentIntent created and confirmed in one request."""
        _check_request(request, ChargeRequest)
        params: dict[str, FormValue] = {
            **_amount_params(request.amount),
            **_payment_method(request.payment_method),
            "confirm": True,
            "capture_method": "automatic",
            # Off-session and server-side: nothing can redirect the customer.
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            "customer": request.customer_id,
            "description": request.description,
            "receipt_email": request.receipt_email,
            "metadata": dict(request.metadata),
            "expand": ["latest_charge"],  # for its receipt_url
        }
        key = self._key("charge", idempotency_key)
        intent = await self._post(_CREATE_INTENT, params, key, tenant_id, _Intent)
        amount = self._money(intent.amount, intent.currency)
        _same_request(key, amount == request.amount, "charge")
        charge = intent.latest_charge
        return ChargeResult(
            id=intent.id,
            status=self._status(intent.status),
            amount=amount,
            provider_status=intent.status,
            receipt_url=charge.receipt_url if isinstance(charge, _Charge) else None,
        )

    async def create_payment_intent(
        self,
        request: PaymentIntentRequest,
        *,
        idempotency_key: str | IdempotencyKey | None = None,
        tenant_id: str | None = None,
    ) -> PaymentIntent:
        """A PaymentIntent for the customer to confirm with its ``client_secret``."""
        _check_request(request, PaymentIntentRequest)
        params: dict[str, FormValue] = {
            **_amount_params(request.amount),
            **_payment_method(request.payment_method),
            "capture_method": request.capture_method,
            "automatic_payment_methods": {"enabled": True},
            "customer": request.customer_id,
            "description": request.description,
            "receipt_email": request.receipt_email,
            "metadata": dict(request.metadata),
        }
        key = self._key("intent", idempotency_key)
        intent = await self._post(_CREATE_INTENT, params, key, tenant_id, _Intent)
        amount = self._money(intent.amount, intent.currency)
        _same_request(key, amount == request.amount, "payment intent")
        return PaymentIntent(
            id=intent.id,
            status=self._status(intent.status),
            amount=amount,
            # Stripe's automatic_async captures automatically too, off the request path.
            capture_method="manual" if intent.capture_method == "manual" else "automatic",
            client_secret=intent.client_secret,
            provider_status=intent.status,
        )

    async def capture_authorization(
        self,
        request: CaptureRequest,
        *,
        idempotency_key: str | IdempotencyKey | None = None,
        tenant_id: str | None = None,
    ) -> CaptureResult:
        """Capture all of an authorised PaymentIntent, or ``request.amount`` of it.

        The amount must be in the intent's currency: Stripe takes a bare number.
        """
        _check_request(request, CaptureRequest)
        params: dict[str, FormValue] = {}
        if request.amount is not None:
            params["amount_to_capture"] = to_stripe_amount(request.amount)
        key = self._key("capture", idempotency_key)
        intent = await self._post(
            _CAPTURE, params, key, tenant_id, _Intent, {"id": request.authorization_id}
        )
        captured = self._money(intent.amount_received, intent.currency)
        _same_request(
            key,
            intent.id == request.authorization_id and request.amount in (None, captured),
            "capture",
        )
        return CaptureResult(
            id=intent.id,
            authorization_id=intent.id,
            status=self._status(intent.status),
            amount=captured,
            provider_status=intent.status,
        )

    async def refund(
        self,
        request: RefundRequest,
        *,
        idempotency_key: str | IdempotencyKey | None = None,
        tenant_id: str | None = None,
    ) -> RefundResult:
        """Refund all that remains of a payment, or ``request.amount`` of it.

        ``payment_id`` is a PaymentIntent (``pi_``, what `charge` and
        `capture_authorization` return) or a charge (``ch_``, ``py_``).
        """
        _check_request(request, RefundRequest)
        target = "charge" if request.payment_id.startswith(("ch_", "py_")) else "payment_intent"
        params: dict[str, FormValue] = {
            target: request.payment_id,
            "amount": to_stripe_amount(request.amount) if request.amount is not None else None,
            "reason": request.reason,
            "metadata": dict(request.metadata),
        }
        key = self._key("refund", idempotency_key)
        refund = await self._post(_REFUNDS, params, key, tenant_id, _Refund)
        amount = self._money(refund.amount, refund.currency)
        _same_request(
            key,
            request.payment_id in (refund.payment_intent, refund.charge)
            and request.amount in (None, amount),
            "refund",
        )
        status = _REFUND_STATUSES.get(refund.status)
        if status is None:
            raise MalformedResponse(self.name, 200, f"unknown refund status {refund.status!r}")
        return RefundResult(
            id=refund.id,
            payment_id=request.payment_id,
            status=status,
            amount=amount,
            provider_status=refund.status,
        )

    # -- internals ------------------------------------------------------------------

    def _key(self, operation: str, key: str | IdempotencyKey | None) -> str:
        text = check_idempotency_key(key)
        if text is None:
            made = IdempotencyKey.generate(now=self._runtime.wall_clock(), rng=self._rng)
            text = made.value
        return stripe_idempotency_key(operation, text)

    async def _post(
        self,
        endpoint: Endpoint,
        params: Mapping[str, FormValue],
        key: str,
        tenant_id: str | None,
        kind: type[T],
        path_params: Mapping[str, str] | None = None,
    ) -> T:
        try:
            response = await self._http.request(
                endpoint,
                content=encode_form(params),
                path_params=path_params,
                tenant_id=tenant_id,
                idempotency_key=key,
            )
        except VendorError as error:
            raise self._vendor_error(error) from error
        return response.json(kind)

    def _vendor_error(self, error: VendorError) -> VendorError:
        """Stripe's error body as `PaymentDeclined` (a 402 card error) or `VendorError`."""
        fields = _error_fields(error.body)
        if not fields:
            return error  # not Stripe's format: the runtime's error says all there is
        kind = _text(fields, "type")
        code = _text(fields, "code")
        decline_code = _text(fields, "decline_code")
        message = _text(fields, "message")
        param = _text(fields, "param")
        details = ", ".join(
            f"{label} {value}"
            for label, value in (
                ("type", kind),
                ("code", code),
                ("decline_code", decline_code),
                ("param", param),
            )
            if value is not None
        )
        text = f"{message or 'no message'} ({details})" if details else (message or "no message")
        # A decline's body may be cut before "type" (see _error_fields): 402 says enough.
        if error.status == 402 and kind in (None, "card_error"):
            return PaymentDeclined(
                self.name,
                decline_code or code or "card_declined",
                message or "the card was declined",
                status=402,
                body=text,
            )
        return VendorError(self.name, error.status, text, error_type=kind, code=code, param=param)

    def _money(self, amount: int, currency: str) -> Money:
        try:
            return from_stripe_amount(amount, currency)
        except ConfigError as error:
            raise MalformedResponse(
                self.name, 200, f"amount {amount} {currency}: {error.reason}"
            ) from None

    def _status(self, status: str) -> PaymentStatus:
        mapped = _PAYMENT_STATUSES.get(status)
        if mapped is None:
            raise MalformedResponse(self.name, 200, f"unknown PaymentIntent status {status!r}")
        return mapped


def _check_request(request: object, kind: type) -> None:
    if not isinstance(request, kind):
        raise ConfigError("request", type(request).__name__, f"must be a {kind.__name__}")


def _amount_params(money: Money) -> dict[str, FormValue]:
    return {"amount": to_stripe_amount(money), "currency": money.currency.lower()}


def _payment_method(payment_method: str | None) -> dict[str, FormValue]:
    """A saved payment method by id, or a legacy card token turned into one."""
    if payment_method is None:
        return {}
    if payment_method.startswith("tok_"):
        return {"payment_method_data": {"type": "card", "card": {"token": payment_method}}}
    return {"payment_method": payment_method}


def _same_request(key: str, same: bool, operation: str) -> None:
    """Refuse an answer that is not for this request: the key was used for another.

    Stripe refuses a reused key with other parameters itself, but within 24 h
    the runtime answers a repeated key from its own store, without asking.
    """
    if not same:
        raise ConfigError(
            "idempotency_key",
            key,
            f"was already used for a different {operation}: use a new key for a new operation",
        )


def _text(fields: Mapping[str, Any], name: str) -> str | None:
    value = fields.get(name)
    return value if isinstance(value, str) and value else None


def _error_fields(body: str) -> dict[str, Any]:
    """The members of Stripe's ``{"error": {...}}`` that arrived whole.

    The runtime keeps the first 2 KiB of an error body, and a decline's body
    carries the whole PaymentIntent and PaymentMethod. Stripe writes the keys in
    alphabetical order, so ``code``, ``decline_code`` and ``message`` come
    before those objects (``type`` after them): the body is read one member at
    a time until it breaks off.
    """
    try:
        parsed = json.loads(body)
    except ValueError:
        pass
    else:
        error = parsed.get("error") if isinstance(parsed, dict) else None
        return error if isinstance(error, dict) else {}
    start = _ERROR_START.match(body)
    if start is None:
        return {}
    decoder = json.JSONDecoder()
    fields: dict[str, Any] = {}
    position = start.end()
    try:
        while True:
            name, position = decoder.raw_decode(body, _skip_space(body, position))
            position = _skip_space(body, position)
            if body[position] != ":":
                break
            value, position = decoder.raw_decode(body, _skip_space(body, position + 1))
            if isinstance(name, str):
                fields[name] = value
            position = _skip_space(body, position)
            if body[position] != ",":
                break
            position += 1
    except (ValueError, IndexError):
        pass  # cut off here: keep what came whole
    return fields


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position
