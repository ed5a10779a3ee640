"""`SendGridEmail` against `FakeSendGrid` over real loopback HTTP.

The fake checks what SendGrid documents and records every request, so these
tests assert on what SendGrid would have received: the bearer key, the JSON
body, how a bulk send is split into requests. The only real waits are short:
a 0.3 s client timeout and a 0.3 s Retry-After.
"""

from __future__ import annotations

import base64
import math
import socket
from collections.abc import Iterator
from datetime import date

import httpx
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector import ConfigError, ConnectionFailed, RateLimit, Retry, Runtime, VendorError
from connector._credential_manager import CredentialManager
from connector._credentials import AuthMethod, Credentials
from connector._credstore_memory import MemoryCredentialStore
from connector._email import Attachment, EmailMessage, EmailService
from connector._logrecord import LogStatus
from connector._logstore_memory import MemoryLogStore
from connector.adapters._sendgrid import (
    MAX_PERSONALIZATIONS,
    MAX_RECIPIENTS,
    SENDGRID_URL,
    SendGridEmail,
    plan_requests,
)
from connector.testing import FakeSendGrid, serve_asgi

pytestmark = pytest.mark.anyio

KEY = "SG.mail-key-4f9a8b7c6d5e"
OTHER_KEY = "SG.tenant-two-1a2b3c4d"
VALIDATION_KEY = "SG.validation-key-0e9d8c"
FAST = Retry(attempts=3, initial_delay=0.01, max_delay=0.05, jitter="none")
SEND = "/v3/mail/send"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[FakeSendGrid, str]]:
    fake = FakeSendGrid([KEY, OTHER_KEY], validation_keys=[VALIDATION_KEY], stall=1.0)
    with serve_asgi(fake.app) as url:
        yield fake, url


@pytest.fixture
def fake(server: tuple[FakeSendGrid, str]) -> FakeSendGrid:
    server[0].reset()
    return server[0]


@pytest.fixture
def url(server: tuple[FakeSendGrid, str]) -> str:
    return server[1]


async def credentials() -> CredentialManager:
    store = MemoryCredentialStore()
    for service, tenant, key in (
        ("sendgrid", None, KEY),
        ("sendgrid", "t2", OTHER_KEY),
        ("sendgrid", "bad", "SG.revoked"),
        ("sendgrid-validation", None, VALIDATION_KEY),
    ):
        data = {"token": key}
        await store.put(
            service, tenant, Credentials(auth_method=AuthMethod.BEARER_TOKEN, data=data)
        )
    return CredentialManager(store, {}, clock=lambda: 1_750_000_000.0)


async def sendgrid(rt: Runtime, url: str, **options: object) -> SendGridEmail:
    options.setdefault("retry", FAST)
    options.setdefault("validation_credentials", "sendgrid-validation")
    return SendGridEmail(
        rt, credentials=await credentials(), base_url=url, sender="shop@example.com", **options
    )


def note(to: str, **fields: object) -> EmailMessage:
    fields.setdefault("subject", "Your order")
    fields.setdefault("text", "It shipped.")
    return EmailMessage(to=[to], **fields)  # type: ignore[arg-type]


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- one message ----------------------------------------------------------------


