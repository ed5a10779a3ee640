"""`SendGridEmail`: the `EmailService` over SendGrid's v3 Web API.

Mail goes to ``POST /v3/mail/send`` as JSON, with the tenant's API key as a
bearer token (store it as ``bearer_token`` credentials, ``{"token": key}``).
202 means SendGrid took the request; its ``X-Message-Id`` header is the
receipt's id. A bulk send packs messages that differ only in what a
personalization can carry (recipients, subject, headers, template data,
metadata) into one request, one personalization each, up to SendGrid's limits
of 1000 personalizations and 1000 recipients a request: 2,500 one-recipient
messages are three requests. SendGrid takes or refuses a request whole, so a
refused request fails exactly its own messages.

Statistics come from ``GET /v3/stats`` (daily rows, summed); an address is
checked locally first, then with the Email Address Validation API
(``POST /v3/validations/email``), which SendGrid serves only to a key of its
own: ``validation_credentials`` names the stored one. Formats: VENDORS.md §4
and twilio/sendgrid-oai (``tsg_mail_v3``, ``tsg_stats_v3``,
``tsg_email_validation_v3``).
"""

from __future__ import annotations

import base64
from collections.abc import Hashable, Mapping, Sequence
from datetime import date
from typing import Annotated, Any, Final, NamedTuple

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

__all__ = ["SENDGRID_EU_URL", "SENDGRID_URL", "SendGridEmail"]

SENDGRID_URL: Final = "https://api.sendgrid.com"
SENDGRID_EU_URL: Final = "https://api.eu.sendgrid.com"  # EU regional subusers
DEFAULT_RATE_LIMIT: Final = RateLimit.per_minute(600)  # the original's config
DEFAULT_TIMEOUT: Final = 20.0  # seconds per attempt, the original's email timeout

MAX_PERSONALIZATIONS: Final = 1000  # per request, as recipients (MAX_RECIPIENTS)
MAX_CATEGORIES: Final = 10
MAX_CATEGORY_LENGTH: Final = 255
# Headers SendGrid does not let a message set (tsg_mail_v3 "headers").
RESERVED_HEADERS: Final = frozenset(
    {
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "content-type",
        "content-transfer-encoding",
        "to",
        "from",
        "subject",
        "reply-to",
        "cc",
        "bcc",
    }
)

_SEND: Final = Endpoint.create("/v3/mail/send")
_STATS: Final = Endpoint.create("/v3/stats", "GET")
_VALIDATE: Final = Endpoint.create("/v3/validations/email")

_Count = Annotated[int, msgspec.Meta(ge=0)]


class _Metrics(msgspec.Struct):
    requests: _Count = 0
    delivered: _Count = 0
    bounces: _Count = 0
    deferred: _Count = 0
    blocks: _Count = 0
    opens: _Count = 0
    unique_opens: _Count = 0
    clicks: _Count = 0
    unique_clicks: _Count = 0
    spam_reports: _Count = 0
    unsubscribes: _Count = 0


class _Stat(msgspec.Struct):
    metrics: _Metrics = msgspec.field(default_factory=_Metrics)


class _Day(msgspec.Struct):
    date: date
    stats: list[_Stat] = msgspec.field(default_factory=list)


class _DomainChecks(msgspec.Struct):
    has_valid_address_syntax: bool = True
    has_mx_or_a_record: bool = True
    is_suspected_disposable_address: bool = False


class _LocalChecks(msgspec.Struct):
    is_suspected_role_address: bool = False


class _MoreChecks(msgspec.Struct):
    has_known_bounces: bool = False
    has_suspected_bounces: bool = False


class _Checks(msgspec.Struct):
    domain: _DomainChecks = msgspec.field(default_factory=_DomainChecks)
    local_part: _LocalChecks = msgspec.field(default_factory=_LocalChecks)
    additional: _MoreChecks = msgspec.field(default_factory=_MoreChecks)


class _Verdict(msgspec.Struct):
    verdict: str  # Valid, Risky or Invalid
    suggestion: str | None = None
    checks: _Checks = msgspec.field(default_factory=_Checks)


class _Validation(msgspec.Struct):
    result: _Verdict


class _Part(NamedTuple):
    """A message ready to send: its request-level ``key`` and its personalization."""

    key: Hashable
    message: EmailMessage
    sender: str
    sender_name: str | None
    personalization: dict[str, Any]


class _ErrorItem(msgspec.Struct):
    message: str = ""
    field: str | None = None


class _ErrorBody(msgspec.Struct):
    errors: list[_ErrorItem] = msgspec.field(default_factory=list)


