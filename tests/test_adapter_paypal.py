"""The PayPal adapter against `FakePayPal` over real loopback HTTP, and its mappings.

The fake checks what PayPal documents (Basic client credentials and a form
grant at the token endpoint; a bearer token it issued, JSON, string money
values with the currency's decimals and PayPal-Request-Id elsewhere) and
records every request, so these tests assert on what PayPal would have
received. Time is real but short: per-attempt timeouts of 0.3 s at most where
a timeout is the point, retry delays of 10 ms. Credential expiry is decided
on a settable clock shared by the runtime and the credential manager.
"""

from __future__ import annotations

import base64
import re
import string
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import anyio
import httpx
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector import (
    ConfigError,
    CredentialRefreshFailed,
    PaymentDeclined,
    RateLimit,
    Retry,
    Runtime,
    VendorError,
)
from connector._credential_manager import CredentialManager
from connector._credentials import Credentials
from connector._credstore_memory import MemoryCredentialStore
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
from connector.adapters._paypal import (
    CLIENT_CREDENTIALS,
    PayPalPaymentGateway,
    PayPalTokenRefresher,
    _paypal_money,
    _request_id,
    paypal_credentials,
)
from connector.testing import FakePayPal, serve_asgi

pytestmark = pytest.mark.anyio

CLIENT_ID = "AcL1ent-1d-for-tests"
CLIENT_SECRET = "EsecretVALUEforPayPalTests0123456789"
NOW = 1_750_000_000.0
FAST = Retry(
    attempts=3,
    initial_delay=0.01,
    max_delay=0.05,
    jitter="none",
    retryable_statuses=DEFAULT_RETRYABLE_STATUSES | {409},
)
ORDERS = "/v2/checkout/orders"
TOKEN = "/v1/oauth2/token"
PAYPAL_VALUE = r"(-?[0-9]+)|(-?([0-9]+)?[.][0-9]+)"  # the Orders spec's money pattern


