"""`WebhookSender`: signed on our side, verified by `TimestampedHmacVerifier` on the receiver's.

The receiver is a `FakeTransport` handler that checks each request as a real
endpoint would. Async tests run on asyncio and trio in virtual time.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector import (
    ConfigError,
    ConnectionFailed,
    HttpRequest,
    HttpResponse,
    Retry,
    Runtime,
    Service,
    TimestampedHmacVerifier,
    VendorError,
    WebhookVerificationFailed,
)
from connector._webhook_sender import WebhookSender
from connector.testing import FakeTransport

pytestmark = pytest.mark.anyio

SECRET = "whsec_outgoing_7c1d"
NOW = 1_700_000_000.75
URL = "https://hooks.example.com/orders?token=hunter2"


@pytest.fixture
def anyio_backend(virtual_anyio_backend: tuple[str, dict[str, object]]) -> object:
    return virtual_anyio_backend


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Receiver:
    """An endpoint: verifies the signature at its own ``now``, then answers 204."""

    def __init__(self, clock: Clock, secret: str = SECRET) -> None:
        self.verifier = TimestampedHmacVerifier(secret)
        self.clock = clock
        self.accepted: list[tuple[int, dict[str, Any]]] = []
        self.refused: list[str] = []

    def __call__(self, request: HttpRequest) -> HttpResponse:
        assert request.content is not None
        try:
            proof = self.verifier.verify(
                request.content, request.headers.get("Webhook-Signature"), self.clock()
            )
        except WebhookVerificationFailed as error:
            self.refused.append(error.reason)
            return HttpResponse(status=400, content=error.reason.encode())
        self.accepted.append((proof.timestamp, msgspec.json.decode(request.content)))
        return HttpResponse(status=204)


def register(rt: Runtime, transport: FakeTransport) -> Service:
    retry = Retry(attempts=3, initial_delay=0.5, max_delay=1.0, jitter="none")
    return rt.register("webhooks", transport=lambda: transport, retry=retry)


async def test_a_sent_webhook_verifies_at_the_receiver() -> None:
    clock = Clock()
    receiver = Receiver(clock)
    transport = FakeTransport(handler=receiver)
    async with Runtime() as rt:
        sender = WebhookSender(register(rt, transport), SECRET, wall_clock=clock)
        response = await sender.send(
            URL, {"type": "order.paid", "id": 42}, event_id="evt_1", headers={"X-Shop": "acme"}
        )
    assert response.status == 204
    assert receiver.accepted == [(int(NOW), {"type": "order.paid", "id": 42})]
    (request,) = transport.requests
    assert request.method == "POST"
    assert request.url == URL
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Webhook-Id"] == "evt_1"
    assert request.headers["X-Shop"] == "acme"
    assert request.endpoint == "https://hooks.example.com/orders"  # no token in logs
    assert request.content is not None
    expected = hmac.new(SECRET.encode(), f"{int(NOW)}.".encode() + request.content, hashlib.sha256)
    assert request.headers["Webhook-Signature"] == f"t={int(NOW)},v1={expected.hexdigest()}"


async def test_a_failed_delivery_is_retried_with_the_same_key_and_signature() -> None:
    clock = Clock()
    receiver = Receiver(clock)
    # A proxy in front of the receiver answers 503 before the endpoint sees it.
    transport = FakeTransport(HttpResponse(status=503), handler=receiver)
    async with Runtime() as rt:
        sender = WebhookSender(register(rt, transport), SECRET, wall_clock=clock)
        assert (await sender.send(URL, {"n": 1}, event_id="evt_2")).status == 204
    first, second = transport.requests
    assert first == second  # one delivery: same body, id and signature
    assert len(receiver.accepted) == 1


async def test_an_event_delivered_once_is_not_delivered_again() -> None:
    clock = Clock()
    receiver = Receiver(clock)
    transport = FakeTransport(handler=receiver)
    async with Runtime() as rt:
        sender = WebhookSender(register(rt, transport), SECRET, wall_clock=clock)
        await sender.send(URL, {"n": 1}, event_id="evt_3")
        clock.now += 10
        again = await sender.send(URL, {"n": 1}, event_id="evt_3")
        clock.now += 10
        other = await sender.send(URL, {"n": 2}, event_id="evt_4")
    assert (again.status, other.status) == (204, 204)
    assert [timestamp for timestamp, _ in receiver.accepted] == [int(NOW), int(NOW) + 20]


async def test_a_refusal_is_not_retried_and_a_wrong_secret_does_not_verify() -> None:
    clock = Clock()
    receiver = Receiver(clock, secret="whsec_someone_else")
    transport = FakeTransport(handler=receiver)
    async with Runtime() as rt:
        sender = WebhookSender(register(rt, transport), SECRET, wall_clock=clock)
        with pytest.raises(VendorError) as info:
            await sender.send(URL, {"n": 1}, event_id="evt_5")
    assert info.value.status == 400
    assert receiver.refused == ["signature mismatch"]
    assert len(transport.requests) == 1


async def test_a_stale_clock_is_refused_by_the_receiver() -> None:
    receiver = Receiver(Clock(NOW + 301))
    transport = FakeTransport(handler=receiver)
    async with Runtime() as rt:
        sender = WebhookSender(register(rt, transport), SECRET, wall_clock=Clock())
        with pytest.raises(VendorError):
            await sender.send(URL, {"n": 1}, event_id="evt_6")
    assert "tolerance" in receiver.refused[0]


async def test_an_endpoint_that_stays_down_fails_after_the_retries() -> None:
    transport = FakeTransport(*[HttpResponse(status=502)] * 3)
    async with Runtime() as rt:
        sender = WebhookSender(register(rt, transport), SECRET, wall_clock=Clock())
        with pytest.raises(ConnectionFailed) as info:
            await sender.send(URL, b"{}", event_id="evt_7")
    assert info.value.attempts == 3
    assert "hunter2" not in str(info.value)


async def test_bytes_are_sent_as_they_are() -> None:
    clock = Clock()
    receiver = Receiver(clock)
    transport = FakeTransport(handler=receiver)
    body = b'{"b":1,  "a":2}'
    async with Runtime() as rt:
        sender = WebhookSender(register(rt, transport), SECRET, wall_clock=clock)
        await sender.send(URL, body, event_id="evt_8")
    assert transport.requests[0].content == body


@given(
    st.dictionaries(
        st.text(max_size=10),
        st.one_of(st.integers(), st.text(), st.booleans(), st.none(), st.floats(allow_nan=False)),
        max_size=5,
    ),
    st.floats(min_value=0, max_value=4e9),
)
def test_every_signature_verifies_and_a_changed_body_does_not(
    payload: dict[str, Any], now: float
) -> None:
    sender = WebhookSender(_service(), SECRET, wall_clock=lambda: now)
    body = msgspec.json.encode(payload)
    header = sender.sign(body)
    assert TimestampedHmacVerifier(SECRET).verify(body, header, now).timestamp == int(now)
    with pytest.raises(WebhookVerificationFailed):
        TimestampedHmacVerifier(SECRET).verify(body + b" ", header, now)


def _service() -> Service:
    return Runtime().register("webhooks", transport=FakeTransport)


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("url", {"url": "ftp://hooks.example.com/x?token=hunter2"}),
        ("url", {"url": "/relative?token=hunter2"}),
        ("event_id", {"event_id": ""}),
        ("payload", {"payload": ["not", "a", "mapping"]}),
        ("payload", {"payload": {"when": object()}}),
        ("headers", {"headers": {"Webhook-Signature": "forged"}}),
        ("headers", {"headers": {"content-type": "text/plain"}}),
        ("headers['X-A']", {"headers": {"X-A": "a\r\nb"}}),
    ],
)
async def test_bad_arguments_name_their_field(field: str, kwargs: dict[str, Any]) -> None:
    transport = FakeTransport()
    async with Runtime() as rt:
        sender = WebhookSender(register(rt, transport), SECRET, wall_clock=Clock())
        arguments: dict[str, Any] = {"url": URL, "payload": {}, "event_id": "evt", **kwargs}
        with pytest.raises(ConfigError) as info:
            await sender.send(arguments.pop("url"), arguments.pop("payload"), **arguments)
    assert info.value.field == field
    assert "hunter2" not in str(info.value)
    assert transport.requests == []


def test_bad_construction_is_refused() -> None:
    service = _service()
    with pytest.raises(ConfigError, match="secret"):
        WebhookSender(service, "")
    with pytest.raises(ConfigError, match="id_header"):
        WebhookSender(service, SECRET, header="X-Sig", id_header="x-sig")
    with pytest.raises(ConfigError, match="header"):
        WebhookSender(service, SECRET, header="Bad Header")
    with pytest.raises(ConfigError, match="service"):
        WebhookSender("webhooks", SECRET)  # type: ignore[arg-type]
    assert SECRET not in repr(WebhookSender(service, SECRET))
