"""`PayPalPaymentGateway`: the `PaymentGateway` over PayPal's Orders v2 and Payments v2 APIs.

PayPal authenticates with OAuth2 client credentials. Store the app's client id
and secret with `paypal_credentials` under the gateway's name, and register a
`PayPalTokenRefresher` for that name in the `CredentialManager`: it exchanges
them for an access token before the first call, again within the manager's
margin of the token's expiry, and after a 401; however many calls need a
token at once, one exchange runs (the manager's single flight)::

    refresher = PayPalTokenRefresher(rt, base_url=PAYPAL_SANDBOX_URL)
    manager = CredentialManager(store, {"paypal": refresher}, clock=rt.wall_clock)
    await store.put("paypal", None, paypal_credentials(client_id, client_secret))
    gateway = PayPalPaymentGateway(rt, credentials=manager, base_url=PAYPAL_SANDBOX_URL)

How the protocol maps onto PayPal:

- ``payment_method`` is an order the payer approved (its id: the order of a
  `PaymentIntent` whose ``approval_url`` the payer visited), or a vaulted
  payment source: ``card:<vault id>``, ``paypal:<vault id>``, ``venmo:<vault id>``.
- ``capture_method="automatic"`` (and `charge`) is intent CAPTURE, ``"manual"``
  intent AUTHORIZE. An approved order is captured, or authorised, with one
  call. A vaulted source goes in the create call, which PayPal completes at
  once (its single-step payment; capturing afterwards would be refused as
  ORDER_ALREADY_CAPTURED). With no payment method the order waits for the
  payer: ``requires_action``, with the ``approval_url``.
- A result's ``id`` is what the next step takes: a capture's (`refund` names
  it), an authorisation's (`capture_authorization` names it), or, while the
  payer has still to approve, the order's (pass it back as ``payment_method``).
- `capture_authorization` sets ``final_capture``: it takes all, or the part
  asked for, and releases the rest, as the protocol's single capture does.
- `refund` sends its ``amount`` in that amount's currency, which PayPal wants
  to be the capture's (or refuses: REFUND_CAPTURE_CURRENCY_MISMATCH); without
  one PayPal refunds what remains, and the result has PayPal's amount.
- ``description`` goes in the purchase unit (cut to PayPal's 127 characters),
  ``customer_id`` in its ``custom_id`` (in PayPal's reports, hidden from the
  payer). Orders have no metadata, so metadata is refused (`ConfigError`)
  rather than lost; a refund ``reason`` and a ``receipt_email`` have no PayPal
  field and are not sent (PayPal e-mails the payer's own address).
- A decline (INSTRUMENT_DECLINED and kin, or a capture DECLINED or an
  authorisation DENIED in a 2xx answer) is `PaymentDeclined`.

Money goes as PayPal's string ``value`` in major units: ``"19.99"`` EUR,
``"1000"`` JPY; HUF and TWD, which ISO 4217 gives two decimals, only whole.
Each operation's ``PayPal-Request-Id`` derives from the caller's idempotency
key (``<key>-create-order``; the key's SHA-256 instead when that would pass
PayPal's 108 characters), so a repeated call gets PayPal's stored answer; a
call without a key gets a fresh one, which covers the runtime's retries only.
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final, NamedTuple

import msgspec

from connector import _formats as check
from connector._auth import Auth
from connector._credential_manager import CredentialManager
from connector._credentials import AuthMethod, Credentials
from connector._endpoint import Endpoint
from connector._errors import (
    ConfigError,
    CredentialRefreshFailed,
    MalformedResponse,
    PaymentDeclined,
    VendorError,
)
from connector._http_service import ApiResponse, HttpService
from connector._idempotency import IdempotencyKey
from connector._payments import (
    CaptureMethod,
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
from connector._redaction import redact_text
from connector._retry import DEFAULT_RETRYABLE_STATUSES, Retry
from connector._runtime import Runtime

__all__ = [
    "CLIENT_CREDENTIALS",
    "PAYPAL_LIVE_URL",
    "PAYPAL_SANDBOX_URL",
    "PayPalPaymentGateway",
    "PayPalTokenRefresher",
    "paypal_credentials",
]

PAYPAL_LIVE_URL: Final = "https://api-m.paypal.com"
PAYPAL_SANDBOX_URL: Final = "https://api-m.sandbox.paypal.com"

CLIENT_CREDENTIALS: Final = "client_credentials"
"""The ``refresh_token`` of stored PayPal credentials: a marker, not a token.

