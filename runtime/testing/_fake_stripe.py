"""`FakeStripe`: Stripe's v1 payments API as a Starlette app, as strict as Stripe documents it.

It serves ``POST /v1/payment_intents`` (create, optionally confirm),
``POST /v1/payment_intents/{id}/capture`` and ``POST /v1/refunds``, and checks
what VENDORS.md §3 and docs.stripe.com say a request must be: ``Authorization:
Bearer <secret key>`` (401 otherwise), a form body (``key[sub]``, ``key[0]``),
a well-formed ``Stripe-Version``, known parameters only, required ones present,
lower-case currencies, and amounts that are positive integers in Stripe's unit
(the last digit 0 for BHD JOD KWD OMR TND, multiples of 100 for ISK and UGX).
Answers are Stripe's objects and its error bodies, ``{"error": {type, code,
decline_code, message, param, ...}}`` with the keys in alphabetical order, as
Stripe writes them.

Idempotency as docs.stripe.com/idempotency describes it: the first answer to
a key whose request began executing (a success or a decline; not a request
refused by validation) is saved for 24 h on ``clock``; the same key with the
same endpoint and parameters gets it again, marked ``Idempotent-Replayed:
true``; other parameters or another endpoint get 400 ``idempotency_error``;
a key whose first request is still executing gets 409.

Test cards, by payment method: ``pm_card_<name>``, or a token ``tok_<name>``
sent as ``payment_method_data[card][token]``. ``chargeDeclined``,
``chargeDeclinedInsufficientFunds``, ``chargeDeclinedLostCard`` and
``chargeDeclinedFraudulent`` are declined (402 ``card_error``);
``authenticationRequired`` needs 3-D Secure (``requires_action``); any other
card succeeds. `confirm` completes an intent as the customer's browser would.

Knobs: `fail_next` and `throttle` answer before execution (like Stripe's edge:
nothing is saved), `slow` makes execution take time (its key is in use
meanwhile), `timeout_after_processing` executes and saves, then holds the
answer until the client hangs up. Needs starlette (the ``testing`` extra).
"""

from __future__ import annotations

import copy
import random
import re
import string
import threading
from collections.abc import Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl

import anyio
import msgspec

from .._clock import WallClock, system_wall_clock
from ._fake_json_api import Received

if TYPE_CHECKING:
    from ._server import ASGIApp

__all__ = ["FakeStripe", "decode_form"]

IDEMPOTENCY_TTL: Final = 86_400.0
_MAX_KEY_LENGTH: Final = 255
_MAX_AMOUNT: Final = 999_999_999_999  # 12 digits, the card networks' limit
_VERSION: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(\.[a-z]+)?")
_NAME: Final = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_INDEX: Final = re.compile(r"\[([^\[\]]*)\]")
_CAPTURE: Final = re.compile(r"/v1/payment_intents/([^/]+)/capture")
_ID_CHARACTERS: Final = string.ascii_letters + string.digits

# Stripe's own unit rules (docs.stripe.com/currencies), kept apart from the adapter's.
_ENDS_IN_ZERO: Final = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
_WHOLE_HUNDREDTHS: Final = frozenset({"isk", "ugx"})

_DECLINES: Final = {
    "chargeDeclined": ("generic_decline", "Your card was declined."),
    "chargeDeclinedInsufficientFunds": ("insufficient_funds", "Your card has insufficient funds."),
    "chargeDeclinedLostCard": ("lost_card", "Your card was declined."),
    "chargeDeclinedFraudulent": ("fraudulent", "Your card was declined."),
}
_NEEDS_AUTHENTICATION: Final = "authenticationRequired"

_CREATE_PARAMS: Final = frozenset(
    {
        "amount",
        "automatic_payment_methods",
        "capture_method",
        "confirm",
        "currency",
        "customer",
        "description",
        "expand",
        "metadata",
        "off_session",
        "payment_method",
        "payment_method_data",
        "payment_method_types",
        "receipt_email",
        "return_url",
    }
)
_CAPTURE_PARAMS: Final = frozenset({"amount_to_capture", "expand", "metadata"})
_REFUND_PARAMS: Final = frozenset(
    {"amount", "charge", "expand", "metadata", "payment_intent", "reason"}
)


