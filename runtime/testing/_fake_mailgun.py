"""`FakeMailgun`: Mailgun's messages, stats and address validation APIs, served.

A Starlette app for `serve_asgi`; point ``MailgunEmail(base_url=...)`` at it.
It checks what Mailgun documents (VENDORS.md §5, documentation.mailgun.com):
HTTP Basic auth as ``api`` and a key, a sending domain it knows, a form body
(``application/x-www-form-urlencoded``, or ``multipart/form-data``, the only
way files arrive), ``from`` and at least one ``to`` that are addresses
(``Name <a@b>`` or bare, repeated or comma-separated), one of ``text``,
``html``, ``amp-html`` or ``template``, at most 1000 recipients, at most 3
ASCII tags of 128 characters, 16 KB of ``o:``/``h:``/``v:``/``t:`` options,
and JSON ``recipient-variables`` and ``t:variables``. It answers as Mailgun
does: 200 ``{"id": "<...>", "message": "Queued. Thank you."}``, or the status
with ``{"message": ...}``.

Every request is recorded before it is answered (`received`); accepted
messages are kept in `sent`, their fields in order and their files. Knobs, as
`FakeSendGrid`'s: ``reject(address)``, ``fail_next(n, status)``,
``throttle(n, retry_after)`` (429 with Retry-After), ``slow(seconds)``,
``timeout_after_processing(n)``. Statistics answer what `add_stats` put in,
one row per day; validation answers ``deliverable`` for a well-formed address
unless `set_verdict` says otherwise. Mailgun has no idempotency keys.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import email.utils
import itertools
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl

import anyio
import msgspec

from .. import _formats as check
from .._clock import WallClock, system_wall_clock
from .._errors import ConfigError
from .._validate import non_negative
from ._fake_json_api import Received, _target

if TYPE_CHECKING:
    from ._server import ASGIApp

__all__ = ["FakeMailgun", "MailgunFile", "MailgunMessage"]

# Counters per event, as the stats API nests them, with the add_stats names filling them.
STATS: Final[dict[str, dict[str, Any]]] = {
    "accepted": {"incoming": "accepted_incoming", "outgoing": "accepted"},
    "delivered": {"smtp": "delivered", "http": "delivered_http"},
    "failed": {
        "permanent": {"bounce": "bounced", "delayed-bounce": "delayed_bounced"},
        "temporary": {"espblock": "espblocked"},
    },
    "opened": {"total": "opened", "unique": "unique_opened"},
    "clicked": {"total": "clicked", "unique": "unique_clicked"},
    "unsubscribed": {"total": "unsubscribed"},
    "complained": {"total": "complained"},
    "stored": {"total": "stored"},
}
_LIMIT = 1000  # recipients per message
_TAGS = 3
_TAG_LENGTH = 128
_OPTIONS_BYTES = 16 * 1024
_OPTION_PREFIXES = ("o:", "h:", "v:", "t:")
_BODIES = ("text", "html", "amp-html", "template")
_RESULTS: Final = ("deliverable", "undeliverable", "do_not_send", "catch_all", "unknown")
_STATUS_MESSAGES: Final = {
    400: "Bad request",
    401: "Invalid or missing API key",
    403: "Forbidden",
    404: "Not found",
    413: "Request entity too large",
    429: "Too many requests",
    500: "Internal server error",
}
_PARAM = re.compile(r';\s*(name|filename)="([^"]*)"')

Answer = tuple[int, dict[str, str], Any]


class MailgunFile(msgspec.Struct, frozen=True, kw_only=True):
    """A file part of a message: ``field`` is ``attachment`` or ``inline``."""

    field: str
    filename: str
    content_type: str
    content: bytes


class MailgunMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message the fake queued: its id, its domain, its form fields in order, its files."""

    message_id: str
    domain: str
    fields: tuple[tuple[str, str], ...]
    files: tuple[MailgunFile, ...] = ()

    def values(self, name: str) -> list[str]:
        """Every value of the field ``name``, in order."""
        return [value for key, value in self.fields if key == name]

    def value(self, name: str) -> str | None:
        """The field's only value, or None when it is absent."""
        found = self.values(name)
        if len(found) > 1:
            raise ConfigError("name", name, f"has {len(found)} values")
        return found[0] if found else None

    @property
    def recipients(self) -> list[str]:
        """The addresses of to, cc and bcc, in order."""
        return [
            address for kind in ("to", "cc", "bcc") for address in _addresses(self.values(kind))
        ]


