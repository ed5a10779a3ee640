"""The service protocols' input and result structs: every rule, and the fakes' conformance."""

from __future__ import annotations

import inspect
import string
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector._bulk import BulkFailure, BulkResult
from connector._email import (
    Attachment,
    EmailMessage,
    EmailReceipt,
    EmailService,
    EmailStatistics,
)
from connector._errors import ConfigError
from connector._formats import check_email_address, check_phone_number, http_url
from connector._payments import (
    CaptureRequest,
    ChargeRequest,
    Money,
    PaymentGateway,
    PaymentIntent,
    PaymentIntentRequest,
    RefundRequest,
    check_idempotency_key,
    currency_exponent,
)
from connector._shipping import (
    Address,
    Parcel,
    ShipmentRequest,
    ShippingProvider,
    TrackingEvent,
)
from connector._sms import AccountBalance, SmsMessage, SmsService
from connector._storage import CloudStorage, FileUpload, SignedUrl, check_lifetime, check_path
from connector.testing import (
    FakeCloudStorage,
    FakeEmailService,
    FakePaymentGateway,
    FakeShippingProvider,
    FakeSmsService,
)


def refused(field: str, build: Any, *args: Any, **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build(*args, **kwargs)
    assert info.value.field == field, info.value
    return info.value


# -- the protocols ---------------------------------------------------------------


PROTOCOL_METHODS = [
    (
        EmailService,
        FakeEmailService,
        {"send_transactional_email", "send_bulk_email", "validate_address", "get_statistics"},
    ),
    (SmsService, FakeSmsService, {"send", "send_bulk", "validate_phone_number", "check_balance"}),
    (
        PaymentGateway,
        FakePaymentGateway,
        {"charge", "refund", "create_payment_intent", "capture_authorization"},
    ),
    (CloudStorage, FakeCloudStorage, {"upload", "download", "delete", "generate_signed_url"}),
    (
        ShippingProvider,
        FakeShippingProvider,
        {"create_shipment", "track_shipment", "calculate_rates", "cancel_shipment"},
    ),
]


@pytest.mark.parametrize(("protocol", "fake", "methods"), PROTOCOL_METHODS)
def test_each_protocol_has_the_originals_operations_and_its_fake_matches(
    protocol: type, fake: type, methods: set[str]
) -> None:
    declared = {name for name in vars(protocol) if not name.startswith("_")}
    assert declared == methods
    assert isinstance(fake(), protocol)
    for method in methods:
        wanted = inspect.signature(getattr(protocol, method))
        got = inspect.signature(getattr(fake, method))
        assert list(got.parameters) == list(wanted.parameters), method
        for name, parameter in wanted.parameters.items():
            assert got.parameters[name].kind == parameter.kind, (method, name)
            assert got.parameters[name].default == parameter.default, (method, name)
        assert inspect.iscoroutinefunction(getattr(fake, method))


# -- email -----------------------------------------------------------------------


def message(**fields: Any) -> EmailMessage:
    base: dict[str, Any] = {"to": ["ada@example.com"], "subject": "Hello", "text": "Hi"}
    return EmailMessage(**{**base, **fields})


def test_a_message_keeps_tuples_and_copies_so_it_cannot_change_after_checking() -> None:
    to = ["ada@example.com"]
    headers = {"X-Campaign": "welcome"}
    sent = message(to=to, cc=["bob@example.org"], headers=headers, tags=["onboarding"])
    to.append("not an address")
    headers["X-Evil"] = "a\r\nBcc: everyone@example.com"
    assert sent.to == ("ada@example.com",)
    assert sent.headers == {"X-Campaign": "welcome"}
    assert sent.recipients == ("ada@example.com", "bob@example.org")
    assert isinstance(sent.tags, tuple)
    assert hash(sent.to)


def test_a_message_round_trips_through_msgspec() -> None:
    sent = message(
        html="<p>Hi</p>",
        attachments=[Attachment(filename="a.pdf", content=b"%PDF", content_type="application/pdf")],
        template_data={"name": "Ada", "items": [1, 2]},
        metadata={"order": "42"},
    )
    assert msgspec.json.decode(msgspec.json.encode(sent), type=EmailMessage) == sent
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(sent), type=EmailMessage) == sent