def decode_form(body: bytes) -> dict[str, Any]:
    """A form body with bracketed names as nested dicts: ``a[b][0]=c`` is ``{"a": {"b": {"0":
    "c"}}}`` (a list arrives as a dict keyed by its indices). ValueError if it is malformed."""
    result: dict[str, Any] = {}
    if not body:
        return result
    for name, value in parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=True):
        match = _NAME.fullmatch(name)
        if match is None:
            raise ValueError(f"malformed parameter name {name!r}")
        path = [match[1], *_INDEX.findall(match[2])]
        if any(not part for part in path):
            raise ValueError(f"empty key in {name!r}")
        node = result
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"{name!r} conflicts with another parameter")  # noqa: TRY004
            node = child
        if path[-1] in node:
            raise ValueError(f"{name!r} is given twice or conflicts with another parameter")
        node[path[-1]] = value
    return result


class _Failed(Exception):
    """Stop here and answer ``status`` with Stripe's error body around ``error``."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.status = status
        self.error = error


class _Answer(msgspec.Struct, frozen=True):
    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


class _Saved(msgspec.Struct, frozen=True):
    path: str
    params: dict[str, Any]
    answer: _Answer
    request_id: str
    at: float


def _error(
    kind: str, message: str, *, code: str | None = None, param: str | None = None, **extra: Any
) -> dict[str, Any]:
    error: dict[str, Any] = {"type": kind, "message": message, **extra}
    if code is not None:
        error["code"] = code
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param is not None:
        error["param"] = param
    return dict(sorted(error.items()))


def _invalid(message: str, *, code: str | None = None, param: str | None = None) -> _Failed:
    return _Failed(400, _error("invalid_request_error", message, code=code, param=param))


def _missing(kind: str, object_id: str, param: str) -> _Failed:
    return _Failed(
        404,
        _error(
            "invalid_request_error",
            f"No such {kind}: '{object_id}'",
            code="resource_missing",
            param=param,
        ),
    )


class FakeStripe:
    """The fake API's state; `app` is the ASGI app to serve (see the module docstring).

    ``api_key`` is the secret key requests must carry. ``clock`` ages saved
    idempotent answers (default: the server loop's clock); ``wall_clock``
    stamps ``created``; ``rng`` makes ids.
    """

    def __init__(
        self,
        api_key: str,
        *,
        clock: Callable[[], float] | None = None,
        wall_clock: WallClock = system_wall_clock,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("api_key must be a non-empty str")
        self._api_key = api_key
        self._clock = clock if clock is not None else anyio.current_time
        self._wall_clock = wall_clock
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        self._app: ASGIApp | None = None
        self._reset()

    def _reset(self) -> None:
        self._received: list[Received] = []
        self._intents: dict[str, dict[str, Any]] = {}
        self._charges: dict[str, dict[str, Any]] = {}
        self._refunds: dict[str, dict[str, Any]] = {}
        self._saved: dict[str, _Saved] = {}
        self._executing: set[str] = set()
        self._executions: dict[str, int] = {}
        self._failures: list[int] = []
        self._throttles: list[str | None] = []
        self._stalls = 0
        self._stall_for = 0.0
        self._slow = 0.0

    @property
    def app(self) -> ASGIApp:
        if self._app is None:
            from starlette.applications import Starlette  # noqa: PLC0415 - optional extra
            from starlette.routing import Route  # noqa: PLC0415

            self._app = Starlette(routes=[Route("/{path:path}", _RawEndpoint(self))])
        return self._app

    # -- knobs -------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next ``n`` requests ``status`` with an ``api_error``, unexecuted."""
        with self._lock:
            self._failures.extend([status] * n)

    def throttle(self, n: int = 1, retry_after: str | None = "1") -> None:
        """Answer the next ``n`` requests 429 ``rate_limit`` (with ``Retry-After`` if given)."""
        with self._lock:
            self._throttles.extend([retry_after] * n)

    def slow(self, seconds: float) -> None:
        """Make every execution take ``seconds`` (0 turns it off)."""
        with self._lock:
            self._slow = seconds

    def timeout_after_processing(self, n: int = 1, stall: float = 10.0) -> None:
        """Execute the next ``n`` requests, then hold each answer until the client hangs
        up (at most ``stall`` seconds): the client times out on work that was done."""
        with self._lock:
            self._stalls += n
            self._stall_for = stall

    def reset(self) -> None:
        """Forget everything: objects, saved keys, recordings and knobs."""
        with self._lock:
            self._reset()

    def confirm(self, intent_id: str) -> str:
        """Confirm an intent with its payment method, as Stripe.js in the customer's browser
        would; returns its new status (``requires_payment_method`` after a decline)."""
        with self._lock:
            intent = self._intents[intent_id]
            if intent["status"] != "requires_confirmation":
                raise ValueError(f"intent {intent_id} is {intent['status']}")
            self._confirm(intent, intent["payment_method"])
            return str(intent["status"])

    # -- what the server saw -----------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        """Every request so far, in arrival order."""
        with self._lock:
            return list(self._received)

    @property
    def payment_intents(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._intents)

    @property
    def charges(self) -> dict[str, dict[str, Any]]:
        """Every charge attempt, declined ones included (``status`` says which)."""
        with self._lock:
            return copy.deepcopy(self._charges)

    @property
    def refunds(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._refunds)

    @property
    def executions(self) -> dict[str, int]:
        """How often a request with each idempotency key was executed (not replayed)."""
        with self._lock:
            return dict(self._executions)

    # -- serving -------------------------------------------------------------------

    async def serve(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        from starlette.requests import Request  # noqa: PLC0415 - optional extra

        request = Request(scope, receive)
        body = await request.body()
        path: bytes = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope.get("query_string", b"")
        received = Received(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            target=(path + b"?" + query if query else path).decode("latin-1"),
            headers=dict(request.headers.items()),
            body=body,
            at=anyio.current_time(),
        )
        with self._lock:
            self._received.append(received)
            answer = self._edge()
        stall = 0.0
        if answer is None:
            try:
                answer = await self._handle(received)
            except _Failed as failure:
                answer = _Answer(failure.status, {"error": failure.error})
            with self._lock:
                if self._stalls:
                    self._stalls -= 1
                    stall = self._stall_for
        if stall:
            with anyio.move_on_after(stall):
                while (await receive())["type"] != "http.disconnect":
                    pass
        await self._send(answer, received, send)

    def _edge(self) -> _Answer | None:
        """An injected throttle or failure, answered before the API sees the request."""
        if self._throttles:
            retry_after = self._throttles.pop(0)
            error = _error(
                "invalid_request_error",
                "Too many requests hit the API too quickly. "
                "We recommend an exponential backoff of your requests.",
                code="rate_limit",
            )
            headers = (("retry-after", retry_after),) if retry_after is not None else ()
            return _Answer(429, {"error": error}, headers)
        if self._failures:
            status = self._failures.pop(0)
            error = _error("api_error", "An unknown error occurred while processing your request.")
            return _Answer(status, {"error": error})
        return None

    async def _send(self, answer: _Answer, received: Received, send: Any) -> None:
        body = msgspec.json.encode(answer.body)
        with self._lock:
            request_id = self._id("req_")
        version = received.header("stripe-version")
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"request-id", request_id.encode()),
            *((name.encode(), value.encode()) for name, value in answer.headers),
        ]
        if version is not None:
            headers.append((b"stripe-version", version.encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _handle(self, received: Received) -> _Answer:
        self._authenticate(received.header("authorization"))
        if received.method != "POST" or not (
            received.path in ("/v1/payment_intents", "/v1/refunds")
            or _CAPTURE.fullmatch(received.path)
        ):
            raise _Failed(
                404,
                _error(
                    "invalid_request_error",
                    f"Unrecognized request URL ({received.method}: {received.path}).",
                ),
            )
        content_type = received.header("content-type") or ""
        if content_type.split(";")[0].strip() != "application/x-www-form-urlencoded":
            raise _invalid(
                f"Invalid Content-Type {content_type!r}: "
                "send parameters as application/x-www-form-urlencoded"
            )
        version = received.header("stripe-version")
        if version is not None and _VERSION.fullmatch(version) is None:
            raise _invalid(f"Invalid Stripe API version: {version}")
        try:
            params = decode_form(received.body)
        except (ValueError, UnicodeDecodeError) as error:
            raise _invalid(f"Invalid request body: {error}") from None
        key = received.header("idempotency-key")
        if key is None:
            return await self._execute(received.path, params)
        if len(key) > _MAX_KEY_LENGTH:
            raise _invalid(
                f"Idempotency keys can be at most {_MAX_KEY_LENGTH} characters long",
                code="idempotency_key_too_long",  # unconfirmed code name
            )
        with self._lock:
            saved = self._saved.get(key)
            if saved is not None and saved.at + IDEMPOTENCY_TTL <= self._clock():
                del self._saved[key]  # pruned: the key starts over
                saved = None
            if saved is not None:
                if saved.path != received.path or saved.params != params:
                    raise _Failed(
                        400,
                        _error(
                            "idempotency_error",
                            "Keys for idempotent requests can only be used with the same "
                            "parameters they were first used with. Try using a key other "
                            f"than '{key}' if you meant to execute a different request.",
                        ),
                    )
                headers = (
                    *saved.answer.headers,
                    ("idempotent-replayed", "true"),
                    ("original-request", saved.request_id),
                )
                return _Answer(saved.answer.status, saved.answer.body, headers)
            if key in self._executing:
                # Stripe's error code list; the error type for it is not documented.
                raise _Failed(
                    409,
                    _error(
                        "invalid_request_error",
                        "There is currently another in-progress request using this "
                        "idempotent key. Please try again later.",
                        code="idempotency_key_in_use",
                    ),
                )
            self._executing.add(key)
        try:
            answer = await self._execute(received.path, params)
        finally:
            with self._lock:
                self._executing.discard(key)
        with self._lock:
            self._executions[key] = self._executions.get(key, 0) + 1
            self._saved[key] = _Saved(
                received.path, params, answer, self._id("req_"), self._clock()
            )
        return answer

    def _authenticate(self, authorization: str | None) -> None:
        if authorization == f"Bearer {self._api_key}":
            return
        if authorization is None:
            message = (
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY')."
            )
        else:
            given = authorization.removeprefix("Bearer ")
            message = f"Invalid API Key provided: {given[:8]}{'*' * 8}{given[-4:]}"
        raise _Failed(401, _error("invalid_request_error", message))

    async def _execute(self, path: str, params: dict[str, Any]) -> _Answer:
        """Run the endpoint; `_Failed` for a request refused before it began (never saved)."""
        with self._lock:
            slow = self._slow
        if slow:
            await anyio.sleep(slow)
        with self._lock:
            if path == "/v1/payment_intents":
                return self._create_intent(params)
            if path == "/v1/refunds":
                return self._create_refund(params)
            match = _CAPTURE.fullmatch(path)
            assert match is not None  # routed in _handle
            return self._capture(match[1], params)

    # -- endpoints (called with the lock held) -----------------------------------------

    def _create_intent(self, params: dict[str, Any]) -> _Answer:
        _only(params, _CREATE_PARAMS)
        amount = _amount(params, "amount", required=True)
        currency = _currency(params)
        assert amount is not None
        _check_unit(amount, currency, "amount")
        capture_method = _choice(
            params, "capture_method", ("automatic", "automatic_async", "manual"), "automatic_async"
        )
        confirm = _boolean(params, "confirm")
        expand = _expand(params)
        metadata = _metadata(params)
        customer = _text(params, "customer")
        description = _text(params, "description")
        receipt_email = _text(params, "receipt_email")
        if receipt_email is not None and "@" not in receipt_email:
            raise _invalid(
                f"Invalid email address: {receipt_email}",
                code="email_invalid",
                param="receipt_email",
            )
        card = _card(params)
        automatic = params.get("automatic_payment_methods")
        if automatic is not None:
            if not isinstance(automatic, dict) or set(automatic) - {"enabled", "allow_redirects"}:
                raise _invalid(
                    "Invalid automatic_payment_methods", param="automatic_payment_methods"
                )
            _boolean(automatic, "enabled", "automatic_payment_methods[enabled]")
            _choice(
                automatic,
                "allow_redirects",
                ("always", "never"),
                "always",
                "automatic_payment_methods[allow_redirects]",
            )
        _boolean(params, "off_session")
        return_url = _text(params, "return_url")
        if confirm and card is None:
            raise _invalid(
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
                code="payment_intent_unexpected_state",
            )
        redirects = automatic is None or automatic.get("allow_redirects") != "never"
        if confirm and "payment_method_types" not in params and redirects and return_url is None:
            raise _invalid(
                "This PaymentIntent is configured to accept payment methods enabled in your "
                "Dashboard, because some of these payment methods might redirect your customer "
                "off of your page, you must provide a `return_url`. If you don't want to accept "
                "redirect-based payment methods, set `automatic_payment_methods[enabled]` to "
                "`true` and `automatic_payment_methods[allow_redirects]` to `never`."
            )
        intent_id = self._id("pi_")
        intent: dict[str, Any] = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_details": {"tip": {}},
            "amount_received": 0,
            "application": None,
            "application_fee_amount": None,
            "automatic_payment_methods": (
                {"allow_redirects": "always" if redirects else "never", "enabled": True}
                if "payment_method_types" not in params
                else None
            ),
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": capture_method,
            "client_secret": f"{intent_id}_secret_{self._id('')}",
            "confirmation_method": "automatic",
            "created": int(self._wall_clock()),
            "currency": currency,
            "customer": customer,
            "description": description,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": metadata,
            "next_action": None,
            "on_behalf_of": None,
            "payment_method": card,
            "payment_method_configuration_details": None,
            "payment_method_options": {
                "card": {
                    "installments": None,
                    "mandate_options": None,
                    "network": None,
                    "request_three_d_secure": "automatic",
                }
            },
            "payment_method_types": ["card"],
            "processing": None,
            "receipt_email": receipt_email,
            "review": None,
            "setup_future_usage": None,
            "shipping": None,
            "source": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": "requires_confirmation" if card is not None else "requires_payment_method",
            "transfer_data": None,
            "transfer_group": None,
        }
        self._intents[intent_id] = intent
        if confirm:
            assert card is not None
            declined = self._confirm(intent, card)
            if declined is not None:
                return _Answer(402, {"error": declined})
        return _Answer(200, self._render(intent, expand))

    def _confirm(self, intent: dict[str, Any], card: str) -> dict[str, Any] | None:
        """Confirm ``intent`` with ``card``; Stripe's decline error if it is declined."""
        name = card.removeprefix("pm_card_").removeprefix("tok_")
        if name == _NEEDS_AUTHENTICATION:
            intent["status"] = "requires_action"
            intent["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {}}
            return None
        decline = _DECLINES.get(name)
        charge: dict[str, Any] = {
            "id": self._id("ch_"),
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": 0,
            "amount_refunded": 0,
            "captured": False,
            "created": int(self._wall_clock()),
            "currency": intent["currency"],
            "failure_code": None,
            "failure_message": None,
            "paid": decline is None,
            "payment_intent": intent["id"],
            "payment_method": card,
            "receipt_url": None,
            "refunded": False,
            "status": "succeeded" if decline is None else "failed",
        }
        self._charges[charge["id"]] = charge
        intent["latest_charge"] = charge["id"]
        if decline is not None:
            decline_code, message = decline
            charge["failure_code"] = "card_declined"
            charge["failure_message"] = message
            error = _error(
                "card_error",
                message,
                code="card_declined",
                decline_code=decline_code,
                charge=charge["id"],
            )
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = error
            # What Stripe answers carries the intent and the method as they are now.
            extra = {"payment_intent": copy.deepcopy(intent), "payment_method": _card_object(card)}
            return dict(sorted({**error, **extra}.items()))
        charge["receipt_url"] = f"https://pay.stripe.com/receipts/payment/{self._id('')}"
        if intent["capture_method"] == "manual":
            intent["status"] = "requires_capture"
            intent["amount_capturable"] = intent["amount"]
        else:
            intent["status"] = "succeeded"
            intent["amount_received"] = intent["amount"]
            charge["captured"] = True
            charge["amount_captured"] = intent["amount"]
        return None

    def _capture(self, intent_id: str, params: dict[str, Any]) -> _Answer:
        _only(params, _CAPTURE_PARAMS)
        intent = self._intents.get(intent_id)
        if intent is None:
            raise _missing("payment_intent", intent_id, "intent")
        if intent["status"] != "requires_capture":
            raise _invalid(
                f"This PaymentIntent could not be captured because it has a status of "
                f"{intent['status']}. Only a PaymentIntent with one of the following statuses "
                "may be captured: requires_capture.",
                code="payment_intent_unexpected_state",
            )
        expand = _expand(params)
        metadata = _metadata(params)
        amount = _amount(params, "amount_to_capture")
        capturable: int = intent["amount_capturable"]
        if amount is None:
            amount = capturable
        if amount > capturable:
            raise _invalid(
                f"The amount to capture ({amount}) is greater than the amount capturable "
                f"({capturable}).",
                code="amount_too_large",
                param="amount_to_capture",
            )
        _check_unit(amount, intent["currency"], "amount_to_capture")
        charge = self._charges[intent["latest_charge"]]
        charge["captured"] = True
        charge["amount_captured"] = amount
        intent["status"] = "succeeded"
        intent["amount_received"] = amount
        intent["amount_capturable"] = 0
        intent["metadata"] = {**intent["metadata"], **metadata}
        return _Answer(200, self._render(intent, expand))

    def _create_refund(self, params: dict[str, Any]) -> _Answer:
        _only(params, _REFUND_PARAMS)
        _expand(params, allowed=())
        given = [name for name in ("charge", "payment_intent") if name in params]
        if len(given) != 1:
            raise _invalid(
                "You must pass exactly one of these parameters: charge, payment_intent.",
                code="parameter_missing" if not given else None,
            )
        name = given[0]
        object_id = _text(params, name)
        assert object_id is not None
        if name == "payment_intent":
            intent = self._intents.get(object_id)
            if intent is None:
                raise _missing("payment_intent", object_id, "payment_intent")
            charge = self._charges.get(intent["latest_charge"] or "")
        else:
            charge = self._charges.get(object_id)
            if charge is None:
                raise _missing("charge", object_id, "charge")
        if charge is None or not charge["captured"]:
            raise _invalid(
                f"This {name.replace('_', ' ')} has no successful, captured charge to refund.",
                param=name,
            )
        remaining = charge["amount_captured"] - charge["amount_refunded"]
        if remaining == 0:
            raise _invalid(
                f"Charge {charge['id']} has already been refunded.",
                code="charge_already_refunded",
            )
        amount = _amount(params, "amount")
        if amount is None:
            amount = remaining
        if amount > remaining:
            raise _invalid(
                f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                f"({remaining})",
                code="amount_too_large",
                param="amount",
            )
        _check_unit(amount, charge["currency"], "amount")
        reason = _choice(
            params, "reason", ("duplicate", "fraudulent", "requested_by_customer"), None
        )
        refund = {
            "id": self._id("re_"),
            "object": "refund",
            "amount": amount,
            "charge": charge["id"],
            "created": int(self._wall_clock()),
            "currency": charge["currency"],
            "metadata": _metadata(params),
            "payment_intent": charge["payment_intent"],
            "reason": reason,
            "status": "succeeded",
        }
        self._refunds[refund["id"]] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount_captured"]
        return _Answer(200, copy.deepcopy(refund))

    # -- helpers -----------------------------------------------------------------------

    def _render(self, intent: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        shown = copy.deepcopy(intent)
        if "latest_charge" in expand and intent["latest_charge"] is not None:
            shown["latest_charge"] = copy.deepcopy(self._charges[intent["latest_charge"]])
        return shown

    def _id(self, prefix: str) -> str:
        return prefix + "".join(self._rng.choice(_ID_CHARACTERS) for _ in range(24))


class _RawEndpoint:
    __slots__ = ("api",)

    def __init__(self, api: FakeStripe) -> None:
        self.api = api

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        await self.api.serve(scope, receive, send)


def _card_object(card: str) -> dict[str, Any]:
    return {
        "id": card if card.startswith("pm_") else "pm_from_token",
        "object": "payment_method",
        "billing_details": {"address": None, "email": None, "name": None, "phone": None},
        "card": {
            "brand": "visa",
            "checks": {
                "address_line1_check": None,
                "address_postal_code_check": None,
                "cvc_check": "pass",
            },
            "country": "US",
            "exp_month": 12,
            "exp_year": 2034,
            "funding": "credit",
            "last4": "0002",
            "networks": {"available": ["visa"], "preferred": None},
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
        },
        "type": "card",
    }


def _only(params: Mapping[str, Any], allowed: frozenset[str]) -> None:
    for name in params:
        if name not in allowed:
            raise _invalid(
                f"Received unknown parameter: {name}", code="parameter_unknown", param=name
            )


def _text(params: Mapping[str, Any], name: str, shown: str | None = None) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _invalid(f"Invalid string: {value!r}", param=shown or name)
    return value


def _amount(params: Mapping[str, Any], name: str, *, required: bool = False) -> int | None:
    value = params.get(name)
    if value is None:
        if required:
            raise _invalid(f"Missing required param: {name}.", code="parameter_missing", param=name)
        return None
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        raise _invalid(f"Invalid integer: {value}", code="parameter_invalid_integer", param=name)
    amount = int(value)
    if amount < 1:
        raise _invalid("This value must be greater than or equal to 1.", param=name)
    if amount > _MAX_AMOUNT:
        raise _invalid(
            f"Amount must be no more than {_MAX_AMOUNT}", code="amount_too_large", param=name
        )
    return amount


def _currency(params: Mapping[str, Any]) -> str:
    value = params.get("currency")
    if value is None:
        raise _invalid(
            "Missing required param: currency.", code="parameter_missing", param="currency"
        )
    if not isinstance(value, str) or re.fullmatch(r"[a-z]{3}", value) is None:
        raise _invalid(
            f"Invalid currency: {value}. Stripe currently supports these currencies: "
            "usd, eur, jpy, kwd, ... (lower case)",
            param="currency",
        )
    return value


def _check_unit(amount: int, currency: str, param: str) -> None:
    if currency in _WHOLE_HUNDREDTHS and amount % 100:
        raise _invalid(
            f"Invalid amount. Currency {currency.upper()} has become effectively zero-decimal "
            "and charged amounts must be evenly divisible by 100.",
            param=param,
        )
    if currency in _ENDS_IN_ZERO and amount % 10:
        raise _invalid(
            f"Invalid amount. {currency.upper()} amounts must have 0 as their least-significant "
            "(last) digit: round to the nearest ten.",
            param=param,
        )


def _boolean(params: Mapping[str, Any], name: str, shown: str | None = None) -> bool:
    value = params.get(name)
    if value is None:
        return False
    if value not in ("true", "false"):
        raise _invalid(f"Invalid boolean: {value}", param=shown or name)
    return bool(value == "true")


def _choice(
    params: Mapping[str, Any],
    name: str,
    choices: tuple[str, ...],
    default: str | None,
    shown: str | None = None,
) -> str | None:
    value = params.get(name)
    if value is None:
        return default
    if value not in choices:
        raise _invalid(
            f"Invalid {shown or name}: must be one of {', '.join(choices)}", param=shown or name
        )
    return str(value)


def _items(params: Mapping[str, Any], name: str) -> list[Any]:
    """A list parameter (``name[0]``, ``name[1]``, ...), indices checked."""
    value = params.get(name)
    if value is None:
        return []
    if not isinstance(value, dict) or sorted(value, key=lambda i: (len(i), i)) != [
        str(index) for index in range(len(value))
    ]:
        raise _invalid(f"Invalid array: {name} must be sent as {name}[0], {name}[1], ...")
    return [value[str(index)] for index in range(len(value))]


def _expand(params: Mapping[str, Any], allowed: tuple[str, ...] = ("latest_charge",)) -> list[str]:
    fields = _items(params, "expand")
    for field in fields:
        if field not in allowed:
            raise _invalid(f"This property cannot be expanded ({field}).", param="expand")
    return fields


def _metadata(params: Mapping[str, Any]) -> dict[str, str]:
    value = params.get("metadata")
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 50:
        raise _invalid("Invalid metadata: at most 50 keys", param="metadata")
    for key, item in value.items():
        if not isinstance(item, str) or len(key) > 40 or len(item) > 500:
            raise _invalid(
                "Metadata keys can be at most 40 characters and values at most 500",
                param=f"metadata[{key}]",
            )
    return dict(value)


def _card(params: Mapping[str, Any]) -> str | None:
    """The card a create names: a payment method id, or a token in payment_method_data."""
    method = params.get("payment_method")
    data = params.get("payment_method_data")
    if method is not None and data is not None:
        raise _invalid("You cannot pass both payment_method and payment_method_data.")
    if method is not None:
        if not isinstance(method, str) or not method.startswith("pm_"):
            raise _missing("PaymentMethod", str(method), "payment_method")
        return method
    if data is None:
        return None
    if not isinstance(data, dict) or data.get("type") != "card" or set(data) != {"type", "card"}:
        raise _invalid(
            "payment_method_data needs type=card and card[token]", param="payment_method_data"
        )
    card = data["card"]
    token = card.get("token") if isinstance(card, dict) and set(card) == {"token"} else None
    if not isinstance(token, str) or not token.startswith("tok_"):
        raise _invalid(f"Invalid token id: {token}", param="payment_method_data[card][token]")
    return token
