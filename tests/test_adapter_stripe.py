"""The Stripe adapter against `FakeStripe` over real loopback HTTP, and its encoders.

The fake checks what Stripe documents (bearer key, form body with bracketed
keys, Stripe-Version, amounts in Stripe's unit, idempotency) and records every
request, so these tests assert on what Stripe would have received. Time is
real but short: per-attempt timeouts of 0.3 s and retry delays of 10 ms.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import anyio
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector import (
    Breaker,
    CircuitBreakerOpen,
    ConfigError,
    PaymentDeclined,
    RateLimit,
    Retry,
    Runtime,
    VendorError,
)
from connector._credential_manager import CredentialManager
from connector._credentials import AuthMethod, Credentials
from connector._credstore_memory import MemoryCredentialStore
from connector._logrecord import LogFilters, LogStatus
from connector._logstore_memory import MemoryLogStore
from connector._payments import (
    CaptureRequest,
    ChargeRequest,
    Money,
    PaymentGateway,
    PaymentIntentRequest,
    RefundRequest,
    currency_exponent,
)
from connector._retry import DEFAULT_RETRYABLE_STATUSES
from connector.adapters._stripe import (
    DEFAULT_STRIPE_API_VERSION,
    StripePaymentGateway,
    _error_fields,
    stripe_idempotency_key,
)
from connector.adapters._stripe_encoding import (
    FormValue,
    encode_form,
    form_pairs,
    from_stripe_amount,
    to_stripe_amount,
)
from connector.testing import FakeStripe, serve_asgi
from connector.testing._fake_stripe import decode_form

pytestmark = pytest.mark.anyio

API_KEY = "sk_test_51Hx9fakeKEYforTESTS0123456789"
FAST = Retry(attempts=3, initial_delay=0.01, max_delay=0.05, jitter="none")
PATIENT_409 = Retry(
    attempts=8,
    initial_delay=0.1,
    multiplier=1.0,
    jitter="none",
    retryable_statuses=DEFAULT_RETRYABLE_STATUSES | {409},
)
NOW = 1_750_000_000.0


class Clock:
    """A settable clock for the fake's idempotency store."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


CLOCK = Clock()


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[FakeStripe, str]]:
    fake = FakeStripe(API_KEY, clock=CLOCK)
    with serve_asgi(fake.app) as url:
        yield fake, url


@pytest.fixture
def stripe(server: tuple[FakeStripe, str]) -> FakeStripe:
    server[0].reset()
    CLOCK.now = 0.0
    return server[0]


@pytest.fixture
def url(server: tuple[FakeStripe, str]) -> str:
    return server[1]


async def manager(key: str = API_KEY) -> CredentialManager:
    store = MemoryCredentialStore()
    await store.put(
        "stripe", None, Credentials(auth_method=AuthMethod.BEARER_TOKEN, data={"token": key})
    )
    return CredentialManager(store, {}, clock=lambda: NOW)


async def gateway(rt: Runtime, url: str, key: str = API_KEY, **policy: Any) -> StripePaymentGateway:
    policy.setdefault("timeout", 0.3)
    policy.setdefault("retry", FAST)
    return StripePaymentGateway(rt, credentials=await manager(key), base_url=url, **policy)


def usd(cents: int) -> Money:
    return Money(cents, "USD")


def charge_of(amount: Money, payment_method: str = "pm_card_visa", **fields: Any) -> ChargeRequest:
    return ChargeRequest(amount=amount, payment_method=payment_method, **fields)


def params(stripe: FakeStripe, index: int = -1) -> dict[str, Any]:
    return decode_form(stripe.received[index].body)


def keys_sent(stripe: FakeStripe) -> list[str | None]:
    return [request.header("idempotency-key") for request in stripe.received]


# -- what a charge sends ----------------------------------------------------------------


