"""In-memory fakes of the service protocols, for applications' own tests.

Each fake behaves like a small, well-behaved provider: it keeps what it was
sent, refuses what a vendor would refuse (a refund larger than the payment,
an unknown tracking number) with the same typed errors an adapter raises,
and can be told to fail or to go slow:

- ``fake.calls`` records every call in order (method, arguments, tenant);
  ``fake.sent`` (email, SMS) only what was accepted;
- ``fail_next(error, times=, method=)`` raises ``error`` from the next calls,
  ``fail_with(error, method=)`` from every call until ``fail_with(None)``;
- ``slow(seconds, method=)`` makes calls take that long on the event loop's
  clock (so virtual time makes it free); ``reset()`` forgets everything.

Given a `Service` (``FakeEmailService(rt.register("email"))``) a fake runs
each call through it, so the runtime's breaker, retries, timeouts and
idempotency apply to the fake as to a real adapter; injected errors are then
classified as any provider's are.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ClassVar, TypeVar, cast
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import anyio
import msgspec

from .. import _formats as check
from .._bulk import BulkFailure, BulkResult
from .._clock import WallClock, system_wall_clock
from .._email import (
    AddressValidation,
    EmailMessage,
    EmailReceipt,
    EmailStatistics,
    check_period,
)
from .._errors import ConfigError, PaymentDeclined, VendorError
from .._idempotency import IdempotencyKey
from .._payments import (
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
    check_idempotency_key,
)
from .._service import Service
from .._shipping import (
    TRACKING_STATUSES,
    Shipment,
    ShipmentCancellation,
    ShipmentRequest,
    ShippingRate,
    TrackingEvent,
    TrackingInfo,
    TrackingStatus,
)
from .._sms import AccountBalance, PhoneNumberInfo, SmsMessage, SmsReceipt
from .._storage import (
    FileUpload,
    SignedMethod,
    SignedUrl,
    StoredFile,
    StoredObject,
    check_lifetime,
    check_path,
)
from .._validate import non_negative

__all__ = [
    "FakeCall",
    "FakeCloudStorage",
    "FakeEmailService",
    "FakePaymentGateway",
    "FakeShippingProvider",
    "FakeSmsService",
]

T = TypeVar("T")


class FakeCall(msgspec.Struct, frozen=True, kw_only=True):
    """One call a fake received (each attempt, when the runtime retries)."""

    method: str
    arguments: dict[str, Any]
    tenant_id: str | None = None
    idempotency_key: str | None = None


class _Fake:
    """Call records, injected failures and delays, and the optional runtime `Service`."""

    methods: ClassVar[tuple[str, ...]]

    def __init__(self, service: Service | None, name: str, wall_clock: WallClock) -> None:
        if service is not None and not isinstance(service, Service):
            raise ConfigError("service", service, "must be a Service or None")
        if not callable(wall_clock):
            raise ConfigError("wall_clock", wall_clock, "must be callable")
        self.name = service.name if service is not None else check.text("name", name)
        self._service = service
        self._wall_clock = wall_clock
        self.calls: list[FakeCall] = []
        self._next_failures: list[tuple[str | None, BaseException]] = []
        self._failures: dict[str | None, BaseException] = {}
        self._delays: dict[str | None, float] = {}
        self._counter = 0

    def fail_next(self, error: BaseException, *, times: int = 1, method: str | None = None) -> None:
        """Raise ``error`` from the next ``times`` calls (to ``method``, or to any)."""
        self._check_method(method)
        if not isinstance(error, BaseException):
            raise ConfigError("error", error, "must be an exception instance")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ConfigError("times", times, "must be an integer >= 1")
        self._next_failures.extend([(method, error)] * times)

    def fail_with(self, error: BaseException | None, *, method: str | None = None) -> None:
        """Raise ``error`` from every call (to ``method``, or to any); None stops it."""
        self._check_method(method)
        if error is None:
            self._failures.pop(method, None)
        elif isinstance(error, BaseException):
            self._failures[method] = error
        else:
            raise ConfigError("error", error, "must be an exception instance or None")

    def slow(self, seconds: float, *, method: str | None = None) -> None:
        """Make each call (to ``method``, or to any) take ``seconds``; 0 makes them quick again."""
        self._check_method(method)
        self._delays[method] = non_negative("seconds", seconds)

    def reset(self) -> None:
        """Forget the calls, the injected failures and delays, and everything stored."""
        self.calls.clear()
        self._next_failures.clear()
        self._failures.clear()
        self._delays.clear()
        self._counter = 0
        self._clear()

    def calls_to(self, method: str) -> list[FakeCall]:
        """The calls to one method, in order."""
        self._check_method(method)
        return [call for call in self.calls if call.method == method]

    def _clear(self) -> None:
        """Forget what the fake stored (each fake its own)."""
        raise NotImplementedError

    def _check_method(self, method: str | None) -> None:
        if method is not None and method not in self.methods:
            raise ConfigError("method", method, f"must be one of {', '.join(self.methods)}")

    def _next_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._wall_clock(), UTC)

    def _failure(self, method: str) -> BaseException | None:
        for position, (wanted, error) in enumerate(self._next_failures):
            if wanted is None or wanted == method:
                del self._next_failures[position]
                return error
        return self._failures.get(method, self._failures.get(None))

    async def _run(
        self,
        method: str,
        arguments: dict[str, Any],
        operation: Callable[[], T],
        *,
        tenant_id: str | None,
        idempotency_key: str | None = None,
        idempotent: bool = False,
    ) -> T:
        """Record, wait, fail if told to, else apply ``operation`` to the fake's state.

        The state changes only after the delay, all at once, so a call cancelled
        while it waits (a timeout, a deadline) leaves no trace but its record.
        """
        if tenant_id is not None:
            check.identifier("tenant_id", tenant_id)

        async def attempt() -> T:
            record = FakeCall(
                method=method,
                arguments=arguments,
                tenant_id=tenant_id,
                idempotency_key=idempotency_key,
            )
            self.calls.append(record)
            delay = self._delays.get(method, self._delays.get(None, 0.0))
            if delay:
                await anyio.sleep(delay)
            error = self._failure(method)
            if error is not None:
                raise error.with_traceback(None)
            return operation()

        if self._service is None:
            return await attempt()
        return await self._service.call(
            attempt,
            tenant_id=tenant_id,
            idempotency_key=idempotency_key,
            idempotent=idempotent,
            endpoint=method,
        )

    def _refuse(self, status: int, reason: str) -> VendorError:
        return VendorError(self.name, status, reason)


def _messages(field: str, value: object, kind: type[T]) -> tuple[T, ...]:
    if isinstance(value, kind | str | bytes) or not isinstance(value, Sequence):
        raise ConfigError(field, value, f"must be a list of {kind.__name__}")
    items = tuple(value)
    for item in items:
        check.same_type(field, item, kind)
    return items


class FakeEmailService(_Fake):
    """An `EmailService` that keeps what it sends in ``sent``.

    ``reject(address)`` makes the provider refuse mail to that address: a
    single send raises `VendorError` (400), a bulk send reports it in
    ``errors``. Statistics count what this fake was asked to send, by the
    UTC day of ``wall_clock``.
    """

    methods = ("send_transactional_email", "send_bulk_email", "validate_address", "get_statistics")

    def __init__(
        self,
        service: Service | None = None,
        *,
        name: str = "fake-email",
        wall_clock: WallClock = system_wall_clock,
    ) -> None:
        super().__init__(service, name, wall_clock)
        self.sent: list[EmailMessage] = []
        self._rejected: dict[str, str] = {}
        self._log: list[tuple[date, str | None, bool]] = []  # (day, tenant, delivered)

    def _clear(self) -> None:
        self.sent.clear()
        self._rejected.clear()
        self._log.clear()

    def reject(self, address: str, reason: str = "recipient address rejected") -> None:
        """Refuse every message to ``address`` from now on."""
        check.check_email_address(address)
        self._rejected[address.lower()] = check.text("reason", reason)

    async def send_transactional_email(
        self, message: EmailMessage, *, tenant_id: str | None = None
    ) -> EmailReceipt:
        check.same_type("message", message, EmailMessage)
        return await self._run(
            "send_transactional_email",
            {"message": message},
            lambda: self._deliver(message, tenant_id),
            tenant_id=tenant_id,
        )

    async def send_bulk_email(
        self, messages: Sequence[EmailMessage], *, tenant_id: str | None = None
    ) -> BulkResult[EmailReceipt]:
        batch = _messages("messages", messages, EmailMessage)

        def deliver_all() -> BulkResult[EmailReceipt]:
            receipts: list[EmailReceipt] = []
            errors: list[BulkFailure] = []
            for index, message in enumerate(batch):
                try:
                    receipts.append(self._deliver(message, tenant_id))
                except VendorError as error:
                    errors.append(BulkFailure(index=index, reason=error.body, status=error.status))
            return BulkResult.of(tuple(receipts), tuple(errors))

        return await self._run(
            "send_bulk_email", {"messages": batch}, deliver_all, tenant_id=tenant_id
        )

    def _deliver(self, message: EmailMessage, tenant_id: str | None) -> EmailReceipt:
        day = self._now().date()
        for address in message.recipients:
            reason = self._rejected.get(address.lower())
            if reason is not None:
                self._log.append((day, tenant_id, False))
                raise self._refuse(400, f"{address}: {reason}")
        self._log.append((day, tenant_id, True))
        self.sent.append(message)
        return EmailReceipt(message_id=self._next_id(f"{self.name}-"), status="queued")

    async def validate_address(
        self, address: str, *, tenant_id: str | None = None
    ) -> AddressValidation:
        check.same_type("address", address, str)

        def validate() -> AddressValidation:
            try:
                check.check_email_address(address)
            except ConfigError:
                return AddressValidation(address=address, valid=False, reason="malformed address")
            reason = self._rejected.get(address.lower())
            return AddressValidation(address=address, valid=reason is None, reason=reason)

        return await self._run(
            "validate_address", {"address": address}, validate, tenant_id=tenant_id, idempotent=True
        )

    async def get_statistics(
        self, start: date, end: date, *, tenant_id: str | None = None
    ) -> EmailStatistics:
        check_period(start, end)

        def count() -> EmailStatistics:
            days = [
                delivered
                for day, tenant, delivered in self._log
                if tenant == tenant_id and start <= day <= end
            ]
            delivered = sum(days)
            return EmailStatistics(
                start=start,
                end=end,
                requests=len(days),
                delivered=delivered,
                bounces=len(days) - delivered,
            )

        return await self._run(
            "get_statistics",
            {"start": start, "end": end},
            count,
            tenant_id=tenant_id,
            idempotent=True,
        )


class FakeSmsService(_Fake):
    """An `SmsService` that keeps what it sends in ``sent``.

    ``reject(number)`` makes the provider refuse messages to that number (a
    `VendorError`, or an entry in a bulk result's ``errors``) and report it
    invalid. ``balance`` is what `check_balance` answers.
    """

    methods = ("send", "send_bulk", "validate_phone_number", "check_balance")

    def __init__(
        self,
        service: Service | None = None,
        *,
        name: str = "fake-sms",
        balance: AccountBalance | None = None,
        wall_clock: WallClock = system_wall_clock,
    ) -> None:
        super().__init__(service, name, wall_clock)
        self.sent: list[SmsMessage] = []
        self.balance = balance or AccountBalance(balance=Decimal("100.00"), currency="USD")
        check.same_type("balance", self.balance, AccountBalance)
        self._rejected: dict[str, str] = {}

    def _clear(self) -> None:
        self.sent.clear()
        self._rejected.clear()

    def reject(self, phone_number: str, reason: str = "unreachable destination") -> None:
        """Refuse every message to ``phone_number`` from now on."""
        check.check_phone_number(phone_number)
        self._rejected[phone_number] = check.text("reason", reason)

    async def send(self, message: SmsMessage, *, tenant_id: str | None = None) -> SmsReceipt:
        check.same_type("message", message, SmsMessage)
        return await self._run(
            "send", {"message": message}, lambda: self._deliver(message), tenant_id=tenant_id
        )

    async def send_bulk(
        self, messages: Sequence[SmsMessage], *, tenant_id: str | None = None
    ) -> BulkResult[SmsReceipt]:
        batch = _messages("messages", messages, SmsMessage)

        def deliver_all() -> BulkResult[SmsReceipt]:
            receipts: list[SmsReceipt] = []
            errors: list[BulkFailure] = []
            for index, message in enumerate(batch):
                try:
                    receipts.append(self._deliver(message))
                except VendorError as error:
                    errors.append(BulkFailure(index=index, reason=error.body, status=error.status))
            return BulkResult.of(tuple(receipts), tuple(errors))

        return await self._run("send_bulk", {"messages": batch}, deliver_all, tenant_id=tenant_id)

    def _deliver(self, message: SmsMessage) -> SmsReceipt:
        reason = self._rejected.get(message.to)
        if reason is not None:
            raise self._refuse(400, f"{message.to}: {reason}")
        self.sent.append(message)
        self._counter += 1
        return SmsReceipt(message_id=f"SM{self._counter:032x}", status="queued")

    async def validate_phone_number(
        self, phone_number: str, *, country_code: str | None = None, tenant_id: str | None = None
    ) -> PhoneNumberInfo:
        check.same_type("phone_number", phone_number, str)
        if country_code is not None:
            check.country("country_code", country_code)

        def look_up() -> PhoneNumberInfo:
            try:
                check.check_phone_number(phone_number)
            except ConfigError:
                return PhoneNumberInfo(
                    phone_number=phone_number, valid=False, reason="not an E.164 number"
                )
            reason = self._rejected.get(phone_number)
            return PhoneNumberInfo(phone_number=phone_number, valid=reason is None, reason=reason)

        return await self._run(
            "validate_phone_number",
            {"phone_number": phone_number, "country_code": country_code},
            look_up,
            tenant_id=tenant_id,
            idempotent=True,
        )

    async def check_balance(self, *, tenant_id: str | None = None) -> AccountBalance:
        return await self._run(
            "check_balance", {}, lambda: self.balance, tenant_id=tenant_id, idempotent=True
        )


class FakePaymentGateway(_Fake):
    """A `PaymentGateway` with a ledger that keeps the vendors' rules.

    A payment method marked with ``decline()`` raises `PaymentDeclined`.
    A refund needs a succeeded charge or capture, in its currency, for no more
    than is left unrefunded; a capture needs an authorised intent and at most
    its amount (the rest is released, as Stripe does). An idempotency key
    replays its first outcome, a decline included, and is refused (400) with
    different parameters, as Stripe's are.
    """

    methods = ("charge", "refund", "create_payment_intent", "capture_authorization")

    def __init__(
        self,
        service: Service | None = None,
        *,
        name: str = "fake-payments",
        wall_clock: WallClock = system_wall_clock,
    ) -> None:
        super().__init__(service, name, wall_clock)
        self.charges: list[ChargeResult] = []
        self.refunds: list[RefundResult] = []
        self.captures: list[CaptureResult] = []
        self.intents: dict[str, PaymentIntent] = {}
        self._declines: dict[str, tuple[str, str]] = {}
        self._owners: dict[str, str | None] = {}  # id of an intent or payment -> its tenant
        self._paid: dict[str, Money] = {}  # refundable payments: charges, captures, intents
        self._refunded: dict[str, int] = {}
        self._keys: dict[tuple[str | None, str], tuple[str, object, object]] = {}

    def _clear(self) -> None:
        for store in (self.charges, self.refunds, self.captures):
            store.clear()
        tables: tuple[dict[Any, Any], ...] = (
            self.intents,
            self._declines,
            self._owners,
            self._paid,
            self._refunded,
            self._keys,
        )
        for table in tables:
            table.clear()

    def decline(
        self,
        payment_method: str,
        decline_code: str = "card_declined",
        reason: str = "Your card was declined.",
    ) -> None:
        """Decline every payment with ``payment_method`` from now on."""
        check.identifier("payment_method", payment_method)
        self._declines[payment_method] = (
            check.text("decline_code", decline_code),
            check.text("reason", reason),
        )

    def refunded(self, payment_id: str) -> int:
        """Minor units refunded so far of ``payment_id``."""
        return self._refunded.get(payment_id, 0)

    async def charge(
        self,
        request: ChargeRequest,
        *,
        idempotency_key: str | IdempotencyKey | None = None,
        tenant_id: str | None = None,
    ) -> ChargeResult:
        check.same_type("request", request, ChargeRequest)

        def charge() -> ChargeResult:
            self._check_declined(request.payment_method)
            result = ChargeResult(
                id=self._next_id("ch_fake_"),
                status="succeeded",
                amount=request.amount,
                provider_status="succeeded",
            )
            self.charges.append(result)
            self._owners[result.id] = tenant_id
            self._paid[result.id] = result.amount
            return result

        return await self._mutate("charge", request, charge, idempotency_key, tenant_id)

    async def create_payment_intent(
        self,
        request: PaymentIntentRequest,
        *,
        idempotency_key: str | IdempotencyKey | None = None,
        tenant_id: str | None = None,
    ) -> PaymentIntent:
        check.same_type("request", request, PaymentIntentRequest)

        def create() -> PaymentIntent:
            intent_id = self._next_id("pi_fake_")
            status: PaymentStatus
            if request.payment_method is None:
                status, word = "requires_action", "requires_payment_method"
            else:
                self._check_declined(request.payment_method)
                manual = request.capture_method == "manual"
                status = "requires_capture" if manual else "succeeded"
                word = status
            intent = PaymentIntent(
                id=intent_id,
                status=status,
                amount=request.amount,
                capture_method=request.capture_method,
                client_secret=f"{intent_id}_secret_fake",
                provider_status=word,
            )
            self.intents[intent_id] = intent
            self._owners[intent_id] = tenant_id
            if status == "succeeded":
                self._paid[intent_id] = request.amount
            return intent

        return await self._mutate(
            "create_payment_intent", request, create, idempotency_key, tenant_id
        )

    async def capture_authorization(
        self,
        request: CaptureRequest,
        *,
        idempotency_key: str | IdempotencyKey | None = None,
        tenant_id: str | None = None,
    ) -> CaptureResult:
        check.same_type("request", request, CaptureRequest)

        def capture() -> CaptureResult:
            intent = self.intents.get(request.authorization_id)
            if intent is None or not self._owned(intent.id, tenant_id):
                raise self._refuse(404, f"no authorization {request.authorization_id}")
            if intent.status != "requires_capture":
                raise self._refuse(400, f"authorization is {intent.status}, not capturable")
            amount = request.amount or intent.amount
            if amount.currency != intent.amount.currency or amount.amount > intent.amount.amount:
                raise self._refuse(400, f"cannot capture {amount} of {intent.amount}")
            self.intents[intent.id] = msgspec.structs.replace(
                intent, status="succeeded", provider_status="succeeded"
            )
            result = CaptureResult(
                id=self._next_id("cap_fake_"),
                authorization_id=intent.id,
                status="succeeded",
                amount=amount,
                provider_status="succeeded",
            )
            self.captures.append(result)
            self._owners[result.id] = tenant_id
            self._paid[result.id] = amount
            return result

        return await self._mutate(
            "capture_authorization", request, capture, idempotency_key, tenant_id
        )

    async def refund(
        self,
        request: RefundRequest,
        *,
        idempotency_key: str | IdempotencyKey | None = None,
        tenant_id: str | None = None,
    ) -> RefundResult:
        check.same_type("request", request, RefundRequest)

        def refund() -> RefundResult:
            total = self._paid.get(request.payment_id)
            if total is None or not self._owned(request.payment_id, tenant_id):
                raise self._refuse(404, f"no payment {request.payment_id}")
            left = total.amount - self._refunded.get(request.payment_id, 0)
            amount = request.amount or (Money(left, total.currency) if left else None)
            if amount is None:
                raise self._refuse(400, f"payment {request.payment_id} is fully refunded")
            if amount.currency != total.currency:
                raise self._refuse(
                    400, f"refund in {amount.currency} of a {total.currency} payment"
                )
            if amount.amount > left:
                raise self._refuse(400, f"refund of {amount.amount} exceeds the {left} left")
            self._refunded[request.payment_id] = total.amount - left + amount.amount
            result = RefundResult(
                id=self._next_id("re_fake_"),
                payment_id=request.payment_id,
                status="succeeded",
                amount=amount,
                provider_status="succeeded",
            )
            self.refunds.append(result)
            return result

        return await self._mutate("refund", request, refund, idempotency_key, tenant_id)

    def _owned(self, object_id: str, tenant_id: str | None) -> bool:
        """Whether ``object_id`` exists for this tenant: tenants never see each other's."""
        return object_id in self._owners and self._owners[object_id] == tenant_id

    def _check_declined(self, payment_method: str) -> None:
        declined = self._declines.get(payment_method)
        if declined is not None:
            raise PaymentDeclined(self.name, declined[0], declined[1])

    async def _mutate(
        self,
        method: str,
        request: object,
        operation: Callable[[], T],
        idempotency_key: str | IdempotencyKey | None,
        tenant_id: str | None,
    ) -> T:
        key = check_idempotency_key(idempotency_key)

        def once() -> T:
            if key is None:
                return operation()
            stored = self._keys.get((tenant_id, key))
            if stored is not None:
                first_method, first_request, outcome = stored
                if (first_method, first_request) != (method, request):
                    raise self._refuse(400, "idempotency key reused with different parameters")
                if isinstance(outcome, BaseException):
                    raise outcome.with_traceback(None)
                return cast("T", outcome)
            try:
                result = operation()
            except VendorError as error:
                self._keys[(tenant_id, key)] = (method, request, error)
                raise
            self._keys[(tenant_id, key)] = (method, request, result)
            return result

        return await self._run(
            method, {"request": request}, once, tenant_id=tenant_id, idempotency_key=key
        )


class FakeCloudStorage(_Fake):
    """A `CloudStorage` keeping ``objects`` by (tenant, path), each tenant its own namespace.

    Its signed URLs are HMACs over method, tenant, path and expiry;
    `open_signed_url` uses one as its holder would, refusing it once expired
    by ``wall_clock`` or when altered.
    """

    methods = ("upload", "download", "delete", "generate_signed_url")

    def __init__(
        self,
        service: Service | None = None,
        *,
        name: str = "fake-storage",
        bucket: str = "fake-bucket",
        wall_clock: WallClock = system_wall_clock,
        signing_key: bytes = b"fake-storage-signing-key",
    ) -> None:
        super().__init__(service, name, wall_clock)
        self.bucket = check.identifier("bucket", bucket)
        check.same_type("signing_key", signing_key, bytes)
        self._signing_key = signing_key
        self.objects: dict[tuple[str | None, str], StoredFile] = {}

    def _clear(self) -> None:
        self.objects.clear()

    async def upload(self, upload: FileUpload, *, tenant_id: str | None = None) -> StoredObject:
        check.same_type("upload", upload, FileUpload)

        def store() -> StoredObject:
            stored = self._store(tenant_id, upload.path, upload.content, upload.content_type)
            return StoredObject(
                path=stored.path,
                size=len(stored.content),
                content_type=stored.content_type,
                etag=stored.etag,
            )

        return await self._run("upload", {"upload": upload}, store, tenant_id=tenant_id)

    def _store(
        self, tenant_id: str | None, path: str, content: bytes, content_type: str
    ) -> StoredFile:
        etag = '"' + hashlib.md5(content, usedforsecurity=False).hexdigest() + '"'  # S3's ETag
        stored = StoredFile(path=path, content=content, content_type=content_type, etag=etag)
        self.objects[(tenant_id, path)] = stored
        return stored

    def _get(self, tenant_id: str | None, path: str) -> StoredFile:
        stored = self.objects.get((tenant_id, path))
        if stored is None:
            raise self._refuse(404, f"no object at {path}")
        return stored

    async def download(self, path: str, *, tenant_id: str | None = None) -> StoredFile:
        check_path(path)
        return await self._run(
            "download",
            {"path": path},
            lambda: self._get(tenant_id, path),
            tenant_id=tenant_id,
            idempotent=True,
        )

    async def delete(self, path: str, *, tenant_id: str | None = None) -> None:
        check_path(path)

        def remove() -> None:
            self.objects.pop((tenant_id, path), None)

        await self._run("delete", {"path": path}, remove, tenant_id=tenant_id, idempotent=True)

    async def generate_signed_url(
        self,
        path: str,
        *,
        expires_in: int = 3600,
        method: SignedMethod = "GET",
        tenant_id: str | None = None,
    ) -> SignedUrl:
        check_path(path)
        check_lifetime(expires_in)
        if method not in ("GET", "PUT"):
            raise ConfigError("method", method, "must be 'GET' or 'PUT'")

        def sign() -> SignedUrl:
            expires = math.floor(self._wall_clock()) + expires_in
            query = {"method": method, "expires": str(expires)}
            if tenant_id is not None:
                query["tenant"] = tenant_id
            query["signature"] = self._signature(method, tenant_id, path, expires)
            url = f"https://{self.bucket}.storage.invalid/{quote(path)}?{urlencode(query)}"
            return SignedUrl(url=url, expires_at=float(expires), method=method)

        return await self._run(
            "generate_signed_url",
            {"path": path, "expires_in": expires_in, "method": method},
            sign,
            tenant_id=tenant_id,
            idempotent=True,
        )

    def _signature(self, method: str, tenant_id: str | None, path: str, expires: int) -> str:
        signed = f"{method}\n{tenant_id or ''}\n{path}\n{expires}".encode()
        return hmac.new(self._signing_key, signed, hashlib.sha256).hexdigest()

    def open_signed_url(self, url: str, *, content: bytes | None = None) -> StoredFile:
        """GET the object a signed URL grants, or PUT ``content`` there; raise `VendorError`
        (403) for a bad or expired signature, (404) for a missing object."""
        parts = urlsplit(url)
        query = {name: values[0] for name, values in parse_qs(parts.query).items()}
        method, path = query.get("method", ""), unquote(parts.path.lstrip("/"))
        tenant_id = query.get("tenant")
        try:
            expires = int(query.get("expires", ""))
        except ValueError:
            raise self._refuse(403, "malformed signed URL") from None
        expected = self._signature(method, tenant_id, path, expires)
        if not hmac.compare_digest(expected, query.get("signature", "")):
            raise self._refuse(403, "signature does not match")
        if self._wall_clock() >= expires:
            raise self._refuse(403, "signed URL expired")
        if method == "PUT":
            if not isinstance(content, bytes):
                raise ConfigError("content", content, "must be bytes to PUT")
            return self._store(tenant_id, path, content, "application/octet-stream")
        return self._get(tenant_id, path)


_DEFAULT_RATES: dict[str, tuple[int, int, int]] = {
    "standard": (500, 100, 5),
    "express": (1500, 250, 2),
}


class FakeShippingProvider(_Fake):
    """A `ShippingProvider` with a rate card and shipments you can move along.

    ``rates`` maps a service to (base, per started kilogram, days), prices in
    minor units of ``currency``. `update_tracking` stands for the carrier's
    scans; a shipment can be cancelled until it is in transit.
    """

    methods = ("create_shipment", "track_shipment", "calculate_rates", "cancel_shipment")

    def __init__(
        self,
        service: Service | None = None,
        *,
        name: str = "fake-shipping",
        currency: str = "USD",
        rates: Mapping[str, tuple[int, int, int]] | None = None,
        wall_clock: WallClock = system_wall_clock,
    ) -> None:
        super().__init__(service, name, wall_clock)
        self.currency = check.currency("currency", currency)
        self.rates = dict(_DEFAULT_RATES if rates is None else rates)
        if not self.rates:
            raise ConfigError("rates", {}, "must offer at least one service")
        for service_name, (base, per_kg, days) in self.rates.items():
            check.identifier("rates", service_name)
            if check.count("rates", base) == 0:
                raise ConfigError(f"rates[{service_name!r}]", base, "base price must be > 0")
            check.count(f"rates[{service_name!r}]", per_kg)
            check.count(f"rates[{service_name!r}]", days)
        self.shipments: dict[str, Shipment] = {}
        self._tracking: dict[str, TrackingInfo] = {}
        self._owners: dict[str, str | None] = {}

    def _clear(self) -> None:
        self.shipments.clear()
        self._tracking.clear()
        self._owners.clear()

    def _quote(self, request: ShipmentRequest) -> list[ShippingRate]:
        kilograms = math.ceil(request.weight_grams / 1000)
        quotes = [
            ShippingRate(
                service=service_name,
                cost=Money(base + per_kg * kilograms, self.currency),
                estimated_days=days,
                carrier=self.name,
            )
            for service_name, (base, per_kg, days) in self.rates.items()
        ]
        return sorted(quotes, key=lambda rate: rate.cost.amount)

    async def calculate_rates(
        self, request: ShipmentRequest, *, tenant_id: str | None = None
    ) -> list[ShippingRate]:
        check.same_type("request", request, ShipmentRequest)
        return await self._run(
            "calculate_rates",
            {"request": request},
            lambda: self._quote(request),
            tenant_id=tenant_id,
            idempotent=True,
        )

    async def create_shipment(
        self, request: ShipmentRequest, *, tenant_id: str | None = None
    ) -> Shipment:
        check.same_type("request", request, ShipmentRequest)

        def buy() -> Shipment:
            quotes = self._quote(request)
            if request.service is not None:
                quotes = [rate for rate in quotes if rate.service == request.service]
                if not quotes:
                    raise self._refuse(400, f"no service {request.service}")
            rate = quotes[0]
            number = self._next_id("")
            tracking_number = f"FAKE{int(number):010d}"
            shipment = Shipment(
                id=f"shp_fake_{number}",
                tracking_number=tracking_number,
                service=rate.service,
                cost=rate.cost,
                label_url=f"https://labels.invalid/{tracking_number}.pdf",
            )
            self.shipments[tracking_number] = shipment
            self._owners[tracking_number] = tenant_id
            event = TrackingEvent(at=self._now(), status="pre_transit", description="Label created")
            self._tracking[tracking_number] = TrackingInfo(
                tracking_number=tracking_number, status="pre_transit", events=(event,)
            )
            return shipment

        return await self._run("create_shipment", {"request": request}, buy, tenant_id=tenant_id)

    def update_tracking(
        self,
        tracking_number: str,
        status: TrackingStatus,
        *,
        description: str | None = None,
        location: str | None = None,
        estimated_delivery: date | None = None,
    ) -> TrackingInfo:
        """Record a carrier scan: the shipment's new status, where, and when it should arrive."""
        info = self._tracking.get(tracking_number)
        if info is None:
            raise ConfigError("tracking_number", tracking_number, "is not a shipment of this fake")
        if status not in TRACKING_STATUSES:
            raise ConfigError("status", status, f"must be one of {', '.join(TRACKING_STATUSES)}")
        event = TrackingEvent(
            at=self._now(),
            status=status,
            description=description or status.replace("_", " "),
            location=location,
        )
        info = msgspec.structs.replace(
            info,
            status=status,
            location=location,
            estimated_delivery=estimated_delivery or info.estimated_delivery,
            events=(*info.events, event),
        )
        self._tracking[tracking_number] = info
        self.shipments[tracking_number] = msgspec.structs.replace(
            self.shipments[tracking_number], status=status
        )
        return info

    def _find(self, tracking_number: str, tenant_id: str | None) -> TrackingInfo:
        info = self._tracking.get(tracking_number)
        if info is None or self._owners[tracking_number] != tenant_id:
            raise self._refuse(404, f"no shipment {tracking_number}")
        return info

    async def track_shipment(
        self, tracking_number: str, *, tenant_id: str | None = None
    ) -> TrackingInfo:
        check.identifier("tracking_number", tracking_number)
        return await self._run(
            "track_shipment",
            {"tracking_number": tracking_number},
            lambda: self._find(tracking_number, tenant_id),
            tenant_id=tenant_id,
            idempotent=True,
        )

    async def cancel_shipment(
        self, tracking_number: str, *, tenant_id: str | None = None
    ) -> ShipmentCancellation:
        check.identifier("tracking_number", tracking_number)

        def cancel() -> ShipmentCancellation:
            info = self._find(tracking_number, tenant_id)
            if info.status == "pre_transit":
                self.update_tracking(tracking_number, "cancelled", description="Label voided")
            elif info.status != "cancelled":
                return ShipmentCancellation(
                    tracking_number=tracking_number,
                    cancelled=False,
                    reason=f"shipment is {info.status.replace('_', ' ')}",
                )
            return ShipmentCancellation(tracking_number=tracking_number, cancelled=True)

        return await self._run(
            "cancel_shipment",
            {"tracking_number": tracking_number},
            cancel,
            tenant_id=tenant_id,
            idempotent=True,
        )
