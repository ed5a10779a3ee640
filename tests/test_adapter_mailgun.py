"""`MailgunEmail` against `FakeMailgun` over real loopback HTTP.

The fake checks what Mailgun documents and records every request, so these
tests assert on what Mailgun would have received: Basic auth as ``api``, the
form fields in order, the files of a multipart body, how a bulk send is
batched. The only real waits are short: a 0.3 s client timeout and a 0.3 s
Retry-After.
"""

from __future__ import annotations

import base64
import calendar
from collections.abc import Iterator
from datetime import date
from urllib.parse import parse_qsl, urlencode

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
from connector._logstore_memory import MemoryLogStore
from connector.adapters._mailgun import (
    MAILGUN_EU_URL,
    MAILGUN_URL,
    MAX_RECIPIENTS,
    MailgunEmail,
    multipart,
    plan_batches,
)
from connector.testing import FakeMailgun, serve_asgi
from connector.testing._fake_mailgun import _multipart

pytestmark = pytest.mark.anyio

KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
OTHER_KEY = "key-tenant-two-77c1e0"
DOMAIN = "mg.example.com"
MESSAGES = f"/v3/{DOMAIN}/messages"
FAST = Retry(attempts=3, initial_delay=0.01, max_delay=0.05, jitter="none")


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[FakeMailgun, str]]:
    fake = FakeMailgun([KEY, OTHER_KEY], domains=[DOMAIN, "other.example.com"], stall=1.0)
    with serve_asgi(fake.app) as url:
        yield fake, url


@pytest.fixture
def fake(server: tuple[FakeMailgun, str]) -> FakeMailgun:
    server[0].reset()
    return server[0]


@pytest.fixture
def url(server: tuple[FakeMailgun, str]) -> str:
    return server[1]


async def credentials() -> CredentialManager:
    store = MemoryCredentialStore()
    for service, tenant, key in (
        ("mailgun", None, KEY),
        ("mailgun", "t2", OTHER_KEY),
        ("mailgun", "bad", "nope"),
        ("mailgun-2", None, KEY),
    ):
        data = {"username": "api", "password": key}
        await store.put(service, tenant, Credentials(auth_method=AuthMethod.BASIC_AUTH, data=data))
    return CredentialManager(store, {}, clock=lambda: 1_750_000_000.0)


async def mailgun(rt: Runtime, url: str, **options: object) -> MailgunEmail:
    options.setdefault("retry", FAST)
    options.setdefault("domain", DOMAIN)
    return MailgunEmail(
        rt, credentials=await credentials(), base_url=url, sender="shop@example.com", **options
    )


def note(to: str, **fields: object) -> EmailMessage:
    fields.setdefault("subject", "Your order")
    fields.setdefault("text", "It shipped.")
    return EmailMessage(to=[to], **fields)  # type: ignore[arg-type]


