"""`TwilioSms`: the `SmsService` over Twilio's Messages, Lookup v2 and Balance APIs.

Every call goes through the runtime, so it gets a breaker, a limiter, retries,
the tenant's credentials and one log record per attempt. Messages and the
balance go to the service ``twilio`` (api.twilio.com), lookups to
``twilio-lookups`` (lookups.twilio.com): two products with their own limits,
so each has its own limiter and breaker, built from the same policy settings.

Credentials are the tenant's stored ``basic_auth``, as Twilio takes them: the
account SID (or an API key SID, ``SK...``) and the auth token (or the key's
secret), stored under the adapter's name for both hosts. The account SID also
names the account in every URL; it is not secret. ``account_sid`` gives it for
every tenant; without it each tenant's comes from its credentials
(``data["account_sid"]``, else an ``AC...`` username), so tenants may be
separate Twilio (sub)accounts.

Messages are sent form-encoded, one request each: Twilio has no bulk send and
takes no idempotency key, so a send that Twilio may have received (a timeout,
a 5xx) is not repeated, since a repeat could text the recipient twice. The
runtime repeats a POST only when it was certainly not sent, so a 429 is not
repeated either, although Twilio documents it (20429) as not processed; its
Retry-After still pauses the limiter. Lookups and the balance are GETs, retried
as the policy says.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from urllib.parse import urlencode

import anyio
import msgspec

from .. import _formats as check
from .. import _validate
from .._auth import Auth
from .._bulk import BulkFailure, BulkResult
from .._credential_manager import CredentialManager
from .._endpoint import Endpoint
from .._errors import ConfigError, ConnectorError, MalformedResponse, VendorError
from .._http_service import ApiResponse, HttpService
from .._ratelimit import RateLimit
from .._runtime import Runtime
from .._sms import AccountBalance, PhoneNumberInfo, SmsMessage, SmsReceipt

__all__ = [
    "DEFAULT_BULK_CONCURRENCY",
    "TWILIO_API_URL",
    "TWILIO_LOOKUPS_URL",
    "TWILIO_RATE_LIMIT",
    "TWILIO_TIMEOUT",
    "TwilioSms",
]

TWILIO_API_URL: Final = "https://api.twilio.com"
TWILIO_LOOKUPS_URL: Final = "https://lookups.twilio.com"
TWILIO_RATE_LIMIT: Final = RateLimit.per_hour(3600)  # the original's default
TWILIO_TIMEOUT: Final = 15.0  # seconds per attempt, as the original's SMS timeout
DEFAULT_BULK_CONCURRENCY: Final = 10

_ACCOUNT_SID: Final = re.compile(r"AC[0-9a-fA-F]{32}")
_MESSAGING_SERVICE_SID: Final = re.compile(r"MG[0-9a-fA-F]{32}")
_MESSAGE_SID: Final = re.compile(r"(SM|MM)[0-9a-fA-F]{32}")
# A number as a person writes it in national format: digits and the usual marks.
_NATIONAL_NUMBER: Final = re.compile(r"\+?[0-9().\- ]{0,31}[0-9][0-9().\- ]{0,31}")
_MAX_NATIONAL: Final = 32
_FORM: Final = "application/x-www-form-urlencoded"

_MESSAGES: Final = Endpoint.create("/2010-04-01/Accounts/{AccountSid}/Messages.json").with_headers(
    {"Content-Type": _FORM, "Accept": "application/json"}
)
_BALANCE: Final = Endpoint.create("/2010-04-01/Accounts/{AccountSid}/Balance.json", "GET")
_LOOKUP: Final = Endpoint.create("/v2/PhoneNumbers/{PhoneNumber}", "GET")


class _Error(msgspec.Struct, kw_only=True):
    """Twilio's error body; newer APIs answer RFC 9457 (``title``, ``detail``) instead."""

    code: int | None = None
    message: str | None = None
    more_info: str | None = None
    title: str | None = None
    detail: str | None = None


class _Message(msgspec.Struct, kw_only=True):
    sid: str
    status: str
    num_segments: str | int | None = None


