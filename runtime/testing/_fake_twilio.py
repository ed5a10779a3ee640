"""`FakeTwilio`: Twilio's Messages, Balance and Lookup v2 APIs as one Starlette app.

Serve it with `serve_asgi` and point both of `TwilioSms`'s base URLs at it:
the paths of api.twilio.com and lookups.twilio.com do not overlap. It checks
what Twilio documents (VENDORS.md §6) and answers as Twilio does:

- Basic auth with the account SID (or an API key SID) and the auth token (or
  the key's secret), else 401 with code 20003; the account in the path must be
  this one, else 404 (20404);
- a message is form-encoded (a body of another type reads as no fields, as
  Twilio's 21604 says), ``To`` is E.164 (21604, 21211), ``From`` or a
  ``MessagingServiceSid`` of MG + 32 hex is given (21603, 21212, 21705),
  ``Body`` of at most 1600 characters or ``MediaUrl``s, at most 10 http(s) URLs
  (21602, 21617, 21623, 21620), ``StatusCallback`` an http(s) URL (21609);
- 201 with the message resource (sid ``SM``/``MM`` + 32 hex, status ``queued``,
  or ``accepted`` through a messaging service), errors as Twilio's JSON body
  ``{code, message, more_info, status}``.

Every request is recorded before it is answered (`received`); `messages` are
the messages it accepted. Knobs: `reject` a recipient (Twilio refuses an
unsubscribed one with 21610), mark a number `invalid` for Lookup, `fail_next`,
`throttle` (429, code 20429, Retry-After), `slow`, and
`timeout_after_processing` (the message is created, then the answer stalls past
the client's timeout). Lookup knows a few countries' numbering (NANP, GB, DE,
FR, IN, AU) and takes any other E.164 number of plausible length as valid.
Needs starlette (the ``testing`` extra).
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from email.utils import format_datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, urlsplit

import anyio
import msgspec

from .._clock import WallClock, system_wall_clock
from .._credentials import AuthMethod, Credentials
from .._errors import ConfigError
from .._validate import non_negative
from ._fake_json_api import Received

if TYPE_CHECKING:
    from ._server import ASGIApp

__all__ = ["FakeTwilio"]

FAKE_ACCOUNT_SID: Final = "AC" + "0123456789abcdef" * 2
FAKE_AUTH_TOKEN: Final = "f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8"

_E164: Final = re.compile(r"\+[1-9][0-9]{1,14}")
_SHORT_CODE: Final = re.compile(r"[0-9]{3,8}")
_ALPHANUMERIC_ID: Final = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")
_MESSAGING_SERVICE: Final = re.compile(r"MG[0-9a-fA-F]{32}")
_MESSAGES: Final = re.compile(r"/2010-04-01/Accounts/(?P<account>[^/]+)/Messages\.json")
_BALANCE: Final = re.compile(r"/2010-04-01/Accounts/(?P<account>[^/]+)/Balance\.json")
_LOOKUP: Final = re.compile(r"/v2/PhoneNumbers/(?P<number>[^/]+)")
_FORMATTING: Final = re.compile(r"[().\- ]")
_MAX_BODY: Final = 1600
_MAX_MEDIA: Final = 10
# ISO country -> calling code, and back; "1" reads as US (NANP).
_CALLING_CODES: Final = {
    "US": "1",
    "CA": "1",
    "GB": "44",
    "DE": "49",
    "FR": "33",
    "IN": "91",
    "AU": "61",
}
_COUNTRIES: Final = {"1": "US", "44": "GB", "49": "DE", "33": "FR", "91": "IN", "61": "AU"}


class _Reply(msgspec.Struct, frozen=True):
    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


class FakeTwilio:
    """The fake's state; `app` is the ASGI app to serve. See the module docstring.

    ``api_keys`` maps API key SIDs (``SK...``) to their secrets, which
    authenticate for the account as its token does. ``balance`` and
    ``currency`` are what Balance.json answers. ``wall_clock`` stamps messages.
    """

    def __init__(
        self,
        *,
        account_sid: str = FAKE_ACCOUNT_SID,
        auth_token: str = FAKE_AUTH_TOKEN,
        api_keys: Mapping[str, str] | None = None,
        balance: str = "25.50",
        currency: str = "USD",
        wall_clock: WallClock = system_wall_clock,
    ) -> None:
        for field, value in (("account_sid", account_sid), ("auth_token", auth_token)):
            if not isinstance(value, str) or not value or ":" in value:
                raise ConfigError(field, "***", "must be a non-empty str without ':'")
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.api_keys = dict(api_keys or {})
        self.balance = balance
        self.currency = currency
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._messages: list[dict[str, Any]] = []
        self._rejected: dict[str, tuple[int, str]] = {}
        self._invalid: dict[str, tuple[str, ...]] = {}
        self._failures: list[int] = []
        self._throttles: list[str | None] = []
        self._stalls: list[float] = []
        self._delay = 0.0
        self._in_flight = 0
        self._max_in_flight = 0
        self._counter = 0
        self._app: ASGIApp | None = None

    @property
    def app(self) -> ASGIApp:
        """The Starlette app: every method and path, so each request is recorded."""
        if self._app is None:
            from starlette.applications import Starlette  # noqa: PLC0415 - optional extra
            from starlette.routing import Route  # noqa: PLC0415

            self._app = Starlette(routes=[Route("/{path:path}", _RawEndpoint(self))])
        return self._app

    def credentials(self) -> Credentials:
        """The ``basic_auth`` credentials this fake accepts, ready to store."""
        return Credentials(
            auth_method=AuthMethod.BASIC_AUTH,
            data={"username": self.account_sid, "password": self.auth_token},
        )

    # -- knobs ----------------------------------------------------------------

    def reject(
        self,
        phone_number: str,
        code: int = 21610,
        message: str = "Attempt to send to unsubscribed recipient",
    ) -> None:
        """Refuse messages to ``phone_number`` with 400 and Twilio error ``code``."""
        with self._lock:
            self._rejected[phone_number] = (code, message)

    def invalid(self, phone_number: str, *errors: str) -> None:
        """Have Lookup call the E.164 ``phone_number`` invalid, with ``errors`` as its reasons."""
        with self._lock:
            self._invalid[phone_number] = errors or ("INVALID_BUT_POSSIBLE",)

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next ``n`` requests with ``status`` (code 20000 + status), unprocessed."""
        _check_count(n)
        if status not in {int(known) for known in HTTPStatus} or status < 400:
            raise ConfigError("status", status, "must be an HTTP error status, 400-599")
        with self._lock:
            self._failures.extend([status] * n)

    def throttle(self, n: int = 1, retry_after: float | str | None = None) -> None:
        """Answer the next ``n`` requests 429 (code 20429), unprocessed, with Retry-After."""
        _check_count(n)
        header = None if retry_after is None else str(retry_after)
        with self._lock:
            self._throttles.extend([header] * n)

    def slow(self, seconds: float) -> None:
        """Wait ``seconds`` before answering each request from now on; 0 stops it."""
        non_negative("seconds", seconds)
        with self._lock:
            self._delay = seconds

    def timeout_after_processing(self, n: int = 1, stall: float = 5.0) -> None:
        """Process the next ``n`` requests, then answer only after ``stall`` seconds.

        ``stall`` must outlast the client's timeout: the client gives up, and
        the message was created all the same. A stalled request ends as soon
        as its client disconnects, so it does not linger into the next test.
        """
        _check_count(n)
        non_negative("stall", stall)
        with self._lock:
            self._stalls.extend([stall] * n)

    def reset(self) -> None:
        """Forget requests, messages and knobs (between tests sharing one server)."""
        with self._lock:
            self._received.clear()
            self._messages.clear()
            self._rejected.clear()
            self._invalid.clear()
            self._failures.clear()
            self._throttles.clear()
            self._stalls.clear()
            self._delay = 0.0
            self._max_in_flight = self._in_flight

    # -- what it saw ----------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        """Every request so far, in arrival order."""
        with self._lock:
            return list(self._received)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The message resources created, in order (what Twilio would deliver)."""
        with self._lock:
            return [dict(message) for message in self._messages]

    @property
    def max_in_flight(self) -> int:
        """The most requests answered at once since the last `reset`."""
        with self._lock:
            return self._max_in_flight

    @staticmethod
    def form(request: Received) -> dict[str, list[str]]:
        """A request's form fields, each with its values in the order sent."""
        return parse_qs(request.body.decode("utf-8"), keep_blank_values=True)

    # -- serving --------------------------------------------------------------

    async def serve(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        """Record one request, then answer it as Twilio would."""
        from starlette.requests import Request  # noqa: PLC0415 - optional extra

        request = Request(scope, receive)
        body = await request.body()
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope.get("query_string", b"")
        received = Received(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            target=(raw_path + b"?" + query if query else raw_path).decode("latin-1"),
            headers=dict(request.headers.items()),
            body=body,
            at=anyio.current_time(),
        )
        stall = 0.0
        with self._lock:
            self._received.append(received)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            delay = self._delay
            if self._failures:
                status = self._failures.pop(0)
                reply: _Reply | None = _error(status, 20000 + status, HTTPStatus(status).phrase)
            elif self._throttles:
                retry_after = self._throttles.pop(0)
                headers = (("Retry-After", retry_after),) if retry_after is not None else ()
                reply = _error(429, 20429, "Too Many Requests", headers)
            else:
                reply = None
        try:
            if delay:
                await anyio.sleep(delay)
            if reply is None:
                with self._lock:
                    reply = self._process(received)
                    if self._stalls:
                        stall = self._stalls.pop(0)
            if stall:
                await _until_disconnected(receive, stall)
            await _respond(reply, scope, receive, send)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _process(self, request: Received) -> _Reply:
        """The answer to one request; runs under the lock."""
        path = request.path
        for pattern, method, handler in (
            (_MESSAGES, "POST", self._create_message),
            (_BALANCE, "GET", self._fetch_balance),
            (_LOOKUP, "GET", self._look_up),
        ):
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if request.method != method:
                return _error(405, 20004, "Method not allowed")
            refusal = self._authenticate(request)
            if refusal is not None:
                return refusal
            account = match.groupdict().get("account")
            if account is not None and account != self.account_sid:
                return _not_found(path)
            return handler(request, match)
        return _not_found(path)

    def _authenticate(self, request: Received) -> _Reply | None:
        scheme, _, encoded = (request.header("authorization") or "").partition(" ")
        try:
            username, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            username = password = ""
        expected = self.auth_token if username == self.account_sid else self.api_keys.get(username)
        if scheme.lower() != "basic" or expected is None or password != expected:
            return _error(
                401, 20003, "Authenticate", (("WWW-Authenticate", 'Basic realm="Twilio API"'),)
            )
        return None

    def _create_message(self, request: Received, _match: re.Match[str]) -> _Reply:
        content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
        try:
            form = self.form(request) if content_type == "application/x-www-form-urlencoded" else {}
        except UnicodeDecodeError:
            form = {}
        to = _first(form, "To")
        sender = _first(form, "From")
        service = _first(form, "MessagingServiceSid")
        body = _first(form, "Body")
        media = form.get("MediaUrl", [])
        callback = _first(form, "StatusCallback")
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if _E164.fullmatch(to) is None:
            return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not sender and not service:
            return _error(
                400,
                21603,
                "A 'From' or 'MessagingServiceSid' parameter is required to send a message.",
            )
        if sender and not (
            _E164.fullmatch(sender)
            or _SHORT_CODE.fullmatch(sender)
            or _ALPHANUMERIC_ID.fullmatch(sender)
        ):
            return _error(
                400,
                21212,
                f"The 'From' number {sender} is not a valid phone number, shortcode, "
                "or alphanumeric sender ID.",
            )
        if service and _MESSAGING_SERVICE.fullmatch(service) is None:
            return _error(400, 21705, f"The Messaging Service Sid {service} is invalid.")
        if not body and not media:
            return _error(400, 21602, "Message body is required.")
        if body and len(body) > _MAX_BODY:
            return _error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        if len(media) > _MAX_MEDIA:
            return _error(400, 21623, "Number of media files exceeds allowed limit.")
        if not all(_is_http_url(url) for url in media):
            return _error(400, 21620, "Invalid media URL(s).")
        if callback is not None and not _is_http_url(callback):
            return _error(400, 21609, "Invalid 'StatusCallback'.")
        refusal = self._rejected.get(to)
        if refusal is not None:
            return _error(400, *refusal)
        self._counter += 1
        sid = f"{'MM' if media else 'SM'}{self._counter:032x}"
        stamp = format_datetime(datetime.fromtimestamp(self._wall_clock(), UTC))
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}"
        message = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": body or "",
            "date_created": stamp,
            "date_sent": None,
            "date_updated": stamp,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender or None,
            "messaging_service_sid": service or None,
            "num_media": str(len(media)),
            "num_segments": str(_segments(body or "")),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service else "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": to,
            "uri": f"{uri}.json",
        }
        self._messages.append(message)
        return _Reply(201, message)

    def _fetch_balance(self, _request: Received, match: re.Match[str]) -> _Reply:
        return _Reply(
            200,
            {"account_sid": match["account"], "balance": self.balance, "currency": self.currency},
        )

    def _look_up(self, request: Received, match: re.Match[str]) -> _Reply:
        number = match["number"]
        query = parse_qs(request.query)
        country = _first(query, "CountryCode")
        fields = (_first(query, "Fields") or "").split(",")
        e164, errors = _to_e164(number, country)
        calling_code = national = None
        if not errors:
            calling_code, national, errors = _numbering(e164)
        if not errors:
            errors = list(self._invalid.get(e164, ()))
        valid = not errors
        region = _COUNTRIES.get(calling_code or "") if valid else None
        line_type = None
        if valid and "line_type_intelligence" in fields:
            line_type = {
                "carrier_name": "Fake Mobile",
                "error_code": None,
                "mobile_country_code": "310",
                "mobile_network_code": "260",
                "type": "mobile",
            }
        return _Reply(
            200,
            {
                "calling_country_code": calling_code if valid else None,
                "country_code": region,
                "phone_number": e164,
                "national_format": national if valid else None,
                "valid": valid,
                "validation_errors": errors or None,
                "caller_name": None,
                "sim_swap": None,
                "call_forwarding": None,
                "line_type_intelligence": line_type,
                "url": f"https://lookups.twilio.com/v2/PhoneNumbers/{e164}",
            },
        )


