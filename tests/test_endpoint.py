"""`Endpoint` values and builders, `Auth` checks, and how `HttpService` maps endpoints to services.

Nothing here touches a network: requests that fail do so before anything is
sent (tests/test_http_transport.py sends real ones).
"""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector import ConfigError, RateLimit, Retry, Runtime, ServicePolicy
from connector._auth import Auth
from connector._credential_manager import CredentialManager
from connector._credstore_memory import MemoryCredentialStore
from connector._endpoint import Endpoint
from connector._errors import MalformedResponse
from connector._http_service import DEFAULT_HTTP_TIMEOUT, ApiResponse, HttpService

CHARGES = Endpoint.create("/v1/charges")


def manager() -> CredentialManager:
    return CredentialManager(MemoryCredentialStore(), {}, clock=lambda: 0.0)


# -- Endpoint -------------------------------------------------------------------


def test_create_defaults_to_post_and_upper_cases_the_method() -> None:
    assert CHARGES.method == "POST"
    assert Endpoint.create("/v1/charges/{id}", "get").method == "GET"
    assert Endpoint.create("/v1/charges/{id}", "get").name == "GET /v1/charges/{id}"
    assert not CHARGES.has_policies


def test_builders_return_new_endpoints_and_leave_the_original_alone() -> None:
    retry = Retry(attempts=5)
    limit = RateLimit.per_second(100)
    auth = Auth(api_key_query="key")
    built = (
        CHARGES.with_headers({"Stripe-Version": "2024-06-20"})
        .with_timeout(5)
        .with_retry(retry)
        .with_rate_limit(limit)
        .with_auth(auth)
    )
    assert built.headers == (("Stripe-Version", "2024-06-20"),)
    assert (built.timeout, built.retry, built.rate_limit, built.auth) == (5, retry, limit, auth)
    assert built.has_policies
    assert Endpoint(url="/v1/charges") == CHARGES  # untouched
    with pytest.raises(AttributeError):
        CHARGES.timeout = 1  # type: ignore[misc]


def test_an_endpoint_is_a_value_that_round_trips_through_msgspec() -> None:
    endpoint = (
        Endpoint.create("https://api.example.com/v1/x/{id}", "PUT")
        .with_headers({"X-A": "1"})
        .with_retry(Retry(attempts=2, retryable_statuses=frozenset({503})))
        .with_rate_limit(RateLimit.per_minute(60, burst=5))
        .with_auth(Auth(service="other"))
    )
    decoded = msgspec.json.decode(msgspec.json.encode(endpoint), type=Endpoint)
    assert decoded == endpoint
    assert hash(decoded) == hash(endpoint)
    assert len({endpoint, decoded, CHARGES}) == 2


header_names = st.sampled_from(["X-A", "x-a", "X-B", "Content-Type", "content-type", "Accept"])
header_maps = st.dictionaries(header_names, st.text("abc123 -", max_size=5), max_size=4)