async def test_a_charge_is_one_form_encoded_confirmed_payment_intent(
    stripe: FakeStripe, url: str
) -> None:
    async with Runtime() as rt:
        gw = await gateway(rt, url)
        assert isinstance(gw, PaymentGateway)
        result = await gw.charge(
            charge_of(
                usd(500),
                customer_id="cus_123",
                receipt_email="ada@example.com",
                metadata={"order": "A-1", "note": "a&b=c"},
            ),
            idempotency_key="order-1",
        )
    (received,) = stripe.received
    assert (received.method, received.path) == ("POST", "/v1/payment_intents")
    assert received.header("authorization") == f"Bearer {API_KEY}"
    assert received.header("content-type") == "application/x-www-form-urlencoded"
    assert received.header("stripe-version") == DEFAULT_STRIPE_API_VERSION
    assert received.header("idempotency-key") == "charge:order-1"
    assert b"metadata%5Border%5D=A-1" in received.body  # bracketed keys, percent-encoded
    assert params(stripe) == {
        "amount": "500",
        "currency": "usd",
        "payment_method": "pm_card_visa",
        "confirm": "true",
        "capture_method": "automatic",
        "automatic_payment_methods": {"enabled": "true", "allow_redirects": "never"},
        "customer": "cus_123",
        "receipt_email": "ada@example.com",
        "metadata": {"order": "A-1", "note": "a&b=c"},
        "expand": {"0": "latest_charge"},
    }
    (intent,) = stripe.payment_intents.values()
    assert result.id == intent["id"]
    assert result.status == "succeeded"
    assert result.provider_status == "succeeded"
    assert result.amount == usd(500)
    (charge,) = stripe.charges.values()
    assert result.receipt_url == charge["receipt_url"] is not None


async def test_a_card_token_is_sent_as_payment_method_data(stripe: FakeStripe, url: str) -> None:
    async with Runtime() as rt:
        gw = await gateway(rt, url)
        result = await gw.charge(charge_of(usd(700), "tok_visa"), idempotency_key="tok-1")
    assert result.status == "succeeded"
    sent = params(stripe)
    assert "payment_method" not in sent
    assert sent["payment_method_data"] == {"type": "card", "card": {"token": "tok_visa"}}


async def test_a_card_needing_3ds_comes_back_as_requires_action(
    stripe: FakeStripe, url: str
) -> None:
    async with Runtime() as rt:
        gw = await gateway(rt, url)
        result = await gw.charge(charge_of(usd(900), "pm_card_authenticationRequired"))
    assert result.status == "requires_action"
    assert result.receipt_url is None


async def test_the_stripe_version_is_a_setting(stripe: FakeStripe, url: str) -> None:
    async with Runtime() as rt:
        gw = await gateway(rt, url, api_version="2024-06-20")
        await gw.charge(charge_of(usd(500)))
    assert stripe.received[0].header("stripe-version") == "2024-06-20"


# -- amounts in Stripe's unit -----------------------------------------------------------


@pytest.mark.parametrize(
    ("money", "sent"),
    [
        (Money.of("500", "JPY"), "500"),  # zero-decimal: whole yen
        (Money.of("5.00", "USD"), "500"),
        (Money.of("5.120", "KWD"), "5120"),  # three-decimal, last digit 0
        (Money.of("5", "UGX"), "500"),  # Stripe's special case: two decimals, always 00
        (Money.of("5", "ISK"), "500"),
        (Money.of("5", "MGA"), "5"),  # zero-decimal at Stripe, two decimals in ISO
    ],
    ids=str,
)
async def test_amounts_are_sent_in_stripes_unit_and_read_back(
    stripe: FakeStripe, url: str, money: Money, sent: str
) -> None:
    async with Runtime() as rt:
        gw = await gateway(rt, url)
        result = await gw.charge(charge_of(money))
    assert params(stripe)["amount"] == sent
    assert params(stripe)["currency"] == money.currency.lower()
    assert result.amount == money