class _LineType(msgspec.Struct, kw_only=True):
    carrier_name: str | None = None
    type: str | None = None


class _Lookup(msgspec.Struct, kw_only=True):
    phone_number: str | None = None
    valid: bool | None = None
    country_code: str | None = None
    national_format: str | None = None
    validation_errors: list[str] | None = None
    line_type_intelligence: _LineType | None = None


class _Balance(msgspec.Struct, kw_only=True):
    balance: str
    currency: str


class TwilioSms:
    """An `SmsService` sending through Twilio; see the module docstring.

    ``sender`` (a From number, short code or sender id) or
    ``messaging_service_id`` (``MG...``) is where messages come from unless a
    message names its own; a message that names either replaces both.
    ``status_callback`` is the delivery-report URL of messages that give none.
    ``line_type_lookup`` asks Lookup for carrier and line type too (Twilio
    bills it). ``send_bulk`` sends at most ``bulk_concurrency`` at once.
    Policy fields (``rate_limit``, ``timeout``, ``retry``, ``breaker``,
    ``retry_budget``, ``max_concurrency``, ...) apply to both services; the
    defaults are `TWILIO_RATE_LIMIT` and `TWILIO_TIMEOUT`.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        credentials: CredentialManager | None = None,
        account_sid: str | None = None,
        sender: str | None = None,
        messaging_service_id: str | None = None,
        status_callback: str | None = None,
        name: str = "twilio",
        base_url: str = TWILIO_API_URL,
        lookup_base_url: str = TWILIO_LOOKUPS_URL,
        line_type_lookup: bool = False,
        bulk_concurrency: int = DEFAULT_BULK_CONCURRENCY,
        **policy: Any,
    ) -> None:
        if credentials is None:
            raise ConfigError("credentials", None, "is required: a CredentialManager")
        if account_sid is not None and (
            not isinstance(account_sid, str) or _ACCOUNT_SID.fullmatch(account_sid) is None
        ):
            raise ConfigError(
                "account_sid", account_sid, "must be a Twilio account SID: AC + 32 hex"
            )
        if sender is not None:
            # A message's own sender rules, so a default is held to the same.
            SmsMessage(to="+10000000000", body="-", sender=sender)
        if messaging_service_id is not None:
            _check_messaging_service(messaging_service_id)
        if status_callback is not None:
            check.http_url("status_callback", status_callback)
        check.text("name", name)
        _validate.boolean("line_type_lookup", line_type_lookup)
        _validate.integer("bulk_concurrency", bulk_concurrency, 1)
        policy.setdefault("rate_limit", TWILIO_RATE_LIMIT)
        policy.setdefault("timeout", TWILIO_TIMEOUT)
        self.name = name
        self.account_sid = account_sid
        self.sender = sender
        self.messaging_service_id = messaging_service_id
        self.status_callback = status_callback
        self.line_type_lookup = line_type_lookup
        self.bulk_concurrency = bulk_concurrency
        self._credentials = credentials
        auth = Auth(service=name)  # one stored credential serves both hosts
        self._api = HttpService(
            runtime, name, base_url=base_url, credentials=credentials, auth=auth, **policy
        )
        self._lookups = HttpService(
            runtime,
            f"{name}-lookups",
            base_url=lookup_base_url,
            credentials=credentials,
            auth=auth,
            **policy,
        )

    def __repr__(self) -> str:
        return f"<TwilioSms {self.name!r}>"

    async def send(self, message: SmsMessage, *, tenant_id: str | None = None) -> SmsReceipt:
        """Send one message; a refusal is a `VendorError` with Twilio's code and message."""
        form = self._form(message)
        account = await self._account(tenant_id)
        return await self._send_form(form, account, tenant_id)

    async def send_bulk(
        self, messages: Sequence[SmsMessage], *, tenant_id: str | None = None
    ) -> BulkResult[SmsReceipt]:
        """Send each message on its own, at most ``bulk_concurrency`` at once.

        Every message is checked before the first is sent. A message that
        fails is reported in ``errors``, whatever the reason, since the others
        went out and raising would hide them; only when none went out and
        Twilio refused none (unreachable, breaker open, no credentials) is the
        first error raised, as `send` would.
        """
        given: object = messages  # checked, not trusted: callers may not be type-checked
        if isinstance(given, str | bytes) or not isinstance(given, Sequence):
            raise ConfigError("messages", type(given).__name__, "must be a list of SmsMessage")
        forms = [self._form(message, field=f"messages[{i}]") for i, message in enumerate(given)]
        if not forms:
            return BulkResult.of((), ())
        account = await self._account(tenant_id)
        outcomes: list[SmsReceipt | ConnectorError | None] = [None] * len(forms)
        pending = iter(range(len(forms)))

        async def worker() -> None:
            # The workers share one iterator, so each message is taken once.
            for index in pending:
                try:
                    outcomes[index] = await self._send_form(forms[index], account, tenant_id)
                except ConnectorError as error:
                    outcomes[index] = error

        async with anyio.create_task_group() as group:
            for _ in range(min(self.bulk_concurrency, len(forms))):
                group.start_soon(worker)
        receipts = tuple(outcome for outcome in outcomes if isinstance(outcome, SmsReceipt))
        failures = [
            (index, outcome)
            for index, outcome in enumerate(outcomes)
            if isinstance(outcome, ConnectorError)
        ]
        if not receipts and not any(isinstance(error, VendorError) for _, error in failures):
            raise failures[0][1]
        return BulkResult.of(receipts, tuple(_failure(index, error) for index, error in failures))

    async def validate_phone_number(
        self, phone_number: str, *, country_code: str | None = None, tenant_id: str | None = None
    ) -> PhoneNumberInfo:
        """Look the number up (Lookup v2); ``valid`` is Twilio's verdict, ``reason`` its why.

        Without ``country_code`` the number must be E.164; with it, it may be
        national (``(415) 555-0123`` with ``US``). A malformed argument is a
        `ConfigError` before anything is sent.
        """
        if country_code is None:
            check.check_phone_number(phone_number, "phone_number")
            params: dict[str, str] = {}
        else:
            check.country("country_code", country_code)
            if (
                not isinstance(phone_number, str)
                or len(phone_number) > _MAX_NATIONAL
                or _NATIONAL_NUMBER.fullmatch(phone_number) is None
            ):
                raise ConfigError(
                    "phone_number", phone_number, "must be a phone number in E.164 or national form"
                )
            params = {"CountryCode": country_code}
        if self.line_type_lookup:
            params["Fields"] = "line_type_intelligence"
        response = await self._call(
            self._lookups,
            _LOOKUP,
            tenant_id,
            path_params={"PhoneNumber": phone_number},
            params=params,
        )
        found = response.json(_Lookup)
        line = found.line_type_intelligence
        return PhoneNumberInfo(
            phone_number=found.phone_number or phone_number,
            valid=bool(found.valid),
            country_code=found.country_code,
            national_format=found.national_format,
            carrier=line.carrier_name if line is not None else None,
            line_type=line.type if line is not None else None,
            reason=", ".join(found.validation_errors or ()) or None,
        )

    async def check_balance(self, *, tenant_id: str | None = None) -> AccountBalance:
        """The account's balance (Balance.json); Twilio counts no message quota."""
        account = await self._account(tenant_id)
        response = await self._call(
            self._api, _BALANCE, tenant_id, path_params={"AccountSid": account}
        )
        found = response.json(_Balance)
        try:
            return AccountBalance(balance=Decimal(found.balance), currency=found.currency)
        except (InvalidOperation, ConfigError) as error:
            raise MalformedResponse(
                response.service, response.status, f"unexpected balance: {error}"
            ) from None

    # -- internals ------------------------------------------------------------

    def _form(self, message: object, field: str = "message") -> bytes:
        """The Messages API form for ``message``; `ConfigError` if Twilio would refuse it."""
        if not isinstance(message, SmsMessage):
            raise ConfigError(field, type(message).__name__, "must be an SmsMessage")
        # The struct checked itself when built; this is the last look before
        # Twilio bills for it, and a struct can be changed around its checks.
        check.check_phone_number(message.to, f"{field}.to")
        if message.sender is not None or message.messaging_service_id is not None:
            sender, service = message.sender, message.messaging_service_id
        else:
            sender, service = self.sender, self.messaging_service_id
        if sender is None and service is None:
            raise ConfigError(
                f"{field}.sender",
                None,
                "Twilio needs a sender or a messaging_service_id, on the message or the adapter",
            )
        fields = [("To", message.to)]
        if sender is not None:
            fields.append(("From", sender))
        if service is not None:
            _check_messaging_service(service, f"{field}.messaging_service_id")
            fields.append(("MessagingServiceSid", service))
        if message.body is not None:
            fields.append(("Body", message.body))
        fields.extend(("MediaUrl", url) for url in message.media_urls)
        callback = message.status_callback or self.status_callback
        if callback is not None:
            fields.append(("StatusCallback", callback))
        try:
            return urlencode(fields).encode("ascii")
        except UnicodeEncodeError:
            # A lone surrogate: a str, but no text UTF-8 (or Twilio) can carry.
            raise ConfigError(field, "<text>", "must be valid Unicode text") from None

    async def _account(self, tenant_id: str | None) -> str:
        if self.account_sid is not None:
            return self.account_sid
        stored = await self._credentials.get(self.name, tenant_id)
        account = stored.data.get("account_sid") or stored.data.get("username")
        if account is None or _ACCOUNT_SID.fullmatch(account) is None:
            raise ConfigError(
                "account_sid",
                None,
                f"is not set, and the credentials of '{self.name}' hold none: give account_sid, "
                "or store data['account_sid'] (or an AC... username) with them",
            )
        return account

    async def _send_form(self, form: bytes, account: str, tenant_id: str | None) -> SmsReceipt:
        response = await self._call(
            self._api, _MESSAGES, tenant_id, content=form, path_params={"AccountSid": account}
        )
        created = response.json(_Message)
        if _MESSAGE_SID.fullmatch(created.sid) is None:
            raise MalformedResponse(
                response.service, response.status, "the message sid is not SM or MM + 32 hex"
            )
        return SmsReceipt(
            message_id=created.sid, status=created.status, segments=_segments(created.num_segments)
        )

    @staticmethod
    async def _call(
        http: HttpService, endpoint: Endpoint, tenant_id: str | None, **arguments: Any
    ) -> ApiResponse:
        """``http.request``, with a refusal's body read as Twilio's error."""
        try:
            return await http.request(endpoint, tenant_id=tenant_id, **arguments)
        except VendorError as error:
            raise _vendor_error(error) from None


