"""`TwilioSms` against `FakeTwilio` over real loopback HTTP.

The fake (uvicorn in a thread, one app for both Twilio hosts) records every
request before answering, so these tests assert on what Twilio would have
received: the form fields, the Basic credentials, the account in the path,
how many attempts. Real waits are short: per-attempt timeouts of 0.3 s and
retries 10 ms apart.
"""

from __future__ import annotations

import base64
import re
import socket
from collections.abc import Iterator
from decimal import Decimal
from functools import partial
from typing import Any

import anyio
import httpx
import msgspec
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import given
from hypothesis import strategies as st

from connector import (
    AccountBalance,
    AuthMethod,
    BulkFailure,
    BulkResult,
    ConfigError,
    ConnectionFailed,
    CredentialManager,
    Credentials,
    CredentialsNotFound,
    LogFilters,
    MemoryCredentialStore,
    MemoryLogStore,
    Retry,
    Runtime,
    ServiceUnavailable,
    SmsMessage,
    SmsService,
    VendorError,
)
from connector.adapters._twilio import TWILIO_RATE_LIMIT, TWILIO_TIMEOUT, TwilioSms
from connector.testing import FakeTwilio, Received, serve_asgi

FAST = Retry(attempts=3, initial_delay=0.01, max_delay=0.02, jitter="none")
FROM = "+15005550006"
TO = "+14155550123"
ACCOUNT = "AC" + "0" * 32
SID = re.compile(r"(SM|MM)[0-9a-fA-F]{32}")
API_KEY_SID = "SK" + "a1" * 16
API_KEY_SECRET = "k3y5ecr3t0fth3ap1k3y0000000000aa"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[FakeTwilio, str]]:
    fake = FakeTwilio(api_keys={API_KEY_SID: API_KEY_SECRET})
    with serve_asgi(fake.app) as url:
        yield fake, url


@pytest.fixture
def fake(server: tuple[FakeTwilio, str]) -> FakeTwilio:
    server[0].reset()
    server[0].balance = "25.50"
    return server[0]


@pytest.fixture
def url(server: tuple[FakeTwilio, str]) -> str:
    return server[1]


@pytest.fixture(scope="module")
def offline() -> TwilioSms:
    """An adapter on a runtime that is not running: whatever gets past its checks is refused."""
    credentials = CredentialManager(MemoryCredentialStore(), {}, clock=lambda: 0.0)
    return TwilioSms(Runtime(), credentials=credentials, account_sid=ACCOUNT, sender=FROM)


def messages_path(fake: FakeTwilio) -> str:
    return f"/2010-04-01/Accounts/{fake.account_sid}/Messages.json"


def closed_port_url() -> str:
    """A loopback URL nobody listens on: connecting is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def manager(*entries: tuple[str | None, Credentials]) -> CredentialManager:
    store = MemoryCredentialStore()
    for tenant, credentials in entries:
        await store.put("twilio", tenant, credentials)
    return CredentialManager(store, {}, clock=lambda: 1_750_000_000.0)


def basic(username: str, password: str) -> Credentials:
    return Credentials(
        auth_method=AuthMethod.BASIC_AUTH, data={"username": username, "password": password}
    )


async def twilio(
    rt: Runtime,
    fake: FakeTwilio,
    url: str,
    *,
    credentials: CredentialManager | None = None,
    **options: Any,
) -> TwilioSms:
    """An adapter on the fake, with the fake's credentials stored for the default tenant."""
    options.setdefault("account_sid", fake.account_sid)
    options.setdefault("sender", FROM)
    options.setdefault("retry", FAST)
    options.setdefault("timeout", 2.0)
    return TwilioSms(
        rt,
        credentials=credentials or await manager((None, fake.credentials())),
        base_url=url,
        lookup_base_url=url,
        **options,
    )


def auth_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


# -- sending ------------------------------------------------------------------