def test_a_template_may_supply_subject_and_body() -> None:
    sent = EmailMessage(to=["ada@example.com"], template_id="d-123", template_data={"a": 1})
    assert sent.subject is None
    assert sent.text is None


@pytest.mark.parametrize(
    ("field", "fields"),
    [
        ("to", {"to": []}),
        ("to", {"to": "ada@example.com"}),
        ("to", {"to": ["ada at example.com"]}),
        ("cc", {"cc": ["bob@example"]}),
        ("bcc", {"bcc": ["ADA@example.com"]}),
        ("cc", {"cc": ["bob@example.org", "Bob@Example.org"]}),
        ("to", {"to": [f"user{n}@example.com" for n in range(1001)]}),
        ("subject", {"subject": None}),
        ("subject", {"subject": "Hi\r\nBcc: all@example.com"}),
        ("subject", {"subject": ""}),
        ("text", {"text": None}),
        ("sender", {"sender": "noreply"}),
        ("reply_to", {"reply_to": "a@b"}),
        ("sender_name", {"sender_name": "Shop\nX-Injected: 1"}),
        ("headers", {"headers": {"Bad Name": "x"}}),
        ("headers['X-A']", {"headers": {"X-A": "one\ntwo"}}),
        ("tags", {"tags": "onboarding"}),
        ("tags", {"tags": ["ok", ""]}),
        ("attachments", {"attachments": [b"raw"]}),
        ("template_data", {"template_data": {"when": object()}}),
        ("template_id", {"template_id": ""}),
        ("metadata['n']", {"metadata": {"n": 1}}),
    ],
)
def test_a_bad_message_names_its_field(field: str, fields: dict[str, Any]) -> None:
    refused(field, message, **fields)


@pytest.mark.parametrize(
    ("field", "fields"),
    [
        ("filename", {"filename": "a\r\n.pdf"}),
        ("content", {"content": "text"}),
        ("content_type", {"content_type": "pdf"}),
        ("content_id", {"content_id": "x\ny"}),
    ],
)
def test_a_bad_attachment_names_its_field(field: str, fields: dict[str, Any]) -> None:
    base: dict[str, Any] = {"filename": "a.pdf", "content": b"x"}
    refused(field, Attachment, **{**base, **fields})


def test_a_thousand_recipients_across_to_cc_bcc_are_allowed() -> None:
    addresses = [f"user{n}@example.com" for n in range(1000)]
    sent = message(to=addresses[:500], cc=addresses[500:900], bcc=addresses[900:])
    assert len(sent.recipients) == 1000


@given(st.emails())
def test_every_rfc_email_of_dot_atom_form_is_accepted(address: str) -> None:
    assert check_email_address(address) == address


@given(st.one_of(st.emails(), st.text(), st.text(alphabet=string.printable)))
def test_an_accepted_address_cannot_smuggle_a_second_one(value: str) -> None:
    try:
        check_email_address(value, "to")
    except ConfigError:
        return
    local, domain = value.split("@")  # exactly one @
    assert len(value) <= 254
    assert len(local) <= 64
    assert "." in domain
    assert value.isascii()
    assert not set(value) & set(' \t\r\n,;<>"()[]\\:')


@pytest.mark.parametrize(
    "address", ["a@b.c", "a@localhost", "a..b@example.com", ".a@example.com", "a@-x.com", "é@x.io"]
)
def test_malformed_addresses_are_refused(address: str) -> None:
    refused("address", check_email_address, address)


def test_statistics_rates_and_checks() -> None:
    day = date(2025, 1, 1)
    stats = EmailStatistics(
        start=day, end=day, requests=10, delivered=8, bounces=2, unique_opens=4, unique_clicks=2
    )
    assert stats.bounce_rate == 0.2
    assert stats.open_rate == 0.5
    assert stats.click_rate == 0.25
    assert EmailStatistics(start=day, end=day).open_rate == 0.0
    refused("end", EmailStatistics, start=day, end=date(2024, 12, 31))
    refused("start", EmailStatistics, start=datetime(2025, 1, 1, tzinfo=UTC), end=day)
    refused("bounces", EmailStatistics, start=day, end=day, bounces=-1)