async def test_a_message_is_sent_as_sendgrid_documents_it(fake: FakeSendGrid, url: str) -> None:
    message = EmailMessage(
        to=["ada@example.com"],
        cc=["bob@example.com"],
        bcc=["audit@example.com"],
        subject="Invoice 42",
        text="Plain",
        html="<p>Rich</p>",
        sender="billing@example.com",
        sender_name="Billing",
        reply_to="help@example.com",
        attachments=[
            Attachment(filename="invoice.pdf", content=b"%PDF-1", content_type="application/pdf"),
            Attachment(filename="logo.png", content=b"\x89PNG", content_id="logo"),
        ],
        headers={"X-Campaign": "spring"},
        tags=["invoices"],
        metadata={"order": "42"},
    )
    async with Runtime() as rt:
        receipt = await (await sendgrid(rt, url)).send_transactional_email(message)
    (request,) = fake.received
    assert (request.method, request.path) == ("POST", SEND)
    assert request.header("authorization") == f"Bearer {KEY}"
    assert request.header("content-type") == "application/json"
    assert request.json() == {
        "personalizations": [
            {
                "to": [{"email": "ada@example.com"}],
                "cc": [{"email": "bob@example.com"}],
                "bcc": [{"email": "audit@example.com"}],
                "subject": "Invoice 42",
                "headers": {"X-Campaign": "spring"},
                "custom_args": {"order": "42"},
            }
        ],
        "from": {"email": "billing@example.com", "name": "Billing"},
        "reply_to": {"email": "help@example.com"},
        "content": [
            {"type": "text/plain", "value": "Plain"},
            {"type": "text/html", "value": "<p>Rich</p>"},
        ],
        "attachments": [
            {
                "content": base64.b64encode(b"%PDF-1").decode(),
                "type": "application/pdf",
                "filename": "invoice.pdf",
                "disposition": "attachment",
            },
            {
                "content": base64.b64encode(b"\x89PNG").decode(),
                "type": "application/octet-stream",
                "filename": "logo.png",
                "disposition": "inline",
                "content_id": "logo",
            },
        ],
        "categories": ["invoices"],
    }
    (mail,) = fake.sent
    assert receipt.message_id == mail.message_id  # X-Message-Id
    assert receipt.status == "queued"


async def test_a_template_message_sends_its_data_and_the_default_sender(
    fake: FakeSendGrid, url: str
) -> None:
    message = EmailMessage(
        to=["ada@example.com"], template_id="d-welcome", template_data={"name": "Ada", "n": [1]}
    )
    async with Runtime() as rt:
        adapter = SendGridEmail(
            rt,
            credentials=await credentials(),
            base_url=url,
            sender="shop@example.com",
            sender_name="Shop",
        )
        await adapter.send_transactional_email(message)
    body = fake.received[0].json()
    assert body["from"] == {"email": "shop@example.com", "name": "Shop"}
    assert body["template_id"] == "d-welcome"
    assert body["personalizations"] == [
        {"to": [{"email": "ada@example.com"}], "dynamic_template_data": {"name": "Ada", "n": [1]}}
    ]
    assert "content" not in body
    assert "subject" not in body["personalizations"][0]


async def test_each_tenant_sends_with_its_own_key(fake: FakeSendGrid, url: str) -> None:
    async with Runtime() as rt:
        adapter = await sendgrid(rt, url)
        await adapter.send_transactional_email(note("ada@example.com"))
        await adapter.send_transactional_email(note("bob@example.com"), tenant_id="t2")
    keys = [request.header("authorization") for request in fake.received]
    assert keys == [f"Bearer {KEY}", f"Bearer {OTHER_KEY}"]


async def test_a_refusal_is_a_vendor_error_with_sendgrids_message(
    fake: FakeSendGrid, url: str
) -> None:
    fake.reject("gone@example.com", "The email address is on a suppression list")
    async with Runtime() as rt:
        adapter = await sendgrid(rt, url)
        with pytest.raises(VendorError) as refused:
            await adapter.send_transactional_email(note("gone@example.com"))
        with pytest.raises(VendorError) as unauthorized:
            await adapter.send_transactional_email(note("ada@example.com"), tenant_id="bad")
    assert refused.value.status == 400
    assert refused.value.body == (
        "personalizations.0.to.0.email: The email address is on a suppression list"
    )
    assert (unauthorized.value.status, unauthorized.value.body) == (401, "authorization required")
    assert "SG.revoked" not in str(unauthorized.value)
    assert len(fake.received) == 2  # a caller's error is not retried
    assert fake.sent == []


async def test_a_send_that_timed_out_after_sendgrid_took_it_is_never_repeated(
    fake: FakeSendGrid, url: str
) -> None:
    fake.timeout_after_processing(1)
    async with Runtime() as rt:
        adapter = await sendgrid(rt, url, timeout=0.3)
        with pytest.raises(ConnectionFailed) as caught:
            await adapter.send_transactional_email(note("ada@example.com"))
    assert caught.value.attempts == 1
    assert len(fake.requests_to(SEND)) == 1
    assert [mail.recipients for mail in fake.sent] == [["ada@example.com"]]  # sent once