def _check_messaging_service(value: object, field: str = "messaging_service_id") -> None:
    if not isinstance(value, str) or _MESSAGING_SERVICE_SID.fullmatch(value) is None:
        raise ConfigError(field, value, "must be a Twilio Messaging Service SID: MG + 32 hex")


def _vendor_error(error: VendorError) -> VendorError:
    """``error`` with Twilio's code and message as its body, and ``code`` set.

    The body was scrubbed of credentials before it got here; one that is not
    Twilio's error JSON (a proxy's page) is kept as it came.
    """
    try:
        body = msgspec.json.decode(error.body, type=_Error)
    except msgspec.DecodeError:
        return error
    text = body.message or body.detail or body.title
    if not text:
        return error
    if body.code is not None:
        text = f"Twilio error {body.code}: {text}"
    if body.more_info:
        text = f"{text} ({body.more_info})"
    return VendorError(error.service or "", error.status, text, code=body.code)


def _segments(value: str | int | None) -> int | None:
    """Twilio sends the segment count as a string of digits."""
    if isinstance(value, int):
        return value
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


def _failure(index: int, error: ConnectorError) -> BulkFailure:
    if isinstance(error, VendorError):
        return BulkFailure(index=index, reason=error.body or error.message, status=error.status)
    return BulkFailure(index=index, reason=error.message or type(error).__name__)
