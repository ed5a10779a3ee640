"""`FakePayPal`: PayPal's OAuth2 token, Orders v2 and Payments v2 endpoints, as documented.

Serve ``fake.app`` with `serve_asgi`. The token endpoint wants HTTP Basic
client credentials, a form body and ``grant_type=client_credentials``, and
issues bearer tokens valid for ``expires_in`` seconds. The other endpoints
want a token it issued (not expired, not revoked), JSON, the required fields,
money as a *string* ``value`` with the currency's decimals (none for HUF, JPY
and TWD), and a ``PayPal-Request-Id`` of at most 108 characters, required
when an order carries a payment source (a single-step payment). They answer
with PayPal's bodies: the full resource with ``Prefer: return=representation``,
else id, status and links; errors as ``{name, message, debug_id, details[]}``
(the token endpoint's as ``{error, error_description}``). A request id seen
before gets the stored answer, with 200, and nothing is processed again.

Orders created without a payment source wait for the payer (`approve`);
vaulted sources pay at once, or are declined (`decline_source`). Knobs for
failures: `fail_next`, `throttle`, `slow`, `timeout_after_processing` (the
payment is made, the answer comes too late), `decline_next`, `revoke_tokens`.

Every request is recorded (`received`) before it is answered. The server runs
in its own thread; state is guarded by a lock. Needs starlette (the
``testing`` extra).
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs

import anyio
import msgspec

from .._errors import ConfigError
from ._fake_json_api import Received

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from ._server import ASGIApp

__all__ = ["FakePayPal"]

_SANDBOX: Final = "https://api-m.sandbox.paypal.com"
_REQUEST_ID_LENGTH: Final = 108
_TEXT_LENGTH: Final = 127
_VALUE: Final = re.compile(r"(-?[0-9]+)|(-?([0-9]+)?[.][0-9]+)")
_VAULT_ID: Final = re.compile(r"[0-9a-zA-Z_-]+")
_NO_DECIMALS: Final = frozenset({"HUF", "JPY", "TWD"})
_THREE_DECIMALS: Final = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})
_SOURCES: Final = ("card", "paypal", "venmo")
_TOKEN_PATH: Final = "/v1/oauth2/token"
_ERRORS: Final = {
    400: (
        "INVALID_REQUEST",
        "Request is not well-formed, syntactically incorrect, or violates schema.",
    ),
    401: (
        "AUTHENTICATION_FAILURE",
        "Authentication failed due to invalid authentication credentials or a missing "
        "Authorization header.",
    ),
    403: ("NOT_AUTHORIZED", "Authorization failed due to insufficient permissions."),
    404: ("RESOURCE_NOT_FOUND", "The specified resource does not exist."),
    409: ("RESOURCE_CONFLICT", "The server has detected a conflict while processing this request."),
    415: (
        "UNSUPPORTED_MEDIA_TYPE",
        "The server does not support the request payload's media type.",
    ),
    422: (
        "UNPROCESSABLE_ENTITY",
        "The requested action could not be performed, semantically incorrect, or failed "
        "business validation.",
    ),
    429: ("RATE_LIMIT_REACHED", "Too many requests. Blocked due to rate limiting."),
    500: ("INTERNAL_SERVER_ERROR", "An internal server error has occurred."),
    503: ("SERVICE_UNAVAILABLE", "Service Unavailable."),
}


class _Reply(msgspec.Struct, frozen=True):
    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


class _Refused(Exception):
    """Ends a request's processing with an error answer."""

    def __init__(self, reply: _Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


class FakePayPal:
    """PayPal's state and knobs; `app` is the ASGI app to serve.

    ``client_id`` and ``client_secret`` are the credentials the token endpoint
    accepts; ``expires_in`` is the lifetime of the tokens it issues (seconds,
    on the server's clock).
    """

    def __init__(
        self,
        *,
        client_id: str = "fake-client-id",
        client_secret: str = "fake-client-secret",
        expires_in: int = 32400,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.expires_in = expires_in
        self._lock = threading.Lock()
        self._app: ASGIApp | None = None
        self._routes: list[tuple[re.Pattern[str], Callable[[Received, str], _Reply]]] = [
            (re.compile(r"/v2/checkout/orders"), self._create_order),
            (re.compile(r"/v2/checkout/orders/([^/]+)/capture"), self._capture_order),
            (re.compile(r"/v2/checkout/orders/([^/]+)/authorize"), self._authorize_order),
            (
                re.compile(r"/v2/payments/authorizations/([^/]+)/capture"),
                self._capture_authorization,
            ),
            (re.compile(r"/v2/payments/captures/([^/]+)/refund"), self._refund),
        ]
        self.reset()

    # -- the test's side ------------------------------------------------------------

    @property
    def app(self) -> ASGIApp:
        """The Starlette app: PayPal's paths, POST only."""
        if self._app is None:
            from starlette.applications import Starlette  # noqa: PLC0415 - optional extra
            from starlette.routing import Route  # noqa: PLC0415

            self._app = Starlette(routes=[Route("/{path:path}", self._serve, methods=["POST"])])
        return self._app

    def reset(self) -> None:
        """Forget every request, resource, token and knob (between tests sharing a server)."""
        with self._lock:
            self._received: list[Received] = []
            self._tokens: dict[str, float] = {}  # token -> expiry on the server's clock
            self._orders: dict[str, dict[str, Any]] = {}
            self._captures: dict[str, dict[str, Any]] = {}
            self._authorizations: dict[str, dict[str, Any]] = {}
            self._refunds: dict[str, dict[str, Any]] = {}
            self._settled: dict[
                str, Decimal
            ] = {}  # captured of an authorisation, refunded of a capture
            self._replies: dict[tuple[str, str], bytes] = {}  # (path, request id) -> answer
            self._request_ids: dict[str, int] = {}
            self._declined_sources: dict[str, str] = {}  # vault id -> processor response code
            self._counter = 0
            self._failures: list[_Reply] = []
            self._declines: list[str] = []
            self._stalls: list[float] = []
            self._delay = 0.0

    @property
    def received(self) -> list[Received]:
        """Every request so far, in arrival order."""
        with self._lock:
            return list(self._received)

    def requests_to(self, path: str) -> list[Received]:
        return [request for request in self.received if request.path == path]

    @property
    def token_requests(self) -> int:
        """Requests the token endpoint received, answered or not."""
        return len(self.requests_to(_TOKEN_PATH))

    @property
    def tokens_issued(self) -> list[str]:
        with self._lock:
            return list(self._tokens)

    def request_id_uses(self, request_id: str) -> int:
        """How often a ``PayPal-Request-Id`` arrived (replays included)."""
        with self._lock:
            return self._request_ids.get(request_id, 0)

    @property
    def orders(self) -> list[dict[str, Any]]:
        """Every order, as ``Prefer: return=representation`` shows it."""
        with self._lock:
            return [self._order_view(order) for order in self._orders.values()]

    @property
    def captures(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._captures.values()))

    @property
    def authorizations(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._authorizations.values()))

    @property
    def refunds(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._refunds.values()))

    def approve(self, order_id: str) -> None:
        """The payer approves a CREATED order, as on its approval page."""
        with self._lock:
            order = self._orders.get(order_id)
            if order is None or order["status"] != "CREATED":
                raise ConfigError("order_id", order_id, "is not a CREATED order of this fake")
            order["status"] = "APPROVED"

    def revoke_tokens(self) -> None:
        """Invalidate every token issued so far: their next use is a 401."""
        with self._lock:
            self._tokens.clear()

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next ``n`` requests with ``status`` before processing them."""
        name, message = _ERRORS.get(status, _ERRORS[500])
        with self._lock:
            self._failures += [self._error(status, name, message)] * n

    def throttle(self, n: int = 1, retry_after: float = 1) -> None:
        """Answer the next ``n`` requests 429 with ``Retry-After: retry_after``."""
        name, message = _ERRORS[429]
        headers = (("retry-after", f"{retry_after:g}"),)
        with self._lock:
            self._failures += [self._error(429, name, message, headers=headers)] * n

    def slow(self, seconds: float) -> None:
        """Delay every answer by ``seconds`` (0 to stop)."""
        with self._lock:
            self._delay = seconds

    def timeout_after_processing(self, n: int = 1, stall: float = 5.0) -> None:
        """Process the next ``n`` requests (pay, refund...), then hold each answer ``stall`` s."""
        with self._lock:
            self._stalls += [stall] * n

    def decline_next(self, n: int = 1, issue: str = "INSTRUMENT_DECLINED") -> None:
        """Refuse the next ``n`` payments (capture, authorise, single-step) with 422 ``issue``."""
        with self._lock:
            self._declines += [issue] * n

    def decline_source(self, vault_id: str, response_code: str = "5120") -> None:
        """Single-step payments from ``vault_id`` are DECLINED (capture) or DENIED
        (authorisation) with the processor's ``response_code`` (5120: insufficient funds)."""
        with self._lock:
            self._declined_sources[vault_id] = response_code

    # -- serving ----------------------------------------------------------------------

    async def _serve(self, request: Request) -> Response:
        from starlette.responses import Response  # noqa: PLC0415 - optional extra

        body = await request.body()
        received = Received(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            target=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            headers=dict(request.headers.items()),
            body=body,
            at=anyio.current_time(),
        )
        stall = 0.0
        with self._lock:
            self._received.append(received)
            if self._failures:
                status, content, headers = self._encode(self._failures.pop(0))
            else:
                status, content, headers = self._answer(received)
                if 200 <= status < 300 and self._stalls:
                    stall = self._stalls.pop(0)
            delay = self._delay
        if stall or delay:
            await anyio.sleep(stall + delay)
        return Response(content, status, headers=dict(headers), media_type="application/json")

    def _answer(self, received: Received) -> tuple[int, bytes, tuple[tuple[str, str], ...]]:
        """Authenticate, replay or process one request (under the lock)."""
        if received.path == _TOKEN_PATH:
            return self._encode(self._token(received))
        request_id = received.header("paypal-request-id")
        try:
            self._authenticate(received)
            if request_id is not None:
                self._request_ids[request_id] = self._request_ids.get(request_id, 0) + 1
                if not request_id or len(request_id) > _REQUEST_ID_LENGTH:
                    raise self._invalid(
                        400,
                        "INVALID_PARAMETER_SYNTAX",
                        f"PayPal-Request-Id must be 1 to {_REQUEST_ID_LENGTH} characters.",
                        "PayPal-Request-Id",
                        location="header",
                    )
                stored = self._replies.get((received.path, request_id))
                if stored is not None:
                    return 200, stored, ()  # PayPal's answer to an idempotent replay
            for pattern, handler in self._routes:
                match = pattern.fullmatch(received.path)
                if match is not None:
                    reply = handler(received, match.group(1) if match.groups() else "")
                    break
            else:
                raise self._invalid(404, "INVALID_RESOURCE_ID", "Unknown path.", received.path)
        except _Refused as refused:
            return self._encode(refused.reply)
        status, content, headers = self._encode(reply)
        if request_id is not None:
            self._replies[received.path, request_id] = content
        return status, content, headers

    def _encode(self, reply: _Reply) -> tuple[int, bytes, tuple[tuple[str, str], ...]]:
        return reply.status, msgspec.json.encode(reply.body), reply.headers

    # -- OAuth2 ------------------------------------------------------------------------

    def _token(self, received: Received) -> _Reply:
        if not self._basic_matches(received.header("authorization")):
            return _Reply(
                401,
                {"error": "invalid_client", "error_description": "Client Authentication failed"},
            )
        content_type = received.header("content-type") or ""
        if not content_type.startswith("application/x-www-form-urlencoded"):
            return _Reply(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "Content-Type must be application/x-www-form-urlencoded",
                },
            )
        grant = parse_qs(received.body.decode("utf-8", errors="replace")).get("grant_type")
        if not grant:
            return _Reply(
                400, {"error": "unsupported_grant_type", "error_description": "Grant Type is NULL"}
            )
        if grant != ["client_credentials"]:
            return _Reply(
                400,
                {"error": "unsupported_grant_type", "error_description": "Unsupported grant type"},
            )
        token = f"A21AA.fake-{self._next_id('')}"
        self._tokens[token] = anyio.current_time() + self.expires_in
        return _Reply(
            200,
            {
                "scope": "https://uri.paypal.com/services/payments/payment "
                "https://uri.paypal.com/services/payments/refund",
                "access_token": token,
                "token_type": "Bearer",
                "app_id": "APP-80W284485P519543T",
                "expires_in": self.expires_in,
                "nonce": f"fake-nonce-{self._counter}",
            },
        )

    def _basic_matches(self, header: str | None) -> bool:
        scheme, _, encoded = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return decoded == f"{self.client_id}:{self.client_secret}"

    def _authenticate(self, received: Received) -> None:
        scheme, _, token = (received.header("authorization") or "").partition(" ")
        expiry = self._tokens.get(token) if scheme.lower() == "bearer" else None
        if expiry is None or anyio.current_time() >= expiry:
            name, message = _ERRORS[401]
            raise _Refused(self._error(401, name, message))

    # -- Orders v2 --------------------------------------------------------------------

    def _create_order(self, received: Received, _: str) -> _Reply:
        data = self._json(received)
        intent = data.get("intent")
        if intent is None:
            raise self._invalid(400, "MISSING_REQUIRED_PARAMETER", "intent is required.", "/intent")
        if intent not in ("CAPTURE", "AUTHORIZE"):
            raise self._invalid(
                400, "INVALID_PARAMETER_VALUE", "intent must be CAPTURE or AUTHORIZE.", "/intent"
            )
        units = data.get("purchase_units")
        if not isinstance(units, list) or not units:
            raise self._invalid(
                400, "MISSING_REQUIRED_PARAMETER", "purchase_units is required.", "/purchase_units"
            )
        stored_units = [self._purchase_unit(unit, index) for index, unit in enumerate(units)]
        source = self._payment_source(data.get("payment_source"), received)
        order: dict[str, Any] = {
            "id": self._next_id("ORD"),
            "intent": intent,
            "status": "CREATED",
            "purchase_units": stored_units,
        }
        if source is not None:
            kind, vault_id = source
            self._decline_if_told()
            order["payment_source"] = {kind: {"vault_id": vault_id}}
            self._pay(order, self._declined_sources.get(vault_id))
        self._orders[order["id"]] = order
        return self._resource(received, 201, self._order_view(order))

    def _capture_order(self, received: Received, order_id: str) -> _Reply:
        return self._settle_order(received, order_id, "CAPTURE")

    def _authorize_order(self, received: Received, order_id: str) -> _Reply:
        return self._settle_order(received, order_id, "AUTHORIZE")

    def _settle_order(self, received: Received, order_id: str, intent: str) -> _Reply:
        if received.body:
            self._json(received)
        else:
            self._json_content_type(received)
        order = self._orders.get(order_id)
        if order is None:
            raise self._invalid(
                404, "INVALID_RESOURCE_ID", "Specified resource ID does not exist.", "order_id"
            )
        if order["intent"] != intent:
            raise self._invalid(
                422,
                "ACTION_DOES_NOT_MATCH_INTENT",
                f"Order was created with an intent of '{order['intent']}'.",
                "/intent",
            )
        if order["status"] == "COMPLETED":
            issue = "ORDER_ALREADY_CAPTURED" if intent == "CAPTURE" else "ORDER_ALREADY_AUTHORIZED"
            raise self._invalid(422, issue, "The order has already been settled.", "order_id")
        if order["status"] != "APPROVED":
            raise self._invalid(
                422, "ORDER_NOT_APPROVED", "Payer has not yet approved the Order.", "order_id"
            )
        self._decline_if_told()
        self._pay(order, None)
        return self._resource(received, 201, self._order_view(order))

    def _pay(self, order: dict[str, Any], declined_code: str | None) -> None:
        """Capture or authorise each purchase unit's amount; the order is COMPLETED."""
        order_link = {"href": f"{_SANDBOX}/v2/checkout/orders/{order['id']}", "rel": "up"}
        for unit in order["purchase_units"]:
            payment: dict[str, Any] = {"amount": dict(unit["amount"])}
            if order["intent"] == "CAPTURE":
                payment["id"] = self._next_id("CAP")
                payment["status"] = "DECLINED" if declined_code else "COMPLETED"
                payment["final_capture"] = True
                payment["links"] = _capture_links(payment["id"], order_link)
                self._captures[payment["id"]] = payment
                unit["payments"]["captures"].append(payment["id"])
            else:
                payment["id"] = self._next_id("AUT")
                payment["status"] = "DENIED" if declined_code else "CREATED"
                payment["links"] = _authorization_links(payment["id"], order_link)
                self._authorizations[payment["id"]] = payment
                unit["payments"]["authorizations"].append(payment["id"])
            if declined_code:
                payment["processor_response"] = {"response_code": declined_code}
        order["status"] = "COMPLETED"

    # -- Payments v2 ------------------------------------------------------------------

    def _capture_authorization(self, received: Received, authorization_id: str) -> _Reply:
        data = self._json(received) if received.body else self._json_content_type(received)
        authorization = self._authorizations.get(authorization_id)
        if authorization is None:
            raise self._invalid(
                404, "INVALID_RESOURCE_ID", "Specified resource ID does not exist.", "id"
            )
        final = data.get("final_capture", False)
        if not isinstance(final, bool):
            raise self._invalid(
                400,
                "INVALID_PARAMETER_SYNTAX",
                "final_capture must be a boolean.",
                "/final_capture",
            )
        if authorization["status"] not in ("CREATED", "PARTIALLY_CAPTURED"):
            issue = {
                "CAPTURED": "AUTHORIZATION_ALREADY_CAPTURED",
                "VOIDED": "AUTHORIZATION_VOIDED",
                "EXPIRED": "AUTHORIZATION_EXPIRED",
            }.get(authorization["status"], "AUTHORIZATION_DENIED")
            raise self._invalid(422, issue, "The authorization cannot be captured.", "id")
        authorized = authorization["amount"]
        remaining = Decimal(authorized["value"]) - self._settled.get(authorization_id, Decimal(0))
        amount = self._optional_money(data, authorized["currency_code"], remaining)
        if amount["currency_code"] != authorized["currency_code"]:
            raise self._invalid(
                422,
                "AUTH_CAPTURE_CURRENCY_MISMATCH",
                "Currency of capture must be the same as currency of authorization.",
                "/amount/currency_code",
            )
        value = Decimal(amount["value"])
        if value > remaining:
            raise self._invalid(
                422,
                "MAX_CAPTURE_AMOUNT_EXCEEDED",
                "Capture amount exceeds allowable limit.",
                "/amount/value",
            )
        self._decline_if_told()
        captured = self._settled[authorization_id] = (
            self._settled.get(authorization_id, Decimal(0)) + value
        )
        authorization["status"] = (
            "CAPTURED"
            if final or captured == Decimal(authorized["value"])
            else "PARTIALLY_CAPTURED"
        )
        capture: dict[str, Any] = {
            "id": self._next_id("CAP"),
            "status": "COMPLETED",
            "amount": amount,
            "final_capture": final,
        }
        up = {"href": f"{_SANDBOX}/v2/payments/authorizations/{authorization_id}", "rel": "up"}
        capture["links"] = _capture_links(capture["id"], up)
        self._captures[capture["id"]] = capture
        return self._resource(received, 201, copy.deepcopy(capture))

    def _refund(self, received: Received, capture_id: str) -> _Reply:
        data = self._json(received) if received.body else self._json_content_type(received)
        capture = self._captures.get(capture_id)
        if capture is None:
            raise self._invalid(
                404, "INVALID_RESOURCE_ID", "Specified resource ID does not exist.", "capture_id"
            )
        if capture["status"] not in ("COMPLETED", "PARTIALLY_REFUNDED"):
            issue = (
                "CAPTURE_FULLY_REFUNDED"
                if capture["status"] == "REFUNDED"
                else "INVALID_CAPTURE_STATE"
            )
            raise self._invalid(422, issue, "The capture cannot be refunded.", "capture_id")
        captured = capture["amount"]
        remaining = Decimal(captured["value"]) - self._settled.get(capture_id, Decimal(0))
        amount = self._optional_money(data, captured["currency_code"], remaining)
        if amount["currency_code"] != captured["currency_code"]:
            raise self._invalid(
                422,
                "REFUND_CAPTURE_CURRENCY_MISMATCH",
                "Refund must be in the same currency as the capture.",
                "/amount/currency_code",
            )
        value = Decimal(amount["value"])
        if value > remaining:
            raise self._invalid(
                422,
                "REFUND_AMOUNT_EXCEEDED",
                "The refund amount must be less than or equal to the capture amount that has "
                "not yet been refunded.",
                "/amount/value",
            )
        refunded = self._settled[capture_id] = self._settled.get(capture_id, Decimal(0)) + value
        capture["status"] = (
            "REFUNDED" if refunded == Decimal(captured["value"]) else "PARTIALLY_REFUNDED"
        )
        refund: dict[str, Any] = {
            "id": self._next_id("REF"),
            "status": "COMPLETED",
            "amount": amount,
        }
        refund["links"] = [
            {"href": f"{_SANDBOX}/v2/payments/refunds/{refund['id']}", "rel": "self"},
            {"href": f"{_SANDBOX}/v2/payments/captures/{capture_id}", "rel": "up"},
        ]
        self._refunds[refund["id"]] = refund
        return self._resource(received, 201, copy.deepcopy(refund))

    # -- checks -------------------------------------------------------------------------

    def _json_content_type(self, received: Received) -> dict[str, Any]:
        """PayPal wants ``Content-Type: application/json`` even with no body."""
        content_type = received.header("content-type") or ""
        if content_type.split(";")[0].strip() != "application/json":
            name, message = _ERRORS[415]
            raise _Refused(self._error(415, name, message))
        return {}

    def _json(self, received: Received) -> dict[str, Any]:
        self._json_content_type(received)
        try:
            data = msgspec.json.decode(received.body)
        except msgspec.DecodeError:
            data = None
        if not isinstance(data, dict):
            raise self._invalid(
                400, "MALFORMED_REQUEST_JSON", "The request JSON is malformed.", "/"
            )
        return data

    def _purchase_unit(self, unit: Any, index: int) -> dict[str, Any]:
        where = f"/purchase_units/{index}"
        if not isinstance(unit, dict) or "amount" not in unit:
            raise self._invalid(
                400, "MISSING_REQUIRED_PARAMETER", "amount is required.", f"{where}/amount"
            )
        stored: dict[str, Any] = {
            "reference_id": "default",
            "amount": self._money(unit["amount"], f"{where}/amount"),
            "payments": {"captures": [], "authorizations": []},
        }
        for field in ("description", "custom_id"):
            value = unit.get(field)
            if value is None:
                continue
            if not isinstance(value, str) or not 1 <= len(value) <= _TEXT_LENGTH:
                raise self._invalid(
                    400,
                    "INVALID_STRING_MAX_LENGTH",
                    f"{field} must be 1 to {_TEXT_LENGTH} characters.",
                    f"{where}/{field}",
                )
            stored[field] = value
        return stored

    def _payment_source(self, source: Any, received: Received) -> tuple[str, str] | None:
        if source is None:
            return None
        kinds = [kind for kind in _SOURCES if isinstance(source, dict) and kind in source]
        if not isinstance(source, dict) or len(kinds) != 1 or len(source) != 1:
            raise self._invalid(
                400,
                "INVALID_PARAMETER_VALUE",
                f"payment_source must hold one of {', '.join(_SOURCES)} (this fake: vaulted).",
                "/payment_source",
            )
        kind = kinds[0]
        vault_id = source[kind].get("vault_id") if isinstance(source[kind], dict) else None
        if not isinstance(vault_id, str) or _VAULT_ID.fullmatch(vault_id) is None:
            raise self._invalid(
                400,
                "INVALID_PARAMETER_SYNTAX",
                "vault_id must match ^[0-9a-zA-Z_-]+$.",
                f"/payment_source/{kind}/vault_id",
            )
        if received.header("paypal-request-id") is None:
            raise self._invalid(
                400,
                "PAYPAL_REQUEST_ID_REQUIRED",
                "A PayPal-Request-Id is required if you are trying to process payment for an "
                "Order.",
                "PayPal-Request-Id",
                location="header",
            )
        return kind, vault_id

    def _money(self, money: Any, where: str) -> dict[str, str]:
        """A checked copy of a money object: string value with the currency's decimals."""
        if not isinstance(money, dict) or "currency_code" not in money or "value" not in money:
            raise self._invalid(
                400, "MISSING_REQUIRED_PARAMETER", "currency_code and value are required.", where
            )
        currency, value = money["currency_code"], money["value"]
        if not isinstance(currency, str) or len(currency) != 3:
            raise self._invalid(
                400,
                "INVALID_PARAMETER_SYNTAX",
                "currency_code must be 3 characters.",
                f"{where}/currency_code",
            )
        if not isinstance(value, str) or _VALUE.fullmatch(value) is None:
            raise self._invalid(
                400,
                "INVALID_PARAMETER_SYNTAX",
                "value must be a string matching ^((-?[0-9]+)|(-?([0-9]+)?[.][0-9]+))$.",
                f"{where}/value",
                value=value,
            )
        decimals = len(value.partition(".")[2])
        if currency in _NO_DECIMALS and "." in value:
            raise self._invalid(
                422,
                "DECIMALS_NOT_SUPPORTED",
                "Currency does not support decimals.",
                f"{where}/value",
                value=value,
            )
        if decimals > (3 if currency in _THREE_DECIMALS else 2):
            raise self._invalid(
                422,
                "DECIMAL_PRECISION",
                "If the currency supports decimals, only two decimal place precision is supported.",
                f"{where}/value",
                value=value,
            )
        if Decimal(value) <= 0:
            raise self._invalid(
                422,
                "CANNOT_BE_ZERO_OR_NEGATIVE",
                "Must be greater than zero.",
                f"{where}/value",
                value=value,
            )
        return {"currency_code": currency, "value": value}

    def _optional_money(
        self, data: dict[str, Any], currency: str, default: Decimal
    ) -> dict[str, str]:
        """The request's amount, or ``default`` of ``currency`` (what remains) without one."""
        if data.get("amount") is not None:
            return self._money(data["amount"], "/amount")
        if currency in _NO_DECIMALS:
            places = Decimal(1)
        else:
            places = Decimal("0.001") if currency in _THREE_DECIMALS else Decimal("0.01")
        return {"currency_code": currency, "value": format(default.quantize(places), "f")}

    def _decline_if_told(self) -> None:
        if self._declines:
            issue = self._declines.pop(0)
            raise self._invalid(
                422,
                issue,
                "The instrument presented was either declined by the processor or bank, or it "
                "can't be used for this payment.",
                "/payment_source",
            )

    # -- answers ------------------------------------------------------------------------

    def _resource(self, received: Received, status: int, resource: dict[str, Any]) -> _Reply:
        """The resource in full, or its minimal form (PayPal's default) without the Prefer."""
        if "return=representation" not in (received.header("prefer") or ""):
            resource = {key: resource[key] for key in ("id", "status", "links") if key in resource}
        return _Reply(status, resource)

    def _order_view(self, order: dict[str, Any]) -> dict[str, Any]:
        view = copy.deepcopy(order)
        for unit in view["purchase_units"]:
            captures = [copy.deepcopy(self._captures[id_]) for id_ in unit["payments"]["captures"]]
            authorizations = [
                copy.deepcopy(self._authorizations[id_])
                for id_ in unit["payments"]["authorizations"]
            ]
            payments = {"captures": captures, "authorizations": authorizations}
            unit["payments"] = {key: value for key, value in payments.items() if value}
            if not unit["payments"]:
                del unit["payments"]
        self_link = {"href": f"{_SANDBOX}/v2/checkout/orders/{order['id']}", "rel": "self"}
        view["links"] = [self_link]
        if order["status"] == "CREATED":
            approve = f"https://www.sandbox.paypal.com/checkoutnow?token={order['id']}"
            view["links"].append({"href": approve, "rel": "approve"})
        return view

    def _error(
        self,
        status: int,
        name: str,
        message: str,
        details: list[dict[str, str]] | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> _Reply:
        body: dict[str, Any] = {"name": name, "message": message, "debug_id": self._next_id("")}
        if details:
            body["details"] = details
        body["links"] = [
            {
                "href": "https://developer.paypal.com/api/rest/reference/orders/v2/errors/",
                "rel": "information_link",
            }
        ]
        return _Reply(status, body, headers)

    def _invalid(
        self,
        status: int,
        issue: str,
        description: str,
        field: str,
        *,
        location: str = "body",
        value: object = None,
    ) -> _Refused:
        detail = {"field": field, "location": location, "issue": issue, "description": description}
        if isinstance(value, str):
            detail["value"] = value
        name, message = _ERRORS[status]
        return _Refused(self._error(status, name, message, [detail]))

    def _next_id(self, prefix: str) -> str:
        """A PayPal-like id: 17 upper-case letters and digits."""
        self._counter += 1
        return f"{prefix}{self._counter:0{17 - len(prefix)}d}"


def _capture_links(capture_id: str, up: dict[str, str]) -> list[dict[str, str]]:
    return [
        {"href": f"{_SANDBOX}/v2/payments/captures/{capture_id}", "rel": "self"},
        {"href": f"{_SANDBOX}/v2/payments/captures/{capture_id}/refund", "rel": "refund"},
        up,
    ]


def _authorization_links(authorization_id: str, up: dict[str, str]) -> list[dict[str, str]]:
    base = f"{_SANDBOX}/v2/payments/authorizations/{authorization_id}"
    return [
        {"href": base, "rel": "self"},
        {"href": f"{base}/capture", "rel": "capture"},
        {"href": f"{base}/void", "rel": "void"},
        up,
    ]