class Clock:
    """The wall clock of the runtime and the credential manager, set by the test."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[FakePayPal, str]]:
    fake = FakePayPal(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with serve_asgi(fake.app) as url:
        yield fake, url


@pytest.fixture
def paypal(server: tuple[FakePayPal, str]) -> FakePayPal:
    server[0].reset()
    return server[0]


@pytest.fixture
def url(server: tuple[FakePayPal, str]) -> str:
    return server[1]


class Setup:
    """A gateway, its refresher and credentials, on one runtime and one clock."""

    def __init__(self, rt: Runtime, url: str, clock: Clock, **policy: Any) -> None:
        policy.setdefault("retry", FAST)
        self.store = MemoryCredentialStore()
        self.refresher = PayPalTokenRefresher(rt, base_url=url, retry=FAST)
        self.manager = CredentialManager(self.store, {"paypal": self.refresher}, clock=clock)
        self.gateway = PayPalPaymentGateway(rt, credentials=self.manager, base_url=url, **policy)

    async def store_credentials(
        self, tenant_id: str | None = None, credentials: Credentials | None = None
    ) -> None:
        stored = credentials or paypal_credentials(CLIENT_ID, CLIENT_SECRET)
        await self.store.put("paypal", tenant_id, stored)


async def ready(rt: Runtime, url: str, clock: Clock | None = None, **policy: Any) -> Setup:
    setup = Setup(rt, url, clock or Clock(), **policy)
    await setup.store_credentials()
    return setup


def euros(cents: int) -> Money:
    return Money(cents, "EUR")


def creates(paypal: FakePayPal) -> list[Any]:
    return paypal.requests_to(ORDERS)


# -- the documented requests -------------------------------------------------------


async def test_a_charge_with_a_vaulted_card_fetches_a_token_then_sends_the_documented_order(
    paypal: FakePayPal, url: str
) -> None:
    async with Runtime(wall_clock=Clock()) as rt:
        setup = await ready(rt, url)
        result = await setup.gateway.charge(
            ChargeRequest(
                amount=euros(1999),
                payment_method="card:8kk8451t",
                description="Order 42",
                customer_id="cus_7",
            ),
            idempotency_key="order-42",
        )
    token_request, create = paypal.received
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert token_request.path == TOKEN
    assert token_request.header("authorization") == f"Basic {basic}"
    assert token_request.header("content-type") == "application/x-www-form-urlencoded"
    assert parse_qs(token_request.body.decode()) == {"grant_type": ["client_credentials"]}
    assert create.path == ORDERS
    assert create.header("authorization") == f"Bearer {paypal.tokens_issued[0]}"
    assert create.header("content-type") == "application/json"
    assert create.header("prefer") == "return=representation"
    assert create.header("paypal-request-id") == "order-42-create-order"
    assert create.json() == {
        "intent": "CAPTURE",
        "purchase_units": [
            {
                "amount": {"currency_code": "EUR", "value": "19.99"},
                "description": "Order 42",
                "custom_id": "cus_7",
            }
        ],
        "payment_source": {"card": {"vault_id": "8kk8451t"}},
    }
    (capture,) = paypal.captures
    assert result.id == capture["id"]  # what a refund names
    assert result.status == "succeeded"
    assert result.provider_status == "COMPLETED"
    assert result.amount == euros(1999)
    assert isinstance(setup.gateway, PaymentGateway)


@pytest.mark.parametrize(
    ("money", "value"),
    [
        (Money(1999, "USD"), "19.99"),
        (Money(5, "USD"), "0.05"),
        (Money(100000, "EUR"), "1000.00"),
        (Money(1000, "JPY"), "1000"),
        (Money(150000, "HUF"), "1500"),  # ISO gives HUF two decimals; PayPal takes none
        (Money(5125, "KWD"), "5.125"),
    ],
)
async def test_money_is_sent_as_a_string_in_major_units_and_read_back_exactly(
    paypal: FakePayPal, url: str, money: Money, value: str
) -> None:
    async with Runtime(wall_clock=Clock()) as rt:
        setup = await ready(rt, url)
        result = await setup.gateway.charge(
            ChargeRequest(amount=money, payment_method="paypal:B-7XK")
        )
    (create,) = creates(paypal)
    assert create.json()["purchase_units"][0]["amount"] == {
        "currency_code": money.currency,
        "value": value,
    }
    assert result.amount == money


async def test_an_amount_paypal_cannot_take_is_refused_before_any_request(
    paypal: FakePayPal, url: str
) -> None:
    async with Runtime(wall_clock=Clock()) as rt:
        setup = await ready(rt, url)
        with pytest.raises(ConfigError) as caught:
            await setup.gateway.charge(
                ChargeRequest(amount=Money(150050, "HUF"), payment_method="card:v1")
            )
        assert caught.value.field == "amount"
        with pytest.raises(ConfigError) as caught:
            await setup.gateway.charge(
                ChargeRequest(amount=euros(100), payment_method="card:v1", metadata={"a": "b"})
            )
        assert caught.value.field == "metadata"
        with pytest.raises(ConfigError) as caught:
            await setup.gateway.charge(ChargeRequest(amount=euros(100), payment_method="iban:x"))
        assert caught.value.field == "payment_method"
    assert paypal.received == []


@given(
    amount=st.integers(min_value=1, max_value=10**15),
    currency=st.sampled_from(["USD", "EUR", "GBP", "JPY", "HUF", "TWD", "KWD", "BHD", "CLP"]),
)
def test_paypal_money_is_the_documented_pattern_and_round_trips(amount: int, currency: str) -> None:
    money = Money(amount, currency)
    whole = currency in ("HUF", "JPY", "TWD")
    if whole and currency_exponent(currency) and amount % 10 ** currency_exponent(currency):
        with pytest.raises(ConfigError):
            _paypal_money("amount", money)
        return
    sent = _paypal_money("amount", money)
    assert sent["currency_code"] == currency
    assert re.fullmatch(PAYPAL_VALUE, sent["value"])
    decimals = 0 if whole else currency_exponent(currency)
    assert len(sent["value"].partition(".")[2]) == decimals
    assert Money.of(sent["value"], currency) == money


# -- the fake refuses what PayPal refuses ------------------------------------------------

GOOD_ORDER = {
    "intent": "CAPTURE",
    "purchase_units": [{"amount": {"currency_code": "USD", "value": "10.00"}}],
}


def with_amount(value: Any, currency: str = "USD") -> dict[str, Any]:
    return {
        "intent": "CAPTURE",
        "purchase_units": [{"amount": {"currency_code": currency, "value": value}}],
    }


async def fake_token(client: httpx.AsyncClient) -> str:
    grant = {"grant_type": "client_credentials"}
    response = await client.post(TOKEN, data=grant, auth=(CLIENT_ID, CLIENT_SECRET))
    token: str = response.json()["access_token"]
    return token


@pytest.mark.parametrize(
    ("body", "headers", "status", "issue"),
    [
        (with_amount(10), {}, 400, "INVALID_PARAMETER_SYNTAX"),  # a number, not a string
        (with_amount("10.5", "JPY"), {}, 422, "DECIMALS_NOT_SUPPORTED"),
        (with_amount("10.005"), {}, 422, "DECIMAL_PRECISION"),
        (with_amount("0.00"), {}, 422, "CANNOT_BE_ZERO_OR_NEGATIVE"),
        ({"purchase_units": GOOD_ORDER["purchase_units"]}, {}, 400, "MISSING_REQUIRED_PARAMETER"),
        ({**GOOD_ORDER, "intent": "SALE"}, {}, 400, "INVALID_PARAMETER_VALUE"),
        (
            {**GOOD_ORDER, "payment_source": {"card": {"vault_id": "v1"}}},
            {},
            400,
            "PAYPAL_REQUEST_ID_REQUIRED",
        ),
        (GOOD_ORDER, {"PayPal-Request-Id": "x" * 109}, 400, "INVALID_PARAMETER_SYNTAX"),
        (GOOD_ORDER, {"Authorization": "Bearer forged"}, 401, None),
        (GOOD_ORDER, {"Content-Type": "text/plain"}, 415, None),
    ],
)
async def test_the_fake_refuses_orders_as_paypal_documents(
    paypal: FakePayPal,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    status: int,
    issue: str | None,
) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        token = await fake_token(client)
        sent = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **headers}
        response = await client.post(ORDERS, content=msgspec.json.encode(body), headers=sent)
    assert response.status_code == status
    error = response.json()
    assert error["debug_id"]
    if issue is not None:
        assert error["details"][0]["issue"] == issue
    assert paypal.orders == []


async def test_the_fakes_token_endpoint_wants_basic_credentials_and_the_grant(
    paypal: FakePayPal, url: str
) -> None:
    grant = {"grant_type": "client_credentials"}
    async with httpx.AsyncClient(base_url=url) as client:
        wrong = await client.post(TOKEN, data=grant, auth=(CLIENT_ID, "nope"))
        as_json = await client.post(TOKEN, json=grant, auth=(CLIENT_ID, CLIENT_SECRET))
        no_grant = await client.post(TOKEN, data={"scope": "x"}, auth=(CLIENT_ID, CLIENT_SECRET))
        good = await client.post(TOKEN, data=grant, auth=(CLIENT_ID, CLIENT_SECRET))
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    assert as_json.status_code == 400
    assert (no_grant.status_code, no_grant.json()["error"]) == (400, "unsupported_grant_type")
    assert good.status_code == 200
    assert good.json()["token_type"] == "Bearer"
    assert good.json()["expires_in"] == paypal.expires_in
    assert paypal.tokens_issued == [good.json()["access_token"]]
    assert paypal.token_requests == 4


async def test_the_fake_answers_minimally_unless_asked_for_the_representation(
    paypal: FakePayPal, url: str
) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        token = await fake_token(client)
        response = await client.post(
            ORDERS, json=GOOD_ORDER, headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 201
    assert set(response.json()) == {"id", "status", "links"}


# -- orders the payer approves, authorise then capture -----------------------------------


async def test_an_intent_without_a_payment_method_waits_for_the_payer_then_a_charge_captures_it(
    paypal: FakePayPal, url: str
) -> None:
    async with Runtime(wall_clock=Clock()) as rt:
        setup = await ready(rt, url)
        intent = await setup.gateway.create_payment_intent(
            PaymentIntentRequest(amount=euros(2500), description="é" * 200),
            idempotency_key="basket-1",
        )
        assert intent.status == "requires_action"
        assert intent.provider_status == "CREATED"
        assert intent.approval_url is not None
        assert intent.approval_url.endswith(f"token={intent.id}")
        assert intent.amount == euros(2500)
        paypal.approve(intent.id)
        charge = await setup.gateway.charge(
            ChargeRequest(amount=euros(2500), payment_method=intent.id),
            idempotency_key="basket-1",
        )
    create = creates(paypal)[0]
    assert "payment_source" not in create.json()
    assert create.json()["purchase_units"][0]["description"] == "é" * 127  # PayPal's limit
    assert create.json()["intent"] == "CAPTURE"
    (capture_request,) = paypal.requests_to(f"{ORDERS}/{intent.id}/capture")
    assert capture_request.header("paypal-request-id") == "basket-1-capture-order"
    assert capture_request.header("content-type") == "application/json"
    assert charge.status == "succeeded"
    assert charge.id == paypal.captures[0]["id"]
    assert charge.amount == euros(2500)


async def test_manual_capture_authorizes_the_approved_order_then_captures_part_of_it(
    paypal: FakePayPal, url: str
) -> None:
    async with Runtime(wall_clock=Clock()) as rt:
        setup = await ready(rt, url)
        gateway = setup.gateway
        order = await gateway.create_payment_intent(
            PaymentIntentRequest(amount=Money(5000, "USD"), capture_method="manual")
        )
        assert creates(paypal)[0].json()["intent"] == "AUTHORIZE"
        paypal.approve(order.id)
        authorized = await gateway.create_payment_intent(
            PaymentIntentRequest(
                amount=Money(5000, "USD"), capture_method="manual", payment_method=order.id
            )
        )
        assert paypal.requests_to(f"{ORDERS}/{order.id}/authorize")
        (authorization,) = paypal.authorizations
        assert authorized.id == authorization["id"]
        assert authorized.status == "requires_capture"
        assert authorized.capture_method == "manual"
        captured = await gateway.capture_authorization(
            CaptureRequest(authorization_id=authorized.id, amount=Money(3000, "USD"))
        )
    (request,) = paypal.requests_to(f"/v2/payments/authorizations/{authorized.id}/capture")
    assert request.json() == {
        "final_capture": True,
        "amount": {"currency_code": "USD", "value": "30.00"},
    }
    assert captured.status == "succeeded"
    assert captured.authorization_id == authorized.id
    assert captured.amount == Money(3000, "USD")
    assert paypal.authorizations[0]["status"] == "CAPTURED"  # the rest is released


async def test_a_vaulted_source_with_manual_capture_is_authorized_at_once_and_captured_in_full(
    paypal: FakePayPal, url: str
) -> None:
    async with Runtime(wall_clock=Clock()) as rt:
        setup = await ready(rt, url)
        authorized = await setup.gateway.create_payment_intent(
            PaymentIntentRequest(
                amount=Money(800, "GBP"), capture_method="manual", payment_method="venmo:V9"
            )
        )
        captured = await setup.gateway.capture_authorization(
            CaptureRequest(authorization_id=authorized.id)
        )
    assert creates(paypal)[0].json()["payment_source"] == {"venmo": {"vault_id": "V9"}}
    assert authorized.status == "requires_capture"
    capture_request = paypal.received[-1]
    assert capture_request.json() == {"final_capture": True}
    assert captured.amount == Money(800, "GBP")
    assert captured.id == paypal.captures[0]["id"]


# -- refunds ---------------------------------------------------------------------------


async def test_refunds_go_in_the_captures_own_currency_partly_then_the_rest(
    paypal: FakePayPal, url: str
) -> None:
    async with Runtime(wall_clock=Clock()) as rt:
        setup = await ready(rt, url)
        gateway = setup.gateway
        charge = await gateway.charge(
            ChargeRequest(amount=Money(5000, "JPY"), payment_method="card:jp1")
        )
        part = await gateway.refund(
            RefundRequest(payment_id=charge.id, amount=Money(2000, "JPY"), reason="duplicate")
        )
        with pytest.raises(VendorError) as caught:
            await gateway.refund(RefundRequest(payment_id=charge.id, amount=Money(1, "USD")))
        rest = await gateway.refund(RefundRequest(payment_id=charge.id))
    first, mismatched, last = paypal.requests_to(f"/v2/payments/captures/{charge.id}/refund")
    assert first.json() == {"amount": {"currency_code": "JPY", "value": "2000"}}
    assert mismatched.json()["amount"] == {"currency_code": "USD", "value": "0.01"}
    assert last.json() == {}
    assert part.amount == Money(2000, "JPY")
    assert part.status == "succeeded"
    assert part.payment_id == charge.id
    assert rest.amount == Money(3000, "JPY")  # PayPal's amount: what remained
    assert caught.value.status == 422
    assert "REFUND_CAPTURE_CURRENCY_MISMATCH" in str(caught.value)
    assert caught.value.issue == "REFUND_CAPTURE_CURRENCY_MISMATCH"  # type: ignore[attr-defined]
    assert [refund["amount"]["value"] for refund in paypal.refunds] == ["2000", "3000"]


# -- errors and declines -----------------------------------------------------------------


async def test_paypal_errors_become_vendor_errors_in_paypals_words_not_retried(
    paypal: FakePayPal, url: str
) -> None:
    async with Runtime(wall_clock=Clock()) as rt:
        setup = await ready(rt, url)
        order = await setup.gateway.create_payment_intent(PaymentIntentRequest(amount=euros(10)))
        with pytest.raises(VendorError) as caught:
            # Not approved by the payer yet.
            await setup.gateway.charge(ChargeRequest(amount=euros(10), payment_method=order.id))
    error = caught.value
    assert type(error) is VendorError
    assert error.status == 422
    assert error.error_name == "UNPROCESSABLE_ENTITY"  # type: ignore[attr-defined]
    assert error.issue == "ORDER_NOT_APPROVED"  # type: ignore[attr-defined]
    assert error.debug_id  # type: ignore[attr-defined]
    assert "ORDER_NOT_APPROVED" in error.body
    assert error.body.startswith("UNPROCESSABLE_ENTITY: ")
    assert len(paypal.requests_to(f"{ORDERS}/{order.id}/capture")) == 1


async def test_an_instrument_declined_is_payment_declined_and_not_retried(
    paypal: FakePayPal, url: str
) -> None:
    async with Runtime(wall_clock=Clock()) as rt:
        setup = await ready(rt, url)
        paypal.decline_next(1)
        with pytest.raises(PaymentDeclined) as caught:
            await setup.gateway.charge(ChargeRequest(amount=euros(500), payment_method="card:c1"))
    assert caught.value.decline_code == "INSTRUMENT_DECLINED"
    assert caught.value.status == 422
    assert len(creates(paypal)) == 1


async def test_a_declined_single_step_capture_is_payment_declined_with_the_processor_code(
    paypal: FakePayPal, url: str
) -> None:
    paypal.decline_source("card-poor", response_code="5120")
    async with Runtime(wall_clock=Clock()) as rt:
        setup = await ready(rt, url)
        with pytest.raises(PaymentDeclined) as caught:
            await setup.gateway.charge(
                ChargeRequest(amount=euros(500), payment_method="card:card-poor")
            )
    assert caught.value.decline_code == "5120"
    assert paypal.captures[0]["status"] == "DECLINED"


# -- idempotency --------------------------------------------------------------------------


async def test_an_answer_lost_after_processing_is_retried_with_the_same_request_id_and_pays_once(
    paypal: FakePayPal, url: str
) -> None:
    async with Runtime(wall_clock=Clock()) as rt:
        setup = await ready(rt, url, timeout=0.3)
        await setup.gateway.charge(ChargeRequest(amount=euros(100), payment_method="card:w"))
        paypal.timeout_after_processing(1, stall=2.0)
        result = await setup.gateway.charge(
            ChargeRequest(amount=euros(4200), payment_method="card:v"), idempotency_key="k-lost"
        )
    attempts = [
        r for r in creates(paypal) if r.header("paypal-request-id") == "k-lost-create-order"
    ]
    assert len(attempts) == 2
    assert paypal.request_id_uses("k-lost-create-order") == 2
    assert len(paypal.orders) == 2  # the warm-up and this one: not paid twice
    assert result.id == paypal.captures[1]["id"]
    assert result.amount == euros(4200)


async def test_the_same_key_from_another_process_gets_paypals_stored_answer(
    paypal: FakePayPal, url: str
) -> None:
    results = []
    for _ in range(2):  # two runtimes: nothing shared but PayPal
        async with Runtime(wall_clock=Clock()) as rt:
            setup = await ready(rt, url)
            results.append(
                await setup.gateway.charge(
                    ChargeRequest(amount=euros(700), payment_method="card:v"),
                    idempotency_key="checkout-9",
                )
            )
    assert len(creates(paypal)) == 2
    assert len(paypal.orders) == 1
    assert results[0] == results[1]


async def test_calls_without_a_key_get_a_fresh_request_id_each(
    paypal: FakePayPal, url: str
) -> None:
    async with Runtime(wall_clock=Clock()) as rt:
        setup = await ready(rt, url)
        for _ in range(2):
            await setup.gateway.charge(ChargeRequest(amount=euros(700), payment_method="card:v"))
    first, second = (r.header("paypal-request-id") for r in creates(paypal))
    assert first != second
    assert first is not None
    assert first.endswith("-create-order")
    assert len(paypal.orders) == 2


async def test_a_retryable_failure_is_retried_with_the_same_request_id(
    paypal: FakePayPal, url: str
) -> None:
    async with Runtime(wall_clock=Clock()) as rt:
        setup = await ready(rt, url)
        await setup.gateway.charge(ChargeRequest(amount=euros(100), payment_method="card:w"))
        paypal.fail_next(1, 503)
        paypal.throttle(1, retry_after=0.01)
        await setup.gateway.charge(
            ChargeRequest(amount=euros(100), payment_method="card:w"), idempotency_key="r-1"
        )
    ids = [r.header("paypal-request-id") for r in creates(paypal)[1:]]
    assert ids == ["r-1-create-order"] * 3
    assert len(paypal.orders) == 2


@given(
    key=st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=255),
    operation=st.sampled_from(["create-order", "capture-order", "refund"]),
)
def test_request_ids_fit_paypals_limit_and_depend_only_on_key_and_operation(
    key: str, operation: str
) -> None:
    request_id = _request_id(key, operation)
    assert len(request_id) <= 108
    assert request_id == _request_id(key, operation)
    assert request_id.endswith(f"-{operation}")
    assert request_id != _request_id(key, "capture-authorization")
    if len(key) + len(operation) < 108:
        assert request_id == f"{key}-{operation}"


# -- tokens ------------------------------------------------------------------------------


async def test_a_hundred_concurrent_charges_with_an_expired_token_make_one_token_request(
    paypal: FakePayPal, url: str
) -> None:
    clock = Clock()
    async with Runtime(wall_clock=clock) as rt:
        setup = Setup(rt, url, clock, rate_limit=RateLimit.per_second(10_000))
        expired = msgspec.structs.replace(
            paypal_credentials(CLIENT_ID, CLIENT_SECRET),
            data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "access_token": "old"},
            expires_at=NOW - 60,
        )
        await setup.store_credentials(credentials=expired)
        results = []

        async def charge(n: int) -> None:
            request = ChargeRequest(amount=euros(100 + n), payment_method=f"card:v{n}")
            results.append(await setup.gateway.charge(request, idempotency_key=f"c-{n}"))

        async with anyio.create_task_group() as tg:
            for n in range(100):
                tg.start_soon(charge, n)
    assert paypal.token_requests == 1
    (token,) = paypal.tokens_issued
    assert len(results) == 100
    assert len(paypal.orders) == 100
    assert {r.header("authorization") for r in creates(paypal)} == {f"Bearer {token}"}
    stored = await setup.store.get("paypal", None)
    assert stored is not None
    assert stored.data["access_token"] == token
    assert stored.expires_at == NOW + paypal.expires_in
    assert stored.refresh_token == CLIENT_CREDENTIALS


async def test_a_token_is_renewed_within_the_margin_before_it_expires(
    paypal: FakePayPal, url: str
) -> None:
    clock = Clock()
    async with Runtime(wall_clock=clock) as rt:
        setup = await ready(rt, url, clock)
        request = ChargeRequest(amount=euros(100), payment_method="card:v")
        await setup.gateway.charge(request)
        clock.now = NOW + paypal.expires_in - 301  # just outside the 300 s margin
        await setup.gateway.charge(request)
        assert paypal.token_requests == 1
        clock.now += 2  # inside it, still valid
        await setup.gateway.charge(request)
    assert paypal.token_requests == 2
    first, second = paypal.tokens_issued
    assert [r.header("authorization") for r in creates(paypal)] == [
        f"Bearer {first}",
        f"Bearer {first}",
        f"Bearer {second}",
    ]


async def test_a_revoked_token_is_replaced_after_the_401_within_the_same_attempt(
    paypal: FakePayPal, url: str
) -> None:
    async with Runtime(wall_clock=Clock()) as rt:
        setup = await ready(rt, url)
        request = ChargeRequest(amount=euros(100), payment_method="card:v")
        await setup.gateway.charge(request)
        paypal.revoke_tokens()
        result = await setup.gateway.charge(request, idempotency_key="after-401")
    assert result.status == "succeeded"
    assert paypal.token_requests == 2
    statuses = [r.header("paypal-request-id") for r in creates(paypal)]
    assert statuses[1:] == ["after-401-create-order"] * 2  # rejected, then resent
    assert len(paypal.orders) == 2


async def test_each_tenant_gets_its_own_token(paypal: FakePayPal, url: str) -> None:
    async with Runtime(wall_clock=Clock()) as rt:
        setup = Setup(rt, url, Clock())
        await setup.store_credentials("t1")
        await setup.store_credentials("t2")
        request = ChargeRequest(amount=euros(100), payment_method="card:v")
        await setup.gateway.charge(request, tenant_id="t1")
        await setup.gateway.charge(request, tenant_id="t2")
        await setup.gateway.charge(request, tenant_id="t1")
    assert paypal.token_requests == 2
    first, second = paypal.tokens_issued
    assert [r.header("authorization") for r in creates(paypal)] == [
        f"Bearer {first}",
        f"Bearer {second}",
        f"Bearer {first}",
    ]


async def test_wrong_client_credentials_fail_the_refresh_without_showing_the_secret(
    paypal: FakePayPal, url: str
) -> None:
    async with Runtime(wall_clock=Clock()) as rt:
        setup = Setup(rt, url, Clock())
        await setup.store_credentials(credentials=paypal_credentials(CLIENT_ID, "wrong-secret-1"))
        with pytest.raises(CredentialRefreshFailed) as caught:
            await setup.gateway.charge(ChargeRequest(amount=euros(1), payment_method="card:v"))
    assert "invalid_client" in caught.value.reason
    assert "HTTP 401" in caught.value.reason
    assert "wrong-secret-1" not in str(caught.value)
    assert creates(paypal) == []


async def test_credentials_that_are_not_paypals_are_refused_by_the_refresher(
    paypal: FakePayPal, url: str
) -> None:
    async with Runtime(wall_clock=Clock()) as rt:
        setup = Setup(rt, url, Clock())
        await setup.store_credentials(
            credentials=msgspec.structs.replace(
                paypal_credentials(CLIENT_ID, CLIENT_SECRET), refresh_token="a-real-refresh-token"
            )
        )
        with pytest.raises(CredentialRefreshFailed) as caught:
            await setup.gateway.charge(ChargeRequest(amount=euros(1), payment_method="card:v"))
    assert "client_credentials" in caught.value.reason
    assert paypal.received == []


# -- the integration log ---------------------------------------------------------------------


async def test_every_attempt_is_logged_with_service_endpoint_status_and_duration_and_no_secret(
    paypal: FakePayPal, url: str
) -> None:
    logs = MemoryLogStore()
    async with Runtime(wall_clock=Clock(), log_store=logs) as rt:
        setup = Setup(rt, url, Clock())
        await setup.store_credentials("t1")
        request = ChargeRequest(amount=euros(1234), payment_method="card:v")
        await setup.gateway.charge(request, tenant_id="t1")
        paypal.fail_next(1, 503)
        charge = await setup.gateway.charge(request, tenant_id="t1")
        await setup.gateway.refund(RefundRequest(payment_id=charge.id), tenant_id="t1")
    records = sorted(await logs.query(), key=lambda record: (record.created_at, record.id))
    seen = [
        (r.service_name, r.endpoint, r.http_status_code, r.attempt_number, r.tenant_id)
        for r in records
    ]
    assert seen == [
        ("paypal-oauth", "POST /v1/oauth2/token", 200, 1, None),
        ("paypal", "POST /v2/checkout/orders", 201, 1, "t1"),
        ("paypal", "POST /v2/checkout/orders", 503, 1, "t1"),
        ("paypal", "POST /v2/checkout/orders", 201, 2, "t1"),
        ("paypal", "POST /v2/payments/captures/{id}/refund", 201, 1, "t1"),
    ]
    assert all(r.duration_ms is not None and r.duration_ms >= 0 for r in records)
    assert [str(r.status) for r in records] == [
        "success",
        "success",
        "failed",
        "success",
        "success",
    ]
    (token,) = paypal.tokens_issued
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    for record in records:
        text = msgspec.json.encode(record).decode()
        for secret in (CLIENT_SECRET, basic, token):
            assert secret not in text


async def test_a_failing_token_endpoint_fails_the_call_and_the_next_call_asks_again(
    paypal: FakePayPal, url: str
) -> None:
    async with Runtime(wall_clock=Clock()) as rt:
        setup = await ready(rt, url)
        request = ChargeRequest(amount=euros(100), payment_method="card:v")
        paypal.fail_next(1, 500)
        with pytest.raises(CredentialRefreshFailed) as caught:
            await setup.gateway.charge(request)
        # A token POST carries no idempotency key, so the runtime does not repeat it.
        assert "ConnectionFailed" in caught.value.reason
        result = await setup.gateway.charge(request)
    assert result.status == "succeeded"
    assert paypal.token_requests == 2
    assert len(creates(paypal)) == 1


# -- construction --------------------------------------------------------------------------


async def test_constructing_with_a_missing_or_bad_setting_names_it(url: str) -> None:
    async with Runtime() as rt:
        manager = CredentialManager(MemoryCredentialStore(), {}, clock=Clock())
        with pytest.raises(ConfigError) as caught:
            PayPalPaymentGateway(rt, base_url=url)
        assert caught.value.field == "credentials"
        with pytest.raises(ConfigError) as caught:
            PayPalPaymentGateway(rt, credentials=manager, base_url="api-m.paypal.com")
        assert caught.value.field == "base_url"
        with pytest.raises(ConfigError) as caught:
            PayPalPaymentGateway(rt, credentials=manager, base_url=url, rng=42)  # type: ignore[arg-type]
        assert caught.value.field == "rng"
        with pytest.raises(ConfigError):
            PayPalPaymentGateway(rt, credentials=manager, base_url=url, speed=3)
        default = PayPalPaymentGateway(rt, credentials=manager, base_url=url)
        assert default.policy.rate_limit == RateLimit.per_second(50)
        assert default.policy.timeout == 45.0
        assert 409 in default.policy.retry.retryable_statuses
        custom = PayPalPaymentGateway(
            rt,
            credentials=manager,
            name="paypal-eu",
            base_url=url,
            timeout=10.0,
            rate_limit=RateLimit.per_second(5),
        )
        assert custom.name == "paypal-eu"
        assert custom.policy.timeout == 10.0
        assert custom.policy.rate_limit == RateLimit.per_second(5)


def test_stored_paypal_credentials_hide_the_secret_and_need_a_token() -> None:
    credentials = paypal_credentials(CLIENT_ID, CLIENT_SECRET)
    assert credentials.refresh_token == CLIENT_CREDENTIALS
    assert credentials.is_expired(NOW)  # fetched on first use
    assert CLIENT_SECRET not in repr(credentials)
    with pytest.raises(ConfigError) as caught:
        paypal_credentials(CLIENT_ID, "")
    assert CLIENT_SECRET not in str(caught.value)
    assert caught.value.field == "client_secret"