@pytest.mark.anyio
async def test_send_posts_one_form_with_basic_auth_and_returns_twilio_s_receipt(
    fake: FakeTwilio, url: str
) -> None:
    async with Runtime() as rt:
        sms = await twilio(rt, fake, url, status_callback="https://app.example/status?x=1")
        assert isinstance(sms, SmsService)
        receipt = await sms.send(SmsMessage(to=TO, body="Code: 12 & 34 = ü+"))
    (request,) = fake.received
    assert request.method == "POST"
    assert request.path == messages_path(fake)
    assert request.header("content-type") == "application/x-www-form-urlencoded"
    assert request.header("authorization") == auth_header(fake.account_sid, fake.auth_token)
    assert FakeTwilio.form(request) == {
        "To": [TO],
        "From": [FROM],
        "Body": ["Code: 12 & 34 = ü+"],
        "StatusCallback": ["https://app.example/status?x=1"],
    }
    (created,) = fake.messages
    assert SID.fullmatch(receipt.message_id)
    assert receipt.message_id == created["sid"]
    assert (receipt.status, receipt.segments) == ("queued", 1)


@pytest.mark.anyio
async def test_media_urls_go_as_repeated_fields_in_order_and_make_an_mms(
    fake: FakeTwilio, url: str
) -> None:
    media = ["https://cdn.example/b.png", "https://cdn.example/a.png?sig=1"]
    async with Runtime() as rt:
        sms = await twilio(rt, fake, url)
        receipt = await sms.send(SmsMessage(to=TO, media_urls=media))
    form = FakeTwilio.form(fake.received[0])
    assert form["MediaUrl"] == media
    assert "Body" not in form
    assert receipt.message_id.startswith("MM")


@pytest.mark.anyio
async def test_a_message_s_own_sender_or_service_replaces_the_adapter_s_pair(
    fake: FakeTwilio, url: str
) -> None:
    service = "MG" + "ab" * 16
    async with Runtime() as rt:
        sms = await twilio(rt, fake, url, sender=None, messaging_service_id=service)
        by_service = await sms.send(
            SmsMessage(to=TO, body="pool", status_callback="https://own.example/cb")
        )
        by_code = await sms.send(SmsMessage(to=TO, body="short code", sender="12345"))
    first, second = (FakeTwilio.form(request) for request in fake.received)
    assert first == {
        "To": [TO],
        "MessagingServiceSid": [service],
        "Body": ["pool"],
        "StatusCallback": ["https://own.example/cb"],
    }
    assert by_service.status == "accepted"  # Twilio's status for a messaging service send
    assert second == {"To": [TO], "From": ["12345"], "Body": ["short code"]}
    assert by_code.status == "queued"


@pytest.mark.anyio
async def test_segments_come_from_twilio_s_count(fake: FakeTwilio, url: str) -> None:
    async with Runtime() as rt:
        sms = await twilio(rt, fake, url)
        long_ascii = await sms.send(SmsMessage(to=TO, body="x" * 200))
        long_unicode = await sms.send(SmsMessage(to=TO, body="ü" * 100))
    assert (long_ascii.segments, long_unicode.segments) == (2, 2)


# -- checked before anything is sent -------------------------------------------


def bad_to() -> SmsMessage:
    """A message changed around its own checks, as only careless code can."""
    message = SmsMessage(to=TO, body="hi")
    msgspec.structs.force_setattr(message, "to", "0044 20 7946 0958")
    return message


BAD_CALLS: list[tuple[str, Any]] = [
    ("phone_number", lambda sms: sms.validate_phone_number("4155550123")),
    ("phone_number", lambda sms: sms.validate_phone_number("+1 415 555 0123")),
    ("phone_number", lambda sms: sms.validate_phone_number("call me", country_code="US")),
    ("country_code", lambda sms: sms.validate_phone_number("4155550123", country_code="us")),
    ("message.to", lambda sms: sms.send(bad_to())),
    ("message", lambda sms: sms.send("+14155550123")),
    ("messages[1].to", lambda sms: sms.send_bulk([SmsMessage(to=TO, body="ok"), bad_to()])),
    ("messages", lambda sms: sms.send_bulk(SmsMessage(to=TO, body="ok"))),
]


@pytest.mark.anyio
async def test_bad_input_is_a_config_error_and_twilio_receives_nothing(
    fake: FakeTwilio, url: str
) -> None:
    async with Runtime() as rt:
        sms = await twilio(rt, fake, url)
        for field, call in BAD_CALLS:
            with pytest.raises(ConfigError) as caught:
                await call(sms)
            assert caught.value.field == field
    assert fake.received == []