A client-credentials grant has no refresh token, and the manager renews only
credentials that have one; this marks PayPal's as renewable from the client
id and secret they hold in ``data``.
"""

DEFAULT_RATE_LIMIT: Final = RateLimit.per_second(50)
DEFAULT_TIMEOUT: Final = 45.0  # seconds per attempt, as the original's payment config
# 409: a request with the same PayPal-Request-Id is still running (safe to retry: same id).
DEFAULT_RETRY: Final = Retry(retryable_statuses=DEFAULT_RETRYABLE_STATUSES | {409})

_REQUEST_ID_LENGTH: Final = 108
_TEXT_LENGTH: Final = 127  # description (PayPal cuts it there) and custom_id
_WHOLE_UNITS: Final = frozenset({"HUF", "JPY", "TWD"})  # PayPal refuses decimals for these
_VAULTS: Final = ("card", "paypal", "venmo")
# Issues PayPal answers when the payer's funding failed, not the request.
_DECLINES: Final = frozenset(
    {
        "CARD_EXPIRED",
        "INSTRUMENT_DECLINED",
        "MAX_NUMBER_OF_PAYMENT_ATTEMPTS_EXCEEDED",
        "PAYER_CANNOT_PAY",
        "REDIRECT_PAYER_FOR_ALTERNATE_FUNDING",
        "TRANSACTION_REFUSED",
    }
)
_CAPTURE_STATUSES: Final[Mapping[str, PaymentStatus]] = {
    "COMPLETED": "succeeded",
    "PARTIALLY_REFUNDED": "succeeded",
    "REFUNDED": "succeeded",
    "PENDING": "pending",
    "FAILED": "failed",
}
_AUTHORIZATION_STATUSES: Final[Mapping[str, PaymentStatus]] = {
    "CREATED": "requires_capture",
    "PENDING": "pending",
    "CAPTURED": "succeeded",
    "PARTIALLY_CAPTURED": "succeeded",
    "EXPIRED": "canceled",
    "VOIDED": "canceled",
}
_REFUND_STATUSES: Final[Mapping[str, RefundStatus]] = {
    "COMPLETED": "succeeded",
    "PENDING": "pending",
    "FAILED": "failed",
    "CANCELLED": "canceled",
}
_DECLINED: Final = ("DECLINED", "DENIED")  # a capture's and an authorisation's word

_TOKEN = Endpoint.create("/v1/oauth2/token")
_CREATE_ORDER = Endpoint.create("/v2/checkout/orders")
_CAPTURE_ORDER = Endpoint.create("/v2/checkout/orders/{id}/capture")
_AUTHORIZE_ORDER = Endpoint.create("/v2/checkout/orders/{id}/authorize")
_CAPTURE_AUTHORIZATION = Endpoint.create("/v2/payments/authorizations/{id}/capture")
_REFUND_CAPTURE = Endpoint.create("/v2/payments/captures/{id}/refund")
_GRANT = b"grant_type=client_credentials"


# -- PayPal's bodies, as far as they are read ----------------------------------


class _Amount(msgspec.Struct, frozen=True):
    currency_code: str
    value: str


class _StatusDetails(msgspec.Struct, frozen=True):
    reason: str | None = None


class _ProcessorResponse(msgspec.Struct, frozen=True):
    response_code: str | None = None


class _Payment(msgspec.Struct, frozen=True):
    """A capture or an authorisation."""

    id: str
    status: str
    amount: _Amount | None = None
    status_details: _StatusDetails | None = None
    processor_response: _ProcessorResponse | None = None


class _Payments(msgspec.Struct, frozen=True):
    captures: tuple[_Payment, ...] = ()
    authorizations: tuple[_Payment, ...] = ()


class _PurchaseUnit(msgspec.Struct, frozen=True):
    amount: _Amount | None = None
    payments: _Payments | None = None


class _Link(msgspec.Struct, frozen=True):
    href: str
    rel: str


class _Order(msgspec.Struct, frozen=True):
    id: str
    status: str
    purchase_units: tuple[_PurchaseUnit, ...] = ()
    links: tuple[_Link, ...] = ()


class _Refund(msgspec.Struct, frozen=True):
    id: str
    status: str
    amount: _Amount | None = None


class _Token(msgspec.Struct, frozen=True):
    access_token: str
    token_type: str
    expires_in: float | None = None


class _Issue(msgspec.Struct, frozen=True):
    issue: str = ""
    description: str | None = None
    field: str | None = None


class _Error(msgspec.Struct, frozen=True):
    """The REST APIs' error body, or the OAuth endpoint's (``error``, ``error_description``)."""

    name: str = ""
    message: str = ""
    debug_id: str | None = None
    details: tuple[_Issue, ...] = ()
    error: str | None = None
    error_description: str | None = None


class _Outcome(NamedTuple):
    id: str
    status: PaymentStatus
    amount: Money
    provider_status: str
    approval_url: str | None = None


# -- credentials -----------------------------------------------------------------


def paypal_credentials(client_id: str, client_secret: str) -> Credentials:
    """What to store for PayPal under the gateway's name: the app's client id and secret.

    They hold no token yet (``expires_at`` 0), so the first call fetches one.
    """
    check.identifier("client_id", client_id)
    if not isinstance(client_secret, str) or not client_secret:
        raise ConfigError("client_secret", "***", "must be a non-empty str")
    return Credentials(
        auth_method=AuthMethod.OAUTH2,
        data={"client_id": client_id, "client_secret": client_secret},
        expires_at=0.0,
        refresh_token=CLIENT_CREDENTIALS,
    )


class PayPalTokenRefresher:
    """The `Refresher` of PayPal credentials: a client-credentials token exchange.

    Register it in the `CredentialManager` under the gateway's name. Token
    requests go through a runtime service of their own (``name``), so they get
    a breaker, a timeout, retries of what was not sent and a log record, and
    never wait for a token themselves. ``expires_in`` becomes ``expires_at``
    on the runtime's wall clock: give the manager the same clock. ``policy``
    takes `ServicePolicy` fields, as the gateway does.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        name: str = "paypal-oauth",
        base_url: str = PAYPAL_LIVE_URL,
        **policy: Any,
    ) -> None:
        check.http_url("base_url", base_url)
        policy.setdefault("timeout", DEFAULT_TIMEOUT)
        self._http = HttpService(
            runtime, name, base_url=base_url, headers={"Accept": "application/json"}, **policy
        )
        self.name = name
        self._wall_clock = runtime.wall_clock

    def __repr__(self) -> str:
        return f"<PayPalTokenRefresher {self.name!r}>"

    async def __call__(self, credentials: Credentials) -> Credentials:
        client_id = credentials.data.get("client_id")
        client_secret = credentials.data.get("client_secret")
        if credentials.refresh_token != CLIENT_CREDENTIALS or not client_id or not client_secret:
            raise CredentialRefreshFailed(
                self.name,
                None,
                "PayPal credentials need client_id and client_secret in data and refresh_token "
                f"{CLIENT_CREDENTIALS!r} (see paypal_credentials)",
            )
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode("ascii")
        try:
            response = await self._http.request(
                _TOKEN,
                content=_GRANT,
                headers={
                    "Authorization": f"Basic {basic}",
                    "Content-Type": "application/x-www-form-urlencoded",
                },
            )
        except VendorError as error:
            raise CredentialRefreshFailed(
                self.name,
                None,
                f"the token endpoint answered HTTP {error.status}: "
                f"{_error_text(error.body, _parse_error(error.body))}",
            ) from None
        token = response.json(_Token)
        if token.token_type.lower() != "bearer" or not token.access_token:
            raise CredentialRefreshFailed(
                self.name, None, f"PayPal issued a {token.token_type!r} token, not a bearer token"
            )
        expires_at = None if token.expires_in is None else self._wall_clock() + token.expires_in
        return Credentials(
            auth_method=AuthMethod.OAUTH2,
            data={**credentials.data, "access_token": token.access_token},
            expires_at=expires_at,
            refresh_token=CLIENT_CREDENTIALS,
        )