class FakeMailgun:
    """The fake's state; `app` is the ASGI app to serve.

    ``api_keys`` are the keys it accepts and ``domains`` the sending domains
    it knows. ``wall_clock`` is "now" for a stats query without ``end``.
    """

    def __init__(
        self,
        api_keys: Iterable[str] = ("key-fake",),
        *,
        domains: Iterable[str] = ("mg.example.com",),
        wall_clock: WallClock = system_wall_clock,
        stall: float = 5.0,
    ) -> None:
        self._keys = frozenset(api_keys)
        if not self._keys or not all(isinstance(key, str) and key for key in self._keys):
            raise ConfigError("api_keys", "<keys>", "must be non-empty strings, at least one")
        self._domains = frozenset(domains)
        self._wall_clock = wall_clock
        self._stall = non_negative("stall", stall)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._received: list[Received] = []
        self._sent: list[MailgunMessage] = []
        self._rejected: dict[str, str] = {}
        self._stats: dict[tuple[str, date], dict[str, int]] = {}
        self._verdicts: dict[str, dict[str, Any]] = {}
        self._failures: deque[int] = deque()
        self._throttles: deque[float] = deque()
        self._stalls = 0
        self._delay = 0.0
        self._app: ASGIApp | None = None

    @property
    def app(self) -> ASGIApp:
        if self._app is None:
            from starlette.applications import Starlette  # noqa: PLC0415 - optional extra
            from starlette.routing import Route  # noqa: PLC0415

            self._app = Starlette(routes=[Route("/{path:path}", _Endpoint(self))])
        return self._app

    # -- knobs ----------------------------------------------------------------

    def reject(self, address: str, message: str = "recipient address rejected") -> None:
        """Refuse (400) every message with ``address`` among its recipients."""
        with self._lock:
            self._rejected[address.lower()] = message

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next ``n`` requests with ``status`` and a ``{"message"}`` body."""
        check.count("n", n)
        if not 400 <= status <= 599:
            raise ConfigError("status", status, "must be an HTTP error status 400-599")
        with self._lock:
            self._failures.extend([status] * n)

    def throttle(self, n: int = 1, retry_after: float = 1.0) -> None:
        """Answer the next ``n`` requests 429 with ``Retry-After: retry_after``."""
        check.count("n", n)
        non_negative("retry_after", retry_after)
        with self._lock:
            self._throttles.extend([retry_after] * n)

    def slow(self, seconds: float) -> None:
        """Hold every answer ``seconds`` before processing the request (0: no more)."""
        non_negative("seconds", seconds)
        with self._lock:
            self._delay = seconds

    def timeout_after_processing(self, n: int = 1) -> None:
        """Process the next ``n`` requests, then stall their answers for ``stall`` s."""
        check.count("n", n)
        with self._lock:
            self._stalls += n

    def add_stats(self, domain: str, day: date, **counts: int) -> None:
        """Add to ``domain``'s counters of ``day`` (names: the leaves of `STATS`)."""
        names = set(_leaves(STATS))
        unknown = set(counts) - names
        if unknown:
            raise ConfigError("counts", sorted(unknown), f"must be among {sorted(names)}")
        with self._lock:
            totals = self._stats.setdefault((domain, day), dict.fromkeys(names, 0))
            for name, value in counts.items():
                totals[name] += value

    def set_verdict(
        self,
        address: str,
        result: str,
        *,
        reason: Sequence[str] = (),
        risk: str = "high",
        did_you_mean: str | None = None,
    ) -> None:
        """Answer validations of ``address`` with ``result`` (and why, and how risky)."""
        if result not in _RESULTS:
            raise ConfigError("result", result, f"must be one of {list(_RESULTS)}")
        with self._lock:
            self._verdicts[address.lower()] = {
                "result": result,
                "reason": list(reason),
                "risk": risk,
                "did_you_mean": did_you_mean,
            }

    def reset(self) -> None:
        """Forget recordings, knobs, statistics and verdicts; ids start again at 1."""
        with self._lock:
            self._ids = itertools.count(1)
            self._received.clear()
            self._sent.clear()
            self._rejected.clear()
            self._stats.clear()
            self._verdicts.clear()
            self._failures.clear()
            self._throttles.clear()
            self._stalls = 0
            self._delay = 0.0

    @property
    def received(self) -> list[Received]:
        """Every request so far, in arrival order."""
        with self._lock:
            return list(self._received)

    def requests_to(self, path: str) -> list[Received]:
        return [request for request in self.received if request.path == path]

    @property
    def sent(self) -> list[MailgunMessage]:
        """The messages queued so far, in order."""
        with self._lock:
            return list(self._sent)

    # -- serving --------------------------------------------------------------

    async def serve(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        """Record one request, then answer it as Mailgun would (or as a knob says)."""
        from starlette.requests import Request  # noqa: PLC0415 - optional extra
        from starlette.responses import Response  # noqa: PLC0415

        request = Request(scope, receive)
        received = Received(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            target=_target(scope),
            headers=dict(request.headers.items()),
            body=await request.body(),
            at=anyio.current_time(),
        )
        with self._lock:
            self._received.append(received)
            delay = self._delay
        if delay:
            await anyio.sleep(delay)
        with self._lock:
            status, headers, payload = self._fault() or self._answer(received)
            stall = self._stall if self._stalls else 0.0
            self._stalls = max(0, self._stalls - 1)
        if stall:
            await anyio.sleep(stall)
        if isinstance(payload, str):  # an unknown endpoint: Mailgun answers it without JSON
            response = Response(payload, status, headers, "text/plain")
        else:
            response = Response(msgspec.json.encode(payload), status, headers, "application/json")
        await response(scope, receive, send)

    def _fault(self) -> Answer | None:
        if self._failures:
            status = self._failures.popleft()
            return status, {}, {"message": _STATUS_MESSAGES.get(status, "Error")}
        if self._throttles:
            retry_after = self._throttles.popleft()
            return 429, {"Retry-After": f"{retry_after:g}"}, {"message": _STATUS_MESSAGES[429]}
        return None

    def _answer(self, received: Received) -> Answer:
        parts = received.path.strip("/").split("/")
        domain: str | None = None
        handler: Callable[[Received, str], Answer]
        methods: tuple[str, ...]
        if parts == ["v4", "address", "validate"]:
            handler, methods = self._validate, ("GET", "POST")
        elif len(parts) == 3 and parts[0] == "v3" and parts[2] == "messages":
            handler, methods, domain = self._messages, ("POST",), parts[1]
        elif len(parts) == 4 and parts[0] == "v3" and parts[2:] == ["stats", "total"]:
            handler, methods, domain = self._domain_stats, ("GET",), parts[1]
        else:
            return 404, {}, "404 page not found"
        if received.method not in methods:
            return 405, {}, {"message": "Method not allowed"}
        if not self._authorized(received):
            return 401, {}, {"message": _STATUS_MESSAGES[401]}
        if domain is not None and domain not in self._domains:
            return 404, {}, {"message": f"Domain not found: {domain}"}
        return handler(received, domain or "")

    def _authorized(self, received: Received) -> bool:
        scheme, _, token = (received.header("authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, key = base64.b64decode(token, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user == "api" and key in self._keys

    def _messages(self, received: Received, domain: str) -> Answer:
        form = _form(received)
        if isinstance(form, str):
            return 400, {}, {"message": form}
        fields, files = form
        problem = _check_message(fields, files)
        if problem is None:
            problem = self._refused(fields)
        if problem is not None:
            return 400, {}, {"message": problem}
        message_id = f"<fake.{next(self._ids):06d}@{domain}>"
        self._sent.append(
            MailgunMessage(
                message_id=message_id, domain=domain, fields=tuple(fields), files=tuple(files)
            )
        )
        return 200, {}, {"id": message_id, "message": "Queued. Thank you."}

    def _refused(self, fields: list[tuple[str, str]]) -> str | None:
        for kind in ("to", "cc", "bcc"):
            for address in _addresses([value for key, value in fields if key == kind]):
                reason = self._rejected.get(address.lower())
                if reason is not None:
                    return f"{address}: {reason}"
        return None

    def _domain_stats(self, received: Received, domain: str) -> Answer:
        query = parse_qsl(received.query, keep_blank_values=True)
        events = [value for key, value in query if key == "event"]
        if not events:
            return 400, {}, {"message": "Missing mandatory parameter: event"}
        unknown = [event for event in events if event not in STATS]
        if unknown:
            return 400, {}, {"message": f"Invalid event: {unknown[0]}"}
        params = dict(query)
        if params.get("resolution", "day") != "day":
            # Mailgun also answers by hour and month; this fake answers by day only.
            return 400, {}, {"message": "This fake answers resolution=day only"}
        try:
            end = _time(params["end"]) if "end" in params else self._wall_clock()
            start = _time(params["start"]) if "start" in params else end - 7 * 86400
        except ValueError:
            return 400, {}, {"message": "start and end must be RFC 2822 dates or Unix times"}
        rows = []
        day = datetime.fromtimestamp(start, UTC).date()
        while calendar.timegm(day.timetuple()) <= end:
            if calendar.timegm(day.timetuple()) >= start:
                counts = self._stats.get((domain, day), {})
                row: dict[str, Any] = {"time": _rfc2822(day)}
                for event in events:
                    row[event] = _nest(STATS[event], counts)
                rows.append(row)
            day += timedelta(days=1)
        return (
            200,
            {},
            {
                "description": "",
                "start": _rfc2822(datetime.fromtimestamp(start, UTC)),
                "end": _rfc2822(datetime.fromtimestamp(end, UTC)),
                "resolution": "day",
                "stats": rows,
            },
        )

    def _validate(self, received: Received, _domain: str) -> Answer:
        if received.method == "GET":
            values = parse_qsl(received.query, keep_blank_values=True)
        else:
            form = _form(received)
            if isinstance(form, str):
                return 400, {}, {"message": form}
            values = form[0]
        address = dict(values).get("address")
        if not address:
            return 400, {}, {"message": "Missing mandatory parameter: address"}
        if len(address) > 512:
            return 400, {}, {"message": "address must be at most 512 characters"}
        verdict: dict[str, Any]
        try:
            check.check_email_address(address)
            verdict = {"result": "deliverable", "reason": [], "risk": "low", "did_you_mean": None}
        except ConfigError:
            verdict = {
                "result": "undeliverable",
                "reason": ["malformed address"],
                "risk": "high",
                "did_you_mean": None,
            }
        verdict = self._verdicts.get(address.lower(), verdict)
        local = address.rpartition("@")[0].lower()
        return (
            200,
            {},
            {
                "address": address,
                "is_disposable_address": False,
                "is_role_address": local in ("admin", "info", "sales", "support", "postmaster"),
                **verdict,
            },
        )


class _Endpoint:
    """The fake as a raw ASGI endpoint: any method, any path, answered by `serve`."""

    __slots__ = ("fake",)

    def __init__(self, fake: FakeMailgun) -> None:
        self.fake = fake

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        await self.fake.serve(scope, receive, send)


def _addresses(values: Sequence[str]) -> list[str]:
    """The addresses in ``to``-style values (``Name <a@b>``, bare, comma-separated)."""
    return [address for _name, address in email.utils.getaddresses(list(values)) if address]


def _form(received: Received) -> tuple[list[tuple[str, str]], list[MailgunFile]] | str:
    """The form's fields and files, or why it is not a form Mailgun reads."""
    content_type = received.header("content-type") or ""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        try:
            text = received.body.decode("ascii")
            return parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text)), []
        except (UnicodeDecodeError, ValueError):
            return "the body is not application/x-www-form-urlencoded"
    if kind == "multipart/form-data":
        boundary = re.search(r'boundary="?([^";]+)"?', content_type)
        if boundary is None:
            return "multipart/form-data needs a boundary"
        return _multipart(received.body, boundary.group(1).encode("latin-1"))
    return "the body must be a form: application/x-www-form-urlencoded or multipart/form-data"


def _multipart(
    body: bytes, boundary: bytes
) -> tuple[list[tuple[str, str]], list[MailgunFile]] | str:
    """RFC 7578 parts: ``--boundary CRLF headers CRLF CRLF content CRLF`` each, then the close."""
    pieces = (b"\r\n" + body).split(b"\r\n--" + boundary)
    if len(pieces) < 2 or pieces[0] or not pieces[-1].startswith(b"--"):
        return "malformed multipart/form-data body"
    fields: list[tuple[str, str]] = []
    files: list[MailgunFile] = []
    for piece in pieces[1:-1]:
        head, separator, content = piece.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not separator:
            return "malformed multipart/form-data part"
        headers = {}
        for line in head.decode("utf-8", errors="replace").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        params = dict(_PARAM.findall(headers.get("content-disposition", "")))
        if (
            not headers.get("content-disposition", "").startswith("form-data")
            or "name" not in params
        ):
            return "a multipart part needs Content-Disposition: form-data with a name"
        name = params["name"].replace("%22", '"')
        if "filename" in params:
            files.append(
                MailgunFile(
                    field=name,
                    filename=params["filename"].replace("%22", '"'),
                    content_type=headers.get("content-type", "text/plain"),
                    content=content,
                )
            )
        else:
            try:
                fields.append((name, content.decode("utf-8")))
            except UnicodeDecodeError:
                return f"field {name!r} is not UTF-8"
    return fields, files


def _check_message(fields: list[tuple[str, str]], files: list[MailgunFile]) -> str | None:
    """Why Mailgun would refuse these fields and files, or None."""
    names = [name for name, _ in fields]
    senders = [value for name, value in fields if name == "from"]
    if not senders:
        return "'from' parameter is missing"
    if len(senders) > 1 or not _valid(senders):
        return "'from' parameter is not a valid address. please check documentation"
    if "to" not in names:
        return "'to' parameter is missing"
    for kind in ("to", "cc", "bcc"):
        if not _valid([value for name, value in fields if name == kind]):
            return f"'{kind}' parameter is not a valid address. please check documentation"
    recipients = sum(
        len(_addresses([value])) for name, value in fields if name in ("to", "cc", "bcc")
    )
    if recipients > _LIMIT:
        return f"Too many recipients: at most {_LIMIT}"
    if not any(name in _BODIES for name in names):
        return "Need at least one of 'text', 'html', 'amp-html' or 'template' parameters specified"
    if any(name in ("attachment", "inline") for name in names):
        return "attachment and inline must be files, sent as multipart/form-data"
    for file in files:
        if file.field not in ("attachment", "inline") or not file.filename:
            return f"unexpected file field {file.field!r}"
    options = sum(
        len(name.encode()) + len(value.encode())
        for name, value in fields
        if name.startswith(_OPTION_PREFIXES)
    )
    if options > _OPTIONS_BYTES:
        return "o:, h:, v: and t: parameters may total at most 16KB"
    tags = [value for name, value in fields if name == "o:tag"]
    if len(tags) > _TAGS or not all(tag.isascii() and len(tag) <= _TAG_LENGTH for tag in tags):
        return f"at most {_TAGS} tags of {_TAG_LENGTH} ASCII characters"
    for name in ("recipient-variables", "t:variables"):
        for value in (value for key, value in fields if key == name):
            try:
                decoded = msgspec.json.decode(value)
            except msgspec.DecodeError:
                decoded = None
            if not isinstance(decoded, dict):
                return f"'{name}' must be a JSON object"
    return None


def _valid(values: Sequence[str]) -> bool:
    """Every address in ``values`` is well formed (and a list has one at least per value)."""
    for value in values:
        found = email.utils.getaddresses([value])
        if not found or any(not address for _name, address in found):
            return False
        for _name, address in found:
            try:
                check.check_email_address(address)
            except ConfigError:
                return False
    return True


def _time(text: str) -> float:
    """A Unix time from a Unix time or an RFC 2822 date; ValueError for anything else."""
    if text.isdigit():
        return float(text)
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError) as error:
        raise ValueError(text) from error
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


def _rfc2822(moment: date) -> str:
    """``Tue, 14 Feb 2012 00:00:00 UTC``, as Mailgun writes times."""
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    return moment.strftime("%a, %d %b %Y %H:%M:%S UTC")


def _nest(shape: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    """An event's counters as the stats API nests them, each level with its total."""
    result: dict[str, Any] = {}
    total = 0
    for key, leaf in shape.items():
        if isinstance(leaf, dict):
            result[key] = _nest(leaf, counts)
            total += result[key]["total"]
        elif key == "unique":
            result[key] = counts.get(leaf, 0)
        else:
            result[key] = counts.get(leaf, 0)
            total += result[key]
    result.setdefault("total", total)
    return result


def _leaves(shape: dict[str, Any]) -> list[str]:
    return [
        name
        for value in shape.values()
        for name in (_leaves(value) if isinstance(value, dict) else [value])
    ]