async def test_a_throttled_read_waits_for_retry_after_then_succeeds(
    fake: FakeSendGrid, url: str
) -> None:
    fake.throttle(1, retry_after=0.3)
    fake.add_stats(date(2025, 3, 1), requests=7)
    async with Runtime() as rt:
        stats = await (await sendgrid(rt, url)).get_statistics(date(2025, 3, 1), date(2025, 3, 1))
    throttled, retried = fake.requests_to("/v3/stats")
    assert retried.at - throttled.at >= 0.3
    assert stats.requests == 7


# -- bulk -------------------------------------------------------------------------


async def test_a_bulk_of_2500_recipients_is_three_requests_and_a_refused_one_fails_its_own(
    fake: FakeSendGrid, url: str
) -> None:
    messages = [note(f"user{i}@example.com", subject=f"Hello {i}") for i in range(2500)]
    fake.reject("user1234@example.com")
    async with Runtime() as rt:
        result = await (await sendgrid(rt, url)).send_bulk_email(messages)
    requests = fake.requests_to(SEND)
    assert [len(r.json()["personalizations"]) for r in requests] == [1000, 1000, 500]
    assert requests[2].json()["personalizations"][0] == {
        "to": [{"email": "user2000@example.com"}],
        "subject": "Hello 2000",
    }
    assert (result.sent, result.failed) == (1500, 1000)
    assert [error.index for error in result.errors] == list(range(1000, 2000))
    assert {(e.status, e.reason) for e in result.errors} == {
        (400, "personalizations.234.to.0.email: recipient address rejected")
    }
    first, third = fake.sent
    assert [r.message_id for r in result.receipts] == [first.message_id] * 1000 + [
        third.message_id
    ] * 500
    assert first.recipients == [f"user{i}@example.com" for i in range(1000)]


async def test_bulk_messages_share_a_request_only_when_sendgrid_can_personalize_the_difference(
    fake: FakeSendGrid, url: str
) -> None:
    messages = [
        note("a@example.com", metadata={"n": "1"}),
        note("b@example.com", text="Other body"),
        EmailMessage(to=["c@example.com", "d@example.com"], subject="Team", text="It shipped."),
        note("e@example.com", tags=["news"]),
    ]
    async with Runtime() as rt:
        result = await (await sendgrid(rt, url)).send_bulk_email(messages)
    bodies = [request.json() for request in fake.requests_to(SEND)]
    assert [[p["to"] for p in body["personalizations"]] for body in bodies] == [
        [[{"email": "a@example.com"}], [{"email": "c@example.com"}, {"email": "d@example.com"}]],
        [[{"email": "b@example.com"}]],
        [[{"email": "e@example.com"}]],
    ]
    ids = [receipt.message_id for receipt in result.receipts]
    assert ids[0] == ids[2] != ids[1]  # receipts come back in the messages' order


async def test_a_bulk_request_that_fails_past_its_retries_fails_its_own_messages(
    fake: FakeSendGrid, url: str
) -> None:
    fake.fail_next(1, 500)
    messages = [note("a@example.com"), note("b@example.com", text="Second request")]
    async with Runtime() as rt:
        result = await (await sendgrid(rt, url)).send_bulk_email(messages)
    (failure,) = result.errors
    assert (failure.index, failure.status) == (0, None)
    assert "HTTP 500" in failure.reason
    assert result.sent == 1
    assert [mail.recipients for mail in fake.sent] == [["b@example.com"]]


async def test_a_bulk_raises_when_sendgrid_cannot_be_reached_at_all() -> None:
    async with Runtime() as rt:
        adapter = await sendgrid(rt, closed_port_url(), retry=Retry(attempts=1))
        with pytest.raises(ConnectionFailed):
            await adapter.send_bulk_email([note("a@example.com"), note("b@example.com")])
        empty = await adapter.send_bulk_email([])
    assert (empty.sent, empty.failed) == (0, 0)