@given(st.lists(header_maps, max_size=5))
def test_with_headers_keeps_one_header_per_name_the_last_one_given(
    layers: list[dict[str, str]],
) -> None:
    endpoint = CHARGES
    expected: dict[str, str] = {}
    for layer in layers:
        endpoint = endpoint.with_headers(layer)
        for name, value in layer.items():
            expected[name.lower()] = value
    names = [name.lower() for name, _ in endpoint.headers]
    assert len(names) == len(set(names))
    assert {name.lower(): value for name, value in endpoint.headers} == expected
    assert CHARGES.headers == ()


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Endpoint.create(""), "url"),
        (lambda: Endpoint.create(" /x"), "url"),
        (lambda: Endpoint.create("ftp://example.com/x"), "url"),
        (lambda: Endpoint.create("http://[::1"), "url"),
        (lambda: Endpoint.create("/x", "GE T"), "method"),
        (lambda: Endpoint.create("/x", 7), "method"),  # type: ignore[arg-type]
        (lambda: Endpoint(url="/x", method="post"), "method"),
        (lambda: CHARGES.with_headers({"Bad Name": "1"}), "headers"),
        (lambda: CHARGES.with_headers({"X-A": "1\r\nX-Injected: 1"}), "headers['X-A']"),
        (lambda: CHARGES.with_headers({"X-A": 1}), "headers['X-A']"),  # type: ignore[dict-item]
        (lambda: CHARGES.with_headers([("X-A", "1")]), "headers"),  # type: ignore[arg-type]
        (lambda: CHARGES.with_timeout(0), "timeout"),
        (lambda: CHARGES.with_timeout(-1), "timeout"),
        (lambda: CHARGES.with_timeout(math.nan), "timeout"),
        (lambda: CHARGES.with_retry(3), "retry"),  # type: ignore[arg-type]
        (lambda: CHARGES.with_rate_limit(100), "rate_limit"),  # type: ignore[arg-type]
        (lambda: CHARGES.with_auth("bearer"), "auth"),  # type: ignore[arg-type]
        (lambda: Auth(service=""), "service"),
        (lambda: Auth(api_key_header="X Key"), "api_key_header"),
        (lambda: Auth(api_key_query=""), "api_key_query"),
        (lambda: Auth(hmac_signature_header=""), "hmac_signature_header"),
    ],
)
def test_bad_values_raise_a_config_error_naming_the_field(build: Any, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build()
    assert caught.value.field == field


def test_a_url_in_an_error_is_redacted() -> None:
    with pytest.raises(ConfigError) as caught:
        Endpoint.create("ftp://user:hunter2@example.com/x?api_key=sk_live_1")
    assert "hunter2" not in str(caught.value)
    assert "sk_live_1" not in str(caught.value)


# -- ApiResponse ----------------------------------------------------------------


def test_an_api_response_decodes_json_or_says_why_not() -> None:
    def answer(content: bytes, content_type: str = "application/json") -> ApiResponse:
        return ApiResponse(
            status=200, headers={"content-type": content_type}, content=content, service="api"
        )

    assert answer(b'{"a": [1, 2]}').json() == {"a": [1, 2]}
    assert answer(b"[1, 2]").json(list[int]) == [1, 2]
    assert answer(b"ok", "text/plain").header("Content-Type") == "text/plain"
    for content, reason in [
        (b"", "empty body"),
        (b"<html>", "body is not JSON (application/json)"),
        (b'{"a": 1', "body is not JSON"),
    ]:
        with pytest.raises(MalformedResponse, match=re.escape(reason)):
            answer(content).json()
    with pytest.raises(MalformedResponse, match="unexpected JSON"):
        answer(b'["a"]').json(list[int])


# -- HttpService: which service an endpoint goes through ----------------------------


def test_endpoints_without_policies_share_the_services_own() -> None:
    rt = Runtime()
    api = HttpService(rt, "api", base_url="https://api.example.com", rate_limit=RateLimit(rate=5))
    first = api.service_for(CHARGES)
    assert first is api.service
    assert api.service_for(Endpoint.create("/v1/refunds").with_headers({"X-A": "1"})) is first
    assert rt.services == ["api"]
    assert rt.actor("api").policy.timeout == DEFAULT_HTTP_TIMEOUT


def test_an_endpoint_with_policies_gets_its_own_service_with_them() -> None:
    rt = Runtime()
    base_retry = Retry(attempts=4)
    api = HttpService(rt, "api", timeout=10, retry=base_retry, max_concurrency=7)
    limited = CHARGES.with_rate_limit(RateLimit.per_second(100)).with_timeout(2)
    service = api.service_for(limited)
    assert service.name == "api POST /v1/charges"
    policy = rt.actor(service.name).policy
    assert policy.rate_limit == RateLimit.per_second(100)
    assert policy.timeout == 2
    assert policy.retry == base_retry  # not replaced: the service's
    assert policy.max_concurrency == 7
    # The same endpoint, built again, is the same service; nothing else is registered.
    again = CHARGES.with_rate_limit(RateLimit.per_second(100)).with_timeout(2)
    assert api.service_for(again) is service
    assert rt.services == ["api", "api POST /v1/charges"]


def test_one_endpoint_cannot_be_used_with_two_sets_of_policies() -> None:
    api = HttpService(Runtime(), "api")
    api.service_for(CHARGES.with_timeout(2))
    assert api.service_for(CHARGES.with_timeout(2).with_headers({"X-A": "1"})).name == (
        "api POST /v1/charges"
    )
    with pytest.raises(ConfigError, match="other policies") as caught:
        api.service_for(CHARGES.with_timeout(3))
    assert caught.value.field == "endpoint"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"base_url": "http://[::1"}, "base_url"),
        ({"headers": {"Bad Name": "x"}}, "headers"),
        ({"idempotency_header": "Idempotency Key"}, "idempotency_header"),
        ({"auth": Auth()}, "auth"),  # no CredentialManager to read from
        ({"credentials": object()}, "credentials"),
        ({"policy": ServicePolicy(), "timeout": 3}, "policy"),
        ({"no_such_policy": 1}, "policy"),
        ({"timeout": -1}, "timeout"),
        ({"max_response_bytes": 0}, "max_response_bytes"),
        ({"connect_timeout": 0}, "connect_timeout"),
    ],
)
def test_http_service_arguments_are_checked(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        HttpService(Runtime(), "api", **kwargs)
    assert caught.value.field == field


def test_an_endpoints_auth_needs_a_credential_manager() -> None:
    api = HttpService(Runtime(), "api")
    with pytest.raises(ConfigError, match="CredentialManager"):
        api.service_for(CHARGES.with_auth(Auth()))
    with_credentials = HttpService(Runtime(), "api", credentials=manager())
    assert with_credentials.service_for(CHARGES.with_auth(Auth(service="other"))).name == (
        "api POST /v1/charges"
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("endpoint", "kwargs", "field"),
    [
        (CHARGES, {"json": {}, "content": b"{}"}, "content"),
        (CHARGES, {"content": "text"}, "content"),
        (CHARGES, {"json": object()}, "json"),
        (CHARGES, {"path_params": {"id": 1}}, "path_params"),
        (Endpoint.create("/v1/charges/{id}"), {}, "path_params"),
        (Endpoint.create("/v1/charges/{id}"), {"path_params": {"other": 1}}, "path_params"),
        (CHARGES, {"headers": {"X-A": "1\n2"}}, "headers['X-A']"),
        (CHARGES, {"idempotency_key": ""}, "idempotency_key"),
    ],
)
async def test_a_bad_request_fails_before_anything_is_sent(
    endpoint: Endpoint, kwargs: dict[str, Any], field: str
) -> None:
    async with Runtime() as rt:
        api = HttpService(rt, "api", base_url="http://127.0.0.1:9")
        with pytest.raises(ConfigError) as caught:
            await api.request(endpoint, **kwargs)
    assert caught.value.field == field