@pytest.mark.anyio
async def test_a_message_with_no_sender_anywhere_is_refused_before_sending(
    fake: FakeTwilio, url: str
) -> None:
    async with Runtime() as rt:
        sms = await twilio(rt, fake, url, sender=None)
        with pytest.raises(ConfigError, match="sender or a messaging_service_id") as caught:
            await sms.send_bulk(
                [SmsMessage(to=TO, body="a", sender=FROM), SmsMessage(to=TO, body="b")]
            )
    assert caught.value.field == "messages[1].sender"
    assert fake.received == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"credentials": None}, "credentials"),
        ({"account_sid": "AC123"}, "account_sid"),
        ({"sender": "0044 20 7946"}, "sender"),
        ({"messaging_service_id": "MG123"}, "messaging_service_id"),
        ({"status_callback": "ftp://example.com/x"}, "status_callback"),
        ({"bulk_concurrency": 0}, "bulk_concurrency"),
        ({"line_type_lookup": "yes"}, "line_type_lookup"),
        ({"timeout": -1}, "timeout"),
        ({"no_such_policy": 1}, "policy"),
    ],
)
async def test_a_bad_or_missing_setting_is_a_config_error_naming_it(
    options: dict[str, Any], field: str
) -> None:
    credentials = await manager()
    settings: dict[str, Any] = {"credentials": credentials, "account_sid": ACCOUNT}
    settings.update(options)
    async with Runtime() as rt:
        with pytest.raises(ConfigError) as caught:
            TwilioSms(rt, **settings)
    assert caught.value.field == field


def test_the_defaults_are_the_issue_s() -> None:
    rt = Runtime()
    credentials = CredentialManager(MemoryCredentialStore(), {}, clock=lambda: 0.0)
    sms = TwilioSms(rt, credentials=credentials)
    for name in ("twilio", "twilio-lookups"):
        policy = rt.actor(name).policy
        assert (policy.rate_limit, policy.timeout) == (TWILIO_RATE_LIMIT, TWILIO_TIMEOUT)
    assert TWILIO_RATE_LIMIT.rate / TWILIO_RATE_LIMIT.period == 1.0  # 3600 per hour
    assert TWILIO_TIMEOUT == 15.0
    assert sms.name == "twilio"


E164_TEXT = st.from_regex(r"\+[1-9][0-9]{1,14}", fullmatch=True)


@given(number=st.one_of(E164_TEXT, st.text(max_size=20)))
def test_only_e164_numbers_get_past_the_check_without_a_country(
    offline: TwilioSms, number: str
) -> None:
    """Not E.164: `ConfigError` before the runtime is asked; E.164: on to the runtime,
    which, not running, refuses it with `ServiceUnavailable`."""
    e164 = re.fullmatch(r"\+[1-9][0-9]{1,14}", number) is not None
    with pytest.raises(ServiceUnavailable if e164 else ConfigError):
        anyio.run(offline.validate_phone_number, number)


def test_a_body_utf8_cannot_carry_is_a_config_error(offline: TwilioSms) -> None:
    with pytest.raises(ConfigError) as caught:
        anyio.run(offline.send, SmsMessage(to=TO, body="half a pair: \ud800"))
    assert caught.value.field == "message"


# -- Twilio's refusals ----------------------------------------------------------


@pytest.mark.anyio
async def test_a_refusal_is_a_vendor_error_with_twilio_s_code_and_message_not_retried(
    fake: FakeTwilio, url: str
) -> None:
    fake.reject(TO)
    async with Runtime() as rt:
        sms = await twilio(rt, fake, url)
        with pytest.raises(VendorError) as caught:
            await sms.send(SmsMessage(to=TO, body="hi"))
    error = caught.value
    assert (error.service, error.status, error.code) == ("twilio", 400, 21610)
    assert error.body == (
        "Twilio error 21610: Attempt to send to unsubscribed recipient "
        "(https://www.twilio.com/docs/errors/21610)"
    )
    assert len(fake.received) == 1
    assert fake.messages == []