# -- the gateway -------------------------------------------------------------------


class PayPalPaymentGateway:
    """`PaymentGateway` over PayPal's REST APIs; see the module docstring for the mapping.

    ``credentials`` must hold `paypal_credentials` under ``name`` for each
    tenant, with a `PayPalTokenRefresher` registered for ``name``. ``policy``
    takes `ServicePolicy` fields (``rate_limit``, ``timeout``, ``retry``,
    ``breaker``, ``retry_budget``, ``max_concurrency``, ...); the defaults are
    50 calls a second, 45 s per attempt, and 409 retried with 429 and 5xx.
    ``rng`` draws the idempotency keys of calls given none (None: the OS's
    randomness; seed one only in a simulation, as equal seeds repeat keys).
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        credentials: CredentialManager | None = None,
        name: str = "paypal",
        base_url: str = PAYPAL_LIVE_URL,
        rng: random.Random | None = None,
        **policy: Any,
    ) -> None:
        if not isinstance(credentials, CredentialManager):
            raise ConfigError(
                "credentials", credentials, "PayPal needs a CredentialManager with its client id"
            )
        check.http_url("base_url", base_url)
        if rng is not None and not isinstance(rng, random.Random):
            raise ConfigError("rng", rng, "must be a random.Random or None")
        policy.setdefault("rate_limit", DEFAULT_RATE_LIMIT)
        policy.setdefault("timeout", DEFAULT_TIMEOUT)
        policy.setdefault("retry", DEFAULT_RETRY)
        self._http = HttpService(
            runtime,
            name,
            base_url=base_url,
            # Without it PayPal answers ids and links only; the results need amounts.
            headers={"Prefer": "return=representation", "Accept": "application/json"},
            credentials=credentials,
            auth=Auth(),
            idempotency_header="PayPal-Request-Id",
            **policy,
        )
        self.name = name
        self._runtime = runtime
        self._rng = rng

    def __repr__(self) -> str:
        return f"<PayPalPaymentGateway {self.name!r}>"

    @property
    def policy(self) -> ServicePolicy:
        """The policies its calls go through, defaults and overrides applied."""
        return self._http.policy

    async def charge(
        self,
        request: ChargeRequest,
        *,
        idempotency_key: str | IdempotencyKey | None = None,
        tenant_id: str | None = None,
    ) -> ChargeResult:
        """Capture an approved order, or pay with a vaulted source at once (intent CAPTURE)."""
        check.same_type("request", request, ChargeRequest)
        outcome = await self._pay(request, "automatic", idempotency_key, tenant_id)
        return ChargeResult(
            id=outcome.id,
            status=outcome.status,
            amount=outcome.amount,
            provider_status=outcome.provider_status,
        )

    async def create_payment_intent(
        self,
        request: PaymentIntentRequest,
        *,
        idempotency_key: str | IdempotencyKey | None = None,
        tenant_id: str | None = None,
    ) -> PaymentIntent:
        """An order for the payer to approve, or, given a payment method, its capture or
        authorisation (``capture_method="manual"``: intent AUTHORIZE)."""
        check.same_type("request", request, PaymentIntentRequest)
        outcome = await self._pay(request, request.capture_method, idempotency_key, tenant_id)
        return PaymentIntent(
            id=outcome.id,
            status=outcome.status,
            amount=outcome.amount,
            capture_method=request.capture_method,
            approval_url=outcome.approval_url,
            provider_status=outcome.provider_status,
        )

    async def capture_authorization(
        self,
        request: CaptureRequest,
        *,
        idempotency_key: str | IdempotencyKey | None = None,
        tenant_id: str | None = None,
    ) -> CaptureResult:
        """Capture all or part of an authorisation, releasing the rest (``final_capture``)."""
        check.same_type("request", request, CaptureRequest)
        body: dict[str, Any] = {"final_capture": True}
        if request.amount is not None:
            body["amount"] = _paypal_money("amount", request.amount)
        response = await self._post(
            _CAPTURE_AUTHORIZATION,
            body,
            self._key(idempotency_key),
            "capture-authorization",
            tenant_id,
            request.authorization_id,
        )
        capture = response.json(_Payment)
        status, amount = _payment(capture, _CAPTURE_STATUSES, request.amount, response)
        return CaptureResult(
            id=capture.id,
            authorization_id=request.authorization_id,
            status=status,
            amount=amount,
            provider_status=capture.status,
        )

    async def refund(
        self,
        request: RefundRequest,
        *,
        idempotency_key: str | IdempotencyKey | None = None,
        tenant_id: str | None = None,
    ) -> RefundResult:
        """Refund all that remains of capture ``payment_id``, or ``amount`` of it."""
        check.same_type("request", request, RefundRequest)
        _refuse_metadata(request.metadata)
        body: dict[str, Any] = {}
        if request.amount is not None:
            body["amount"] = _paypal_money("amount", request.amount)
        response = await self._post(
            _REFUND_CAPTURE,
            body,
            self._key(idempotency_key),
            "refund",
            tenant_id,
            request.payment_id,
        )
        refund = response.json(_Refund)
        return RefundResult(
            id=refund.id,
            payment_id=request.payment_id,
            status=_REFUND_STATUSES.get(refund.status, "pending"),
            amount=_money(refund.amount, request.amount, response),
            provider_status=refund.status,
        )

    # -- internals ---------------------------------------------------------------

    async def _pay(
        self,
        request: ChargeRequest | PaymentIntentRequest,
        capture_method: CaptureMethod,
        idempotency_key: str | IdempotencyKey | None,
        tenant_id: str | None,
    ) -> _Outcome:
        intent = "CAPTURE" if capture_method == "automatic" else "AUTHORIZE"
        source = _payment_source(request.payment_method)
        # Built (and so checked) even when an approved order makes it unneeded.
        order = _order_body(intent, request, source)
        key = self._key(idempotency_key)
        if source is not None and source[0] == "order":
            endpoint = _CAPTURE_ORDER if intent == "CAPTURE" else _AUTHORIZE_ORDER
            operation = "capture-order" if intent == "CAPTURE" else "authorize-order"
            response = await self._post(endpoint, {}, key, operation, tenant_id, source[1])
        else:
            response = await self._post(_CREATE_ORDER, order, key, "create-order", tenant_id)
        return _settle(response.json(_Order), intent, request.amount, response)

    def _key(self, idempotency_key: str | IdempotencyKey | None) -> str:
        """The caller's key, or a fresh one, so this call's own retries stay one payment."""
        key = check_idempotency_key(idempotency_key)
        if key is None:
            made = IdempotencyKey.generate(now=self._runtime.wall_clock(), rng=self._rng)
            key = made.value
        return key

    async def _post(
        self,
        endpoint: Endpoint,
        body: dict[str, Any],
        key: str,
        operation: str,
        tenant_id: str | None,
        resource_id: str | None = None,
    ) -> ApiResponse:
        try:
            return await self._http.request(
                endpoint,
                json=body,
                path_params=None if resource_id is None else {"id": resource_id},
                tenant_id=tenant_id,
                idempotency_key=_request_id(key, operation),
            )
        except VendorError as error:
            raise _vendor_error(error) from error


# -- mapping helpers ------------------------------------------------------------


def _settle(order: _Order, intent: str, requested: Money, response: ApiResponse) -> _Outcome:
    """The order's payment (its last capture or authorisation), or the order while it has none."""
    unit = order.purchase_units[0] if order.purchase_units else _PurchaseUnit()
    payments = unit.payments or _Payments()
    if intent == "CAPTURE":
        found, statuses = payments.captures, _CAPTURE_STATUSES
    else:
        found, statuses = payments.authorizations, _AUTHORIZATION_STATUSES
    if found:
        status, amount = _payment(found[-1], statuses, requested, response)
        return _Outcome(found[-1].id, status, amount, found[-1].status)
    if order.status == "COMPLETED":
        raise MalformedResponse(
            response.service, response.status, f"order {order.id} is COMPLETED with no payment"
        )
    approval = next(
        (link.href for link in order.links if link.rel in ("approve", "payer-action")), None
    )
    return _Outcome(
        order.id,
        "canceled" if order.status == "VOIDED" else "requires_action",
        _money(unit.amount, requested, response),
        order.status,
        approval,
    )