@pytest.mark.parametrize(
    ("money", "reason"),
    [
        (Money.of("5.124", "KWD"), "last digit of KWD amounts to be 0"),
        (Money.of("5.50", "MGA"), "Stripe takes MGA in whole units"),
    ],
    ids=str,
)
async def test_an_amount_stripe_cannot_take_is_refused_before_sending(
    stripe: FakeStripe, url: str, money: Money, reason: str
) -> None:
    async with Runtime() as rt:
        gw = await gateway(rt, url)
        with pytest.raises(ConfigError, match=reason) as caught:
            await gw.charge(charge_of(money))
        with pytest.raises(ConfigError, match=reason):
            await gw.refund(RefundRequest(payment_id="pi_123", amount=money))
    assert caught.value.field == "amount"
    assert stripe.received == []


# -- idempotency --------------------------------------------------------------------


async def test_a_charge_that_timed_out_after_processing_is_retried_with_its_key_and_charged_once(
    stripe: FakeStripe, url: str
) -> None:
    stripe.timeout_after_processing(1)
    async with Runtime() as rt:
        gw = await gateway(rt, url, timeout=0.3)
        result = await gw.charge(charge_of(usd(500)), idempotency_key="order-7")
    assert keys_sent(stripe) == ["charge:order-7", "charge:order-7"]
    assert params(stripe, 0) == params(stripe, 1)
    assert len(stripe.charges) == 1
    assert stripe.executions == {"charge:order-7": 1}
    assert result.id in stripe.payment_intents
    assert result.status == "succeeded"


async def test_without_a_key_each_call_makes_one_its_retries_share(
    stripe: FakeStripe, url: str
) -> None:
    stripe.fail_next(1, 503)
    async with Runtime() as rt:
        gw = await gateway(rt, url)
        await gw.charge(charge_of(usd(500)))
        await gw.charge(charge_of(usd(500)))
    first, retried, second = keys_sent(stripe)
    assert first == retried
    assert first != second
    assert first is not None
    assert first.startswith("charge:")
    assert len(stripe.charges) == 2


async def test_the_same_logical_charge_from_another_process_gets_stripes_saved_answer(
    stripe: FakeStripe, url: str
) -> None:
    results = []
    for _ in range(2):  # two runtimes: a restarted process, or another worker
        async with Runtime() as rt:
            gw = await gateway(rt, url)
            results.append(await gw.charge(charge_of(usd(500)), idempotency_key="order-9"))
    assert results[0] == results[1]
    assert keys_sent(stripe) == ["charge:order-9", "charge:order-9"]
    assert len(stripe.charges) == 1


async def test_one_key_for_two_operations_sends_two_keys(stripe: FakeStripe, url: str) -> None:
    async with Runtime() as rt:
        gw = await gateway(rt, url)
        charged = await gw.charge(charge_of(usd(500)), idempotency_key="order-3")
        refunded = await gw.refund(RefundRequest(payment_id=charged.id), idempotency_key="order-3")
    assert keys_sent(stripe) == ["charge:order-3", "refund:order-3"]
    assert refunded.amount == usd(500)


async def test_a_key_reused_for_other_parameters_is_refused_by_stripe(
    stripe: FakeStripe, url: str
) -> None:
    async with Runtime() as rt:
        await (await gateway(rt, url)).charge(charge_of(usd(500)), idempotency_key="order-4")
    async with Runtime() as rt:
        gw = await gateway(rt, url)
        with pytest.raises(VendorError) as caught:
            await gw.charge(charge_of(usd(600)), idempotency_key="order-4")
    assert caught.value.status == 400
    assert vars(caught.value)["error_type"] == "idempotency_error"
    assert "same parameters" in caught.value.body
    assert len(stripe.charges) == 1