@pytest.mark.anyio
async def test_wrong_credentials_are_twilio_s_20003_and_the_token_is_nowhere_in_the_error(
    fake: FakeTwilio, url: str
) -> None:
    wrong = "0" * 32
    credentials = await manager((None, basic(fake.account_sid, wrong)))
    async with Runtime() as rt:
        sms = await twilio(rt, fake, url, credentials=credentials)
        with pytest.raises(VendorError) as caught:
            await sms.check_balance()
    assert (caught.value.status, caught.value.code) == (401, 20003)
    assert "Authenticate" in caught.value.body
    assert wrong not in str(caught.value)
    assert fake.received[0].header("authorization") == auth_header(fake.account_sid, wrong)


@pytest.mark.anyio
async def test_no_stored_credentials_raise_credentials_not_found(
    fake: FakeTwilio, url: str
) -> None:
    async with Runtime() as rt:
        sms = await twilio(rt, fake, url, credentials=await manager())
        with pytest.raises(CredentialsNotFound):
            await sms.send(SmsMessage(to=TO, body="hi"))
        with pytest.raises(CredentialsNotFound):
            await sms.send_bulk([SmsMessage(to=TO, body="hi")])
    assert fake.received == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"auth": None}, 401, 20003),
        ({"path": "/2010-04-01/Accounts/AC" + "f" * 32 + "/Messages.json"}, 404, 20404),
        ({"json": True}, 400, 21604),
        ({"form": {"To": "4155550123"}}, 400, 21211),
        ({"form": {"From": None}}, 400, 21603),
        ({"form": {"From": "+1 (415)"}}, 400, 21212),
        ({"form": {"From": None, "MessagingServiceSid": "MG1"}}, 400, 21705),
        ({"form": {"Body": None}}, 400, 21602),
        ({"form": {"Body": "x" * 1601}}, 400, 21617),
        ({"form": {"MediaUrl": ["https://cdn.example/a.png"] * 11}}, 400, 21623),
        ({"form": {"MediaUrl": ["cdn.example/a.png"]}}, 400, 21620),
        ({"form": {"StatusCallback": "not a url"}}, 400, 21609),
        ({"method": "GET"}, 405, 20004),
    ],
)
async def test_the_fake_refuses_what_twilio_documents_with_twilio_s_error_body(
    fake: FakeTwilio, url: str, change: dict[str, Any], status: int, code: int
) -> None:
    form: dict[str, Any] = {"To": TO, "From": FROM, "Body": "hi"}
    form.update(change.get("form", {}))
    data = {name: value for name, value in form.items() if value is not None}
    auth = None if "auth" in change else (fake.account_sid, fake.auth_token)
    # verify=False: plain HTTP, so no CA bundle to load (tens of ms per client).
    async with httpx.AsyncClient(base_url=url, auth=auth, verify=False) as client:
        if change.get("json"):
            response = await client.post(messages_path(fake), json=data)
        else:
            path = change.get("path", messages_path(fake))
            response = await client.request(change.get("method", "POST"), path, data=data)
    assert response.status_code == status
    assert response.json() == {
        "code": code,
        "message": response.json()["message"],
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    assert fake.messages == []


# -- Lookup and balance ---------------------------------------------------------


@pytest.mark.anyio
async def test_lookup_sends_the_number_in_the_path_and_reads_twilio_s_answer(
    fake: FakeTwilio, url: str
) -> None:
    async with Runtime() as rt:
        sms = await twilio(rt, fake, url)
        e164 = await sms.validate_phone_number(TO)
        national = await sms.validate_phone_number("07700 900123", country_code="GB")
        fake.invalid("+14155550199", "INVALID_BUT_POSSIBLE")
        invalid = await sms.validate_phone_number("+14155550199")
        short = await sms.validate_phone_number("+1415555")
    first, second, *_ = fake.received
    assert first.method == "GET"
    assert first.target == "/v2/PhoneNumbers/%2B14155550123"
    assert first.header("authorization") == auth_header(fake.account_sid, fake.auth_token)
    assert second.target == "/v2/PhoneNumbers/07700%20900123?CountryCode=GB"
    assert (e164.phone_number, e164.valid, e164.country_code, e164.national_format) == (
        TO,
        True,
        "US",
        "(415) 555-0123",
    )
    assert (national.phone_number, national.valid, national.country_code) == (
        "+447700900123",
        True,
        "GB",
    )
    assert (invalid.valid, invalid.reason) == (False, "INVALID_BUT_POSSIBLE")
    assert (short.valid, short.reason, short.country_code) == (False, "TOO_SHORT", None)
    assert (e164.carrier, e164.line_type) == (None, None)


@pytest.mark.anyio
async def test_line_type_lookup_asks_for_line_type_intelligence(fake: FakeTwilio, url: str) -> None:
    async with Runtime() as rt:
        sms = await twilio(rt, fake, url, line_type_lookup=True)
        info = await sms.validate_phone_number(TO)
    assert fake.received[0].query == "Fields=line_type_intelligence"
    assert (info.carrier, info.line_type) == ("Fake Mobile", "mobile")


@pytest.mark.anyio
async def test_balance_reads_balance_json_as_a_decimal(fake: FakeTwilio, url: str) -> None:
    fake.balance = "-1.2375"
    async with Runtime() as rt:
        sms = await twilio(rt, fake, url)
        balance = await sms.check_balance()
    assert balance == AccountBalance(balance=Decimal("-1.2375"), currency="USD")
    (request,) = fake.received
    assert (request.method, request.path) == (
        "GET",
        f"/2010-04-01/Accounts/{fake.account_sid}/Balance.json",
    )


# -- tenants and accounts -------------------------------------------------------


@pytest.mark.anyio
async def test_without_account_sid_each_tenant_s_account_comes_from_its_credentials(
    fake: FakeTwilio, url: str
) -> None:
    api_key = Credentials(
        auth_method=AuthMethod.BASIC_AUTH,
        data={"username": API_KEY_SID, "password": API_KEY_SECRET, "account_sid": fake.account_sid},
    )
    credentials = await manager(
        ("by-key", api_key),
        ("by-sid", fake.credentials()),
        ("no-account", basic(API_KEY_SID, API_KEY_SECRET)),
    )
    async with Runtime() as rt:
        sms = await twilio(rt, fake, url, credentials=credentials, account_sid=None)
        await sms.send(SmsMessage(to=TO, body="a"), tenant_id="by-key")
        await sms.check_balance(tenant_id="by-sid")
        with pytest.raises(ConfigError) as caught:
            await sms.send(SmsMessage(to=TO, body="c"), tenant_id="no-account")
    assert caught.value.field == "account_sid"
    first, second = fake.received
    assert first.path == messages_path(fake)
    assert first.header("authorization") == auth_header(API_KEY_SID, API_KEY_SECRET)
    assert second.path.endswith(f"/Accounts/{fake.account_sid}/Balance.json")
    assert second.header("authorization") == auth_header(fake.account_sid, fake.auth_token)


# -- resilience ---------------------------------------------------------------


@pytest.mark.anyio
async def test_a_send_twilio_may_have_processed_is_not_sent_again(
    fake: FakeTwilio, url: str
) -> None:
    """The answer stalls after the message was created: resending would text twice."""
    fake.timeout_after_processing(1, stall=2.0)
    async with Runtime() as rt:
        sms = await twilio(rt, fake, url, timeout=0.3)
        with pytest.raises(ConnectionFailed) as caught:
            await sms.send(SmsMessage(to=TO, body="once"))
    assert caught.value.attempts == 1
    assert len(fake.received) == 1
    assert len(fake.messages) == 1


@pytest.mark.anyio
async def test_a_5xx_on_send_is_not_retried_but_a_lookup_is(fake: FakeTwilio, url: str) -> None:
    async with Runtime() as rt:
        sms = await twilio(rt, fake, url)
        fake.fail_next(1, 500)
        with pytest.raises(ConnectionFailed, match="HTTP 500"):
            await sms.send(SmsMessage(to=TO, body="hi"))
        fake.fail_next(2, 503)
        info = await sms.validate_phone_number(TO)
    assert info.valid
    assert [request.method for request in fake.received] == ["POST", "GET", "GET", "GET"]
    assert fake.messages == []


@pytest.mark.anyio
async def test_a_timed_out_lookup_is_retried(fake: FakeTwilio, url: str) -> None:
    fake.timeout_after_processing(1, stall=2.0)
    async with Runtime() as rt:
        sms = await twilio(rt, fake, url, timeout=0.3)
        balance = await sms.check_balance()
    assert balance.balance == Decimal("25.50")
    assert len(fake.received) == 2


@pytest.mark.anyio
async def test_a_throttled_balance_call_is_retried_after_twilio_s_retry_after(
    fake: FakeTwilio, url: str
) -> None:
    fake.throttle(1, retry_after=0)
    async with Runtime() as rt:
        sms = await twilio(rt, fake, url)
        await sms.check_balance()
    assert len(fake.received) == 2


@pytest.mark.anyio
async def test_a_refused_connection_is_retried_even_for_a_send(fake: FakeTwilio) -> None:
    """Refused means never sent: the one failure a send may safely be repeated after."""
    async with Runtime() as rt:
        sms = await twilio(rt, fake, closed_port_url())
        with pytest.raises(ConnectionFailed) as caught:
            await sms.send(SmsMessage(to=TO, body="hi"))
    assert caught.value.attempts == 3


# -- bulk -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_bulk_sends_one_request_each_and_reports_refusals_by_index(
    fake: FakeTwilio, url: str
) -> None:
    recipients = [f"+1415555010{i}" for i in range(6)]
    fake.reject(recipients[1])
    fake.reject(recipients[4], 21211, "The 'To' number is not a valid phone number.")
    async with Runtime() as rt:
        sms = await twilio(rt, fake, url)
        result = await sms.send_bulk(
            [SmsMessage(to=to, body=f"n{i}") for i, to in enumerate(recipients)]
        )
    assert (result.sent, result.failed) == (4, 2)
    assert [error.index for error in result.errors] == [1, 4]
    assert result.errors[1] == BulkFailure(
        index=4,
        reason="Twilio error 21211: The 'To' number is not a valid phone number. "
        "(https://www.twilio.com/docs/errors/21211)",
        status=400,
    )
    to_of = {message["sid"]: message["to"] for message in fake.messages}
    assert [to_of[receipt.message_id] for receipt in result.receipts] == [
        recipients[i] for i in (0, 2, 3, 5)
    ]
    assert len(fake.received) == 6


