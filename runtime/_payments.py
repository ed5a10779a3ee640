"""Payments: the `PaymentGateway` protocol, `Money`, requests and results.

Amounts are integers in the currency's ISO 4217 minor unit (cents for USD,
yen for JPY, fils for KWD), never floats: exact, and what Stripe takes.
`Money.of(Decimal("99.99"), "USD")` converts from major units and refuses a
fraction the currency cannot hold; `Money.to_decimal` gives the major-unit
value PayPal's string amounts need. Where a vendor's unit is not ISO's (Stripe
counts ISK in hundredths), the adapter converts.

Every mutating method takes an ``idempotency_key``: the same key sends the
same operation once, as Stripe's ``Idempotency-Key`` and PayPal's
``PayPal-Request-Id``. None lets the adapter make one per call, so its own
retries are safe, but the application repeating the call is a second payment.

Statuses are normalised to `PaymentStatus` so code can branch on them for any
vendor; ``provider_status`` keeps the vendor's own word.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Final, Literal, Protocol, runtime_checkable

import msgspec

from . import _formats as check
from ._errors import ConfigError
from ._idempotency import IdempotencyKey

__all__ = [
    "CaptureMethod",
    "CaptureRequest",
    "CaptureResult",
    "ChargeRequest",
    "ChargeResult",
    "Money",
    "PaymentGateway",
    "PaymentIntent",
    "PaymentIntentRequest",
    "PaymentStatus",
    "RefundReason",
    "RefundRequest",
    "RefundResult",
    "RefundStatus",
    "currency_exponent",
]

# ISO 4217 minor units where they are not 2 (active currencies; funds codes included).
_EXPONENTS: Final[dict[str, int]] = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG"), 0),
    **dict.fromkeys(("RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}
_MAX_AMOUNT: Final = 2**63 - 1  # what a signed 64-bit column and the vendors' integers hold
# Stripe's metadata limits, the strictest of the gateways targeted.
_METADATA_KEYS: Final = 50
_METADATA_KEY_LENGTH: Final = 40
_METADATA_VALUE_LENGTH: Final = 500
_IDEMPOTENCY_KEY_LENGTH: Final = 255  # Stripe's limit; PayPal's adapter checks its own 108

CaptureMethod = Literal["automatic", "manual"]
PaymentStatus = Literal[
    "pending", "requires_action", "requires_capture", "succeeded", "failed", "canceled"
]
RefundStatus = Literal["pending", "succeeded", "failed", "canceled"]
RefundReason = Literal["duplicate", "fraudulent", "requested_by_customer"]
_CAPTURE_METHODS: Final = ("automatic", "manual")
_REFUND_REASONS: Final = ("duplicate", "fraudulent", "requested_by_customer")


def currency_exponent(currency: str) -> int:
    """Digits after the decimal point in ``currency``'s minor unit (ISO 4217)."""
    return _EXPONENTS.get(check.currency("currency", currency), 2)


class Money(msgspec.Struct, frozen=True):
    """A positive ``amount`` in ``currency``'s minor unit: ``Money(1999, "EUR")`` is 19.99 EUR."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise ConfigError("amount", self.amount, "must be an integer of minor units")
        if not 0 < self.amount <= _MAX_AMOUNT:
            raise ConfigError("amount", self.amount, f"must be in 1..{_MAX_AMOUNT}")
        check.currency("currency", self.currency)

    @classmethod
    def of(cls, value: Decimal | str | int, currency: str) -> Money:
        """``value`` major units, exactly: ``Money.of("99.99", "USD") == Money(9999, "USD")``."""
        exponent = currency_exponent(currency)
        if isinstance(value, bool) or not isinstance(value, Decimal | str | int):
            raise ConfigError("amount", value, "must be a Decimal, str or int (not a float)")
        try:
            major = Decimal(value)
        except InvalidOperation:
            raise ConfigError("amount", value, "is not a number") from None
        if not major.is_finite():
            raise ConfigError("amount", value, "must be finite")
        minor = major.scaleb(exponent)
        if minor != minor.to_integral_value():
            raise ConfigError(
                "amount", value, f"has more than {exponent} decimal places, all {currency} has"
            )
        return cls(int(minor), currency)

    def to_decimal(self) -> Decimal:
        """The amount in major units: ``Money(1999, "EUR").to_decimal() == Decimal("19.99")``."""
        return Decimal(self.amount).scaleb(-currency_exponent(self.currency))


def _optional_money(field: str, value: object) -> None:
    if value is not None and not isinstance(value, Money):
        raise ConfigError(field, value, "must be Money or None")


def _metadata(value: object) -> dict[str, str]:
    result = check.string_map(
        "metadata", value, max_items=_METADATA_KEYS, max_key=_METADATA_KEY_LENGTH
    )
    for key, item in result.items():
        if "[" in key or "]" in key:
            raise ConfigError("metadata", key, "keys must not contain square brackets")
        if len(item) > _METADATA_VALUE_LENGTH:
            raise ConfigError(f"metadata[{key!r}]", f"<{len(item)} characters>", "at most 500")
    return result


def check_idempotency_key(key: object) -> str | None:
    """The key's text (None stays None); what every gateway implementation accepts."""
    if key is None:
        return None
    if isinstance(key, IdempotencyKey):
        return key.value
    return check.identifier("idempotency_key", key, max_length=_IDEMPOTENCY_KEY_LENGTH)


class ChargeRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Take ``amount`` now from ``payment_method`` (a token or saved method id)."""

    amount: Money
    payment_method: str
    customer_id: str | None = None
    description: str | None = None
    receipt_email: str | None = None
    metadata: Mapping[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        check.same_type("amount", self.amount, Money)
        check.identifier("payment_method", self.payment_method)
        _common(self.customer_id, self.description, self.receipt_email)
        msgspec.structs.force_setattr(self, "metadata", _metadata(self.metadata))


class PaymentIntentRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Start a payment the customer completes (3-D Secure, PayPal approval).

    ``capture_method="manual"`` only authorises; `PaymentGateway.capture_authorization`
    takes the money later, all or part of it.
    """

    amount: Money
    capture_method: CaptureMethod = "automatic"
    payment_method: str | None = None
    customer_id: str | None = None
    description: str | None = None
    receipt_email: str | None = None
    metadata: Mapping[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        check.same_type("amount", self.amount, Money)
        if self.capture_method not in _CAPTURE_METHODS:
            raise ConfigError(
                "capture_method", self.capture_method, "must be 'automatic' or 'manual'"
            )
        if self.payment_method is not None:
            check.identifier("payment_method", self.payment_method)
        _common(self.customer_id, self.description, self.receipt_email)
        msgspec.structs.force_setattr(self, "metadata", _metadata(self.metadata))


class RefundRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Give back ``amount`` of payment ``payment_id``; None refunds all that remains."""

    payment_id: str
    amount: Money | None = None
    reason: RefundReason | None = None
    metadata: Mapping[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        check.identifier("payment_id", self.payment_id)
        _optional_money("amount", self.amount)
        if self.reason is not None and self.reason not in _REFUND_REASONS:
            raise ConfigError("reason", self.reason, f"must be one of {', '.join(_REFUND_REASONS)}")
        msgspec.structs.force_setattr(self, "metadata", _metadata(self.metadata))


class CaptureRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Take authorised money: ``amount`` None captures all of it, less captures part."""

    authorization_id: str
    amount: Money | None = None

    def __post_init__(self) -> None:
        check.identifier("authorization_id", self.authorization_id)
        _optional_money("amount", self.amount)


def _common(customer_id: object, description: object, receipt_email: object) -> None:
    if customer_id is not None:
        check.identifier("customer_id", customer_id)
    check.optional_text("description", description)
    if receipt_email is not None:
        check.check_email_address(receipt_email, "receipt_email")


class ChargeResult(msgspec.Struct, frozen=True, kw_only=True):
    """A charge as the provider recorded it."""

    id: str
    status: PaymentStatus
    amount: Money
    provider_status: str | None = None
    receipt_url: str | None = None


class PaymentIntent(msgspec.Struct, frozen=True, kw_only=True):
    """A payment in progress. ``client_secret`` (Stripe) lets the browser confirm it;
    ``approval_url`` (PayPal) is where the payer approves. The secret is left out of repr.
    """

    id: str
    status: PaymentStatus
    amount: Money
    capture_method: CaptureMethod = "automatic"
    client_secret: str | None = None
    approval_url: str | None = None
    provider_status: str | None = None

    def __repr__(self) -> str:
        secret = "<hidden>" if self.client_secret is not None else None
        return (
            f"PaymentIntent(id={self.id!r}, status={self.status!r}, amount={self.amount!r}, "
            f"capture_method={self.capture_method!r}, client_secret={secret}, "
            f"approval_url={self.approval_url!r}, provider_status={self.provider_status!r})"
        )


class RefundResult(msgspec.Struct, frozen=True, kw_only=True):
    """A refund of ``payment_id`` as the provider recorded it."""

    id: str
    payment_id: str
    status: RefundStatus
    amount: Money
    provider_status: str | None = None


class CaptureResult(msgspec.Struct, frozen=True, kw_only=True):
    """A capture of ``authorization_id``; ``id`` is what a refund of it names."""

    id: str
    authorization_id: str
    status: PaymentStatus
    amount: Money
    provider_status: str | None = None


@runtime_checkable
class PaymentGateway(Protocol):
    """Takes and returns money; the original's ``PaymentGatewayConnectorInterface``.

    A declined card raises `PaymentDeclined`; other refusals `VendorError`.
    """

    async def charge(
        self,
        request: ChargeRequest,
        *,
        idempotency_key: str | IdempotencyKey | None = None,
        tenant_id: str | None = None,
    ) -> ChargeResult:
        """Charge at once."""
        ...

    async def refund(
        self,
        request: RefundRequest,
        *,
        idempotency_key: str | IdempotencyKey | None = None,
        tenant_id: str | None = None,
    ) -> RefundResult:
        """Refund all or part of a charge or capture."""
        ...

    async def create_payment_intent(
        self,
        request: PaymentIntentRequest,
        *,
        idempotency_key: str | IdempotencyKey | None = None,
        tenant_id: str | None = None,
    ) -> PaymentIntent:
        """Start a payment for the customer to complete, or authorise one to capture later."""
        ...

    async def capture_authorization(
        self,
        request: CaptureRequest,
        *,
        idempotency_key: str | IdempotencyKey | None = None,
        tenant_id: str | None = None,
    ) -> CaptureResult:
        """Capture all or part of an authorised payment."""
        ...
