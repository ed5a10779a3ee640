"""SMS: the `SmsService` protocol, the message it sends and what it returns.

Numbers are E.164 (``+`` then up to 15 digits), the form Twilio and every
other SMS API takes. An `SmsMessage` checks itself when built: a body of at
most 1600 characters or media (at most 10 URLs), as Twilio's Messages API.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Final, Protocol, runtime_checkable

import msgspec

from . import _formats as check
from ._bulk import BulkResult
from ._errors import ConfigError

__all__ = ["AccountBalance", "PhoneNumberInfo", "SmsMessage", "SmsReceipt", "SmsService"]

MAX_BODY: Final = 1600
MAX_MEDIA: Final = 10
# A sender is a number, a short code, or an alphanumeric sender id (letters required).
_SHORT_CODE: Final = re.compile(r"[0-9]{3,8}")
_ALPHANUMERIC_ID: Final = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")


class SmsMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One text message to ``to``.

    ``sender`` None means the adapter's default (or the messaging service's
    pool, with ``messaging_service_id``); ``status_callback`` is the URL the
    provider reports delivery to.
    """

    to: str
    body: str | None = None
    sender: str | None = None
    messaging_service_id: str | None = None
    media_urls: Sequence[str] = ()
    status_callback: str | None = None

    def __post_init__(self) -> None:
        check.check_phone_number(self.to, "to")
        if self.body is not None:
            check.text("body", self.body, max_length=MAX_BODY)
        media = check.strings("media_urls", self.media_urls)
        if len(media) > MAX_MEDIA:
            raise ConfigError("media_urls", f"<{len(media)} URLs>", f"at most {MAX_MEDIA}")
        for url in media:
            check.http_url("media_urls", url)
        msgspec.structs.force_setattr(self, "media_urls", media)
        if self.body is None and not media:
            raise ConfigError("body", None, "give a body or media_urls")
        sender = self.sender
        if isinstance(sender, str) and sender.startswith("+"):
            check.check_phone_number(sender, "sender")
        elif sender is not None and not (
            isinstance(sender, str)
            and (_SHORT_CODE.fullmatch(sender) or _ALPHANUMERIC_ID.fullmatch(sender))
        ):
            raise ConfigError(
                "sender", sender, "must be an E.164 number, a short code or a sender id"
            )
        if self.messaging_service_id is not None:
            check.identifier("messaging_service_id", self.messaging_service_id)
        if self.status_callback is not None:
            check.http_url("status_callback", self.status_callback)


class SmsReceipt(msgspec.Struct, frozen=True, kw_only=True):
    """The provider took the message: its id (Twilio's ``SM...`` sid), status and segments."""

    message_id: str
    status: str = "queued"
    segments: int | None = None


class PhoneNumberInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What the provider knows of a number; ``phone_number`` is its E.164 form when valid."""

    phone_number: str
    valid: bool
    country_code: str | None = None
    national_format: str | None = None
    carrier: str | None = None
    line_type: str | None = None
    reason: str | None = None


class AccountBalance(msgspec.Struct, frozen=True, kw_only=True):
    """The account's balance (it may be negative) and, where the provider counts one, quota."""

    balance: Decimal
    currency: str
    quota_remaining: int | None = None

    def __post_init__(self) -> None:
        check.same_type("balance", self.balance, Decimal)
        check.currency("currency", self.currency)
        if self.quota_remaining is not None:
            check.count("quota_remaining", self.quota_remaining)


@runtime_checkable
class SmsService(Protocol):
    """Sends text messages; the original's ``SmsServiceConnectorInterface``."""

    async def send(self, message: SmsMessage, *, tenant_id: str | None = None) -> SmsReceipt:
        """Send one message; raise a `ConnectorError` if the provider did not take it."""
        ...

    async def send_bulk(
        self, messages: Sequence[SmsMessage], *, tenant_id: str | None = None
    ) -> BulkResult[SmsReceipt]:
        """Send many; a message the provider refuses is reported in ``errors``, not raised."""
        ...

    async def validate_phone_number(
        self, phone_number: str, *, country_code: str | None = None, tenant_id: str | None = None
    ) -> PhoneNumberInfo:
        """Look a number up; ``country_code`` (ISO 3166 alpha-2) reads a national number."""
        ...

    async def check_balance(self, *, tenant_id: str | None = None) -> AccountBalance:
        """The account's balance and remaining quota."""
        ...