class SendGridEmail:
    """An `EmailService` sending through SendGrid; see the module docstring.

    ``sender`` (and ``sender_name``) is used for messages that name none.
    Policies default to 600 requests a minute and 20 s an attempt; any
    `ServicePolicy` field given by keyword replaces its default.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        credentials: CredentialManager | None = None,
        name: str = "sendgrid",
        base_url: str = SENDGRID_URL,
        sender: str | None = None,
        sender_name: str | None = None,
        validation_credentials: str | None = None,
        **policy_fields: Any,
    ) -> None:
        if credentials is None:
            raise ConfigError(
                "credentials", None, "is required: a CredentialManager holding the API key"
            )
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
        self._validate = _VALIDATE
        if validation_credentials is not None:
            own = Auth(service=check.identifier("validation_credentials", validation_credentials))
            self._validate = _VALIDATE.with_auth(own)

    def __repr__(self) -> str:
        return f"<SendGridEmail {self.name!r}>"

    @property
    def policy(self) -> ServicePolicy:
        """The service's policies: the defaults, with the overrides given."""
        return self._http.policy

    async def send_transactional_email(
        self, message: EmailMessage, *, tenant_id: str | None = None
    ) -> EmailReceipt:
        """Send one message; a refusal raises `VendorError` with SendGrid's message."""
        check.same_type("message", message, EmailMessage)
        return await self._send([self._part(message)], tenant_id)

    async def send_bulk_email(
        self, messages: Sequence[EmailMessage], *, tenant_id: str | None = None
    ) -> BulkResult[EmailReceipt]:
        """Send ``messages`` in as few requests as SendGrid's limits allow.

        Each message is checked before anything is sent (a bad one raises
        `ConfigError`). Requests go one after another (the rate limiter
        paces them anyway). A request SendGrid refuses, or one that fails past
        its retries, fails its own messages in ``errors``; the call raises
        only when no request was taken and none refused (SendGrid down or
        unreachable, the breaker open), as a single send would.
        """
        batch = _messages(messages)
        parts = [self._part(message) for message in batch]
        receipts: dict[int, EmailReceipt] = {}
        failures: list[BulkFailure] = []
        answered = False
        unanswered: ConnectorError | None = None
        plan = plan_requests([(part.key, len(part.message.recipients)) for part in parts])
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
        """SendGrid's verdict on ``address``; a malformed one is invalid without asking.

        ``Valid`` and ``Risky`` count as valid (mail can be delivered; the
        reason names the risk), ``Invalid`` as not. A suggested domain comes
        back as a whole corrected address.
        """
        check.same_type("address", address, str)
        try:
            check.check_email_address(address)
        except ConfigError:
            return AddressValidation(address=address, valid=False, reason="malformed address")
        response = await self._call(self._validate, json={"email": address}, tenant_id=tenant_id)
        result = response.json(_Validation).result
        flags = _flags(result.checks)
        reason = None
        if result.verdict != "Valid":
            reason = result.verdict.lower() + (f": {', '.join(flags)}" if flags else "")
        suggestion = result.suggestion or None
        if suggestion is not None and "@" not in suggestion:
            suggestion = f"{address.rpartition('@')[0]}@{suggestion}"
        return AddressValidation(
            address=address,
            valid=result.verdict != "Invalid",
            reason=reason,
            suggestion=suggestion,
        )

    async def get_statistics(
        self, start: date, end: date, *, tenant_id: str | None = None
    ) -> EmailStatistics:
        """The account's global statistics for ``start`` to ``end``, summed over the days."""
        check_period(start, end)
        params = {
            "start_date": start.isoformat(),
            "end_date": end.isoformat(),
            "aggregated_by": "day",
        }
        response = await self._call(_STATS, params=params, tenant_id=tenant_id)
        totals = dict.fromkeys(_Metrics.__struct_fields__, 0)
        for day in response.json(list[_Day]):
            if not start <= day.date <= end:
                continue  # SendGrid's rows are its own days; keep only those asked for
            for stat in day.stats:
                for field in totals:
                    totals[field] += getattr(stat.metrics, field)
        return EmailStatistics(start=start, end=end, **totals)

    # -- internals ------------------------------------------------------------

    def _part(self, message: EmailMessage) -> _Part:
        """``message`` checked and split into what goes in the request and its personalization.

        Messages with equal keys can share one request. Raises `ConfigError`
        for what SendGrid would refuse, before anything is sent.
        """
        sender = message.sender or self._sender
        if sender is None:
            raise ConfigError("sender", None, "the message names none and no default is set")
        sender_name = message.sender_name
        if sender_name is None and message.sender is None:
            sender_name = self._sender_name
        if len(message.tags) > MAX_CATEGORIES or len(set(message.tags)) != len(message.tags):
            raise ConfigError("tags", list(message.tags), f"at most {MAX_CATEGORIES}, no repeats")
        for tag in message.tags:
            if len(tag) > MAX_CATEGORY_LENGTH:
                raise ConfigError("tags", tag, f"at most {MAX_CATEGORY_LENGTH} characters each")
        for header in message.headers:
            if header.lower() in RESERVED_HEADERS:
                raise ConfigError("headers", header, "is set by SendGrid, not by the message")
        for attachment in message.attachments:
            if not attachment.content:
                raise ConfigError("attachments", attachment.filename, "SendGrid refuses it empty")
        key = (
            sender,
            sender_name,
            message.reply_to,
            message.text,
            message.html,
            message.attachments,
            message.template_id,
            message.tags,
        )
        personalization: dict[str, Any] = {"to": _addresses(message.to)}
        if message.cc:
            personalization["cc"] = _addresses(message.cc)
        if message.bcc:
            personalization["bcc"] = _addresses(message.bcc)
        if message.subject is not None:
            personalization["subject"] = message.subject
        if message.headers:
            personalization["headers"] = dict(message.headers)
        if message.template_data:
            personalization["dynamic_template_data"] = dict(message.template_data)
        if message.metadata:
            personalization["custom_args"] = dict(message.metadata)
        return _Part(key, message, sender, sender_name, personalization)

    async def _send(self, parts: Sequence[_Part], tenant_id: str | None) -> EmailReceipt:
        """One mail send of messages that share a key, one personalization each."""
        first = parts[0].message
        body: dict[str, Any] = {
            "personalizations": [part.personalization for part in parts],
            "from": _address(parts[0].sender, parts[0].sender_name),
        }
        if first.reply_to is not None:
            body["reply_to"] = _address(first.reply_to)
        content = []
        if first.text is not None:  # text/plain first, as SendGrid requires
            content.append({"type": "text/plain", "value": first.text})
        if first.html is not None:
            content.append({"type": "text/html", "value": first.html})
        if content:
            body["content"] = content
        if first.attachments:
            body["attachments"] = [_attachment(attachment) for attachment in first.attachments]
        if first.template_id is not None:
            body["template_id"] = first.template_id
        if first.tags:
            body["categories"] = list(first.tags)
        response = await self._call(_SEND, json=body, tenant_id=tenant_id)
        if not 200 <= response.status < 300:
            raise MalformedResponse(response.service, response.status, "expected 202 Accepted")
        return EmailReceipt(message_id=response.header("x-message-id"), status="queued")

    async def _call(
        self,
        endpoint: Endpoint,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        tenant_id: str | None,
    ) -> ApiResponse:
        try:
            return await self._http.request(endpoint, json=json, params=params, tenant_id=tenant_id)
        except VendorError as error:
            raise VendorError(
                error.service or self.name, error.status, _message(error.body)
            ) from None


