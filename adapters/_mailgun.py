"""`MailgunEmail`: the `EmailService` over Mailgun's messages API.

Mail goes to ``POST /v3/{domain}/messages`` on the US or the EU host as a form:
``application/x-www-form-urlencoded``, or ``multipart/form-data`` when the
message has attachments (Mailgun takes files only that way). Mailgun uses HTTP
Basic auth with the user ``api`` and the API key as password: store
``basic_auth`` credentials ``{"username": "api", "password": key}``. 200 with
the message's id means Mailgun queued it.

A bulk send batches messages that differ only in their single ``to`` address
into one request (Mailgun's batch sending: up to 1000 recipients, with
``recipient-variables`` so each gets a copy of their own); any other message
is a request of its own. Mailgun takes or refuses a request whole, so a
refused request fails exactly its own messages.

An address is checked locally, then by Mailgun's validation API
(``GET /v4/address/validate``); statistics come from
``GET /v3/{domain}/stats/total``, which Mailgun documents but has deprecated
in favour of its Metrics API. Formats: VENDORS.md §5, documentation.mailgun.com
(messages, batch sending, tagging, single validation, stats) and
mailgun/mailgun-php.
"""

from __future__ import annotations

import calendar
import email.utils
import hashlib
import re
from collections.abc import Hashable, Mapping, Sequence
from datetime import UTC, date, timedelta
from typing import Annotated, Any, Final, NamedTuple
from urllib.parse import urlencode

import msgspec

from connector import _formats as check
from connector._auth import Auth
from connector._bulk import BulkFailure, BulkResult
from connector._credential_manager import CredentialManager
from connector._email import (
    MAX_RECIPIENTS,
    AddressValidation,
    Attachment,
    EmailMessage,
    EmailReceipt,
    EmailStatistics,
    check_period,
)
from connector._endpoint import Endpoint
from connector._errors import ConfigError, ConnectorError, MalformedResponse, VendorError
from connector._http_service import ApiResponse, HttpService
from connector._policy import ServicePolicy
from connector._ratelimit import RateLimit
from connector._runtime import Runtime

__all__ = ["MAILGUN_EU_URL", "MAILGUN_URL", "MailgunEmail"]

MAILGUN_URL: Final = "https://api.mailgun.net"
MAILGUN_EU_URL: Final = "https://api.eu.mailgun.net"
REGIONS: Final = {"us": MAILGUN_URL, "eu": MAILGUN_EU_URL}
DEFAULT_RATE_LIMIT: Final = RateLimit.per_minute(600)  # as SendGrid's: the original's config
DEFAULT_TIMEOUT: Final = 20.0  # seconds per attempt, the original's email timeout

MAX_TAGS: Final = 3  # per message, ASCII, 128 characters each (Mailgun's tagging docs)
MAX_TAG_LENGTH: Final = 128
MAX_OPTIONS_BYTES: Final = 16 * 1024  # o:, h:, v: and t: fields together
# The events whose totals make an `EmailStatistics`.
STATS_EVENTS: Final = (
    "accepted",
    "delivered",
    "failed",
    "opened",
    "clicked",
    "unsubscribed",
    "complained",
)

_VALIDATE: Final = Endpoint.create("/v4/address/validate", "GET")
_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]*")
_OPTION_PREFIXES: Final = ("o:", "h:", "v:", "t:")

_Count = Annotated[int, msgspec.Meta(ge=0)]


class _Queued(msgspec.Struct):
    id: str
    message: str = ""


class _Validation(msgspec.Struct):
    result: str  # deliverable, undeliverable, do_not_send, catch_all or unknown
    reason: list[str] | None = None
    did_you_mean: str | None = None


class _Total(msgspec.Struct):
    total: _Count = 0
    unique: _Count = 0


class _Accepted(msgspec.Struct):
    outgoing: _Count = 0


class _Temporary(msgspec.Struct):
    espblock: _Count = 0