def basic(user: str, key: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()


# -- one message ----------------------------------------------------------------


async def test_a_message_is_a_urlencoded_form_with_basic_auth(fake: FakeMailgun, url: str) -> None:
    message = EmailMessage(
        to=["ada@example.com", "max@example.com"],
        cc=["bob@example.com"],
        bcc=["audit@example.com"],
        subject="Invoice 42",
        text="Plain",
        html="<p>Rich</p>",
        sender="billing@example.com",
        sender_name="Billing, Inc.",
        reply_to="help@example.com",
        headers={"X-Campaign": "spring"},
        tags=["invoices"],
        metadata={"order": "42"},
        template_id="invoice",
        template_data={"total": "9.50"},
    )
    async with Runtime() as rt:
        receipt = await (await mailgun(rt, url)).send_transactional_email(message)
    (request,) = fake.received
    assert (request.method, request.path) == ("POST", MESSAGES)
    assert request.header("authorization") == basic("api", KEY)
    assert request.header("content-type") == "application/x-www-form-urlencoded"
    assert parse_qsl(request.body.decode()) == [
        ("from", '"Billing, Inc." <billing@example.com>'),
        ("to", "ada@example.com"),
        ("to", "max@example.com"),
        ("cc", "bob@example.com"),
        ("bcc", "audit@example.com"),
        ("subject", "Invoice 42"),
        ("text", "Plain"),
        ("html", "<p>Rich</p>"),
        ("template", "invoice"),
        ("t:variables", '{"total":"9.50"}'),
        ("h:Reply-To", "help@example.com"),
        ("h:X-Campaign", "spring"),
        ("o:tag", "invoices"),
        ("v:order", "42"),
    ]
    (queued,) = fake.sent
    assert receipt.message_id == queued.message_id == f"<fake.000001@{DOMAIN}>"


async def test_attachments_make_the_form_multipart(fake: FakeMailgun, url: str) -> None:
    message = note(
        "ada@example.com",
        html='<img src="cid:logo.png">',
        attachments=[
            Attachment(
                filename='tax "2025".pdf', content=b"%PDF\r\n--x", content_type="application/pdf"
            ),
            Attachment(filename="logo", content=b"\x89PNG\x00", content_id="logo.png"),
        ],
    )
    async with Runtime() as rt:
        await (await mailgun(rt, url)).send_transactional_email(message)
    (request,) = fake.received
    assert request.header("content-type").startswith("multipart/form-data; boundary=")
    (queued,) = fake.sent
    assert queued.value("from") == "shop@example.com"
    assert queued.values("to") == ["ada@example.com"]
    assert queued.value("html") == '<img src="cid:logo.png">'
    assert [(f.field, f.filename, f.content_type, f.content) for f in queued.files] == [
        ("attachment", 'tax "2025".pdf', "application/pdf", b"%PDF\r\n--x"),
        ("inline", "logo.png", "application/octet-stream", b"\x89PNG\x00"),
    ]


_names = st.text(st.characters(codec="utf-8", exclude_characters='%\r\n"'), min_size=1)


@given(
    st.lists(st.tuples(_names, st.text(st.characters(codec="utf-8")))),
    st.lists(
        st.builds(
            Attachment,
            filename=st.text(
                st.characters(codec="utf-8", exclude_characters="\r\n\x00%"), min_size=1
            ),
            content=st.binary(),
        ),
        max_size=3,
    ),
)
def test_a_multipart_body_reads_back_as_its_fields_and_files_every_time(
    fields: list[tuple[str, str]], attachments: list[Attachment]
) -> None:
    body, content_type = multipart(fields, attachments)
    assert multipart(fields, attachments) == (body, content_type)  # the same bytes on a retry
    boundary = content_type.partition("boundary=")[2].encode()
    parsed = _multipart(body, boundary)
    assert not isinstance(parsed, str), parsed
    read_fields, files = parsed
    assert read_fields == fields
    assert [(f.filename, f.content) for f in files] == [
        (a.filename, a.content) for a in attachments
    ]


async def test_each_tenant_sends_with_its_own_key(fake: FakeMailgun, url: str) -> None:
    async with Runtime() as rt:
        adapter = await mailgun(rt, url)
        await adapter.send_transactional_email(note("ada@example.com"))
        await adapter.send_transactional_email(note("bob@example.com"), tenant_id="t2")
    keys = [request.header("authorization") for request in fake.received]
    assert keys == [basic("api", KEY), basic("api", OTHER_KEY)]


async def test_a_refusal_is_a_vendor_error_with_mailguns_message(
    fake: FakeMailgun, url: str
) -> None:
    fake.reject("gone@example.com", "mailbox unavailable")
    async with Runtime() as rt:
        adapter = await mailgun(rt, url)
        with pytest.raises(VendorError) as refused:
            await adapter.send_transactional_email(note("gone@example.com"))
        with pytest.raises(VendorError) as unauthorized:
            await adapter.send_transactional_email(note("ada@example.com"), tenant_id="bad")
        elsewhere = await mailgun(rt, url, name="mailgun-2", domain="unknown.example.com")
        with pytest.raises(VendorError) as unknown:
            await elsewhere.send_transactional_email(note("ada@example.com"))
    assert (refused.value.status, refused.value.body) == (
        400,
        "gone@example.com: mailbox unavailable",
    )
    assert (unauthorized.value.status, unauthorized.value.body) == (
        401,
        "Invalid or missing API key",
    )
    assert (unknown.value.status, unknown.value.body) == (
        404,
        "Domain not found: unknown.example.com",
    )
    assert len(fake.received) == 3  # callers' errors are not retried
    assert fake.sent == []


async def test_a_send_that_timed_out_after_mailgun_took_it_is_never_repeated(
    fake: FakeMailgun, url: str
) -> None:
    fake.timeout_after_processing(1)
    async with Runtime() as rt:
        adapter = await mailgun(rt, url, timeout=0.3)
        with pytest.raises(ConnectionFailed) as caught:
            await adapter.send_transactional_email(note("ada@example.com"))
    assert caught.value.attempts == 1
    assert len(fake.requests_to(MESSAGES)) == 1
    assert [message.recipients for message in fake.sent] == [["ada@example.com"]]


# -- bulk -------------------------------------------------------------------------


async def test_bulk_batches_messages_that_differ_only_in_their_recipient(
    fake: FakeMailgun, url: str
) -> None:
    messages = [
        note("a@example.com"),
        note("b@example.com", subject="Other"),
        note("c@example.com"),
        EmailMessage(
            to=["d@example.com", "e@example.com"], subject="Your order", text="It shipped."
        ),
        note("f@example.com", cc=["g@example.com"]),
        note("h@example.com"),
        note("A@example.com"),  # already in the batch: a copy of its own
    ]
    async with Runtime() as rt:
        result = await (await mailgun(rt, url)).send_bulk_email(messages)
    sent = fake.sent
    assert [message.values("to") for message in sent] == [
        ["a@example.com", "c@example.com", "h@example.com"],
        ["b@example.com"],
        ["d@example.com", "e@example.com"],
        ["f@example.com"],
        ["A@example.com"],
    ]
    # Each member of a batch gets a copy of their own; a message to two is one copy.
    assert msgspec.json.decode(sent[0].value("recipient-variables") or "") == {
        "a@example.com": {},
        "c@example.com": {},
        "h@example.com": {},
    }
    assert [message.value("recipient-variables") for message in sent[1:]] == [None] * 4
    ids = [receipt.message_id for receipt in result.receipts]
    assert ids[0] == ids[2] == ids[5] == sent[0].message_id
    assert len(set(ids)) == 5


async def test_a_bulk_batch_mailgun_refuses_fails_its_own_messages_only(
    fake: FakeMailgun, url: str
) -> None:
    messages = [note(f"user{i}@example.com") for i in range(MAX_RECIPIENTS + 5)]
    messages.insert(3, note("solo@example.com", subject="Different"))
    fake.reject("user1002@example.com")
    async with Runtime() as rt:
        result = await (await mailgun(rt, url)).send_bulk_email(messages)
    assert len(fake.requests_to(MESSAGES)) == 3
    assert [len(message.values("to")) for message in fake.sent] == [1000, 1]
    assert (result.sent, result.failed) == (1001, 5)
    assert [error.index for error in result.errors] == list(range(1001, 1006))
    assert {(e.status, e.reason) for e in result.errors} == {
        (400, "user1002@example.com: recipient address rejected")
    }


async def test_a_bulk_raises_when_no_request_got_through(fake: FakeMailgun, url: str) -> None:
    fake.fail_next(2, 503)
    async with Runtime() as rt:
        adapter = await mailgun(rt, url)
        with pytest.raises(ConnectionFailed, match="HTTP 503"):
            await adapter.send_bulk_email([note("a@example.com"), note("b@example.com", text="2")])
        empty = await adapter.send_bulk_email([])
    assert (empty.sent, empty.failed) == (0, 0)
    assert fake.sent == []


_batchable = st.tuples(st.sampled_from("abc"), st.sampled_from(["x@a.io", "X@A.io", "y@a.io"]))


@given(st.lists(st.one_of(st.none(), _batchable), max_size=2500))
def test_planned_batches_cover_each_message_once_within_mailguns_limits(
    messages: list[tuple[str, str] | None],
) -> None:
    plan = plan_batches(messages)
    assert sorted(i for batch in plan for i in batch) == list(range(len(messages)))
    assert [batch[0] for batch in plan] == sorted(batch[0] for batch in plan)
    for batch in plan:
        assert batch == sorted(batch)
        assert len(batch) <= MAX_RECIPIENTS
        if len(batch) > 1:
            members = [messages[i] for i in batch]
            assert len({member[0] for member in members if member}) == 1
            assert None not in members
            recipients = [member[1].lower() for member in members if member]
            assert len(set(recipients)) == len(recipients)


@given(st.lists(st.sampled_from("abc"), max_size=3000))
def test_batches_of_distinct_recipients_fill_up_to_a_thousand(keys: list[str]) -> None:
    plan = plan_batches([(key, f"user{i}@example.com") for i, key in enumerate(keys)])
    for key in "abc":
        count = keys.count(key)
        assert sum(1 for batch in plan if keys[batch[0]] == key) == -(-count // MAX_RECIPIENTS)


async def test_a_message_mailgun_would_refuse_raises_before_sending(
    fake: FakeMailgun, url: str
) -> None:
    async with Runtime() as rt:
        adapter = await mailgun(rt, url)
        with pytest.raises(ConfigError) as tags:
            await adapter.send_bulk_email(
                [note("a@example.com"), note("b@example.com", tags=["1", "2", "3", "4"])]
            )
        with pytest.raises(ConfigError) as options:
            await adapter.send_transactional_email(
                note("a@example.com", metadata={"blob": "x" * 16_400})
            )
        with pytest.raises(ConfigError) as reply_to:
            await adapter.send_transactional_email(
                note(
                    "a@example.com", reply_to="r@example.com", headers={"reply-to": "s@example.com"}
                )
            )
    assert (tags.value.field, options.value.field, reply_to.value.field) == (
        "tags",
        "headers",
        "headers",
    )
    assert fake.received == []


# -- validation and statistics ------------------------------------------------


async def test_addresses_are_checked_locally_then_by_mailguns_validation(
    fake: FakeMailgun, url: str
) -> None:
    fake.set_verdict(
        "ada@gmial.com",
        "undeliverable",
        reason=["mailbox_does_not_exist"],
        did_you_mean="ada@gmail.com",
    )
    fake.set_verdict("all@corp.example", "catch_all", risk="medium")
    fake.throttle(1, retry_after=0.3)
    async with Runtime() as rt:
        adapter = await mailgun(rt, url)
        malformed = await adapter.validate_address("ada@")
        undeliverable = await adapter.validate_address("ada@gmial.com")
        catch_all = await adapter.validate_address("all@corp.example")
        deliverable = await adapter.validate_address("bob@example.com")
    assert (malformed.valid, malformed.reason) == (False, "malformed address")
    assert (undeliverable.valid, undeliverable.reason, undeliverable.suggestion) == (
        False,
        "undeliverable: mailbox_does_not_exist",
        "ada@gmail.com",
    )
    assert (catch_all.valid, catch_all.reason) == (True, "catch_all")
    assert (deliverable.valid, deliverable.reason, deliverable.suggestion) == (True, None, None)
    throttled, *answered = fake.received
    assert answered[0].at - throttled.at >= 0.3  # a GET: retried after Retry-After
    assert [r.target for r in answered] == [
        "/v4/address/validate?address=ada%40gmial.com",
        "/v4/address/validate?address=all%40corp.example",
        "/v4/address/validate?address=bob%40example.com",
    ]
    assert {r.header("authorization") for r in fake.received} == {basic("api", KEY)}


async def test_statistics_sum_mailguns_days_in_the_period(fake: FakeMailgun, url: str) -> None:
    fake.add_stats(DOMAIN, date(2025, 1, 31), accepted=1000)
    fake.add_stats(DOMAIN, date(2025, 2, 1), accepted=10, accepted_incoming=99, delivered=8)
    fake.add_stats(
        DOMAIN, date(2025, 2, 1), bounced=1, delayed_bounced=1, opened=5, unique_opened=4
    )
    fake.add_stats(DOMAIN, date(2025, 2, 2), accepted=20, delivered=15, delivered_http=3)
    fake.add_stats(DOMAIN, date(2025, 2, 2), espblocked=2, clicked=3, unique_clicked=2)
    fake.add_stats(DOMAIN, date(2025, 2, 3), complained=1, unsubscribed=1, stored=7)
    fake.add_stats(DOMAIN, date(2025, 2, 4), accepted=1000)  # the fake's range ends inclusive
    fake.add_stats("other.example.com", date(2025, 2, 2), accepted=1000)
    async with Runtime() as rt:
        stats = await (await mailgun(rt, url)).get_statistics(date(2025, 2, 1), date(2025, 2, 3))
    (request,) = fake.received
    assert request.path == f"/v3/{DOMAIN}/stats/total"
    start = calendar.timegm(date(2025, 2, 1).timetuple())
    assert parse_qsl(request.query) == [
        *(("event", e) for e in ("accepted", "delivered", "failed", "opened", "clicked")),
        ("event", "unsubscribed"),
        ("event", "complained"),
        ("start", str(start)),
        ("end", str(start + 3 * 86400)),
        ("resolution", "day"),
    ]
    assert msgspec.structs.asdict(stats) == {
        "start": date(2025, 2, 1),
        "end": date(2025, 2, 3),
        "requests": 30,
        "delivered": 26,
        "bounces": 2,
        "deferred": 2,
        "blocks": 0,
        "opens": 5,
        "unique_opens": 4,
        "clicks": 3,
        "unique_clicks": 2,
        "spam_reports": 1,
        "unsubscribes": 1,
    }


# -- the fake refuses what Mailgun documents as refused -------------------------

FORM = [("from", "shop@example.com"), ("to", "ada@example.com"), ("text", "Hello")]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (FORM[1:], "'from' parameter is missing"),
        ([FORM[0], *FORM[2:]], "'to' parameter is missing"),
        ([*FORM, ("to", "Ada <nobody>")], "'to' parameter is not a valid address"),
        (FORM[:2], "Need at least one of 'text', 'html', 'amp-html' or 'template'"),
        ([*FORM, *[("o:tag", f"t{i}") for i in range(4)]], "at most 3 tags"),
        ([*FORM, ("v:blob", "x" * 16_400)], "at most 16KB"),
        ([*FORM, ("recipient-variables", "[1]")], "'recipient-variables' must be a JSON object"),
        ([*FORM, ("attachment", "a.txt")], "must be files, sent as multipart/form-data"),
        ([*FORM, *[("bcc", f"b{i}@example.com") for i in range(1000)]], "Too many recipients"),
    ],
)
def test_the_fake_refuses_a_message_mailgun_would_refuse(
    server: tuple[FakeMailgun, str], fields: list[tuple[str, str]], message: str
) -> None:
    fake, url = server
    fake.reset()
    response = httpx.post(
        f"{url}{MESSAGES}",
        content=urlencode(fields),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=("api", KEY),
    )
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert fake.sent == []


