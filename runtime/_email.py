"""Email: the `EmailService` protocol, the message it sends and what it returns.

Applications depend on the protocol; vendor adapters (SendGrid, Mailgun)
implement it over the runtime, and `connector.testing.FakeEmailService` in
memory. An `EmailMessage` checks itself when built, so every implementation
gets input that any of those vendors would take: at least one recipient,
recipients unique across to/cc/bcc (SendGrid refuses repeats) and at most
1000 of them (both vendors' limit), a body or a template, a subject unless a
template supplies it, and no line break in anything that becomes a header.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any, Final, Protocol, runtime_checkable

import msgspec

from . import _formats as check
from ._bulk import BulkResult
from ._errors import ConfigError

__all__ = [
    "AddressValidation",
    "Attachment",
    "EmailMessage",
    "EmailReceipt",
    "EmailService",
    "EmailStatistics",
]

MAX_RECIPIENTS: Final = 1000  # to + cc + bcc per message, SendGrid's and Mailgun's limit


class Attachment(msgspec.Struct, frozen=True, kw_only=True):
    """A file sent with the message; with ``content_id`` it is inline, shown as ``cid:<id>``."""

    filename: str
    content: bytes
    content_type: str = "application/octet-stream"
    content_id: str | None = None

    def __post_init__(self) -> None:
        check.header_text("filename", self.filename)
        check.same_type("content", self.content, bytes)
        check.media_type("content_type", self.content_type)
        if self.content_id is not None:
            check.header_text("content_id", self.content_id)


class EmailMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One email. ``sender`` None means the adapter's configured default sender.

    ``template_id`` names a template stored at the provider, rendered with
    ``template_data``; ``headers`` are extra headers, ``tags`` the provider's
    categories and ``metadata`` custom values that come back in its events.
    Sequences are kept as tuples and mappings copied, so a message does not
    change after it was checked.
    """

    to: Sequence[str]
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    sender: str | None = None
    sender_name: str | None = None
    cc: Sequence[str] = ()
    bcc: Sequence[str] = ()
    reply_to: str | None = None
    attachments: Sequence[Attachment] = ()
    template_id: str | None = None
    template_data: Mapping[str, Any] = msgspec.field(default_factory=dict)
    headers: Mapping[str, str] = msgspec.field(default_factory=dict)
    tags: Sequence[str] = ()
    metadata: Mapping[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for field in ("to", "cc", "bcc"):
            addresses = check.strings(field, getattr(self, field))
            for address in addresses:
                check.check_email_address(address, field)
                if address.lower() in seen:
                    raise ConfigError(field, address, "repeats a recipient of this message")
                seen.add(address.lower())
            msgspec.structs.force_setattr(self, field, addresses)
        if not self.to:
            raise ConfigError("to", [], "must name at least one recipient")
        if len(seen) > MAX_RECIPIENTS:
            raise ConfigError("to", f"<{len(seen)} recipients>", f"at most {MAX_RECIPIENTS}")
        if self.template_id is not None:
            check.identifier("template_id", self.template_id)
        if self.subject is not None:
            check.header_text("subject", self.subject)
        elif self.template_id is None:
            raise ConfigError("subject", None, "is required unless a template_id supplies it")
        for field in ("text", "html"):
            check.optional_text(field, getattr(self, field))
        if self.text is None and self.html is None and self.template_id is None:
            raise ConfigError("text", None, "give text, html or a template_id")
        for field in ("sender", "reply_to"):
            value = getattr(self, field)
            if value is not None:
                check.check_email_address(value, field)
        if self.sender_name is not None:
            check.header_text("sender_name", self.sender_name)
        attachments = tuple(self.attachments) if isinstance(self.attachments, Sequence) else None
        if attachments is None or not all(isinstance(a, Attachment) for a in attachments):
            raise ConfigError("attachments", self.attachments, "must be a list of Attachment")
        msgspec.structs.force_setattr(self, "attachments", attachments)
        if not isinstance(self.template_data, Mapping):
            raise ConfigError("template_data", self.template_data, "must be a mapping")
        try:
            msgspec.json.encode(self.template_data)
        except (TypeError, ValueError, RecursionError, msgspec.EncodeError) as error:
            raise ConfigError("template_data", "<not JSON>", str(error)) from None
        msgspec.structs.force_setattr(self, "template_data", dict(self.template_data))
        headers = check.string_map("headers", self.headers)
        for name, value in headers.items():
            check.header_name("headers", name)
            check.header_text(f"headers[{name!r}]", value)
        msgspec.structs.force_setattr(self, "headers", headers)
        tags = check.strings("tags", self.tags)
        for tag in tags:
            check.header_text("tags", tag)
        msgspec.structs.force_setattr(self, "tags", tags)
        msgspec.structs.force_setattr(self, "metadata", check.string_map("metadata", self.metadata))

    @property
    def recipients(self) -> tuple[str, ...]:
        """Every address the message goes to: to, cc, then bcc."""
        return (*self.to, *self.cc, *self.bcc)


class EmailReceipt(msgspec.Struct, frozen=True, kw_only=True):
    """The provider took the message: its id (SendGrid's X-Message-Id, Mailgun's id), its word."""

    message_id: str | None
    status: str = "queued"


class AddressValidation(msgspec.Struct, frozen=True, kw_only=True):
    """Whether ``address`` can receive mail, why not, and a correction the provider suggests."""

    address: str
    valid: bool
    reason: str | None = None
    suggestion: str | None = None


class EmailStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """Counts for the days ``start`` to ``end`` inclusive (SendGrid's metric names)."""

    start: date
    end: date
    requests: int = 0
    delivered: int = 0
    bounces: int = 0
    deferred: int = 0
    blocks: int = 0
    opens: int = 0
    unique_opens: int = 0
    clicks: int = 0
    unique_clicks: int = 0
    spam_reports: int = 0
    unsubscribes: int = 0

    def __post_init__(self) -> None:
        check_period(self.start, self.end)
        for field in self.__struct_fields__[2:]:
            check.count(field, getattr(self, field))

    @property
    def bounce_rate(self) -> float:
        """Bounces per request (0 with no requests)."""
        return self.bounces / self.requests if self.requests else 0.0

    @property
    def open_rate(self) -> float:
        """Unique opens per delivered message (0 with none delivered)."""
        return self.unique_opens / self.delivered if self.delivered else 0.0

    @property
    def click_rate(self) -> float:
        """Unique clicks per delivered message (0 with none delivered)."""
        return self.unique_clicks / self.delivered if self.delivered else 0.0


def check_period(start: object, end: object) -> None:
    """``start`` and ``end`` are dates (not datetimes: a time zone would be a guess), in order."""
    if not isinstance(start, date) or isinstance(start, datetime):
        raise ConfigError("start", start, "must be a datetime.date")
    if not isinstance(end, date) or isinstance(end, datetime):
        raise ConfigError("end", end, "must be a datetime.date")
    if start > end:
        raise ConfigError("end", end, f"must not be before start={start}")


@runtime_checkable
class EmailService(Protocol):
    """Sends email through a provider; the original's ``EmailServiceConnectorInterface``.

    ``tenant_id`` picks whose credentials (and whose breaker, with per-tenant
    keying) the call uses; None is the default tenant.
    """

    async def send_transactional_email(
        self, message: EmailMessage, *, tenant_id: str | None = None
    ) -> EmailReceipt:
        """Send one message; raise a `ConnectorError` if the provider did not take it."""
        ...

    async def send_bulk_email(
        self, messages: Sequence[EmailMessage], *, tenant_id: str | None = None
    ) -> BulkResult[EmailReceipt]:
        """Send many; a message the provider refuses is reported in ``errors``, not raised."""
        ...

    async def validate_address(
        self, address: str, *, tenant_id: str | None = None
    ) -> AddressValidation:
        """Ask the provider whether ``address`` can receive mail (any string may be asked)."""
        ...

    async def get_statistics(
        self, start: date, end: date, *, tenant_id: str | None = None
    ) -> EmailStatistics:
        """Sending statistics for the days ``start`` to ``end``, inclusive."""
        ...