async def test_a_key_reused_for_other_parameters_in_one_process_is_refused_too(
    stripe: FakeStripe, url: str
) -> None:
    async with Runtime() as rt:
        gw = await gateway(rt, url)
        await gw.charge(charge_of(usd(500)), idempotency_key="order-5")
        # The runtime answers a repeated key from its own store, without asking Stripe.
        again = await gw.charge(charge_of(usd(500)), idempotency_key="order-5")
        with pytest.raises(ConfigError) as caught:
            await gw.charge(charge_of(usd(600)), idempotency_key="order-5")
    assert caught.value.field == "idempotency_key"
    assert again.amount == usd(500)
    assert len(stripe.received) == 1


async def test_two_processes_charging_with_one_key_at_once_charge_once(
    stripe: FakeStripe, url: str
) -> None:
    stripe.slow(0.3)  # the first request is still executing when the second arrives: 409
    results = []

    async def charge_in_own_runtime() -> None:
        async with Runtime() as rt:
            gw = await gateway(rt, url, timeout=2.0, retry=PATIENT_409)
            results.append(await gw.charge(charge_of(usd(500)), idempotency_key="order-6"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(charge_in_own_runtime)
        tg.start_soon(charge_in_own_runtime)
    assert results[0] == results[1]
    assert len(stripe.received) >= 3  # one executed, one 409, then its replayed retry
    assert stripe.executions == {"charge:order-6": 1}
    assert len(stripe.charges) == 1


async def test_a_key_is_a_new_request_once_stripe_pruned_it(stripe: FakeStripe, url: str) -> None:
    for _ in range(2):
        async with Runtime() as rt:
            await (await gateway(rt, url)).charge(charge_of(usd(500)), idempotency_key="order-8")
        CLOCK.now += 86_400.0
    assert len(stripe.charges) == 2


def test_derived_keys_stay_within_stripes_limit_and_apart() -> None:
    long_key = "k" * 255
    derived = stripe_idempotency_key("refund", long_key)
    assert len(derived) <= 255
    assert derived == stripe_idempotency_key("refund", long_key)
    assert derived != stripe_idempotency_key("refund", long_key[:-1] + "j")
    assert stripe_idempotency_key("charge", "order-1") == "charge:order-1"


@given(
    st.sampled_from(["charge", "intent", "capture", "refund"]),
    st.sampled_from(["charge", "intent", "capture", "refund"]),
    st.text(string.printable.strip(), min_size=1, max_size=255),
    st.text(string.printable.strip(), min_size=1, max_size=255),
)
def test_derived_keys_are_one_per_operation_and_key(
    op_a: str, op_b: str, key_a: str, key_b: str
) -> None:
    a = stripe_idempotency_key(op_a, key_a)
    assert len(a) <= 255
    assert a == stripe_idempotency_key(op_a, key_a)
    assert (a == stripe_idempotency_key(op_b, key_b)) == ((op_a, key_a) == (op_b, key_b))


# -- declines and errors ---------------------------------------------------------------


async def test_a_declined_card_is_payment_declined_not_retried_and_not_counted(
    stripe: FakeStripe, url: str
) -> None:
    async with Runtime() as rt:
        gw = await gateway(rt, url, breaker=Breaker(failure_threshold=1, open_duration=60))
        for attempt in range(2):
            with pytest.raises(PaymentDeclined) as caught:
                await gw.charge(
                    charge_of(usd(500), "pm_card_chargeDeclinedInsufficientFunds"),
                    idempotency_key=f"declined-{attempt}",
                )
            assert caught.value.decline_code == "insufficient_funds"
            assert caught.value.reason == "Your card has insufficient funds."
            assert caught.value.status == 402
        assert len(stripe.received) == 2  # one each: a 402 is never retried
        # The breaker (one failure opens it) saw no failure: the provider answered.
        ok = await gw.charge(charge_of(usd(500)))
        assert ok.status == "succeeded"
        # While a 500 does count: the retry after it finds the breaker open.
        stripe.fail_next(1, 500)
        with pytest.raises(CircuitBreakerOpen):
            await gw.charge(charge_of(usd(500)))
    assert len(stripe.received) == 4


async def test_a_declined_token_is_payment_declined_with_its_code(
    stripe: FakeStripe, url: str
) -> None:
    async with Runtime() as rt:
        gw = await gateway(rt, url)
        with pytest.raises(PaymentDeclined) as caught:
            await gw.charge(charge_of(usd(500), "tok_chargeDeclined"))
    assert caught.value.decline_code == "generic_decline"
    (charge,) = stripe.charges.values()
    assert charge["status"] == "failed"


def test_a_decline_body_cut_short_still_gives_code_and_message() -> None:
    body = msgspec.json.encode(
        {
            "error": {
                "code": "card_declined",
                "decline_code": "lost_card",
                "message": 'Your card was declined, "really".',
                "payment_intent": {"id": "pi_1", "padding": "x" * 4000},
                "type": "card_error",
            }
        }
    ).decode()
    fields = _error_fields(body[:2048])
    assert fields == {
        "code": "card_declined",
        "decline_code": "lost_card",
        "message": 'Your card was declined, "really".',
    }
    assert _error_fields(body)["type"] == "card_error"
    assert _error_fields("<html>Bad gateway</html>") == {}


async def test_stripes_error_message_and_code_reach_the_vendor_error(
    stripe: FakeStripe, url: str
) -> None:
    async with Runtime() as rt:
        gw = await gateway(rt, url)
        with pytest.raises(VendorError) as caught:
            await gw.capture_authorization(CaptureRequest(authorization_id="pi_missing"))
    assert caught.value.status == 404
    assert vars(caught.value)["code"] == "resource_missing"
    assert "No such payment_intent: 'pi_missing'" in caught.value.body
    assert len(stripe.received) == 1  # a 404 is the caller's: not retried


async def test_a_wrong_key_is_a_401_that_names_no_key(stripe: FakeStripe, url: str) -> None:
    wrong = "sk_test_51WRONGwrongWRONGwrong000000"
    async with Runtime() as rt:
        gw = await gateway(rt, url, key=wrong)
        with pytest.raises(VendorError) as caught:
            await gw.charge(charge_of(usd(500)))
    assert caught.value.status == 401
    assert "Invalid API Key" in caught.value.body
    assert wrong not in str(caught.value)
    assert stripe.payment_intents == {}


# -- intents, partial captures, refunds ------------------------------------------------------


async def test_authorise_capture_part_then_refund_in_parts(stripe: FakeStripe, url: str) -> None:
    async with Runtime() as rt:
        gw = await gateway(rt, url)
        intent = await gw.create_payment_intent(
            PaymentIntentRequest(
                amount=usd(1000), capture_method="manual", payment_method="pm_card_visa"
            ),
            idempotency_key="auth-1",
        )
        assert params(stripe) == {
            "amount": "1000",
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "capture_method": "manual",
            "automatic_payment_methods": {"enabled": "true"},
        }
        assert stripe.received[-1].header("idempotency-key") == "intent:auth-1"
        assert (intent.status, intent.capture_method) == ("pending", "manual")
        assert intent.client_secret is not None
        assert intent.client_secret not in repr(intent)

        assert stripe.confirm(intent.id) == "requires_capture"  # the customer's browser

        captured = await gw.capture_authorization(
            CaptureRequest(authorization_id=intent.id, amount=usd(600)), idempotency_key="cap-1"
        )
        assert stripe.received[-1].path == f"/v1/payment_intents/{intent.id}/capture"
        assert stripe.received[-1].header("idempotency-key") == "capture:cap-1"
        assert params(stripe) == {"amount_to_capture": "600"}
        assert (captured.status, captured.amount) == ("succeeded", usd(600))
        assert captured.authorization_id == intent.id

        part = await gw.refund(
            RefundRequest(payment_id=captured.id, amount=usd(200), reason="requested_by_customer"),
            idempotency_key="ref-1",
        )
        assert params(stripe) == {
            "payment_intent": intent.id,
            "amount": "200",
            "reason": "requested_by_customer",
        }
        rest = await gw.refund(RefundRequest(payment_id=captured.id), idempotency_key="ref-2")
        with pytest.raises(VendorError) as caught:
            await gw.refund(RefundRequest(payment_id=captured.id), idempotency_key="ref-3")
    assert (part.status, part.amount, part.payment_id) == ("succeeded", usd(200), intent.id)
    assert rest.amount == usd(400)  # what was captured and not yet refunded
    assert vars(caught.value)["code"] == "charge_already_refunded"
    assert stripe.payment_intents[intent.id]["amount_received"] == 600


async def test_a_refund_of_a_charge_id_names_the_charge(stripe: FakeStripe, url: str) -> None:
    async with Runtime() as rt:
        gw = await gateway(rt, url)
        await gw.charge(charge_of(Money.of("5.120", "KWD")))
        (charge_id,) = stripe.charges
        refund = await gw.refund(RefundRequest(payment_id=charge_id, amount=Money(2050, "KWD")))
    assert params(stripe) == {"charge": charge_id, "amount": "2050"}
    assert refund.amount == Money(2050, "KWD")
    assert refund.payment_id == charge_id


async def test_an_intent_without_a_payment_method_waits_for_the_customer(
    stripe: FakeStripe, url: str
) -> None:
    async with Runtime() as rt:
        gw = await gateway(rt, url)
        intent = await gw.create_payment_intent(
            PaymentIntentRequest(amount=Money.of("1500", "JPY"), metadata={"cart": "c-9"})
        )
    assert (intent.status, intent.provider_status) == ("pending", "requires_payment_method")
    assert intent.amount == Money(1500, "JPY")
    assert params(stripe)["metadata"] == {"cart": "c-9"}
    assert params(stripe)["capture_method"] == "automatic"


# -- resilience and the integration log -------------------------------------------------------


async def test_a_throttled_charge_is_retried_and_logged_per_attempt_without_secrets(
    stripe: FakeStripe, url: str
) -> None:
    stripe.throttle(1, retry_after="0")
    store = MemoryLogStore()
    async with Runtime(log_store=store) as rt:
        gw = await gateway(rt, url)
        intent = await gw.create_payment_intent(
            PaymentIntentRequest(amount=usd(500)), idempotency_key="log-1"
        )
    assert keys_sent(stripe) == ["intent:log-1", "intent:log-1"]
    records = sorted(await store.query(LogFilters(service_name="stripe")), key=lambda r: r.id)
    assert [(r.status, r.http_status_code, r.attempt_number) for r in records] == [
        (LogStatus.RATE_LIMITED, 429, 1),
        (LogStatus.SUCCESS, 200, 2),
    ]
    for record in records:
        assert record.endpoint == "POST /v1/payment_intents"
        assert record.duration_ms is not None
        assert record.duration_ms >= 0
    dumped = msgspec.json.encode(records).decode()
    assert API_KEY not in dumped
    assert intent.client_secret is not None
    assert intent.client_secret not in dumped


async def test_defaults_and_overrides_of_the_policies(url: str) -> None:
    async with Runtime() as rt:
        gw = StripePaymentGateway(rt, credentials=await manager(), base_url=url)
        assert gw.policy.timeout == 45.0
        assert gw.policy.rate_limit == RateLimit.per_second(100)
        assert 409 in gw.policy.retry.retryable_statuses
        other = StripePaymentGateway(
            rt, credentials=await manager(), name="stripe-eu", timeout=10.0, rate_limit=None
        )
        assert (other.policy.timeout, other.policy.rate_limit) == (10.0, None)


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({}, "credentials"),
        ({"api_version": "latest"}, "api_version"),
        ({"timeout": -1}, "timeout"),
        ({"no_such_policy": 1}, "policy"),
    ],
)
async def test_a_bad_or_missing_setting_is_a_config_error_naming_it(
    settings: dict[str, Any], field: str
) -> None:
    given = dict(settings)
    if field != "credentials":
        given["credentials"] = await manager()
    async with Runtime() as rt:
        with pytest.raises(ConfigError) as caught:
            StripePaymentGateway(rt, **given)
    assert caught.value.field == field