class _Permanent(msgspec.Struct):
    bounce: _Count = 0
    delayed_bounce: _Count = msgspec.field(default=0, name="delayed-bounce")


class _Failed(msgspec.Struct):
    temporary: _Temporary = msgspec.field(default_factory=_Temporary)
    permanent: _Permanent = msgspec.field(default_factory=_Permanent)


class _Row(msgspec.Struct):
    time: str
    accepted: _Accepted = msgspec.field(default_factory=_Accepted)
    delivered: _Total = msgspec.field(default_factory=_Total)
    failed: _Failed = msgspec.field(default_factory=_Failed)
    opened: _Total = msgspec.field(default_factory=_Total)
    clicked: _Total = msgspec.field(default_factory=_Total)
    unsubscribed: _Total = msgspec.field(default_factory=_Total)
    complained: _Total = msgspec.field(default_factory=_Total)


class _Stats(msgspec.Struct):
    stats: list[_Row] = msgspec.field(default_factory=list)


class _Part(NamedTuple):
    """A message ready to send: its form fields but the recipients, and its files.

    ``key`` is None for a message that cannot join a batch; messages with
    equal keys can share one request.
    """

    key: Hashable | None
    message: EmailMessage
    fields: tuple[tuple[str, str], ...]


class MailgunEmail:
    """An `EmailService` sending through Mailgun for one sending ``domain``.

    ``region`` ("us" or "eu") picks Mailgun's host; ``base_url`` replaces it
    (a fake server, a proxy). ``sender`` (and ``sender_name``) is used for
    messages that name none. Policies default to 600 requests a minute and
    20 s an attempt; any `ServicePolicy` field given by keyword replaces its
    default.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        credentials: CredentialManager | None = None,
        domain: str | None = None,
        name: str = "mailgun",
        region: str = "us",
        base_url: str | None = None,
        sender: str | None = None,
        sender_name: str | None = None,
        **policy_fields: Any,
    ) -> None:
        if credentials is None:
            raise ConfigError(
                "credentials", None, "is required: a CredentialManager holding the API key"
            )
        if domain is None:
            raise ConfigError("domain", None, "is required: the Mailgun sending domain")
        if not isinstance(domain, str) or _DOMAIN.fullmatch(domain) is None or len(domain) > 253:
            raise ConfigError("domain", domain, "must be a domain name like mg.example.com")
        if region not in REGIONS:
            raise ConfigError("region", region, f"must be one of {sorted(REGIONS)}")
        if base_url is None:
            base_url = REGIONS[region]
        check.http_url("base_url", base_url)
        self._sender = None if sender is None else check.check_email_address(sender, "sender")
        self._sender_name = (
            None if sender_name is None else check.header_text("sender_name", sender_name)
        )
        if "policy" not in policy_fields:
            policy_fields.setdefault("rate_limit", DEFAULT_RATE_LIMIT)
            policy_fields.setdefault("timeout", DEFAULT_TIMEOUT)
        self._http = HttpService(
            runtime,
            name,
            base_url=base_url.rstrip("/"),
            credentials=credentials,
            auth=Auth(),
            **policy_fields,
        )
        self.name = name
        self.base_url = base_url
        self.domain = domain
        self._messages = Endpoint.create(f"/v3/{domain}/messages")
        self._stats = Endpoint.create(f"/v3/{domain}/stats/total", "GET")

    def __repr__(self) -> str:
        return f"<MailgunEmail {self.name!r} {self.domain!r}>"

    @property
    def policy(self) -> ServicePolicy:
        """The service's policies: the defaults, with the overrides given."""
        return self._http.policy

    async def send_transactional_email(
        self, message: EmailMessage, *, tenant_id: str | None = None
    ) -> EmailReceipt:
        """Send one message; a refusal raises `VendorError` with Mailgun's message."""
        check.same_type("message", message, EmailMessage)
        return await self._send([self._part(message)], tenant_id)

    async def send_bulk_email(
        self, messages: Sequence[EmailMessage], *, tenant_id: str | None = None
    ) -> BulkResult[EmailReceipt]:
        """Send ``messages``, batching those that differ only in their one recipient.

        Each message is checked before anything is sent (a bad one raises
        `ConfigError`). Requests go one after another (the rate limiter
        paces them anyway). A request Mailgun refuses, or one that fails past
        its retries, fails its own messages in ``errors``; the call raises
        only when no request was taken and none refused (Mailgun down or
        unreachable, the breaker open), as a single send would.
        """
        batch = _messages(messages)
        parts = [self._part(message) for message in batch]
        receipts: dict[int, EmailReceipt] = {}
        failures: list[BulkFailure] = []
        answered = False
        unanswered: ConnectorError | None = None
        plan = plan_batches([None if p.key is None else (p.key, p.message.to[0]) for p in parts])
        for indexes in plan:
            try:
                receipt = await self._send([parts[i] for i in indexes], tenant_id)
            except VendorError as error:
                answered = True
                reason = error.body or f"HTTP {error.status}"
                failures.extend(
                    BulkFailure(index=i, reason=reason, status=error.status) for i in indexes
                )
            except ConfigError:
                raise
            except ConnectorError as error:
                unanswered = unanswered or error
                failures.extend(BulkFailure(index=i, reason=error.message) for i in indexes)
            else:
                receipts.update(dict.fromkeys(indexes, receipt))
        if unanswered is not None and not receipts and not answered:
            raise unanswered
        failures.sort(key=lambda failure: failure.index)
        return BulkResult.of(tuple(receipts[i] for i in sorted(receipts)), tuple(failures))

    async def validate_address(
        self, address: str, *, tenant_id: str | None = None
    ) -> AddressValidation:
        """Mailgun's verdict on ``address``; a malformed one is invalid without asking.

        ``undeliverable`` and ``do_not_send`` are invalid; ``deliverable``,
        ``catch_all`` and ``unknown`` valid, the reason saying which.
        """
        check.same_type("address", address, str)
        try:
            check.check_email_address(address)
        except ConfigError:
            return AddressValidation(address=address, valid=False, reason="malformed address")
        response = await self._call(_VALIDATE, params={"address": address}, tenant_id=tenant_id)
        result = response.json(_Validation)
        reasons = result.reason or []
        reason = None
        if result.result != "deliverable" or reasons:
            reason = result.result + (f": {', '.join(reasons)}" if reasons else "")
        return AddressValidation(
            address=address,
            valid=result.result not in ("undeliverable", "do_not_send"),
            reason=reason,
            suggestion=result.did_you_mean or None,
        )

    async def get_statistics(
        self, start: date, end: date, *, tenant_id: str | None = None
    ) -> EmailStatistics:
        """The domain's totals for ``start`` to ``end`` (UTC days), in SendGrid's terms.

        requests: accepted outgoing; bounces: permanent (and delayed) bounces;
        deferred: temporary failures (ESP blocks, which Mailgun retries);
        spam reports: complaints. Mailgun has no count of blocks (0).
        """
        check_period(start, end)
        params: dict[str, Any] = {
            "event": list(STATS_EVENTS),
            "start": calendar.timegm(start.timetuple()),
            "end": calendar.timegm((end + timedelta(days=1)).timetuple()),
            "resolution": "day",
        }
        response = await self._call(self._stats, params=params, tenant_id=tenant_id)
        counts = dict.fromkeys(EmailStatistics.__struct_fields__[2:], 0)
        for row in response.json(_Stats).stats:
            if not start <= _day(row.time, response) <= end:
                continue
            counts["requests"] += row.accepted.outgoing
            counts["delivered"] += row.delivered.total
            counts["bounces"] += row.failed.permanent.bounce + row.failed.permanent.delayed_bounce
            counts["deferred"] += row.failed.temporary.espblock
            counts["opens"] += row.opened.total
            counts["unique_opens"] += row.opened.unique
            counts["clicks"] += row.clicked.total
            counts["unique_clicks"] += row.clicked.unique
            counts["spam_reports"] += row.complained.total
            counts["unsubscribes"] += row.unsubscribed.total
        return EmailStatistics(start=start, end=end, **counts)

    # -- internals ------------------------------------------------------------

    def _part(self, message: EmailMessage) -> _Part:
        """``message``'s form fields but its recipients; `ConfigError` for what Mailgun refuses."""
        sender = message.sender or self._sender
        if sender is None:
            raise ConfigError("sender", None, "the message names none and no default is set")
        sender_name = message.sender_name
        if sender_name is None and message.sender is None:
            sender_name = self._sender_name
        if len(message.tags) > MAX_TAGS:
            raise ConfigError("tags", list(message.tags), f"Mailgun takes at most {MAX_TAGS}")
        for tag in message.tags:
            if not tag.isascii() or len(tag) > MAX_TAG_LENGTH:
                raise ConfigError("tags", tag, f"must be ASCII, at most {MAX_TAG_LENGTH} long")
        if message.reply_to is not None and any(h.lower() == "reply-to" for h in message.headers):
            raise ConfigError("headers", "Reply-To", "give reply_to or the header, not both")
        fields: list[tuple[str, str]] = [
            ("from", email.utils.formataddr((sender_name or "", sender), charset="utf-8"))
        ]
        if message.subject is not None:
            fields.append(("subject", message.subject))
        if message.text is not None:
            fields.append(("text", message.text))
        if message.html is not None:
            fields.append(("html", message.html))
        if message.template_id is not None:
            fields.append(("template", message.template_id))
        if message.template_data:
            fields.append(("t:variables", msgspec.json.encode(message.template_data).decode()))
        if message.reply_to is not None:
            fields.append(("h:Reply-To", message.reply_to))
        fields.extend((f"h:{name}", value) for name, value in message.headers.items())
        fields.extend(("o:tag", tag) for tag in message.tags)
        fields.extend((f"v:{name}", value) for name, value in message.metadata.items())
        options = sum(
            len(name.encode()) + len(value.encode())
            for name, value in fields
            if name.startswith(_OPTION_PREFIXES)
        )
        if options > MAX_OPTIONS_BYTES:
            raise ConfigError(
                "headers", f"<{options} bytes of options>", "Mailgun takes at most 16 KB"
            )
        batchable = len(message.to) == 1 and not message.cc and not message.bcc
        key = (tuple(fields), message.attachments) if batchable else None
        return _Part(key, message, tuple(fields))

    async def _send(self, parts: Sequence[_Part], tenant_id: str | None) -> EmailReceipt:
        """One messages request: one message, or a batch sharing everything but ``to``."""
        first = parts[0]
        fields = [first.fields[0]]  # from
        for part in parts:
            fields.extend(("to", address) for address in part.message.to)
        fields.extend(("cc", address) for address in first.message.cc)
        fields.extend(("bcc", address) for address in first.message.bcc)
        fields.extend(first.fields[1:])
        if len(parts) > 1:
            # Without recipient variables every recipient of a batch sees all the others.
            variables: dict[str, dict[str, str]] = {part.message.to[0]: {} for part in parts}
            fields.append(("recipient-variables", msgspec.json.encode(variables).decode()))
        attachments = first.message.attachments
        if attachments:
            content, content_type = multipart(fields, attachments)
        else:
            content = urlencode(fields).encode("ascii")
            content_type = "application/x-www-form-urlencoded"
        response = await self._call(
            self._messages, content=content, content_type=content_type, tenant_id=tenant_id
        )
        return EmailReceipt(message_id=response.json(_Queued).id, status="queued")

    async def _call(
        self,
        endpoint: Endpoint,
        *,
        content: bytes | None = None,
        content_type: str | None = None,
        params: Mapping[str, Any] | None = None,
        tenant_id: str | None,
    ) -> ApiResponse:
        headers = {"Content-Type": content_type} if content_type is not None else None
        try:
            return await self._http.request(
                endpoint, content=content, headers=headers, params=params, tenant_id=tenant_id
            )
        except VendorError as error:
            raise VendorError(
                error.service or self.name, error.status, _message(error.body)
            ) from None