@pytest.mark.anyio
async def test_bulk_keeps_at_most_bulk_concurrency_requests_in_flight(
    fake: FakeTwilio, url: str
) -> None:
    fake.slow(0.2)  # long enough for the workers' requests to overlap on a busy machine
    async with Runtime() as rt:
        sms = await twilio(rt, fake, url, bulk_concurrency=3)
        result = await sms.send_bulk([SmsMessage(to=TO, body=str(i)) for i in range(7)])
    assert result.sent == 7
    assert 1 < fake.max_in_flight <= 3


@pytest.mark.anyio
async def test_bulk_raises_when_nothing_went_out_and_twilio_refused_nothing(
    fake: FakeTwilio, url: str
) -> None:
    fake.fail_next(3, 500)
    async with Runtime() as rt:
        sms = await twilio(rt, fake, url)
        with pytest.raises(ConnectionFailed):
            await sms.send_bulk([SmsMessage(to=TO, body=str(i)) for i in range(3)])
        assert await sms.send_bulk([]) == BulkResult.of((), ())
    assert len(fake.received) == 3


@pytest.mark.anyio
async def test_bulk_reports_a_failed_attempt_beside_sent_messages(
    fake: FakeTwilio, url: str
) -> None:
    fake.fail_next(1, 502)
    async with Runtime() as rt:
        sms = await twilio(rt, fake, url, bulk_concurrency=1)
        result = await sms.send_bulk([SmsMessage(to=TO, body=str(i)) for i in range(3)])
    assert (result.sent, result.failed) == (2, 1)
    (error,) = result.errors
    assert error.index == 0
    assert "HTTP 502" in error.reason