async def test_a_request_of_the_wrong_type_is_refused(url: str) -> None:
    async with Runtime() as rt:
        gw = await gateway(rt, url)
        with pytest.raises(ConfigError) as caught:
            await gw.charge(RefundRequest(payment_id="pi_1"))  # type: ignore[arg-type]
    assert caught.value.field == "request"


# -- the form encoder ------------------------------------------------------------------------


def test_known_vectors_of_stripes_form_encoding() -> None:
    # stripe-python's tests, as VENDORS.md §3 quotes them.
    assert form_pairs({"foo": {"0": {"bar": "bat"}}}) == [("foo[0][bar]", "bat")]
    assert form_pairs({"dict": {"adict": {"foo": "bar"}}}) == [("dict[adict][foo]", "bar")]
    assert form_pairs({"list": ["a", {"b": 1}], "none": None, "yes": True, "no": False}) == [
        ("list[0]", "a"),
        ("list[1][b]", "1"),
        ("yes", "true"),
        ("no", "false"),
    ]
    assert encode_form({"a": {"b": "c d"}}) == b"a%5Bb%5D=c+d"


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"amount": 1.5}, "amount"),
        ({"a[b]": "c"}, "params"),
        ({"meta": {"": "x"}}, "meta"),
        ({"list": ["a", None]}, "list[1]"),
    ],
)
def test_what_the_encoder_cannot_write_is_a_config_error(value: Any, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        encode_form(value)
    assert caught.value.field == field


keys = st.text(st.characters(codec="utf-8", exclude_characters="[]"), min_size=1, max_size=8)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner.filter(lambda v: v is not None), max_size=3),
        st.dictionaries(keys, inner, max_size=3),
    ),
    max_leaves=12,
)