async def test_a_bulk_with_a_message_sendgrid_would_refuse_raises_before_sending(
    fake: FakeSendGrid, url: str
) -> None:
    too_many_tags = note("b@example.com", tags=[f"t{i}" for i in range(11)])
    async with Runtime() as rt:
        adapter = await sendgrid(rt, url)
        with pytest.raises(ConfigError) as caught:
            await adapter.send_bulk_email([note("a@example.com"), too_many_tags])
        with pytest.raises(ConfigError, match="set by SendGrid"):
            await adapter.send_transactional_email(note("a@example.com", headers={"From": "x"}))
        with pytest.raises(ConfigError, match="must be a list of EmailMessage"):
            await adapter.send_bulk_email(note("a@example.com"))  # type: ignore[arg-type]
    assert caught.value.field == "tags"
    assert fake.received == []


@given(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.integers(1, MAX_RECIPIENTS)), max_size=60
    ).flatmap(
        lambda big: st.lists(
            st.tuples(st.sampled_from("abc"), st.integers(1, 3)), max_size=2500
        ).map(lambda small: big + small)
    )
)
def test_planned_requests_cover_each_message_once_within_sendgrids_limits(
    messages: list[tuple[str, int]],
) -> None:
    plan = plan_requests(messages)
    assert sorted(i for request in plan for i in request) == list(range(len(messages)))
    assert [request[0] for request in plan] == sorted(request[0] for request in plan)
    for request in plan:
        assert request == sorted(request)
        assert len({messages[i][0] for i in request}) == 1
        assert len(request) <= MAX_PERSONALIZATIONS
        assert sum(messages[i][1] for i in request) <= MAX_RECIPIENTS


@given(st.integers(0, 5000))
def test_one_recipient_messages_of_one_kind_fill_requests_of_a_thousand(n: int) -> None:
    assert len(plan_requests([("same", 1)] * n)) == math.ceil(n / MAX_PERSONALIZATIONS)


# -- validation and statistics ------------------------------------------------


async def test_addresses_are_checked_locally_then_by_sendgrid_with_its_own_key(
    fake: FakeSendGrid, url: str
) -> None:
    fake.set_verdict(
        "ada@gmial.com",
        "Risky",
        suggestion="gmail.com",
        checks={"is_suspected_disposable_address": True},
    )
    fake.set_verdict("gone@example.com", "Invalid", checks={"has_mx_or_a_record": False})
    async with Runtime() as rt:
        adapter = await sendgrid(rt, url)
        malformed = await adapter.validate_address("not an address")
        risky = await adapter.validate_address("ada@gmial.com")
        invalid = await adapter.validate_address("gone@example.com")
        valid = await adapter.validate_address("bob@example.com")
    assert (malformed.valid, malformed.reason) == (False, "malformed address")
    assert (risky.valid, risky.reason, risky.suggestion) == (
        True,
        "risky: disposable address",
        "ada@gmail.com",
    )
    assert (invalid.valid, invalid.reason) == (False, "invalid: no MX or A record")
    assert (valid.valid, valid.reason, valid.suggestion) == (True, None, None)
    requests = fake.received
    assert [r.json() for r in requests] == [
        {"email": "ada@gmial.com"},
        {"email": "gone@example.com"},
        {"email": "bob@example.com"},
    ]
    assert {r.path for r in requests} == {"/v3/validations/email"}
    assert {r.header("authorization") for r in requests} == {f"Bearer {VALIDATION_KEY}"}


async def test_validation_with_the_mail_key_is_refused_by_sendgrid(
    fake: FakeSendGrid, url: str
) -> None:
    async with Runtime() as rt:
        adapter = await sendgrid(rt, url, validation_credentials=None)
        with pytest.raises(VendorError) as caught:
            await adapter.validate_address("bob@example.com")
    assert (caught.value.status, caught.value.body) == (403, "access forbidden")
    assert fake.received[0].header("authorization") == f"Bearer {KEY}"