def plan_requests(messages: Sequence[tuple[Hashable, int]]) -> list[list[int]]:
    """Group messages, given as (key, recipient count), into requests; indexes in order.

    A request holds messages of one key only, at most `MAX_PERSONALIZATIONS`
    of them with at most `MAX_RECIPIENTS` recipients in all. Each message
    joins the latest request of its key while it fits, so messages keep
    their order within a request and requests follow their first message.
    """
    requests: list[list[int]] = []
    latest: dict[Hashable, tuple[list[int], int]] = {}
    for index, (key, recipients) in enumerate(messages):
        found = latest.get(key)
        if (
            found is None
            or len(found[0]) >= MAX_PERSONALIZATIONS
            or found[1] + recipients > MAX_RECIPIENTS
        ):
            indexes = [index]
            requests.append(indexes)
            latest[key] = (indexes, recipients)
        else:
            found[0].append(index)
            latest[key] = (found[0], found[1] + recipients)
    return requests


def _messages(value: object) -> tuple[EmailMessage, ...]:
    if isinstance(value, str | bytes | EmailMessage) or not isinstance(value, Sequence):
        raise ConfigError("messages", type(value).__name__, "must be a list of EmailMessage")
    items = tuple(value)
    for item in items:
        check.same_type("messages", item, EmailMessage)
    return items


def _address(email: str, name: str | None = None) -> dict[str, str]:
    return {"email": email} if name is None else {"email": email, "name": name}


def _addresses(emails: Sequence[str]) -> list[dict[str, str]]:
    return [{"email": email} for email in emails]


def _attachment(attachment: Attachment) -> dict[str, str]:
    entry = {
        "content": base64.b64encode(attachment.content).decode("ascii"),
        "type": attachment.content_type,
        "filename": attachment.filename,
        "disposition": "attachment" if attachment.content_id is None else "inline",
    }
    if attachment.content_id is not None:
        entry["content_id"] = attachment.content_id
    return entry


def _flags(checks: _Checks) -> list[str]:
    """The checks SendGrid failed, in words."""
    flags = []
    if not checks.domain.has_valid_address_syntax:
        flags.append("invalid syntax")
    if not checks.domain.has_mx_or_a_record:
        flags.append("no MX or A record")
    if checks.domain.is_suspected_disposable_address:
        flags.append("disposable address")
    if checks.local_part.is_suspected_role_address:
        flags.append("role address")
    if checks.additional.has_known_bounces:
        flags.append("known bounces")
    if checks.additional.has_suspected_bounces:
        flags.append("suspected bounces")
    return flags


def _message(body: str) -> str:
    """SendGrid's error messages from its ``{"errors": [...]}`` body, else the body as it is."""
    try:
        errors = msgspec.json.decode(body, type=_ErrorBody).errors
    except (msgspec.DecodeError, msgspec.ValidationError):
        return body
    texts = [
        f"{error.field}: {error.message}"
        if error.field not in (None, "", "null")
        else error.message
        for error in errors
        if error.message
    ]
    return "; ".join(texts) or body