def expected(value: FormValue) -> Any:
    """What the server reads back: strings, dicts for lists, None and empty containers gone."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    items = (
        value.items()
        if isinstance(value, dict)
        else ((str(i), item) for i, item in enumerate(value))  # type: ignore[arg-type]
    )
    result = {key: expected(item) for key, item in items if item is not None}
    return {key: item for key, item in result.items() if item != {}}


@given(st.dictionaries(keys, values, max_size=4))
def test_the_form_encoding_round_trips_through_a_bracket_decoder(
    params: dict[str, FormValue],
) -> None:
    body = encode_form(params)
    assert decode_form(body) == expected(params)
    assert all(name.count("[") == name.count("]") for name, _ in parse_qsl(body.decode()))


# -- amounts -----------------------------------------------------------------------------------

CURRENCIES = ["USD", "EUR", "JPY", "KRW", "MGA", "ISK", "UGX", "KWD", "BHD", "TND", "IQD", "CLF"]


@given(st.sampled_from(CURRENCIES), st.integers(min_value=1, max_value=10**12))
def test_amounts_convert_exactly_or_are_refused_as_documented(currency: str, amount: int) -> None:
    money = Money(amount, currency)
    # The smallest amount of the ISO unit Stripe can take, per docs.stripe.com/currencies.
    step = {"MGA": 100, "KWD": 10, "BHD": 10, "TND": 10, "IQD": 10, "CLF": 100}.get(currency, 1)
    if amount % step:
        with pytest.raises(ConfigError):
            to_stripe_amount(money)
        return
    sent = to_stripe_amount(money)
    assert from_stripe_amount(sent, currency.lower()) == money
    # The value is the same: Stripe's unit differs only in where the point is.
    stripe_places = {"JPY": 0, "KRW": 0, "MGA": 0, "KWD": 3, "BHD": 3, "TND": 3}.get(currency, 2)
    assert Decimal(sent).scaleb(-stripe_places) == Decimal(amount).scaleb(
        -currency_exponent(currency)
    )