async def test_statistics_sum_sendgrids_days_in_the_period(fake: FakeSendGrid, url: str) -> None:
    fake.add_stats(date(2025, 1, 31), requests=1000)  # outside the period
    fake.add_stats(date(2025, 2, 1), requests=10, delivered=9, bounces=1, opens=5, unique_opens=4)
    fake.add_stats(date(2025, 2, 2), requests=20, delivered=18, deferred=2, clicks=3, blocks=1)
    fake.add_stats(date(2025, 2, 3), unique_clicks=2, spam_reports=1, unsubscribes=1)
    async with Runtime() as rt:
        stats = await (await sendgrid(rt, url)).get_statistics(date(2025, 2, 1), date(2025, 2, 3))
    (request,) = fake.received
    assert request.target == (
        "/v3/stats?start_date=2025-02-01&end_date=2025-02-03&aggregated_by=day"
    )
    assert msgspec.structs.asdict(stats) == {
        "start": date(2025, 2, 1),
        "end": date(2025, 2, 3),
        "requests": 30,
        "delivered": 27,
        "bounces": 1,
        "deferred": 2,
        "blocks": 1,
        "opens": 5,
        "unique_opens": 4,
        "clicks": 3,
        "unique_clicks": 2,
        "spam_reports": 1,
        "unsubscribes": 1,
    }


async def test_a_period_that_ends_before_it_starts_is_refused_locally(
    fake: FakeSendGrid, url: str
) -> None:
    async with Runtime() as rt:
        adapter = await sendgrid(rt, url)
        with pytest.raises(ConfigError) as caught:
            await adapter.get_statistics(date(2025, 2, 2), date(2025, 2, 1))
    assert caught.value.field == "end"
    assert fake.received == []


# -- the fake refuses what SendGrid documents as refused ------------------------


def mail(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "personalizations": [{"to": [{"email": "ada@example.com"}], "subject": "Hi"}],
        "from": {"email": "shop@example.com"},
        "content": [{"type": "text/plain", "value": "Hello"}],
    }
    body.update(changes)
    return body


def one(**personalization: object) -> list[dict[str, object]]:
    return [{"to": [{"email": "ada@example.com"}], "subject": "Hi", **personalization}]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (mail(**{"from": None}), "from"),
        (mail(personalizations=[]), "personalizations"),
        (mail(personalizations=one() * 1001), "personalizations"),
        (mail(personalizations=one(to=[])), "personalizations.0.to"),
        (mail(personalizations=one(to=[{"email": "nobody"}])), "personalizations.0.to.0.email"),
        (
            mail(personalizations=one(cc=[{"email": "ADA@example.com"}])),
            "personalizations.0.cc.0.email",
        ),
        (
            mail(personalizations=[{"to": [{"email": "ada@example.com"}]}]),
            "personalizations.0.subject",
        ),
        (mail(personalizations=one(headers={"To": "x"})), "personalizations.0.headers.To"),
        (mail(personalizations=one(custom_args={"n": 1})), "personalizations.0.custom_args"),
        (mail(content=None), "content"),
        (
            mail(
                content=[
                    {"type": "text/html", "value": "<p>"},
                    {"type": "text/plain", "value": "p"},
                ]
            ),
            "content.1.type",
        ),
        (
            mail(attachments=[{"content": "not base64!", "filename": "a.txt"}]),
            "attachments.0.content",
        ),
        (
            mail(attachments=[{"content": "YQ==", "filename": "a.png", "disposition": "inline"}]),
            "attachments.0.content_id",
        ),
        (mail(categories=[f"c{i}" for i in range(11)]), "categories"),
    ],
)
def test_the_fake_refuses_a_mail_send_sendgrid_would_refuse(
    server: tuple[FakeSendGrid, str], body: dict[str, object], field: str
) -> None:
    fake, url = server
    fake.reset()
    headers = {"Authorization": f"Bearer {KEY}"}
    response = httpx.post(f"{url}{SEND}", json=body, headers=headers)
    assert response.status_code == 400
    assert field in [error["field"] for error in response.json()["errors"]]
    assert fake.sent == []
    assert httpx.post(f"{url}{SEND}", json=mail(), headers=headers).status_code == 202