def _payment(
    payment: _Payment,
    statuses: Mapping[str, PaymentStatus],
    requested: Money | None,
    response: ApiResponse,
) -> tuple[PaymentStatus, Money]:
    """A capture's or authorisation's status and amount; `PaymentDeclined` if it was refused."""
    if payment.status in _DECLINED:
        processor = payment.processor_response
        details = payment.status_details
        raise PaymentDeclined(
            response.service,
            (processor.response_code if processor else None) or payment.status,
            (details.reason if details else None) or f"PayPal {payment.status} the payment",
            status=response.status,
        )
    # An unknown status is not taken for success.
    return statuses.get(payment.status, "pending"), _money(payment.amount, requested, response)


def _money(found: _Amount | None, requested: Money | None, response: ApiResponse) -> Money:
    """PayPal's amount in minor units; the one asked for if PayPal's answer had none."""
    if found is None:
        if requested is None:
            raise MalformedResponse(response.service, response.status, "no amount in the answer")
        return requested
    try:
        return Money.of(found.value, found.currency_code)
    except ConfigError as error:
        raise MalformedResponse(
            response.service,
            response.status,
            f"amount {found.value!r} {found.currency_code}: {error.reason}",
        ) from None


def _payment_source(payment_method: str | None) -> tuple[str, str] | None:
    """("order", id) for an approved order, (kind, vault id) for a vaulted source."""
    if payment_method is None:
        return None
    kind, colon, vault_id = payment_method.partition(":")
    if not colon:
        return "order", payment_method
    if kind not in _VAULTS or not vault_id:
        raise ConfigError(
            "payment_method",
            payment_method,
            "must be an approved PayPal order id or card:, paypal: or venmo: and a vault id",
        )
    return kind, vault_id


