"""`connector.testing`: the protocol fakes and `FakeTransport`, alone and through the runtime.

Async tests run on asyncio and trio in virtual time, so ``slow()`` costs nothing.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector import (
    ConfigError,
    ConnectionFailed,
    HttpRequest,
    HttpResponse,
    PaymentDeclined,
    Retry,
    Runtime,
    TransportFailure,
    VendorError,
)
from connector._email import EmailMessage
from connector._payments import (
    CaptureRequest,
    ChargeRequest,
    Money,
    PaymentIntentRequest,
    RefundRequest,
)
from connector._shipping import Address, Parcel, ShipmentRequest
from connector._sms import AccountBalance, SmsMessage
from connector._storage import FileUpload
from connector.testing import (
    FakeCloudStorage,
    FakeEmailService,
    FakePaymentGateway,
    FakeShippingProvider,
    FakeSmsService,
    FakeTransport,
)

pytestmark = pytest.mark.anyio

JAN_1 = datetime(2025, 1, 1, 12, tzinfo=UTC).timestamp()


@pytest.fixture
def anyio_backend(virtual_anyio_backend: tuple[str, dict[str, object]]) -> object:
    return virtual_anyio_backend


class Clock:
    """A wall clock the test moves."""

    def __init__(self, now: float = JAN_1) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def email(to: str = "ada@example.com", **fields: Any) -> EmailMessage:
    return EmailMessage(to=[to], subject="Hello", text="Hi", **fields)


def fast_retry() -> Retry:
    return Retry(attempts=3, initial_delay=0.1, max_delay=1.0, jitter="none")


# -- shared behaviour: records, failures, delays ------------------------------------


async def test_calls_record_every_call_and_sent_only_what_was_accepted() -> None:
    fake = FakeEmailService()
    fake.reject("bob@example.com", "mailbox full")
    receipt = await fake.send_transactional_email(email(), tenant_id="t1")
    with pytest.raises(VendorError) as info:
        await fake.send_transactional_email(email("bob@example.com"))
    assert info.value.status == 400
    assert "mailbox full" in info.value.body
    assert fake.sent == [email()]
    assert receipt.message_id == "fake-email-1"
    assert [(c.method, c.tenant_id) for c in fake.calls] == [
        ("send_transactional_email", "t1"),
        ("send_transactional_email", None),
    ]
    assert fake.calls[0].arguments == {"message": email()}


async def test_fail_next_fails_that_many_calls_then_recovers() -> None:
    fake = FakeSmsService()
    sms = SmsMessage(to="+14155550123", body="code 1234")
    fake.fail_next(ConnectionResetError("reset"), times=2)
    for _ in range(2):
        with pytest.raises(ConnectionResetError):
            await fake.send(sms)
    await fake.send(sms)
    assert fake.sent == [sms]
    assert len(fake.calls) == 3


async def test_failures_can_target_one_method() -> None:
    fake = FakeSmsService()
    fake.fail_next(TimeoutError(), method="check_balance")
    await fake.send(SmsMessage(to="+14155550123", body="hi"))
    with pytest.raises(TimeoutError):
        await fake.check_balance()
    assert (await fake.check_balance()).currency == "USD"


async def test_fail_with_fails_every_call_until_cleared() -> None:
    fake = FakeEmailService()
    fake.fail_with(ConnectionRefusedError(), method="send_transactional_email")
    for _ in range(3):
        with pytest.raises(ConnectionRefusedError):
            await fake.send_transactional_email(email())
    assert (await fake.validate_address("ada@example.com")).valid
    fake.fail_with(None, method="send_transactional_email")
    await fake.send_transactional_email(email())
    assert len(fake.sent) == 1


async def test_slow_takes_loop_time_and_a_cancelled_call_changes_nothing() -> None:
    fake = FakeEmailService()
    fake.slow(5.0)
    start = anyio.current_time()
    await fake.send_transactional_email(email())
    assert anyio.current_time() - start == pytest.approx(5.0)
    with anyio.move_on_after(1.0):
        await fake.send_transactional_email(email("bob@example.com"))
    assert [m.to for m in fake.sent] == [("ada@example.com",)]
    assert len(fake.calls) == 2
    fake.slow(0)
    start = anyio.current_time()
    await fake.send_transactional_email(email())
    assert anyio.current_time() == start


async def test_reset_forgets_everything() -> None:
    fake = FakeEmailService()
    fake.reject("bob@example.com")
    fake.slow(1.0)
    fake.fail_with(OSError())
    fake.reset()
    await fake.send_transactional_email(email("bob@example.com"))
    assert len(fake.sent) == 1
    assert len(fake.calls) == 1


def test_injection_refuses_unknown_methods_and_bad_arguments() -> None:
    fake = FakePaymentGateway()
    with pytest.raises(ConfigError) as info:
        fake.fail_next(OSError(), method="chrage")
    assert info.value.field == "method"
    with pytest.raises(ConfigError):
        fake.fail_next(OSError, times=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        fake.fail_next(OSError(), times=0)
    with pytest.raises(ConfigError):
        fake.slow(-1)
    with pytest.raises(ConfigError):
        fake.calls_to("nope")


# -- through the runtime -----------------------------------------------------------


async def test_through_a_service_an_unsent_failure_is_retried() -> None:
    async with Runtime() as rt:
        fake = FakeEmailService(rt.register("email", retry=fast_retry()))
        fake.fail_next(ConnectionRefusedError())
        receipt = await fake.send_transactional_email(email())
    assert receipt.status == "queued"
    assert len(fake.calls) == 2  # the provider saw two attempts
    assert len(fake.sent) == 1
    assert fake.name == "email"


async def test_through_a_service_a_send_that_may_have_arrived_is_not_repeated() -> None:
    async with Runtime() as rt:
        fake = FakeEmailService(rt.register("email", retry=fast_retry()))
        fake.fail_next(ConnectionResetError())
        with pytest.raises(ConnectionFailed):
            await fake.send_transactional_email(email())
    assert len(fake.calls) == 1
    assert fake.sent == []


async def test_through_a_service_a_slow_fake_times_out_and_sends_nothing() -> None:
    async with Runtime() as rt:
        fake = FakeEmailService(rt.register("email", retry=fast_retry(), timeout=1.0))
        fake.slow(5.0)
        with pytest.raises(ConnectionFailed) as info:
            await fake.send_transactional_email(email())
    assert "timed out" in info.value.last_error
    assert fake.sent == []


async def test_through_a_service_an_idempotency_key_charges_once() -> None:
    async with Runtime() as rt:
        fake = FakePaymentGateway(rt.register("payments", retry=fast_retry()))
        fake.fail_next(ConnectionResetError())  # the vendor may have seen it: retried for the key
        request = ChargeRequest(amount=Money(1999, "EUR"), payment_method="pm_card_visa")
        first = await fake.charge(request, idempotency_key="order-42")
        again = await fake.charge(request, idempotency_key="order-42")
    assert first == again
    assert len(fake.charges) == 1
    assert len(fake.calls) == 2  # the failed attempt and its retry; the repeat never arrived


# -- email -------------------------------------------------------------------------


async def test_bulk_email_reports_refusals_by_index() -> None:
    fake = FakeEmailService()
    fake.reject("bob@example.com")
    result = await fake.send_bulk_email(
        [email(), email("bob@example.com"), email("cy@example.com")]
    )
    assert (result.sent, result.failed) == (2, 1)
    assert [(e.index, e.status) for e in result.errors] == [(1, 400)]
    assert [m.to[0] for m in fake.sent] == ["ada@example.com", "cy@example.com"]
    with pytest.raises(ConfigError):
        await fake.send_bulk_email(email())  # type: ignore[arg-type]


@given(st.lists(st.booleans(), max_size=12))
def test_bulk_sent_plus_failed_is_what_was_given(refusals: list[bool]) -> None:
    async def run() -> None:
        fake = FakeEmailService()
        messages = [email(f"user{i}@example.com") for i in range(len(refusals))]
        for i, refuse in enumerate(refusals):
            if refuse:
                fake.reject(f"user{i}@example.com")
        result = await fake.send_bulk_email(messages)
        assert result.sent + result.failed == len(messages)
        assert [e.index for e in result.errors] == [i for i, r in enumerate(refusals) if r]
        assert len(fake.sent) == result.sent

    anyio.run(run)


async def test_statistics_count_this_tenants_mail_by_day() -> None:
    clock = Clock()
    fake = FakeEmailService(wall_clock=clock)
    fake.reject("bob@example.com")
    await fake.send_transactional_email(email())
    with pytest.raises(VendorError):
        await fake.send_transactional_email(email("bob@example.com"))
    await fake.send_transactional_email(email(), tenant_id="other")
    clock.now += 86_400
    await fake.send_transactional_email(email())
    day1 = await fake.get_statistics(date(2025, 1, 1), date(2025, 1, 1))
    both = await fake.get_statistics(date(2025, 1, 1), date(2025, 1, 2))
    assert (day1.requests, day1.delivered, day1.bounces) == (2, 1, 1)
    assert (both.requests, both.delivered) == (3, 2)
    assert both.bounce_rate == pytest.approx(1 / 3)
    with pytest.raises(ConfigError):
        await fake.get_statistics(date(2025, 1, 2), date(2025, 1, 1))


async def test_validate_address() -> None:
    fake = FakeEmailService()
    fake.reject("bob@example.com", "does not exist")
    assert (await fake.validate_address("ada@example.com")).valid
    bob = await fake.validate_address("BOB@example.com")
    assert (bob.valid, bob.reason) == (False, "does not exist")
    assert not (await fake.validate_address("nonsense")).valid


# -- SMS -------------------------------------------------------------------------


async def test_sms_send_bulk_lookup_and_balance() -> None:
    fake = FakeSmsService(balance=AccountBalance(balance=Decimal("-1.50"), currency="EUR"))
    fake.reject("+14155550199")
    receipt = await fake.send(SmsMessage(to="+14155550123", body="hi"))
    assert receipt.message_id.startswith("SM")
    assert len(receipt.message_id) == 34  # a Twilio sid's shape
    result = await fake.send_bulk(
        [SmsMessage(to="+14155550199", body="a"), SmsMessage(to="+442071838750", body="b")]
    )
    assert (result.sent, result.failed, result.errors[0].index) == (1, 1, 0)
    assert [m.to for m in fake.sent] == ["+14155550123", "+442071838750"]
    assert (await fake.validate_phone_number("+14155550123")).valid
    assert not (await fake.validate_phone_number("+14155550199")).valid
    assert not (await fake.validate_phone_number("0301234567", country_code="DE")).valid
    with pytest.raises(ConfigError):
        await fake.validate_phone_number("0301234567", country_code="de")
    assert (await fake.check_balance()).balance == Decimal("-1.50")


# -- payments ----------------------------------------------------------------------


def charge(amount: int = 1000, method: str = "pm_card_visa") -> ChargeRequest:
    return ChargeRequest(amount=Money(amount, "USD"), payment_method=method)


async def test_partial_refunds_up_to_the_charge() -> None:
    fake = FakePaymentGateway()
    paid = await fake.charge(charge(1000))
    assert (paid.status, paid.amount) == ("succeeded", Money(1000, "USD"))
    first = await fake.refund(RefundRequest(payment_id=paid.id, amount=Money(300, "USD")))
    with pytest.raises(VendorError, match="exceeds the 700 left"):
        await fake.refund(RefundRequest(payment_id=paid.id, amount=Money(701, "USD")))
    rest = await fake.refund(RefundRequest(payment_id=paid.id))
    assert (first.amount.amount, rest.amount.amount) == (300, 700)
    assert fake.refunded(paid.id) == 1000
    with pytest.raises(VendorError, match="fully refunded"):
        await fake.refund(RefundRequest(payment_id=paid.id))
    with pytest.raises(VendorError) as info:
        await fake.refund(RefundRequest(payment_id="ch_unknown"))
    assert info.value.status == 404


@given(st.lists(st.integers(min_value=1, max_value=600), max_size=8))
def test_refunds_never_exceed_the_charge(amounts: list[int]) -> None:
    async def run() -> None:
        fake = FakePaymentGateway()
        paid = await fake.charge(charge(1000))
        refunded = 0
        for amount in amounts:
            request = RefundRequest(payment_id=paid.id, amount=Money(amount, "USD"))
            if refunded + amount <= 1000:
                await fake.refund(request)
                refunded += amount
            else:
                with pytest.raises(VendorError):
                    await fake.refund(request)
        assert fake.refunded(paid.id) == refunded == sum(r.amount.amount for r in fake.refunds)

    anyio.run(run)


async def test_refunds_are_checked_for_currency_and_tenant() -> None:
    fake = FakePaymentGateway()
    paid = await fake.charge(charge(1000), tenant_id="acme")
    with pytest.raises(VendorError, match="refund in EUR"):
        await fake.refund(
            RefundRequest(payment_id=paid.id, amount=Money(100, "EUR")), tenant_id="acme"
        )
    with pytest.raises(VendorError) as info:
        await fake.refund(RefundRequest(payment_id=paid.id), tenant_id="globex")
    assert info.value.status == 404
    assert fake.refunds == []


async def test_a_declined_card_raises_payment_declined_and_replays_for_its_key() -> None:
    fake = FakePaymentGateway()
    fake.decline("pm_card_chargeDeclined", "insufficient_funds", "Not enough money.")
    for _ in range(2):
        with pytest.raises(PaymentDeclined) as info:
            await fake.charge(charge(method="pm_card_chargeDeclined"), idempotency_key="k1")
        assert info.value.decline_code == "insufficient_funds"
    assert fake.charges == []


async def test_an_idempotency_key_replays_and_refuses_other_parameters() -> None:
    fake = FakePaymentGateway()
    first = await fake.charge(charge(1000), idempotency_key="order-1")
    assert await fake.charge(charge(1000), idempotency_key="order-1") == first
    with pytest.raises(VendorError, match="different parameters") as info:
        await fake.charge(charge(2000), idempotency_key="order-1")
    assert info.value.status == 400
    other_tenant = await fake.charge(charge(1000), idempotency_key="order-1", tenant_id="t2")
    assert other_tenant.id != first.id
    assert len(fake.charges) == 2
    with pytest.raises(ConfigError):
        await fake.charge(charge(), idempotency_key="")


async def test_authorise_then_capture_part_then_refund_the_capture() -> None:
    fake = FakePaymentGateway()
    intent = await fake.create_payment_intent(
        PaymentIntentRequest(
            amount=Money(5000, "USD"), capture_method="manual", payment_method="pm_card_visa"
        )
    )
    assert (intent.status, intent.client_secret) == ("requires_capture", f"{intent.id}_secret_fake")
    with pytest.raises(VendorError, match="cannot capture"):
        await fake.capture_authorization(
            CaptureRequest(authorization_id=intent.id, amount=Money(5001, "USD"))
        )
    captured = await fake.capture_authorization(
        CaptureRequest(authorization_id=intent.id, amount=Money(3000, "USD"))
    )
    assert (captured.status, captured.amount.amount) == ("succeeded", 3000)
    assert fake.intents[intent.id].status == "succeeded"
    with pytest.raises(VendorError, match="not capturable"):
        await fake.capture_authorization(CaptureRequest(authorization_id=intent.id))
    refund = await fake.refund(RefundRequest(payment_id=captured.id))
    assert refund.amount.amount == 3000


async def test_payment_intents_without_a_method_wait_for_the_customer() -> None:
    fake = FakePaymentGateway()
    waiting = await fake.create_payment_intent(PaymentIntentRequest(amount=Money(100, "USD")))
    assert (waiting.status, waiting.provider_status) == (
        "requires_action",
        "requires_payment_method",
    )
    with pytest.raises(VendorError, match="not capturable"):
        await fake.capture_authorization(CaptureRequest(authorization_id=waiting.id))
    automatic = await fake.create_payment_intent(
        PaymentIntentRequest(amount=Money(100, "USD"), payment_method="pm_card_visa")
    )
    assert automatic.status == "succeeded"
    await fake.refund(RefundRequest(payment_id=automatic.id))
    with pytest.raises(VendorError) as info:
        await fake.capture_authorization(CaptureRequest(authorization_id="pi_missing"))
    assert info.value.status == 404


# -- storage -----------------------------------------------------------------------


async def test_storage_upload_download_delete_per_tenant() -> None:
    fake = FakeCloudStorage()
    stored = await fake.upload(
        FileUpload(path="invoices/1.pdf", content=b"%PDF-1", content_type="application/pdf"),
        tenant_id="acme",
    )
    assert (stored.size, stored.content_type) == (6, "application/pdf")
    assert stored.etag == f'"{hashlib.md5(b"%PDF-1").hexdigest()}"'  # S3's ETag of one part
    got = await fake.download("invoices/1.pdf", tenant_id="acme")
    assert (got.content, got.etag) == (b"%PDF-1", stored.etag)
    with pytest.raises(VendorError) as info:
        await fake.download("invoices/1.pdf", tenant_id="globex")
    assert info.value.status == 404
    await fake.delete("invoices/1.pdf", tenant_id="acme")
    await fake.delete("invoices/1.pdf", tenant_id="acme")  # absent: not an error
    assert fake.objects == {}
    with pytest.raises(ConfigError):
        await fake.download("../etc/passwd")


async def test_signed_urls_grant_access_until_they_expire() -> None:
    clock = Clock()
    fake = FakeCloudStorage(wall_clock=clock)
    await fake.upload(FileUpload(path="a b/report.csv", content=b"1,2"))
    signed = await fake.generate_signed_url("a b/report.csv", expires_in=60)
    assert signed.expires_at == int(JAN_1) + 60
    assert fake.open_signed_url(signed.url).content == b"1,2"
    with pytest.raises(VendorError, match="does not match"):
        fake.open_signed_url(signed.url.replace("report", "secret"))
    upload = await fake.generate_signed_url("new.bin", method="PUT", tenant_id="t1")
    fake.open_signed_url(upload.url, content=b"\x00\x01")
    assert (await fake.download("new.bin", tenant_id="t1")).content == b"\x00\x01"
    clock.now += 60
    with pytest.raises(VendorError, match="expired") as info:
        fake.open_signed_url(signed.url)
    assert info.value.status == 403
    with pytest.raises(ConfigError):
        await fake.generate_signed_url("a", method="DELETE")  # type: ignore[arg-type]


# -- shipping ----------------------------------------------------------------------


def shipment(grams: int = 1500, service: str | None = None) -> ShipmentRequest:
    home = Address(name="Ada", line1="1 Main St", city="Berlin", country="DE")
    away = Address(name="Bob", line1="2 Rue", city="Paris", country="FR")
    return ShipmentRequest(
        origin=home, destination=away, parcels=[Parcel(weight_grams=grams)], service=service
    )


async def test_rates_are_priced_by_started_kilogram_cheapest_first() -> None:
    fake = FakeShippingProvider(currency="EUR")
    rates = await fake.calculate_rates(shipment(1500))
    assert [(r.service, r.cost) for r in rates] == [
        ("standard", Money(700, "EUR")),
        ("express", Money(2000, "EUR")),
    ]


async def test_a_shipment_is_bought_tracked_and_cancelled_before_transit() -> None:
    clock = Clock()
    fake = FakeShippingProvider(wall_clock=clock)
    cheap = await fake.create_shipment(shipment())
    fast = await fake.create_shipment(shipment(service="express"))
    assert (cheap.service, fast.service) == ("standard", "express")
    with pytest.raises(VendorError, match="no service overnight"):
        await fake.create_shipment(shipment(service="overnight"))
    clock.now += 3600
    fake.update_tracking(
        fast.tracking_number, "in_transit", location="Leipzig", estimated_delivery=date(2025, 1, 3)
    )
    info = await fake.track_shipment(fast.tracking_number)
    assert (info.status, info.location, info.estimated_delivery) == (
        "in_transit",
        "Leipzig",
        date(2025, 1, 3),
    )
    assert [e.status for e in info.events] == ["pre_transit", "in_transit"]
    assert info.events[1].at - info.events[0].at == (
        datetime.fromtimestamp(JAN_1 + 3600, UTC) - datetime.fromtimestamp(JAN_1, UTC)
    )
    refused = await fake.cancel_shipment(fast.tracking_number)
    assert (refused.cancelled, refused.reason) == (False, "shipment is in transit")
    cancelled = await fake.cancel_shipment(cheap.tracking_number)
    assert cancelled.cancelled
    assert (await fake.cancel_shipment(cheap.tracking_number)).cancelled
    assert fake.shipments[cheap.tracking_number].status == "cancelled"
    with pytest.raises(VendorError) as info_error:
        await fake.track_shipment(cheap.tracking_number, tenant_id="other")
    assert info_error.value.status == 404
    with pytest.raises(ConfigError):
        fake.update_tracking(cheap.tracking_number, "lost")  # type: ignore[arg-type]


def test_a_rate_card_is_checked() -> None:
    with pytest.raises(ConfigError):
        FakeShippingProvider(rates={})
    with pytest.raises(ConfigError):
        FakeShippingProvider(rates={"free": (0, 0, 1)})


# -- FakeTransport -----------------------------------------------------------------


async def test_fake_transport_answers_script_then_handler_then_200() -> None:
    seen: list[str] = []

    async def handler(request: HttpRequest) -> HttpResponse:
        seen.append(request.url)
        return HttpResponse(status=201, content=b"made")

    fake = FakeTransport(HttpResponse(status=202), TransportFailure("down", sent=False))
    request = HttpRequest(method="GET", url="https://api.example.com/x")
    assert (await fake.send(request, "t1")).status == 202
    with pytest.raises(TransportFailure):
        await fake.send(request)
    fake.handler = handler
    assert (await fake.send(request)).content == b"made"
    fake.handler = lambda request: HttpResponse(status=204)
    assert (await fake.send(request)).status == 204
    fake.handler = None
    assert (await fake.send(request)).status == 200
    assert [call.tenant_id for call in fake.calls] == ["t1", None, None, None, None]
    assert fake.requests == [request] * 5
    assert seen == ["https://api.example.com/x"]
    with pytest.raises(ConfigError):
        FakeTransport("not a response")  # type: ignore[arg-type]


async def test_fake_transport_behind_a_service() -> None:
    fake = FakeTransport(HttpResponse(status=503), delay=0.5)
    async with Runtime() as rt:
        service = rt.register("api", transport=lambda: fake, retry=fast_retry())
        start = anyio.current_time()
        response = await service.request(HttpRequest(method="GET", url="https://api.example.com"))
        elapsed = anyio.current_time() - start
    assert response.status == 200
    assert len(fake.requests) == 2
    assert elapsed == pytest.approx(0.5 + 0.1 + 0.5)
    assert fake.closed