def test_the_fake_wants_a_bearer_key_and_json(server: tuple[FakeSendGrid, str]) -> None:
    fake, url = server
    fake.reset()
    as_form = httpx.post(
        f"{url}{SEND}", data={"a": "b"}, headers={"Authorization": f"Bearer {KEY}"}
    )
    no_key = httpx.post(f"{url}{SEND}", json=mail())
    basic = httpx.post(f"{url}{SEND}", json=mail(), auth=("apikey", KEY))
    assert (as_form.status_code, as_form.json()["errors"][0]["message"]) == (
        400,
        "Content-Type should be application/json.",
    )
    assert no_key.status_code == basic.status_code == 401
    assert no_key.json() == {
        "errors": [{"message": "authorization required", "field": "null", "help": None}]
    }


# -- configuration and logs -------------------------------------------------------


async def test_defaults_are_the_originals_and_every_setting_is_checked(url: str) -> None:
    async with Runtime() as rt:
        adapter = await sendgrid(rt, url, retry=Retry())
        assert isinstance(adapter, EmailService)
        assert adapter.policy.rate_limit == RateLimit.per_minute(600)
        assert adapter.policy.timeout == 20.0
        faster = await sendgrid(
            rt, url, name="sendgrid-2", timeout=5.0, rate_limit=RateLimit.per_second(1)
        )
        assert (faster.policy.timeout, faster.policy.rate_limit) == (5.0, RateLimit.per_second(1))
        assert SendGridEmail(rt, credentials=await credentials(), name="s3").base_url == (
            SENDGRID_URL
        )
        with pytest.raises(ConfigError) as missing:
            SendGridEmail(rt, name="s4")
        with pytest.raises(ConfigError) as sender:
            SendGridEmail(rt, credentials=await credentials(), name="s5", sender="nobody")
        with pytest.raises(ConfigError) as base_url:
            SendGridEmail(rt, credentials=await credentials(), name="s6", base_url="ftp://x")
        with pytest.raises(ConfigError) as unknown:
            SendGridEmail(rt, credentials=await credentials(), name="s7", retries=3)
        no_sender = SendGridEmail(rt, credentials=await credentials(), name="s8", base_url=url)
        with pytest.raises(ConfigError) as no_default:
            await no_sender.send_transactional_email(note("ada@example.com"))
    assert [error.value.field for error in (missing, sender, base_url, unknown, no_default)] == [
        "credentials",
        "sender",
        "base_url",
        "policy",
        "sender",
    ]


async def test_the_integration_log_has_one_record_per_attempt_and_no_key(
    fake: FakeSendGrid, url: str
) -> None:
    fake.reject("gone@example.com")
    fake.fail_next(1, 503)
    store = MemoryLogStore()
    async with Runtime(log_store=store) as rt:
        adapter = await sendgrid(rt, url)
        await adapter.get_statistics(date(2025, 1, 1), date(2025, 1, 1))  # 503, then 200
        await adapter.send_transactional_email(note("ada@example.com"))
        with pytest.raises(VendorError):
            await adapter.send_transactional_email(note("gone@example.com"))
        await adapter.validate_address("bob@example.com")
    records = sorted(await store.query(limit=1000), key=lambda record: record.id)
    assert [(r.endpoint, r.http_status_code, r.status, r.attempt_number) for r in records] == [
        ("GET /v3/stats", 503, LogStatus.FAILED, 1),
        ("GET /v3/stats", 200, LogStatus.SUCCESS, 2),
        ("POST /v3/mail/send", 202, LogStatus.SUCCESS, 1),
        ("POST /v3/mail/send", 400, LogStatus.FAILED, 1),
        ("POST /v3/validations/email", 200, LogStatus.SUCCESS, 1),
    ]
    assert {r.service_name for r in records} == {"sendgrid", "sendgrid POST /v3/validations/email"}
    assert all(r.duration_ms is not None and r.duration_ms >= 0 for r in records)
    dumped = msgspec.json.encode(records).decode()
    for secret in (KEY, VALIDATION_KEY, OTHER_KEY):
        assert secret not in dumped