# -- results shared by bulk sends ---------------------------------------------------


@given(st.lists(st.booleans(), max_size=30))
def test_bulk_result_counts_match_what_it_lists(outcomes: list[bool]) -> None:
    receipts = tuple(EmailReceipt(message_id=str(i)) for i, ok in enumerate(outcomes) if ok)
    errors = tuple(
        BulkFailure(index=i, reason="refused", status=400)
        for i, ok in enumerate(outcomes)
        if not ok
    )
    result = BulkResult.of(receipts, errors)
    assert result.sent + result.failed == len(outcomes)
    assert msgspec.json.decode(msgspec.json.encode(result), type=BulkResult[EmailReceipt]) == result


def test_bulk_result_refuses_inconsistent_counts() -> None:
    receipt = EmailReceipt(message_id="1")
    failure = BulkFailure(index=0, reason="refused")
    refused("receipts", BulkResult, sent=2, failed=0, receipts=(receipt,))
    refused("errors", BulkResult, sent=0, failed=2, errors=(failure,))
    refused("errors", BulkResult, sent=0, failed=2, errors=(failure, failure))
    refused("errors", BulkResult, sent=1, failed=1, receipts=(receipt,), errors=(
        BulkFailure(index=2, reason="refused"),))  # fmt: skip
    refused("status", BulkFailure, index=0, reason="x", status=99)
    refused("index", BulkFailure, index=-1, reason="x")


# -- SMS -------------------------------------------------------------------------


@given(st.from_regex(r"\+[1-9][0-9]{1,14}", fullmatch=True))
def test_every_e164_number_is_accepted(number: str) -> None:
    assert check_phone_number(number) == number
    assert SmsMessage(to=number, body="hi").to == number


@pytest.mark.parametrize(
    "number", ["14155550123", "+0123", "+1", "+1234567890123456", "+1 415 555", "+١٢٣٤"]
)
def test_numbers_not_in_e164_are_refused(number: str) -> None:
    refused("to", SmsMessage, to=number, body="hi")


@pytest.mark.parametrize("sender", ["+14155550123", "12345", "ACME", "Shop 24"])
def test_senders_may_be_numbers_short_codes_or_alphanumeric_ids(sender: str) -> None:
    assert SmsMessage(to="+14155550123", body="hi", sender=sender).sender == sender


@pytest.mark.parametrize(
    ("field", "fields"),
    [
        ("body", {"body": None}),
        ("body", {"body": "x" * 1601}),
        ("media_urls", {"media_urls": ["https://example.com/a.png"] * 11}),
        ("media_urls", {"media_urls": ["ftp://example.com/a.png"]}),
        ("media_urls", {"media_urls": "https://example.com/a.png"}),
        ("sender", {"sender": "+0123"}),
        ("sender", {"sender": "TOO LONG NAME"}),
        ("sender", {"sender": "12"}),
        ("status_callback", {"status_callback": "example.com/cb"}),
        ("messaging_service_id", {"messaging_service_id": ""}),
    ],
)
def test_a_bad_sms_names_its_field(field: str, fields: dict[str, Any]) -> None:
    refused(field, SmsMessage, **{"to": "+14155550123", "body": "hi", **fields})


def test_media_alone_is_a_message() -> None:
    sms = SmsMessage(to="+14155550123", media_urls=["https://example.com/cat.gif"])
    assert sms.media_urls == ("https://example.com/cat.gif",)


def test_balance_may_be_negative_but_its_currency_is_checked() -> None:
    assert AccountBalance(balance=Decimal("-0.27"), currency="USD").balance < 0
    refused("currency", AccountBalance, balance=Decimal(1), currency="usd")
    refused("balance", AccountBalance, balance=1.5, currency="USD")