@pytest.fixture(scope="module")
def running(server: tuple[FakeTwilio, str]) -> Iterator[tuple[BlockingPortal, TwilioSms]]:
    """An adapter on a runtime kept running in a thread, for many examples in a row."""
    fake, url = server
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(Runtime()) as rt,
    ):
        yield portal, portal.call(partial(twilio, rt, fake, url, bulk_concurrency=4))


@given(rejected=st.lists(st.booleans(), min_size=1, max_size=6))
def test_bulk_accounts_for_every_message_exactly_once(
    server: tuple[FakeTwilio, str],
    running: tuple[BlockingPortal, TwilioSms],
    rejected: list[bool],
) -> None:
    fake, _ = server
    portal, sms = running
    fake.reset()
    recipients = [f"+4479460{i:05d}" for i in range(len(rejected))]
    for to, refuse in zip(recipients, rejected, strict=True):
        if refuse:
            fake.reject(to)
    messages = [SmsMessage(to=to, body="x") for to in recipients]
    result = portal.call(sms.send_bulk, messages)
    assert result.sent + result.failed == len(rejected)
    assert [error.index for error in result.errors] == [i for i, r in enumerate(rejected) if r]
    to_of = {message["sid"]: message["to"] for message in fake.messages}
    assert [to_of[receipt.message_id] for receipt in result.receipts] == [
        to for to, refuse in zip(recipients, rejected, strict=True) if not refuse
    ]
    assert len(fake.received) == len(rejected)