def _order_body(
    intent: str, request: ChargeRequest | PaymentIntentRequest, source: tuple[str, str] | None
) -> dict[str, Any]:
    _refuse_metadata(request.metadata)
    unit: dict[str, Any] = {"amount": _paypal_money("amount", request.amount)}
    if request.description is not None:
        unit["description"] = request.description[:_TEXT_LENGTH]
    if request.customer_id is not None:
        unit["custom_id"] = check.identifier(
            "customer_id", request.customer_id, max_length=_TEXT_LENGTH
        )
    body: dict[str, Any] = {"intent": intent, "purchase_units": [unit]}
    if source is not None and source[0] != "order":
        body["payment_source"] = {source[0]: {"vault_id": source[1]}}
    return body


def _refuse_metadata(metadata: Mapping[str, str]) -> None:
    if metadata:
        raise ConfigError(
            "metadata",
            sorted(metadata),
            "PayPal has no metadata; pass customer_id (sent as custom_id) or leave it empty",
        )


def _paypal_money(field: str, money: Money) -> dict[str, str]:
    """``money`` as PayPal's amount object: a string value in major units."""
    value = money.to_decimal()
    if money.currency in _WHOLE_UNITS:
        if value != value.to_integral_value():
            raise ConfigError(field, money, f"PayPal takes {money.currency} in whole units only")
        value = value.quantize(Decimal(1))
    return {"currency_code": money.currency, "value": format(value, "f")}