# -- payments --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("money", "expected"),
    [
        (Money.of("99.99", "USD"), Money(9999, "USD")),
        (Money.of(Decimal("500"), "JPY"), Money(500, "JPY")),
        (Money.of("5.125", "KWD"), Money(5125, "KWD")),
        (Money.of(12, "EUR"), Money(1200, "EUR")),
        (Money.of("1.2000", "EUR"), Money(120, "EUR")),
    ],
)
def test_money_from_major_units_is_exact(money: Money, expected: Money) -> None:
    assert money == expected


@pytest.mark.parametrize(
    ("field", "args"),
    [
        ("amount", (0, "USD")),
        ("amount", (-5, "USD")),
        ("amount", (True, "USD")),
        ("amount", (9.99, "USD")),
        ("amount", (2**63, "USD")),
        ("currency", (100, "usd")),
        ("currency", (100, "US")),
        ("currency", (100, "ÜSD")),
    ],
)
def test_bad_money_names_its_field(field: str, args: tuple[Any, ...]) -> None:
    refused(field, Money, *args)


@pytest.mark.parametrize(
    ("value", "currency"), [("1.5", "JPY"), ("0.001", "USD"), (1.5, "USD"), ("abc", "USD")]
)
def test_money_of_refuses_what_the_currency_cannot_hold(value: Any, currency: str) -> None:
    refused("amount", Money.of, value, currency)


@given(
    st.integers(min_value=1, max_value=2**63 - 1),
    st.one_of(
        st.sampled_from(["USD", "JPY", "KWD", "CLF", "ISK"]),
        st.from_regex(r"[A-Z]{3}", fullmatch=True),
    ),
)
def test_money_round_trips_through_major_units(amount: int, currency: str) -> None:
    money = Money(amount, currency)
    assert Money.of(money.to_decimal(), currency) == money
    exponent = money.to_decimal().as_tuple().exponent
    assert isinstance(exponent, int)
    assert exponent >= -currency_exponent(currency)


def test_currency_exponents_follow_iso_4217() -> None:
    assert [currency_exponent(c) for c in ("USD", "JPY", "KWD", "CLF", "ISK")] == [2, 0, 3, 4, 0]


@pytest.mark.parametrize(
    ("field", "build"),
    [
        ("payment_method", lambda: ChargeRequest(amount=Money(100, "USD"), payment_method="")),
        ("amount", lambda: ChargeRequest(amount=100, payment_method="pm_1")),  # type: ignore[arg-type]
        (
            "receipt_email",
            lambda: ChargeRequest(
                amount=Money(100, "USD"), payment_method="pm_1", receipt_email="nope"
            ),
        ),
        (
            "metadata",
            lambda: ChargeRequest(
                amount=Money(100, "USD"), payment_method="pm_1", metadata={"k" * 41: "v"}
            ),
        ),
        (
            "metadata",
            lambda: ChargeRequest(
                amount=Money(100, "USD"), payment_method="pm_1", metadata={"a[b]": "v"}
            ),
        ),
        (
            "metadata",
            lambda: ChargeRequest(
                amount=Money(100, "USD"),
                payment_method="pm_1",
                metadata={str(n): "v" for n in range(51)},
            ),
        ),
        (
            "metadata['k']",
            lambda: ChargeRequest(
                amount=Money(100, "USD"), payment_method="pm_1", metadata={"k": "v" * 501}
            ),
        ),
        (
            "capture_method",
            lambda: PaymentIntentRequest(amount=Money(100, "USD"), capture_method="later"),  # type: ignore[arg-type]
        ),
        ("reason", lambda: RefundRequest(payment_id="ch_1", reason="changed_mind")),  # type: ignore[arg-type]
        ("amount", lambda: RefundRequest(payment_id="ch_1", amount=5)),  # type: ignore[arg-type]
        ("payment_id", lambda: RefundRequest(payment_id="")),
        ("authorization_id", lambda: CaptureRequest(authorization_id="pi\n1")),
    ],
)
def test_a_bad_payment_request_names_its_field(field: str, build: Any) -> None:
    refused(field, build)


def test_idempotency_keys_are_checked_the_same_for_every_gateway() -> None:
    assert check_idempotency_key(None) is None
    assert check_idempotency_key("order-42") == "order-42"
    refused("idempotency_key", check_idempotency_key, "")
    refused("idempotency_key", check_idempotency_key, "k" * 256)
    refused("idempotency_key", check_idempotency_key, 42)


