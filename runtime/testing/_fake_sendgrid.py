"""`FakeSendGrid`: SendGrid's v3 mail send, statistics and address validation, served.

A Starlette app for `serve_asgi`; point ``SendGridEmail(base_url=...)`` at it.
It checks what SendGrid documents (VENDORS.md §4, twilio/sendgrid-oai): a
bearer API key, a JSON body, the mail send schema's required fields and
limits (1000 personalizations and 1000 recipients a request, addresses unique
within a personalization, ``text/plain`` content first, base64 attachments,
at most 10 categories, no reserved header, string custom args), and answers
as SendGrid does: 202 with an ``X-Message-Id`` header and no body, or the
status with ``{"errors": [{"message", "field", "help"}]}``.

Every request is recorded before it is answered (`received`, `Received`
values); accepted mail is kept in `sent`. Knobs: ``reject(address)`` refuses
mail to an address (400; SendGrid refuses a request whole), ``fail_next(n,
status)``, ``throttle(n, retry_after)`` (429 with Retry-After and SendGrid's
X-RateLimit headers), ``slow(seconds)`` (each answer waits, before the request
is processed), ``timeout_after_processing(n)`` (the request is processed,
then its answer stalls for ``stall`` seconds, past a client's timeout).
Statistics answer what `add_stats` put in, by day; validation answers
``Valid`` for a well-formed address unless `set_verdict` says otherwise.
SendGrid has no idempotency keys, so there is nothing to count per key.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import math
import threading
from collections import deque
from collections.abc import Iterable, Mapping, MutableMapping
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

__all__ = ["FakeSendGrid", "SendGridMail"]

METRICS: Final = (
    "blocks",
    "bounce_drops",
    "bounces",
    "clicks",
    "deferred",
    "delivered",
    "invalid_emails",
    "opens",
    "processed",
    "requests",
    "spam_report_drops",
    "spam_reports",
    "unique_clicks",
    "unique_opens",
    "unsubscribe_drops",
    "unsubscribes",
)
_RESERVED_HEADERS: Final = frozenset(
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
_LIMIT = 1000  # personalizations, and recipients, per request
_CATEGORIES = 10
# The documented bodies (tsg_mail_v3 examples) of errors that are not about a field.
_STATUS_MESSAGES: Final = {
    400: "invalid request",
    401: "authorization required",
    403: "access forbidden",
    404: "not found",
    405: "method not allowed",
    413: "content too large",
    429: "too many requests",
    500: "internal server error",
}
_VERDICTS: Final = ("Valid", "Risky", "Invalid")

Error = tuple[str | None, str]  # (field, message)


class SendGridMail(msgspec.Struct, frozen=True, kw_only=True):
    """A mail send the fake accepted: its ``X-Message-Id`` and its JSON body."""

    message_id: str
    body: dict[str, Any]

    @property
    def recipients(self) -> list[str]:
        """Every address of every personalization: to, cc, bcc, in order."""
        return [
            recipient["email"]
            for personalization in self.body["personalizations"]
            for kind in ("to", "cc", "bcc")
            for recipient in personalization.get(kind, ())
        ]


class FakeSendGrid:
    """The fake's state; `app` is the ASGI app to serve.

    ``api_keys`` are the keys it accepts; ``validation_keys``, when given, are
    the only ones the validation endpoint takes (SendGrid wants a key of its
    own there) and are refused by the others with 403. ``wall_clock`` dates
    X-RateLimit-Reset and a stats query without ``end_date``.
    """

    def __init__(
        self,
        api_keys: Iterable[str] = ("SG.fake-key",),
        *,
        validation_keys: Iterable[str] | None = None,
        wall_clock: WallClock = system_wall_clock,
        stall: float = 5.0,
    ) -> None:
        self._keys = frozenset(api_keys)
        self._validation_keys = None if validation_keys is None else frozenset(validation_keys)
        if not self._keys or not all(isinstance(key, str) and key for key in self._keys):
            raise ConfigError("api_keys", "<keys>", "must be non-empty strings, at least one")
        self._wall_clock = wall_clock
        self._stall = non_negative("stall", stall)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._received: list[Received] = []
        self._sent: list[SendGridMail] = []
        self._rejected: dict[str, str] = {}
        self._stats: dict[date, dict[str, int]] = {}
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
        """Refuse (400) every mail send with ``address`` among its recipients."""
        with self._lock:
            self._rejected[address.lower()] = message

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next ``n`` requests with ``status`` and SendGrid's error body."""
        check.count("n", n)
        if not 400 <= status <= 599:
            raise ConfigError("status", status, "must be an HTTP error status 400-599")
        with self._lock:
            self._failures.extend([status] * n)

    def throttle(self, n: int = 1, retry_after: float = 1.0) -> None:
        """Answer the next ``n`` requests 429, saying to retry after ``retry_after`` s."""
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

    def add_stats(self, day: date, **metrics: int) -> None:
        """Add to the global statistics of ``day`` (SendGrid's metric names)."""
        unknown = set(metrics) - set(METRICS)
        if unknown:
            raise ConfigError("metrics", sorted(unknown), f"must be among {list(METRICS)}")
        with self._lock:
            totals = self._stats.setdefault(day, dict.fromkeys(METRICS, 0))
            for name, value in metrics.items():
                totals[name] += value

    def set_verdict(
        self,
        address: str,
        verdict: str,
        *,
        suggestion: str | None = None,
        checks: Mapping[str, bool] | None = None,
    ) -> None:
        """Answer validations of ``address`` with ``verdict``; ``checks`` override flags."""
        if verdict not in _VERDICTS:
            raise ConfigError("verdict", verdict, f"must be one of {list(_VERDICTS)}")
        with self._lock:
            self._verdicts[address.lower()] = {
                "verdict": verdict,
                "suggestion": suggestion,
                "checks": dict(checks or {}),
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
    def sent(self) -> list[SendGridMail]:
        """The mail sends accepted so far, in order."""
        with self._lock:
            return list(self._sent)

    # -- serving --------------------------------------------------------------

    async def serve(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        """Record one request, then answer it as SendGrid would (or as a knob says)."""
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
        content = msgspec.json.encode(payload) if payload is not None else b""
        media_type = "application/json" if payload is not None else None
        response = Response(content, status, headers, media_type)
        await response(scope, receive, send)

    def _fault(self) -> tuple[int, dict[str, str], Any] | None:
        if self._failures:
            status = self._failures.popleft()
            return status, {}, _errors([(None, _STATUS_MESSAGES.get(status, "error"))])
        if self._throttles:
            retry_after = self._throttles.popleft()
            headers = {
                "Retry-After": f"{retry_after:g}",
                "X-RateLimit-Limit": "600",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(math.ceil(self._wall_clock() + retry_after)),
            }
            # The rate-limit page's body, with a JSON null field.
            body = {"errors": [{"field": None, "message": "too many requests"}]}
            return 429, headers, body
        return None

    def _answer(self, received: Received) -> tuple[int, dict[str, str], Any]:
        routes = {
            ("POST", "/v3/mail/send"): self._mail_send,
            ("GET", "/v3/stats"): self._global_stats,
            ("POST", "/v3/validations/email"): self._validate,
        }
        handler = routes.get((received.method, received.path))
        if handler is None:
            known = any(path == received.path for _, path in routes)
            status = 405 if known else 404
            return status, {}, _errors([(None, _STATUS_MESSAGES[status])])
        validation = received.path == "/v3/validations/email"
        denied = self._authorize(received, validation=validation)
        if denied is not None:
            return denied, {}, _errors([(None, _STATUS_MESSAGES[denied])])
        return handler(received)

    def _authorize(self, received: Received, *, validation: bool) -> int | None:
        """None when the bearer key may call this endpoint, else 401 or 403."""
        scheme, _, key = (received.header("authorization") or "").partition(" ")
        known = self._keys | (self._validation_keys or frozenset())
        if scheme.lower() != "bearer" or key not in known:
            return 401
        if self._validation_keys is not None and validation != (key in self._validation_keys):
            return 403
        return None

    def _json(self, received: Received) -> tuple[Any, tuple[int, dict[str, str], Any] | None]:
        content_type = (received.header("content-type") or "").split(";")[0].strip()
        if content_type != "application/json":
            return None, (400, {}, _errors([(None, "Content-Type should be application/json.")]))
        try:
            return msgspec.json.decode(received.body), None
        except msgspec.DecodeError:
            return None, (400, {}, _errors([(None, "The request body is not valid JSON.")]))

    def _mail_send(self, received: Received) -> tuple[int, dict[str, str], Any]:
        body, problem = self._json(received)
        if problem is not None:
            return problem
        errors = _check_mail(body)
        if not errors:
            errors = self._refused(body)
        if errors:
            return 400, {}, _errors(errors)
        message_id = f"fakeSG{next(self._ids):016d}"
        self._sent.append(SendGridMail(message_id=message_id, body=body))
        return 202, {"X-Message-Id": message_id}, None

    def _refused(self, body: dict[str, Any]) -> list[Error]:
        errors: list[Error] = []
        for i, personalization in enumerate(body["personalizations"]):
            for kind in ("to", "cc", "bcc"):
                for j, recipient in enumerate(personalization.get(kind, ())):
                    reason = self._rejected.get(recipient["email"].lower())
                    if reason is not None:
                        errors.append((f"personalizations.{i}.{kind}.{j}.email", reason))
        return errors

    def _global_stats(self, received: Received) -> tuple[int, dict[str, str], Any]:
        query = dict(parse_qsl(received.query, keep_blank_values=True))
        try:
            start = date.fromisoformat(query["start_date"])
        except (KeyError, ValueError):
            return 400, {}, _errors([("start_date", "a start_date of the form YYYY-MM-DD")])
        today = datetime.fromtimestamp(self._wall_clock(), UTC).date()
        try:
            end = date.fromisoformat(query["end_date"]) if "end_date" in query else today
        except ValueError:
            return 400, {}, _errors([("end_date", "an end_date of the form YYYY-MM-DD")])
        if end < start:
            return 400, {}, _errors([("end_date", "end_date must not be before start_date")])
        if query.get("aggregated_by", "day") != "day":
            # SendGrid also groups by week and month; this fake answers per day only.
            return 400, {}, _errors([("aggregated_by", "this fake aggregates by day only")])
        rows = []
        day = start
        while day <= end:
            metrics = self._stats.get(day, dict.fromkeys(METRICS, 0))
            rows.append({"date": day.isoformat(), "stats": [{"metrics": dict(metrics)}]})
            day += timedelta(days=1)
        return 200, {}, rows

    def _validate(self, received: Received) -> tuple[int, dict[str, str], Any]:
        body, problem = self._json(received)
        if problem is not None:
            return problem
        address = body.get("email") if isinstance(body, dict) else None
        if not isinstance(address, str) or not address:
            return 400, {}, _errors([("email", "an email is required")])
        local, _, host = address.rpartition("@")
        try:
            check.check_email_address(address)
            well_formed = True
        except ConfigError:
            well_formed = False
        verdict = self._verdicts.get(address.lower(), {})
        checks: dict[str, bool] = {
            "has_valid_address_syntax": well_formed,
            "has_mx_or_a_record": well_formed,
            "is_suspected_disposable_address": False,
            "is_suspected_role_address": False,
            "has_known_bounces": False,
            "has_suspected_bounces": False,
        }
        checks.update(verdict.get("checks", {}))
        result: dict[str, Any] = {
            "email": address,
            "verdict": verdict.get("verdict", "Valid" if well_formed else "Invalid"),
            "score": 0.9 if well_formed else 0.05,
            "local": local,
            "host": host,
            "checks": {
                "domain": {
                    name: checks[name]
                    for name in (
                        "has_valid_address_syntax",
                        "has_mx_or_a_record",
                        "is_suspected_disposable_address",
                    )
                },
                "local_part": {"is_suspected_role_address": checks["is_suspected_role_address"]},
                "additional": {
                    name: checks[name] for name in ("has_known_bounces", "has_suspected_bounces")
                },
            },
            "ip_address": "192.0.2.1",
        }
        if verdict.get("suggestion"):
            result["suggestion"] = verdict["suggestion"]
        if isinstance(body.get("source"), str):
            result["source"] = body["source"]
        return 200, {}, {"result": result}


class _Endpoint:
    """The fake as a raw ASGI endpoint: any method, any path, answered by `serve`."""

    __slots__ = ("fake",)

    def __init__(self, fake: FakeSendGrid) -> None:
        self.fake = fake

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        await self.fake.serve(scope, receive, send)


def _errors(errors: Iterable[Error]) -> dict[str, Any]:
    """SendGrid's error body; a field that is not about a field reads "null", as documented."""
    return {
        "errors": [
            {"message": message, "field": field if field is not None else "null", "help": None}
            for field, message in errors
        ]
    }


def _email(value: object, field: str, errors: list[Error]) -> str | None:
    """The address of a ``{"email", "name"}`` object, or None with an error added."""
    if not isinstance(value, dict) or not isinstance(value.get("email"), str):
        errors.append((field, "must be an object with an email"))
        return None
    try:
        return check.check_email_address(value["email"])
    except ConfigError:
        errors.append((f"{field}.email", "does not contain a valid address."))
        return None


def _check_mail(body: object) -> list[Error]:
    """Every way ``body`` breaks the mail send schema and its documented limits."""
    if not isinstance(body, dict):
        return [(None, "The request body must be a JSON object.")]
    errors: list[Error] = []
    _email(body.get("from"), "from", errors)
    if "reply_to" in body:
        _email(body["reply_to"], "reply_to", errors)
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        return [*errors, ("personalizations", "at least one personalization is required")]
    if len(personalizations) > _LIMIT:
        errors.append(("personalizations", f"at most {_LIMIT} personalizations"))
    templated = isinstance(body.get("template_id"), str) and bool(body["template_id"])
    recipients = 0
    for i, personalization in enumerate(personalizations):
        field = f"personalizations.{i}"
        if not isinstance(personalization, dict):
            errors.append((field, "must be an object"))
            continue
        if not personalization.get("to"):
            errors.append((f"{field}.to", "at least one recipient is required"))
        seen: set[str] = set()
        for kind in ("to", "cc", "bcc"):
            entries = personalization.get(kind, [])
            if not isinstance(entries, list):
                errors.append((f"{field}.{kind}", "must be an array"))
                continue
            for j, entry in enumerate(entries):
                address = _email(entry, f"{field}.{kind}.{j}", errors)
                if address is None:
                    continue
                recipients += 1
                if address.lower() in seen:
                    errors.append(
                        (
                            f"{field}.{kind}.{j}.email",
                            "Each email address in the personalization block should be "
                            "unique between to, cc, and bcc.",
                        )
                    )
                seen.add(address.lower())
        subject = personalization.get("subject", body.get("subject"))
        if not templated and not (isinstance(subject, str) and subject):
            errors.append((f"{field}.subject", "a subject is required unless a template has one"))
        _check_headers(personalization.get("headers"), f"{field}.headers", errors)
        custom_args = personalization.get("custom_args", {})
        if not isinstance(custom_args, dict) or not all(
            isinstance(value, str) for value in custom_args.values()
        ):
            errors.append((f"{field}.custom_args", "values must be strings"))
    if recipients > _LIMIT:
        errors.append(("personalizations", f"at most {_LIMIT} recipients in all"))
    _check_headers(body.get("headers"), "headers", errors)
    _check_content(body.get("content"), templated, errors)
    _check_attachments(body.get("attachments"), errors)
    categories = body.get("categories", [])
    if (
        not isinstance(categories, list)
        or len(categories) > _CATEGORIES
        or len(set(map(str, categories))) != len(categories)
        or not all(isinstance(c, str) and 0 < len(c) <= 255 for c in categories)
    ):
        errors.append(("categories", f"at most {_CATEGORIES} unique names of 255 characters"))
    return errors


def _check_headers(headers: object, field: str, errors: list[Error]) -> None:
    if headers is None:
        return
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        errors.append((field, "must be an object of strings"))
        return
    for name in headers:
        if name.lower() in _RESERVED_HEADERS:
            errors.append((f"{field}.{name}", "this header cannot be set"))


def _check_content(content: object, templated: bool, errors: list[Error]) -> None:
    if content is None:
        if not templated:
            errors.append(
                ("content", "Unless a valid template_id is provided, content is required")
            )
        return
    if not isinstance(content, list) or not content:
        errors.append(("content", "must specify at least one MIME type"))
        return
    for i, part in enumerate(content):
        if not (
            isinstance(part, dict)
            and isinstance(part.get("type"), str)
            and part["type"]
            and isinstance(part.get("value"), str)
            and part["value"]
        ):
            errors.append((f"content.{i}", "needs a non-empty type and value"))
        elif part["type"] == "text/plain" and i != 0:
            errors.append((f"content.{i}.type", "text/plain must be the first content"))


def _check_attachments(attachments: object, errors: list[Error]) -> None:
    if attachments is None:
        return
    if not isinstance(attachments, list):
        errors.append(("attachments", "must be an array"))
        return
    for i, attachment in enumerate(attachments):
        field = f"attachments.{i}"
        if not isinstance(attachment, dict):
            errors.append((field, "must be an object"))
            continue
        try:
            decoded = base64.b64decode(attachment.get("content", ""), validate=True)
        except (binascii.Error, TypeError, ValueError):
            decoded = b""
        if not decoded:
            errors.append((f"{field}.content", "must be non-empty Base64"))
        if not isinstance(attachment.get("filename"), str) or not attachment["filename"]:
            errors.append((f"{field}.filename", "is required"))
        disposition = attachment.get("disposition", "attachment")
        if disposition not in ("attachment", "inline"):
            errors.append((f"{field}.disposition", "must be inline or attachment"))
        if disposition == "inline" and not attachment.get("content_id"):
            errors.append((f"{field}.content_id", "is required for an inline attachment"))