def plan_batches(messages: Sequence[tuple[Hashable, str] | None]) -> list[list[int]]:
    """Group messages, given as (key, recipient), into requests; indexes in order.

    None (a message that cannot be batched) is a request of its own. The
    others join the latest request of their key while it has fewer than
    `MAX_RECIPIENTS` and not their recipient already (Mailgun would not send
    one address two copies of a batch).
    """
    requests: list[list[int]] = []
    latest: dict[Hashable, tuple[list[int], set[str]]] = {}
    for index, message in enumerate(messages):
        if message is None:
            requests.append([index])
            continue
        key, recipient = message
        found = latest.get(key)
        if found is None or len(found[0]) >= MAX_RECIPIENTS or recipient.lower() in found[1]:
            found = ([], set())
            requests.append(found[0])
            latest[key] = found
        found[0].append(index)
        found[1].add(recipient.lower())
    return requests


def multipart(
    fields: Sequence[tuple[str, str]], attachments: Sequence[Attachment]
) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body of ``fields`` and files, and its Content-Type.

    Attachments go in ``attachment`` parts; one with a ``content_id`` goes in
    an ``inline`` part named by it, since Mailgun's ``cid:`` refers to the
    file name. The boundary is a hash of the parts, so the body is the same
    on every retry and in every run; no part can contain the hash of itself.
    """
    parts: list[tuple[bytes, bytes]] = [
        (f'Content-Disposition: form-data; name="{_quoted(name)}"'.encode(), value.encode())
        for name, value in fields
    ]
    for attachment in attachments:
        field, filename = "attachment", attachment.filename
        if attachment.content_id is not None:
            field, filename = "inline", attachment.content_id
        disposition = f'form-data; name="{field}"; filename="{_quoted(filename)}"'
        head = f"Content-Disposition: {disposition}\r\nContent-Type: {attachment.content_type}"
        parts.append((head.encode(), attachment.content))
    digest = hashlib.sha256()
    for part_head, part_content in parts:
        digest.update(len(part_head).to_bytes(8, "big") + part_head)
        digest.update(len(part_content).to_bytes(8, "big") + part_content)
    boundary = f"connector-{digest.hexdigest()[:40]}".encode("ascii")
    body = b"".join(
        b"--" + boundary + b"\r\n" + head + b"\r\n\r\n" + content + b"\r\n"
        for head, content in parts
    )
    return body + b"--" + boundary + b"--\r\n", f"multipart/form-data; boundary={boundary.decode()}"


def _quoted(text: str) -> str:
    """A form-data name or file name, escaped as the HTML standard escapes it."""
    return text.replace('"', "%22")


def _messages(value: object) -> tuple[EmailMessage, ...]:
    if isinstance(value, str | bytes | EmailMessage) or not isinstance(value, Sequence):
        raise ConfigError("messages", type(value).__name__, "must be a list of EmailMessage")
    items = tuple(value)
    for item in items:
        check.same_type("messages", item, EmailMessage)
    return items


def _day(time: str, response: ApiResponse) -> date:
    """The UTC day of a stats row's RFC 2822 time."""
    try:
        moment = email.utils.parsedate_to_datetime(time)
    except (TypeError, ValueError):
        raise MalformedResponse(
            response.service, response.status, "a stats time is not RFC 2822"
        ) from None
    return (moment.astimezone(UTC) if moment.tzinfo is not None else moment).date()


class _ErrorBody(msgspec.Struct):
    message: str = ""


def _message(body: str) -> str:
    """Mailgun's ``{"message": ...}`` error text, else the body as it is."""
    try:
        message = msgspec.json.decode(body, type=_ErrorBody).message
    except (msgspec.DecodeError, msgspec.ValidationError):
        return body
    return message or body