def test_a_payment_intent_keeps_its_client_secret_out_of_repr() -> None:
    intent = PaymentIntent(
        id="pi_1",
        status="requires_action",
        amount=Money(100, "USD"),
        client_secret="pi_1_secret_abcdef",
    )
    assert "pi_1_secret_abcdef" not in repr(intent)
    assert "pi_1" in repr(intent)
    assert intent.client_secret == "pi_1_secret_abcdef"


# -- storage ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["invoices/2025/001.pdf", "a", "é" * 512, "dir/.hidden"])
def test_object_paths_accepted(path: str) -> None:
    assert check_path(path) == path


@pytest.mark.parametrize(
    "path", ["", "/etc/passwd", "a/../b", "../a", "a/./b", "a/\x00b", "é" * 513, "x" * 1025]
)
def test_object_paths_refused(path: str) -> None:
    refused("path", check_path, path)


def test_upload_and_signed_url_rules() -> None:
    refused("content", FileUpload, path="a", content="text")
    refused("content_type", FileUpload, path="a", content=b"", content_type="text")
    refused("metadata", FileUpload, path="a", content=b"", metadata={"bad key": "v"})
    refused("metadata['k']", FileUpload, path="a", content=b"", metadata={"k": "a\nb"})
    refused("expires_in", check_lifetime, 0)
    refused("expires_in", check_lifetime, 7 * 24 * 3600 + 1)
    url = SignedUrl(url="https://b.example/a.pdf?sig=topsecret", expires_at=1.0)
    assert "topsecret" not in repr(url)
    assert "https://b.example/a.pdf" in repr(url)


def test_a_url_error_never_shows_the_query() -> None:
    error = refused("url", http_url, "url", "ftp://hooks.example.com/x?token=hunter2")
    assert "hunter2" not in str(error)
    assert "hooks.example.com" in str(error)


# -- shipping --------------------------------------------------------------------


def address(**fields: Any) -> Address:
    base: dict[str, Any] = {"name": "Ada", "line1": "1 Main St", "city": "Berlin", "country": "DE"}
    return Address(**{**base, **fields})


@pytest.mark.parametrize(
    ("field", "fields"),
    [
        ("country", {"country": "de"}),
        ("country", {"country": "DEU"}),
        ("name", {"name": ""}),
        ("line1", {"line1": "1 Main St\r\nX"}),
        ("phone", {"phone": "030 1234"}),
        ("email", {"email": "ada"}),
        ("postal_code", {"postal_code": ""}),
    ],
)
def test_a_bad_address_names_its_field(field: str, fields: dict[str, Any]) -> None:
    refused(field, address, **fields)


def test_parcels_and_shipments() -> None:
    refused("weight_grams", Parcel, weight_grams=0)
    refused("weight_grams", Parcel, weight_grams=1.5)
    refused("width_mm", Parcel, weight_grams=10, length_mm=10)
    refused("height_mm", Parcel, weight_grams=10, length_mm=10, width_mm=10, height_mm=0)
    assert Parcel(weight_grams=10, length_mm=1, width_mm=2, height_mm=3).height_mm == 3
    refused("parcels", ShipmentRequest, origin=address(), destination=address(), parcels=[])
    refused(
        "parcels",
        ShipmentRequest,
        origin=address(),
        destination=address(),
        parcels=Parcel(weight_grams=1),
    )
    refused("destination", ShipmentRequest, origin=address(), destination="Berlin", parcels=[])
    request = ShipmentRequest(
        origin=address(),
        destination=address(city="Paris", country="FR"),
        parcels=[Parcel(weight_grams=700), Parcel(weight_grams=800)],
    )
    assert request.weight_grams == 1500
    assert isinstance(request.parcels, tuple)


def test_tracking_events_need_an_aware_time() -> None:
    refused("at", TrackingEvent, at=datetime(2025, 1, 1), status="in_transit", description="x")
    event = TrackingEvent(at=datetime(2025, 1, 1, tzinfo=UTC), status="in_transit", description="x")
    assert event.status == "in_transit"
