"""The HTTP transport and `HttpService` against a fake JSON API over real loopback HTTP.

The server (uvicorn in a thread, `connector.testing.serve_asgi`) records every
request before answering, so these tests assert on what the provider received:
how many attempts, with which headers and idempotency keys, and when. Time is
real here: the only long wait is one Retry-After of 2 s (and one of 1 s), and
"no request before 2 s" is checked on the server's own clock, in one direction.
The mapping of each httpx error is checked without a network, on
`httpx.MockTransport`.
"""

from __future__ import annotations

import base64
import email.utils
import socket
import string
from collections.abc import AsyncIterator, Callable, Iterator

import anyio
import httpx
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector import (
    ActorCrashed,
    AttemptFinished,
    ConfigError,
    ConnectionFailed,
    Event,
    HttpRequest,
    RateLimit,
    RateLimitExceeded,
    Retry,
    RetryScheduled,
    Runtime,
    Supervision,
    TransportFailure,
    VendorError,
)
from connector._auth import Auth, Authenticator, hmac_signature
from connector._credential_manager import CredentialManager
from connector._credentials import AuthMethod, Credentials
from connector._credstore_memory import MemoryCredentialStore
from connector._endpoint import Endpoint
from connector._errors import MalformedResponse, ResponseTooLarge
from connector._http_service import HttpService
from connector._httpx_transport import ERROR_BODY_LIMIT, HttpxTransport
from connector.testing import FakeJsonApi, Reply, serve_asgi

pytestmark = pytest.mark.anyio

FAST = Retry(attempts=3, initial_delay=0.01, max_delay=0.05, jitter="none")
NOW = 1_750_000_000.0  # the wall clock of runtimes that sign or read HTTP-dates
SECRET_KEY = "sk_live_9f8e7d6c5b4a3f2e1d0c"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[FakeJsonApi, str]]:
    api = FakeJsonApi()
    with serve_asgi(api.app) as url:
        yield api, url


@pytest.fixture
def api(server: tuple[FakeJsonApi, str]) -> FakeJsonApi:
    server[0].reset()
    return server[0]


@pytest.fixture
def base_url(server: tuple[FakeJsonApi, str]) -> str:
    return server[1]