def _request_id(key: str, operation: str) -> str:
    """The ``PayPal-Request-Id`` of one operation under the caller's key."""
    request_id = f"{key}-{operation}"
    if len(request_id) <= _REQUEST_ID_LENGTH:
        return request_id
    return f"{hashlib.sha256(key.encode()).hexdigest()}-{operation}"


def _parse_error(body: str) -> _Error | None:
    try:
        return msgspec.json.decode(body, type=_Error)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # cut at the runtime's cap, or not PayPal's shape


def _error_text(body: str, error: _Error | None) -> str:
    """PayPal's error in one line: name, message, issues, debug id; else the body as it came."""
    if error is None:
        return body
    if error.name:
        text = f"{error.name}: {error.message}" if error.message else error.name
        issues = "; ".join(
            issue.issue
            + (f" ({issue.field})" if issue.field else "")
            + (f": {issue.description}" if issue.description else "")
            for issue in error.details
        )
        if issues:
            text += f" [{issues}]"
        if error.debug_id:
            text += f" (debug_id {error.debug_id})"
    elif error.error:
        text = error.error
        if error.error_description:
            text += f": {error.error_description}"
    else:
        return body
    # The body was redacted as it came; decoding its JSON strings may reveal new shapes.
    return redact_text(text)


def _vendor_error(error: VendorError) -> VendorError:
    """The runtime's `VendorError` in PayPal's words; a funding failure as `PaymentDeclined`.

    A `VendorError` also carries PayPal's ``error_name``, first ``issue`` and ``debug_id``.
    """
    parsed = _parse_error(error.body)
    if parsed is None:
        return error  # not PayPal's format: the runtime's error says all there is
    service = error.service or "paypal"
    text = _error_text(error.body, parsed)
    declined = next((issue for issue in parsed.details if issue.issue in _DECLINES), None)
    if declined is not None:
        return PaymentDeclined(
            service,
            declined.issue,
            redact_text(declined.description or declined.issue),
            status=error.status,
            body=text,
        )
    return VendorError(
        service,
        error.status,
        text,
        error_name=parsed.name or parsed.error,
        issue=parsed.details[0].issue if parsed.details else None,
        debug_id=parsed.debug_id,
    )