def test_the_fake_wants_basic_auth_as_api_and_a_form(server: tuple[FakeMailgun, str]) -> None:
    fake, url = server
    fake.reset()
    as_json = httpx.post(f"{url}{MESSAGES}", json=dict(FORM), auth=("api", KEY))
    wrong_user = httpx.post(f"{url}{MESSAGES}", data=dict(FORM), auth=("key", KEY))
    no_such_endpoint = httpx.post(f"{url}/v3/{DOMAIN}/mesages", data=dict(FORM), auth=("api", KEY))
    accepted = httpx.post(f"{url}{MESSAGES}", data=dict(FORM), auth=("api", KEY))
    assert (as_json.status_code, wrong_user.status_code, no_such_endpoint.status_code) == (
        400,
        401,
        404,
    )
    assert "must be a form" in as_json.json()["message"]
    assert no_such_endpoint.text == "404 page not found"  # no JSON: a bad endpoint
    assert accepted.json() == {"id": f"<fake.000001@{DOMAIN}>", "message": "Queued. Thank you."}


# -- configuration and logs -------------------------------------------------------


async def test_defaults_regions_and_every_setting_is_checked(url: str) -> None:
    async with Runtime() as rt:
        us = MailgunEmail(rt, credentials=await credentials(), domain=DOMAIN)
        eu = MailgunEmail(
            rt, credentials=await credentials(), domain=DOMAIN, name="eu", region="eu"
        )
        assert (us.base_url, eu.base_url) == (MAILGUN_URL, MAILGUN_EU_URL)
        assert isinstance(us, EmailService)
        assert us.policy.rate_limit == RateLimit.per_minute(600)
        assert us.policy.timeout == 20.0
        faster = await mailgun(rt, url, name="m2", timeout=5.0)
        assert faster.policy.timeout == 5.0
        assert faster.base_url == url
        errors = []
        for options in (
            {"domain": DOMAIN},
            {"credentials": await credentials()},
            {"credentials": await credentials(), "domain": "not a domain"},
            {"credentials": await credentials(), "domain": DOMAIN, "region": "mars"},
            {"credentials": await credentials(), "domain": DOMAIN, "sender": "nobody"},
            {"credentials": await credentials(), "domain": DOMAIN, "retries": 3},
        ):
            with pytest.raises(ConfigError) as caught:
                MailgunEmail(rt, name=f"m{len(errors) + 3}", **options)  # type: ignore[arg-type]
            errors.append(caught.value.field)
        no_sender = MailgunEmail(
            rt, credentials=await credentials(), domain=DOMAIN, name="m9", base_url=url
        )
        with pytest.raises(ConfigError) as no_default:
            await no_sender.send_transactional_email(note("ada@example.com"))
    assert errors == ["credentials", "domain", "domain", "region", "sender", "policy"]
    assert no_default.value.field == "sender"


async def test_the_integration_log_has_one_record_per_attempt_and_no_key(
    fake: FakeMailgun, url: str
) -> None:
    fake.reject("gone@example.com")
    store = MemoryLogStore()
    async with Runtime(log_store=store) as rt:
        adapter = await mailgun(rt, url)
        await adapter.send_transactional_email(note("ada@example.com"))
        with pytest.raises(VendorError):
            await adapter.send_transactional_email(note("gone@example.com"))
        fake.fail_next(1, 500)
        await adapter.validate_address("bob@example.com")
    records = sorted(await store.query(limit=1000), key=lambda record: record.id)
    assert [(r.endpoint, r.http_status_code, r.attempt_number) for r in records] == [
        (f"POST {MESSAGES}", 200, 1),
        (f"POST {MESSAGES}", 400, 1),
        ("GET /v4/address/validate", 500, 1),
        ("GET /v4/address/validate", 200, 2),
    ]
    assert {r.service_name for r in records} == {"mailgun"}
    assert all(r.duration_ms is not None and r.duration_ms >= 0 for r in records)
    dumped = msgspec.json.encode(records).decode()
    for secret in (KEY, base64.b64encode(f"api:{KEY}".encode()).decode()):
        assert secret not in dumped