class _RawEndpoint:
    __slots__ = ("fake",)

    def __init__(self, fake: FakeTwilio) -> None:
        self.fake = fake

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        await self.fake.serve(scope, receive, send)


async def _until_disconnected(receive: Any, limit: float) -> None:
    """Wait until the client hangs up, or ``limit`` seconds; the body was read already."""
    with anyio.move_on_after(limit):
        while (await receive())["type"] != "http.disconnect":
            pass


def _check_count(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError("n", n, "must be an integer >= 1")


def _error(
    status: int, code: int, message: str, headers: tuple[tuple[str, str], ...] = ()
) -> _Reply:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return _Reply(status, body, headers)


def _not_found(path: str) -> _Reply:
    return _error(404, 20404, f"The requested resource {path} was not found")


async def _respond(reply: _Reply, scope: Any, receive: Any, send: Any) -> None:
    from starlette.responses import Response  # noqa: PLC0415 - optional extra

    response = Response(
        msgspec.json.encode(reply.body),
        status_code=reply.status,
        headers=dict(reply.headers),
        media_type="application/json",
    )
    await response(scope, receive, send)


def _first(fields: Mapping[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    return values[0] if values else None


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in value


def _segments(body: str) -> int:
    """SMS segments, roughly as Twilio counts: GSM-7 (ASCII here) 160/153, else UCS-2 70/67."""
    single, part = (160, 153) if body.isascii() else (70, 67)
    if len(body) <= single:
        return 1
    return -(-len(body) // part)


def _to_e164(number: str, country: str | None) -> tuple[str, list[str]]:
    """``number`` in E.164, read as national in ``country`` (default US) without a ``+``."""
    if number.startswith("+"):
        digits = _FORMATTING.sub("", number[1:])
        code = ""
    else:
        code_or_none = _CALLING_CODES.get(country or "US")
        if code_or_none is None:
            return number, ["INVALID_COUNTRY_CODE"]
        code = code_or_none
        digits = _FORMATTING.sub("", number)
        if code == "1" and len(digits) == 11 and digits.startswith("1"):
            digits = digits[1:]
        elif code != "1":
            digits = digits.removeprefix("0")  # the trunk prefix of a national number
    if not (digits.isascii() and digits.isdigit()):
        return number, ["NOT_A_NUMBER"]
    return f"+{code}{digits}", []


def _numbering(e164: str) -> tuple[str | None, str | None, list[str]]:
    """Calling code, national format and errors of an E.164-shaped number."""
    digits = e164[1:]
    if digits.startswith("0"):
        return None, None, ["INVALID_COUNTRY_CODE"]
    code = next((c for c in ("1", digits[:2]) if digits.startswith(c) and c in _COUNTRIES), None)
    if code is None:
        if len(digits) < 8:
            return None, None, ["TOO_SHORT"]
        if len(digits) > 15:
            return None, None, ["TOO_LONG"]
        return None, None, []
    national = digits[len(code) :]
    low, high = (10, 10) if code == "1" else (7, 12)
    if len(national) < low:
        return code, None, ["TOO_SHORT"]
    if len(national) > high:
        return code, None, ["TOO_LONG"]
    if code == "1":
        return code, f"({national[:3]}) {national[3:6]}-{national[6:]}", []
    return code, f"0{national}", []