def closed_port_url() -> str:
    """A loopback URL nobody listens on: connecting is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def credentials_for(
    *entries: tuple[str | None, Credentials],
    refresher: Callable[[Credentials], Credentials] | None = None,
) -> CredentialManager:
    store = MemoryCredentialStore()
    for tenant, credentials in entries:
        await store.put("api", tenant, credentials)

    async def refresh(current: Credentials) -> Credentials:
        assert refresher is not None
        return refresher(current)

    refreshers = {"api": refresh} if refresher is not None else {}
    return CredentialManager(store, refreshers, clock=lambda: NOW)


# -- requests and answers -----------------------------------------------------


async def test_a_request_sends_json_headers_path_and_query_and_returns_the_answer(
    api: FakeJsonApi, base_url: str
) -> None:
    endpoint = Endpoint.create("/items/{id}").with_headers({"X-Endpoint": "e", "X-Both": "e"})
    async with Runtime() as rt:
        service = HttpService(rt, "api", base_url=base_url, headers={"X-Service": "s"})
        response = await service.request(
            endpoint,
            json={"amount": 100},
            path_params={"id": "a b/c"},
            params={"expand": ["x", "y"], "n": 3},
            headers={"x-both": "call"},
        )
    (received,) = api.received
    assert received.method == "POST"
    assert received.target == "/items/a%20b%2Fc?expand=x&expand=y&n=3"
    assert received.json() == {"amount": 100}
    assert received.header("content-type") == "application/json"
    assert received.header("x-service") == "s"
    assert received.header("x-endpoint") == "e"
    assert received.header("x-both") == "call"  # the call's header wins, whatever its case
    assert response.status == 200
    assert response.header("Content-Type") == "application/json"
    assert response.json()["json"] == {"amount": 100}


async def test_a_post_without_a_key_that_times_out_after_processing_is_not_retried(
    api: FakeJsonApi, base_url: str
) -> None:
    api.script("/charges", Reply.json({"id": "ch_1"}, delay=1.0), Reply.json({"id": "ch_2"}))
    endpoint = Endpoint.create("/charges").with_timeout(0.25)
    async with Runtime() as rt:
        service = HttpService(rt, "api", base_url=base_url, retry=FAST)
        with pytest.raises(ConnectionFailed) as caught:
            await service.request(endpoint, json={"amount": 100})
    assert caught.value.attempts == 1
    assert "timed out" in caught.value.last_error
    assert len(api.requests_to("/charges")) == 1  # processed once, never sent again


async def test_a_post_with_a_key_that_times_out_is_retried_with_the_same_key(
    api: FakeJsonApi, base_url: str
) -> None:
    api.script("/charges", Reply.json({"id": "ch_1"}, delay=1.0), Reply.json({"id": "ch_1"}))
    endpoint = Endpoint.create("/charges").with_timeout(0.25)
    async with Runtime() as rt:
        service = HttpService(rt, "api", base_url=base_url, retry=FAST)
        response = await service.request(endpoint, json={"amount": 100}, idempotency_key="order-7")
    assert response.json() == {"id": "ch_1"}
    first, second = api.requests_to("/charges")
    assert first.header("idempotency-key") == second.header("idempotency-key") == "order-7"
    assert first.body == second.body


async def test_the_idempotency_header_name_is_configurable(api: FakeJsonApi, base_url: str) -> None:
    async with Runtime() as rt:
        service = HttpService(rt, "api", base_url=base_url, idempotency_header="PayPal-Request-Id")
        await service.request(Endpoint.create("/orders"), json={}, idempotency_key="req-1")
    (received,) = api.received
    assert received.header("paypal-request-id") == "req-1"
    assert received.header("idempotency-key") is None


async def test_a_429_with_retry_after_seconds_holds_every_request_back(
    api: FakeJsonApi, base_url: str
) -> None:
    api.script("/limited", Reply.too_many_requests("2"))
    async with Runtime() as rt:
        service = HttpService(rt, "api", base_url=base_url, retry=FAST)
        paused = anyio.Event()

        def on_event(event: Event) -> None:
            if isinstance(event, RetryScheduled):
                paused.set()

        rt.events.listen(on_event)
        answers = []

        async def limited() -> None:
            answers.append(await service.request(Endpoint.create("/limited", "GET")))

        async with anyio.create_task_group() as group:
            group.start_soon(limited)
            await paused.wait()
            # Another call of the same service, made during the pause, waits too.
            answers.append(await service.request(Endpoint.create("/other", "GET")))
    throttled, *later = api.received
    assert throttled.path == "/limited"
    assert sorted(r.path for r in later) == ["/limited", "/other"]
    assert all(r.at - throttled.at >= 2.0 for r in later)
    assert [a.status for a in answers] == [200, 200]


async def test_a_429_with_an_http_date_retry_after_is_honoured(
    api: FakeJsonApi, base_url: str
) -> None:
    api.script("/limited", Reply.too_many_requests(email.utils.formatdate(NOW + 1, usegmt=True)))
    async with Runtime(wall_clock=lambda: NOW) as rt:
        service = HttpService(rt, "api", base_url=base_url, retry=FAST)
        response = await service.request(Endpoint.create("/limited", "GET"))
    throttled, retried = api.received
    assert retried.at - throttled.at >= 1.0
    assert response.status == 200


async def test_a_5xx_is_retried_for_a_get_but_not_for_a_post_without_a_key(
    api: FakeJsonApi, base_url: str
) -> None:
    api.script("/read", Reply.json({}, 503))
    api.script("/write", Reply.json({}, 503))
    async with Runtime() as rt:
        service = HttpService(rt, "api", base_url=base_url, retry=FAST)
        assert (await service.request(Endpoint.create("/read", "GET"))).status == 200
        with pytest.raises(ConnectionFailed, match="HTTP 503"):
            await service.request(Endpoint.create("/write"), json={})
    assert len(api.requests_to("/read")) == 2
    assert len(api.requests_to("/write")) == 1


async def test_a_callers_4xx_is_a_vendor_error_with_a_redacted_capped_body(
    api: FakeJsonApi, base_url: str
) -> None:
    echo = {"error": f"invalid key {SECRET_KEY}", "password": "hunter22", "pad": "x" * 50_000}
    api.script("/me", Reply.json(echo, 400))
    manager = await credentials_for(
        (None, Credentials(auth_method=AuthMethod.API_KEY, data={"api_key": SECRET_KEY}))
    )
    async with Runtime() as rt:
        service = HttpService(rt, "api", base_url=base_url, retry=FAST, credentials=manager)
        with pytest.raises(VendorError) as caught:
            await service.request(Endpoint.create("/me", "GET"))
    error = caught.value
    assert error.status == 400
    assert "invalid key" in error.body
    for secret in (SECRET_KEY, "hunter22"):
        assert secret not in error.body
        assert secret not in str(error)
    assert len(error.body.encode()) <= ERROR_BODY_LIMIT
    (received,) = api.received  # the caller's error: not retried, even for a GET
    assert received.header("x-api-key") == SECRET_KEY


async def test_a_body_that_is_not_json_raises_malformed_response(
    api: FakeJsonApi, base_url: str
) -> None:
    api.script("/lying", Reply.text("<html>oops</html>", content_type="application/json"))
    api.script("/shape", Reply.json({"id": "not a number"}))
    async with Runtime() as rt:
        service = HttpService(rt, "api", base_url=base_url)
        lying = await service.request(Endpoint.create("/lying", "GET"))
        shape = await service.request(Endpoint.create("/shape", "GET"))
    assert lying.text == "<html>oops</html>"
    with pytest.raises(MalformedResponse, match="application/json") as caught:
        lying.json()
    assert caught.value.status == 200
    assert caught.value.service == "api"

    class Charge(msgspec.Struct):
        id: int

    assert shape.json() == {"id": "not a number"}
    with pytest.raises(MalformedResponse, match="unexpected JSON"):
        shape.json(Charge)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_over_the_cap_raises_response_too_large(
    api: FakeJsonApi, base_url: str, chunked: bool
) -> None:
    api.script("/big", Reply.json({"blob": "x" * 100_000}, chunked=chunked))
    async with Runtime() as rt:
        service = HttpService(rt, "api", base_url=base_url, retry=FAST, max_response_bytes=4096)
        with pytest.raises(ResponseTooLarge) as caught:
            await service.request(Endpoint.create("/big", "GET"))
        # The connection it was cut on is gone; the next call gets a fresh one.
        assert (await service.request(Endpoint.create("/small", "GET"))).status == 200
    assert caught.value.limit == 4096
    assert len(api.requests_to("/big")) == 1  # the same body would come back: not retried


async def test_a_refused_connection_was_not_sent_so_even_a_post_is_retried() -> None:
    async with Runtime() as rt:
        service = HttpService(rt, "api", base_url=closed_port_url(), retry=FAST)
        with pytest.raises(ConnectionFailed) as caught:
            await service.request(Endpoint.create("/charges"), json={})
    assert caught.value.attempts == FAST.attempts
    assert "ConnectError" in caught.value.last_error


@pytest.mark.parametrize(
    "broken", [Reply.drop(), Reply.truncated({"id": "x" * 100})], ids=["drop", "truncate"]
)
async def test_a_connection_broken_after_processing_is_retried_only_when_safe(
    api: FakeJsonApi, base_url: str, broken: Reply
) -> None:
    api.script("/write", broken)
    api.script("/read", broken)
    async with Runtime() as rt:
        service = HttpService(rt, "api", base_url=base_url, retry=FAST)
        with pytest.raises(ConnectionFailed, match="RemoteProtocolError") as caught:
            await service.request(Endpoint.create("/write"), json={})
        answer = await service.request(Endpoint.create("/read", "GET"))
    assert caught.value.attempts == 1
    assert len(api.requests_to("/write")) == 1
    assert len(api.requests_to("/read")) == 2
    assert answer.json()["path"] == "/read"


async def test_an_endpoints_rate_limit_is_its_own(api: FakeJsonApi, base_url: str) -> None:
    limited = Endpoint.create("/limited", "GET").with_rate_limit(
        RateLimit.per_second(1, burst=1, mode="reject")
    )
    async with Runtime() as rt:
        service = HttpService(rt, "api", base_url=base_url)
        await service.request(limited)
        with pytest.raises(RateLimitExceeded):
            await service.request(limited)
        for _ in range(3):  # the service's other endpoints are not limited by it
            await service.request(Endpoint.create("/free", "GET"))
    assert [r.path for r in api.received] == ["/limited", "/free", "/free", "/free"]


# -- credentials ----------------------------------------------------------------


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("auth", "credentials", "expected"),
    [
        (
            Auth(api_key_header="X-Api-Key"),
            Credentials(auth_method=AuthMethod.API_KEY, data={"api_key": SECRET_KEY}),
            ("x-api-key", SECRET_KEY),
        ),
        (
            Auth(),
            Credentials(auth_method=AuthMethod.BEARER_TOKEN, data={"token": "tok-1"}),
            ("authorization", "Bearer tok-1"),
        ),
        (
            Auth(),
            Credentials(auth_method=AuthMethod.OAUTH2, data={"access_token": "at-1"}),
            ("authorization", "Bearer at-1"),
        ),
        (
            Auth(),
            Credentials(
                auth_method=AuthMethod.BASIC_AUTH, data={"username": "api", "password": "pw:1"}
            ),
            ("authorization", _basic("api", "pw:1")),
        ),
    ],
    ids=["api_key", "bearer", "oauth2", "basic"],
)
async def test_credentials_go_in_their_header(
    api: FakeJsonApi,
    base_url: str,
    auth: Auth,
    credentials: Credentials,
    expected: tuple[str, str],
) -> None:
    manager = await credentials_for((None, credentials))
    async with Runtime() as rt:
        service = HttpService(rt, "api", base_url=base_url, credentials=manager, auth=auth)
        events = rt.events.subscribe()
        await service.request(Endpoint.create("/me", "GET"))
    (received,) = api.received
    name, value = expected
    assert received.header(name) == value
    (finished,) = [e for e in events.drain() if isinstance(e, AttemptFinished)]
    assert finished.request is not None
    assert value not in str(finished.request)  # what the runtime logs never holds it


async def test_an_api_key_can_go_in_the_query_and_each_tenant_sends_its_own(
    api: FakeJsonApi, base_url: str
) -> None:
    manager = await credentials_for(
        ("t1", Credentials(auth_method=AuthMethod.API_KEY, data={"api_key": "key-one"})),
        ("t2", Credentials(auth_method=AuthMethod.API_KEY, data={"api_key": "key-two"})),
    )
    async with Runtime() as rt:
        service = HttpService(
            rt, "api", base_url=base_url, credentials=manager, auth=Auth(api_key_query="key")
        )
        endpoint = Endpoint.create("/search", "GET")
        await service.request(endpoint, params={"q": "x"}, tenant_id="t1")
        await service.request(endpoint, params={"q": "x"}, tenant_id="t2")
    assert [r.query for r in api.received] == ["q=x&key=key-one", "q=x&key=key-two"]
    assert all(r.header("x-api-key") is None for r in api.received)


async def test_hmac_signs_method_target_timestamp_and_body(api: FakeJsonApi, base_url: str) -> None:
    secret = "whsec-0123456789"
    manager = await credentials_for(
        (None, Credentials(auth_method=AuthMethod.HMAC, data={"secret": secret, "key_id": "k1"}))
    )
    auth = Auth(hmac_signature_header="X-Sig", hmac_timestamp_header="X-Ts")
    async with Runtime(wall_clock=lambda: NOW) as rt:
        service = HttpService(rt, "api", base_url=base_url, credentials=manager, auth=auth)
        await service.request(Endpoint.create("/transfers"), json={"amount": 5}, params={"a": 1})
    (received,) = api.received
    assert received.header("x-ts") == str(int(NOW))
    assert received.header("x-key-id") == "k1"
    assert received.header("x-sig") == hmac_signature(
        secret, "POST", "/transfers?a=1", str(int(NOW)), b'{"amount":5}'
    )
    assert secret not in str(received.headers)


async def test_a_401_refreshes_oauth2_credentials_and_resends_once_in_the_same_attempt(
    api: FakeJsonApi, base_url: str
) -> None:
    api.script("/me", Reply.json({"error": "expired"}, 401))
    api.script("/again", Reply.json({"error": "expired"}, 401), Reply.json({}, 401))
    stale = Credentials(
        auth_method=AuthMethod.OAUTH2, data={"access_token": "old"}, refresh_token="rt"
    )
    refreshed: list[str] = []

    def refresher(current: Credentials) -> Credentials:
        token = f"new-{len(refreshed)}"
        refreshed.append(token)
        return msgspec.structs.replace(current, data={"access_token": token})

    manager = await credentials_for((None, stale), refresher=refresher)
    async with Runtime() as rt:
        service = HttpService(rt, "api", base_url=base_url, retry=FAST, credentials=manager)
        events = rt.events.subscribe()
        assert (await service.request(Endpoint.create("/me", "GET"))).status == 200
        with pytest.raises(VendorError) as caught:
            await service.request(Endpoint.create("/again", "GET"))
    assert [r.header("authorization") for r in api.requests_to("/me")] == [
        "Bearer old",
        "Bearer new-0",
    ]
    # Rejected again after the refresh: one more refresh and resend, then the 401 stands.
    assert len(api.requests_to("/again")) == 2
    assert caught.value.status == 401
    attempts = [e for e in events.drain() if isinstance(e, AttemptFinished)]
    assert [e.attempt for e in attempts] == [1, 1]


async def test_a_401_with_credentials_that_cannot_refresh_is_the_callers_error(
    api: FakeJsonApi, base_url: str
) -> None:
    api.script("/me", Reply.json({"error": "bad key"}, 401))
    manager = await credentials_for(
        (None, Credentials(auth_method=AuthMethod.API_KEY, data={"api_key": SECRET_KEY}))
    )
    async with Runtime() as rt:
        service = HttpService(rt, "api", base_url=base_url, credentials=manager)
        with pytest.raises(VendorError) as caught:
            await service.request(Endpoint.create("/me", "GET"))
    assert caught.value.status == 401
    assert len(api.received) == 1


# -- the transport on its own ---------------------------------------------------


async def test_the_transport_keeps_to_its_connection_limit(api: FakeJsonApi, base_url: str) -> None:
    api.script("/slow", *[Reply.json({}, delay=0.1) for _ in range(6)])
    transport = HttpxTransport(base_url=base_url, max_connections=2)
    statuses: list[int] = []

    async def one() -> None:
        response = await transport.send(HttpRequest(method="GET", url="/slow"))
        statuses.append(response.status)

    async with anyio.create_task_group() as group:
        for _ in range(6):
            group.start_soon(one)
    await transport.aclose()
    assert statuses == [200] * 6
    assert api.max_in_flight == 2


async def test_a_restart_replaces_the_client_and_closes_the_old_one() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in the transport stack")
        return httpx.Response(200, json={"ok": True})

    made: list[HttpxTransport] = []
    factory = HttpxTransport.factory(http_transport=httpx.MockTransport(handler))

    def recording() -> HttpxTransport:
        made.append(factory())
        return made[-1]

    supervision = Supervision(backoff_initial=0.01, backoff_max=0.01)
    async with Runtime() as rt:
        service = rt.register("api", transport=recording, supervision=supervision)
        request = HttpRequest(method="POST", url="http://api.test/x", content=b"{}")
        with pytest.raises(ActorCrashed):
            await service.request(request)
        assert (await service.request(request)).status == 200
        await anyio.wait_all_tasks_blocked()  # the retired client closes in a task of its own
        first, second = made
        assert first.client is not second.client
        assert first.client.is_closed
        assert not second.client.is_closed
    assert second.client.is_closed


async def test_the_clients_timeouts_come_from_the_policy() -> None:
    async with Runtime() as rt:
        api = HttpService(rt, "api", timeout=2)
        slow = api.service_for(Endpoint.create("/export").with_timeout(30))
        pinned = HttpService(rt, "pinned", timeout=2, connect_timeout=0.5)
        timeouts = {}
        for name in ("api", slow.name, pinned.name):
            instance = rt.actor(name).instance
            assert instance is not None
            assert isinstance(instance.transport, HttpxTransport)
            timeouts[name] = instance.transport.client.timeout
    assert timeouts["api"] == httpx.Timeout(2, connect=1)  # connecting: half the attempt
    assert timeouts[slow.name] == httpx.Timeout(30, connect=5)  # at most 5 s
    assert timeouts["pinned"] == httpx.Timeout(2, connect=0.5)


def _raising(error: Exception) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return httpx.MockTransport(handler)


NOT_SENT = [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError]
MAYBE_SENT = [
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.CloseError,
    httpx.RemoteProtocolError,
]
UNSENDABLE = [httpx.UnsupportedProtocol, httpx.LocalProtocolError]


def _all_subclasses(kind: type[Exception]) -> set[type[Exception]]:
    found = set()
    for sub in kind.__subclasses__():
        found |= {sub, *_all_subclasses(sub)}
    return found


def test_every_httpx_transport_error_has_a_mapping() -> None:
    """A new httpx error type must be placed deliberately, not default to one side."""
    concrete = {
        kind
        for kind in _all_subclasses(httpx.TransportError)
        if kind.__module__.startswith("httpx") and not kind.__subclasses__()
    }
    assert concrete == set(NOT_SENT + MAYBE_SENT + UNSENDABLE)


@pytest.mark.parametrize(
    ("kind", "sent"),
    [(kind, False) for kind in NOT_SENT] + [(kind, True) for kind in MAYBE_SENT],
    ids=lambda value: value.__name__ if isinstance(value, type) else str(value),
)
async def test_httpx_errors_say_whether_the_request_may_have_been_sent(
    kind: type[httpx.TransportError], sent: bool
) -> None:
    manager = await credentials_for(
        (None, Credentials(auth_method=AuthMethod.API_KEY, data={"api_key": SECRET_KEY}))
    )
    transport = HttpxTransport(
        auth=Authenticator(Auth(), manager, "api"),
        http_transport=_raising(kind(f"failed near {SECRET_KEY}")),
    )
    with pytest.raises(TransportFailure) as caught:
        await transport.send(HttpRequest(method="POST", url="http://api.test/x"))
    await transport.aclose()
    assert caught.value.sent is sent
    assert kind.__name__ in str(caught.value)
    assert SECRET_KEY not in str(caught.value)
    assert caught.value.__cause__ is None  # httpx's error holds the request, headers and all


@pytest.mark.parametrize("kind", UNSENDABLE, ids=lambda kind: kind.__name__)
async def test_a_request_httpx_cannot_send_is_a_config_error(
    kind: type[httpx.TransportError],
) -> None:
    transport = HttpxTransport(http_transport=_raising(kind("bad request line")))
    with pytest.raises(ConfigError, match="httpx cannot send it"):
        await transport.send(HttpRequest(method="GET", url="http://api.test/x"))
    await transport.aclose()


async def test_a_body_that_does_not_decode_is_malformed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-encoding": "gzip"}, content=b"not gzip")

    transport = HttpxTransport(name="api", http_transport=httpx.MockTransport(handler))
    with pytest.raises(MalformedResponse, match="DecodingError"):
        await transport.send(HttpRequest(method="GET", url="http://api.test/x"))
    await transport.aclose()


async def _pieces(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@given(
    size=st.integers(0, 3000),
    limit=st.integers(1, 2000),
    piece=st.integers(1, 700),
    chunked=st.booleans(),
)
async def test_a_body_comes_back_whole_up_to_the_cap_and_is_refused_past_it(
    size: int, limit: int, piece: int, chunked: bool
) -> None:
    body = bytes(range(256)) * (size // 256) + bytes(size % 256)

    def handler(request: httpx.Request) -> httpx.Response:
        if chunked:
            return httpx.Response(200, content=_pieces(body, piece))
        return httpx.Response(200, content=body)

    transport = HttpxTransport(
        max_response_bytes=limit, http_transport=httpx.MockTransport(handler)
    )
    request = HttpRequest(method="GET", url="http://api.test/x")
    if size > limit:
        with pytest.raises(ResponseTooLarge) as caught:
            await transport.send(request)
        assert caught.value.limit == limit
    else:
        assert (await transport.send(request)).content == body
    await transport.aclose()


@given(
    key=st.text(string.ascii_letters + string.digits + "_-", min_size=8, max_size=40),
    status=st.sampled_from([400, 401, 403, 404, 422, 429, 500, 503]),
)
async def test_an_error_body_never_echoes_the_credentials_just_sent(key: str, status: int) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-api-key"))
        return httpx.Response(status, text=f"key {key!r} rejected; raw={key}; quoted=%22{key}%22")

    manager = await credentials_for(
        (None, Credentials(auth_method=AuthMethod.API_KEY, data={"api_key": key}))
    )
    auth = Authenticator(Auth(), manager, "api", wall_clock=lambda: NOW)
    transport = HttpxTransport(auth=auth, http_transport=httpx.MockTransport(handler))
    response = await transport.send(HttpRequest(method="GET", url="http://api.test/x"))
    await transport.aclose()
    assert seen == [key]
    assert response.status == status
    assert key not in response.content.decode()


@given(
    body=st.binary(max_size=300),
    path=st.text(string.ascii_letters + string.digits + "-._~", min_size=1, max_size=30),
    now=st.integers(0, 2**33),
)
async def test_an_hmac_signature_verifies_against_what_was_sent(
    body: bytes, path: str, now: int
) -> None:
    secret = "shared-secret"
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    manager = await credentials_for(
        (None, Credentials(auth_method=AuthMethod.HMAC, data={"secret": secret}))
    )
    auth = Authenticator(Auth(), manager, "api", wall_clock=lambda: float(now))
    transport = HttpxTransport(auth=auth, http_transport=httpx.MockTransport(handler))
    await transport.send(HttpRequest(method="PUT", url=f"http://api.test/{path}?v=1", content=body))
    await transport.aclose()
    (request,) = sent
    timestamp = request.headers["x-timestamp"]
    assert timestamp == str(now)
    target = request.url.raw_path.decode()
    expected = hmac_signature(secret, "PUT", target, timestamp, request.content)
    assert request.headers["x-signature"] == expected
    tampered = hmac_signature(secret, "PUT", target, timestamp, body + b"!")
    assert tampered != expected