# -- form encoding --------------------------------------------------------------

BODIES = st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=300)
URLS = st.builds(
    lambda path, query: f"https://cdn.example/{path}?q={query}",
    st.text(alphabet="abc-_.~/", min_size=1, max_size=10),
    st.text(alphabet="ab&=+ %?", max_size=10).map(lambda q: q.replace(" ", "%20")),
)


@given(
    to=E164_TEXT,
    body=st.one_of(st.none(), BODIES),
    media=st.lists(URLS, max_size=10),
    sender=st.sampled_from([None, "+15005550006", "12345", "ACME Corp"]),
    callback=st.one_of(st.none(), URLS),
)
def test_the_form_carries_each_field_exactly_as_given(
    offline: TwilioSms,
    to: str,
    body: str | None,
    media: list[str],
    sender: str | None,
    callback: str | None,
) -> None:
    if body is None and not media:
        body = "-"
    message = SmsMessage(
        to=to, body=body, media_urls=media, sender=sender, status_callback=callback
    )
    sent = Received(
        method="POST", path="/", query="", target="/", headers={}, body=offline._form(message), at=0
    )
    expected: dict[str, list[str]] = {"To": [to], "From": [sender or FROM]}
    if body is not None:
        expected["Body"] = [body]
    if media:
        expected["MediaUrl"] = media
    if callback is not None:
        expected["StatusCallback"] = [callback]
    assert FakeTwilio.form(sent) == expected


# -- the integration log --------------------------------------------------------


@pytest.mark.anyio
async def test_every_attempt_is_logged_with_service_endpoint_status_and_duration_and_no_secret(
    fake: FakeTwilio, url: str
) -> None:
    logs = MemoryLogStore()
    fake.reject("+14155550100")
    fake.fail_next(1, 503)  # the first lookup attempt
    async with Runtime(log_store=logs) as rt:
        sms = await twilio(rt, fake, url)
        await sms.validate_phone_number(TO, tenant_id=None)
        await sms.send(SmsMessage(to=TO, body="hi"))
        with pytest.raises(VendorError) as refused:
            await sms.send(SmsMessage(to="+14155550100", body="hi"))
        await sms.check_balance()
    records = await logs.query(LogFilters(), limit=100)
    assert len(records) == len(fake.received) == 5
    seen = sorted(
        (record.service_name, record.endpoint, record.http_status_code, record.attempt_number)
        for record in records
    )
    lookup = "GET /v2/PhoneNumbers/{PhoneNumber}"
    messages = "POST /2010-04-01/Accounts/{AccountSid}/Messages.json"
    balance = "GET /2010-04-01/Accounts/{AccountSid}/Balance.json"
    assert seen == sorted(
        [
            ("twilio-lookups", lookup, 503, 1),
            ("twilio-lookups", lookup, 200, 2),
            ("twilio", messages, 201, 1),
            ("twilio", messages, 400, 1),
            ("twilio", balance, 200, 1),
        ]
    )
    assert all(record.duration_ms is not None and record.duration_ms >= 0 for record in records)
    encoded = base64.b64encode(f"{fake.account_sid}:{fake.auth_token}".encode()).decode()
    for text in (msgspec.json.encode(records).decode(), str(refused.value)):
        assert fake.auth_token not in text
        assert encoded not in text
