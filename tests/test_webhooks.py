"""Webhook verification and signing.

Expected signatures are computed here with `hmac` straight from the vendors'
documented algorithms (VENDORS.md §1, §2), never with the code under test;
Twilio's published vectors come from twilio-python's own test suite.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from connector._errors import ConfigError, WebhookVerificationFailed
from connector._webhooks import (
    HmacVerifier,
    StripeVerifier,
    TimestampedHmacVerifier,
    TimestampedSignature,
    TwilioVerifier,
    sign_webhook,
)

SECRET = "whsec_test_secret_4f9a"
NOW = 1_700_000_000
BODY = b'{"id": "evt_1", "object": "event", "type": "charge.succeeded"}'


def stripe_v1(payload: bytes, secret: str, timestamp: int) -> str:
    """stripe-python's v1: hex HMAC-SHA256 of "{t}.{payload}" keyed with the whole secret."""
    message = f"{timestamp}.".encode() + payload
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def stripe_header(payload: bytes, secret: str = SECRET, timestamp: int = NOW) -> str:
    return f"t={timestamp},v1={stripe_v1(payload, secret, timestamp)}"


def twilio_signature(token: str, url: str, pairs: Sequence[tuple[str, str]]) -> str:
    """Twilio's documented string: URL, then per sorted unique name its sorted unique values."""
    values: dict[str, set[str]] = {}
    for name, value in pairs:
        values.setdefault(name, set()).add(value)
    signed = url + "".join(name + v for name in sorted(values) for v in sorted(values[name]))
    mac = hmac.new(token.encode("utf-8"), signed.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def refused(call: Callable[[], object], reason: str, *hidden: str) -> WebhookVerificationFailed:
    """Assert ``call`` fails with ``reason`` and that no ``hidden`` string leaks into the error."""
    with pytest.raises(WebhookVerificationFailed) as info:
        call()
    error = info.value
    assert reason in error.reason
    for text in hidden:
        assert text not in str(error)
        assert text not in repr(error)
        assert text not in error.reason
    return error


# --- Stripe / timestamped HMAC --------------------------------------------------------------


def test_stripe_valid_header_returns_timestamp_and_matching_signature() -> None:
    verifier = StripeVerifier(SECRET)
    result = verifier.verify(BODY, stripe_header(BODY), now=NOW + 10)
    assert result == TimestampedSignature(NOW, stripe_v1(BODY, SECRET, NOW))


def test_stripe_tampered_body_is_refused_without_leaking() -> None:
    expected = stripe_v1(BODY + b" ", SECRET, NOW)
    refused(
        lambda: StripeVerifier(SECRET).verify(BODY + b" ", stripe_header(BODY), now=NOW),
        "signature mismatch",
        SECRET,
        expected,
    )


def test_stripe_wrong_secret_is_refused() -> None:
    header = stripe_header(BODY, secret="whsec_other")
    refused(lambda: StripeVerifier(SECRET).verify(BODY, header, now=NOW), "signature mismatch")


def test_stripe_whole_secret_is_the_key_not_the_part_after_the_prefix() -> None:
    header = stripe_header(BODY, secret=SECRET.removeprefix("whsec_"))
    refused(lambda: StripeVerifier(SECRET).verify(BODY, header, now=NOW), "signature mismatch")


def test_stripe_timestamp_exactly_at_tolerance_passes_one_second_older_fails() -> None:
    verifier = StripeVerifier(SECRET, tolerance=300)
    assert verifier.verify(BODY, stripe_header(BODY, timestamp=NOW - 300), now=NOW).timestamp == (
        NOW - 300
    )
    stale = stripe_header(BODY, timestamp=NOW - 301)
    refused(lambda: verifier.verify(BODY, stale, now=NOW), "tolerance")
    refused(lambda: verifier.verify(BODY, stale, now=NOW - 0.5), "tolerance", SECRET)


def test_stripe_far_future_timestamp_is_refused_with_the_same_tolerance() -> None:
    verifier = StripeVerifier(SECRET, tolerance=60)
    assert verifier.verify(BODY, stripe_header(BODY, timestamp=NOW + 60), now=NOW)
    future = stripe_header(BODY, timestamp=NOW + 61)
    refused(lambda: verifier.verify(BODY, future, now=NOW), "tolerance")


def test_stripe_replayed_header_is_refused_the_second_time() -> None:
    verifier = StripeVerifier(SECRET)
    header = stripe_header(BODY)
    verifier.verify(BODY, header, now=NOW)
    refused(lambda: verifier.verify(BODY, header, now=NOW + 1), "replayed", SECRET)
    # The same event resent in another header shape is the same signed event.
    reordered = f"v0=00,v1={'ab' * 32},{header}"
    refused(lambda: verifier.verify(BODY, reordered, now=NOW + 1), "replayed")
    # Another event, or the same body signed at another time, is not a replay.
    verifier.verify(BODY + b"\n", stripe_header(BODY + b"\n"), now=NOW + 1)
    verifier.verify(BODY, stripe_header(BODY, timestamp=NOW + 1), now=NOW + 1)


def test_stripe_replay_of_an_expired_event_reports_the_timestamp() -> None:
    verifier = StripeVerifier(SECRET)
    header = stripe_header(BODY)
    verifier.verify(BODY, header, now=NOW)
    refused(lambda: verifier.verify(BODY, header, now=NOW + 301), "tolerance")


def test_replay_cache_is_bounded_and_forgets_the_entry_nearest_expiry() -> None:
    verifier = StripeVerifier(SECRET, replay_cache_size=2)
    events = [(b"one", NOW - 100), (b"two", NOW), (b"three", NOW)]
    headers = [stripe_header(body, timestamp=t) for body, t in events]
    for (body, _), header in zip(events, headers, strict=True):
        verifier.verify(body, header, now=NOW)
    refused(lambda: verifier.verify(b"three", headers[2], now=NOW), "replayed")
    refused(lambda: verifier.verify(b"two", headers[1], now=NOW), "replayed")
    # The documented trade-off: the oldest live entry was dropped to stay within bounds.
    assert verifier.verify(b"one", headers[0], now=NOW).timestamp == NOW - 100


def test_a_refused_event_is_not_remembered() -> None:
    verifier = StripeVerifier(SECRET)
    header = stripe_header(BODY, timestamp=NOW + 400)
    refused(lambda: verifier.verify(BODY, header, now=NOW), "tolerance")
    assert verifier.verify(BODY, header, now=NOW + 400).timestamp == NOW + 400


def test_stripe_passes_if_any_v1_matches() -> None:
    right = stripe_v1(BODY, SECRET, NOW)
    wrong = stripe_v1(BODY, "whsec_rolled_away", NOW)
    header = f"t={NOW},v1={wrong},v1=not-hex,v1={right},v0={wrong}"
    assert StripeVerifier(SECRET).verify(BODY, header, now=NOW).signature == right


def test_stripe_v0_only_is_refused_even_when_it_carries_the_right_digest() -> None:
    header = f"t={NOW},v0={stripe_v1(BODY, SECRET, NOW)}"
    refused(lambda: StripeVerifier(SECRET).verify(BODY, header, now=NOW), "no v1")


def test_stripe_other_schemes_are_ignored() -> None:
    header = f"v2=zz,{stripe_header(BODY)},scheme=x,,"
    assert StripeVerifier(SECRET).verify(BODY, header, now=NOW).timestamp == NOW


@pytest.mark.parametrize("header", [None, ""])
def test_stripe_missing_header(header: str | None) -> None:
    refused(lambda: StripeVerifier(SECRET).verify(BODY, header, now=NOW), "missing")


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        "v1=abc",
        f"t,v1={'a' * 64}",
        f"t={NOW},v1",
        f"t=,v1={'a' * 64}",
        f"t=abc,v1={'a' * 64}",
        f"t=-{NOW},v1={'a' * 64}",
        f"t=+{NOW},v1={'a' * 64}",
        f"t= {NOW},v1={'a' * 64}",
        f"t=1e9,v1={'a' * 64}",
        f"t=1_700_000_000,v1={'a' * 64}",
        f"t=\u0661\u0662,v1={'a' * 64}",
        f"t={'9' * 5000},v1={'a' * 64}",
        f"t={NOW},t={NOW},v1={'a' * 64}",
    ],
)
def test_stripe_malformed_headers(header: str) -> None:
    refused(lambda: StripeVerifier(SECRET).verify(BODY, header, now=NOW), "malformed")


def test_stripe_rejects_a_correct_digest_under_a_doubled_t() -> None:
    # stripe-python would take the first t; an ambiguous header is refused instead.
    header = f"t={NOW},{stripe_header(BODY)}"
    refused(lambda: StripeVerifier(SECRET).verify(BODY, header, now=NOW), "malformed")


def test_sign_webhook_has_stripes_shape_and_digest() -> None:
    header = sign_webhook(BODY, SECRET, NOW)
    assert header == stripe_header(BODY)
    assert StripeVerifier(SECRET).verify(BODY, header, now=NOW).timestamp == NOW
    assert sign_webhook(BODY, SECRET.encode(), NOW) == header


def test_timestamped_verifier_accepts_bytes_secrets() -> None:
    secret = bytes(range(32))
    header = sign_webhook(BODY, secret, NOW)
    assert TimestampedHmacVerifier(secret).verify(BODY, header, now=NOW).timestamp == NOW
    refused(lambda: TimestampedHmacVerifier(secret[1:]).verify(BODY, header, NOW), "mismatch")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tolerance": 0}, "tolerance"),
        ({"tolerance": -1}, "tolerance"),
        ({"tolerance": float("inf")}, "tolerance"),
        ({"replay_cache_size": 0}, "replay_cache_size"),
        ({"replay_cache_size": 1.5}, "replay_cache_size"),
        ({"secret": ""}, "secret"),
        ({"secret": 42}, "secret"),
    ],
)
def test_timestamped_verifier_config_errors_name_the_field(
    kwargs: dict[str, Any], field: str
) -> None:
    arguments = {"secret": SECRET, **kwargs}
    with pytest.raises(ConfigError) as info:
        TimestampedHmacVerifier(**arguments)
    assert info.value.field == field


def test_non_finite_now_is_a_config_error_not_a_free_pass() -> None:
    with pytest.raises(ConfigError) as info:
        StripeVerifier(SECRET).verify(BODY, stripe_header(BODY, timestamp=1), now=float("nan"))
    assert info.value.field == "now"


@pytest.mark.parametrize("timestamp", [-1, 1.5, True])
def test_sign_webhook_rejects_bad_timestamps(timestamp: Any) -> None:
    with pytest.raises(ConfigError) as info:
        sign_webhook(BODY, SECRET, timestamp)
    assert info.value.field == "timestamp"


def test_a_secret_that_cannot_be_encoded_is_named_but_not_shown() -> None:
    secret = "whsec_\ud800_hidden"
    with pytest.raises(ConfigError) as info:
        HmacVerifier(secret)
    assert info.value.field == "secret"
    assert "hidden" not in str(info.value)


# --- Twilio ---------------------------------------------------------------------------------

# twilio-python tests/unit/test_request_validator.py: token, URL, params and signatures.
TWILIO_TOKEN = "12345"
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}
TWILIO_BODY = '{"property": "value", "boolean": true}'
TWILIO_BODY_HASH = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"


def test_independent_twilio_signer_reproduces_the_published_vector() -> None:
    pairs = list(TWILIO_PARAMS.items())
    assert twilio_signature(TWILIO_TOKEN, TWILIO_URL, pairs) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert hashlib.sha256(TWILIO_BODY.encode()).hexdigest() == TWILIO_BODY_HASH


@pytest.mark.parametrize(
    ("url", "signature"),
    [
        (TWILIO_URL, "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        # the port removed
        (TWILIO_URL.replace(".com", ".com:1234"), "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        # signed with the port it was given
        (
            TWILIO_URL.replace(".com", ".com:1234").replace("https", "http"),
            "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
        ),
        # the default port added
        (TWILIO_URL, "kvajT1Ptam85bY51eRf/AJRuM3w="),
        (TWILIO_URL.replace("https", "http"), "0ZXoZLH/DfblKGATFgpif+LLRf4="),
    ],
)
def test_twilio_published_vectors_and_port_variants(url: str, signature: str) -> None:
    TwilioVerifier(TWILIO_TOKEN).verify(url, TWILIO_PARAMS, signature)


def test_twilio_published_vector_with_a_repeated_key() -> None:
    params = {"Sid": "CA123", "SidAccount": "AC123", "Digits": ["5678", "1234"]}
    TwilioVerifier(TWILIO_TOKEN).verify(TWILIO_URL, params, "IK+Dwps556ElfBT0I3Rgjkr1wJU=")


def test_twilio_json_body_via_body_sha256() -> None:
    url = f"{TWILIO_URL}&bodySHA256={TWILIO_BODY_HASH}"
    verifier = TwilioVerifier(TWILIO_TOKEN)
    verifier.verify(url, TWILIO_BODY, "a9nBmqA0ju/hNViExpshrM61xv4=")
    assert twilio_signature(TWILIO_TOKEN, url, []) == "a9nBmqA0ju/hNViExpshrM61xv4="
    refused(
        lambda: verifier.verify(url, TWILIO_BODY + " ", "a9nBmqA0ju/hNViExpshrM61xv4="),
        "bodySHA256",
        TWILIO_TOKEN,
    )


def test_twilio_raw_body_without_body_sha256_is_refused() -> None:
    signature = twilio_signature(TWILIO_TOKEN, TWILIO_URL, [])
    refused(
        lambda: TwilioVerifier(TWILIO_TOKEN).verify(TWILIO_URL, TWILIO_BODY, signature),
        "bodySHA256",
    )


def test_twilio_repeated_keys_and_values_are_sorted_and_deduplicated() -> None:
    token = "tw-auth-token-9c1d"
    url = "https://example.test/sms"
    pairs = [("MediaUrl", "b"), ("Body", "hi"), ("MediaUrl", "a"), ("MediaUrl", "b")]
    signature = twilio_signature(token, url, pairs)
    verifier = TwilioVerifier(token)
    verifier.verify(url, {"Body": "hi", "MediaUrl": ["b", "a", "b"]}, signature)
    verifier.verify(url, MultiDict(pairs), signature)
    # Signing every value, duplicates included, is not Twilio's scheme.
    undeduplicated = url + "BodyhiMediaUrlaMediaUrlbMediaUrlb"
    mac = hmac.new(token.encode(), undeduplicated.encode(), hashlib.sha1).digest()
    wrong = base64.b64encode(mac).decode()
    refused(lambda: verifier.verify(url, MultiDict(pairs), wrong), "mismatch", token)


def test_twilio_tampered_param_or_wrong_token_is_refused() -> None:
    signature = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    tampered = {**TWILIO_PARAMS, "Digits": "1235"}
    refused(
        lambda: TwilioVerifier(TWILIO_TOKEN).verify(TWILIO_URL, tampered, signature), "mismatch"
    )
    refused(
        lambda: TwilioVerifier("54321").verify(TWILIO_URL, TWILIO_PARAMS, signature), "mismatch"
    )
    refused(
        lambda: TwilioVerifier(TWILIO_TOKEN).verify(TWILIO_URL + "&x=1", TWILIO_PARAMS, signature),
        "mismatch",
    )


def test_twilio_ipv6_host_keeps_its_brackets_when_the_port_is_removed() -> None:
    signature = twilio_signature(TWILIO_TOKEN, "https://[2001:db8::1]/hook", [("a", "b")])
    TwilioVerifier(TWILIO_TOKEN).verify("https://[2001:db8::1]:8443/hook", {"a": "b"}, signature)


@pytest.mark.parametrize("url", ["http://[::1/x", "https://example.test:99999/", "http://h:x/"])
def test_twilio_malformed_url(url: str) -> None:
    refused(lambda: TwilioVerifier(TWILIO_TOKEN).verify(url, {}, "c2ln"), "malformed URL")


@pytest.mark.parametrize("signature", [None, ""])
def test_twilio_missing_signature(signature: str | None) -> None:
    refused(lambda: TwilioVerifier(TWILIO_TOKEN).verify(TWILIO_URL, {}, signature), "missing")


def test_twilio_non_ascii_signature_is_malformed() -> None:
    verifier = TwilioVerifier(TWILIO_TOKEN)
    refused(
        lambda: verifier.verify(TWILIO_URL, TWILIO_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8é"),
        "malformed",
    )


@pytest.mark.parametrize("token", ["", b"12345", None])
def test_twilio_bad_token_is_a_config_error(token: Any) -> None:
    with pytest.raises(ConfigError) as info:
        TwilioVerifier(token)
    assert info.value.field == "auth_token"


class MultiDict(Mapping[str, str]):
    """A form multidict as web frameworks give it: ``[name]`` is one value, ``getlist`` all."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self._pairs = list(pairs)

    def __getitem__(self, name: str) -> str:
        return [v for k, v in self._pairs if k == name][-1]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(k for k, _ in self._pairs))

    def __len__(self) -> int:
        return len({k for k, _ in self._pairs})

    def getlist(self, name: str) -> list[str]:
        return [v for k, v in self._pairs if k == name]


# --- generic HMAC ---------------------------------------------------------------------------

HMAC_SECRET = "gh-webhook-secret-77e1"


def mac(algorithm: str, payload: bytes = BODY, secret: str = HMAC_SECRET) -> bytes:
    return hmac.new(secret.encode(), payload, getattr(hashlib, algorithm)).digest()


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_hmac_hex_base64_and_prefix(algorithm: str) -> None:
    digest = mac(algorithm)
    HmacVerifier(HMAC_SECRET, algorithm=algorithm).verify(BODY, digest.hex())
    HmacVerifier(HMAC_SECRET, algorithm=algorithm).verify(BODY, f"{algorithm}={digest.hex()}")
    HmacVerifier(HMAC_SECRET, algorithm=algorithm).verify(BODY, digest.hex().upper())
    b64 = base64.b64encode(digest).decode()
    HmacVerifier(HMAC_SECRET.encode(), algorithm=algorithm, encoding="base64").verify(BODY, b64)
    HmacVerifier(HMAC_SECRET, algorithm=algorithm, encoding="base64").verify(
        BODY, f"{algorithm}={b64}"
    )


def test_hmac_sha1_prefix_is_refused_even_with_a_correct_sha1_digest() -> None:
    sha1 = mac("sha1").hex()
    refused(lambda: HmacVerifier(HMAC_SECRET).verify(BODY, f"sha1={sha1}"), "prefix", sha1)
    refused(lambda: HmacVerifier(HMAC_SECRET).verify(BODY, sha1), "mismatch", HMAC_SECRET)


def test_hmac_prefix_naming_the_other_sha2_is_refused() -> None:
    sha512 = mac("sha512").hex()
    refused(lambda: HmacVerifier(HMAC_SECRET).verify(BODY, f"sha512={sha512}"), "prefix")
    sha256 = mac("sha256").hex()
    verifier = HmacVerifier(HMAC_SECRET, algorithm="sha512")
    refused(lambda: verifier.verify(BODY, f"sha256={sha256}"), "prefix")


def test_hmac_mismatch_and_malformed() -> None:
    verifier = HmacVerifier(HMAC_SECRET)
    expected = mac("sha256").hex()
    refused(lambda: verifier.verify(BODY + b"x", expected), "mismatch", HMAC_SECRET)
    refused(lambda: verifier.verify(BODY, expected[:-2]), "mismatch")
    refused(lambda: verifier.verify(BODY, "zz" * 32), "malformed")
    refused(lambda: verifier.verify(BODY, "é" * 64), "malformed")
    refused(lambda: verifier.verify(BODY, None), "missing")
    b64 = HmacVerifier(HMAC_SECRET, encoding="base64")
    refused(lambda: b64.verify(BODY, base64.b64encode(mac("sha256")).decode()[:-1]), "malformed")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"algorithm": "sha1"}, "algorithm"),
        ({"algorithm": "md5"}, "algorithm"),
        ({"encoding": "base32"}, "encoding"),
        ({"secret": b""}, "secret"),
    ],
)
def test_hmac_config_errors_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    arguments = {"secret": HMAC_SECRET, **kwargs}
    with pytest.raises(ConfigError) as info:
        HmacVerifier(**arguments)
    assert info.value.field == field


# --- properties -----------------------------------------------------------------------------

# Text with lone surrogates too: a str from a misdecoded request can hold them.
texts = st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=200)
# Header-shaped noise finds the parser's corners faster than plain text does.
header_parts = st.sampled_from(
    ["t", "v1", "v0", "=", ",", " ", "sha256", "sha1", "1700000000", "-1", "ab" * 32, "é"]
)
headers = st.one_of(
    texts,
    st.lists(header_parts, max_size=12).map("".join),
    st.builds(
        lambda t, sigs: f"t={t}," + ",".join(f"v1={s}" for s in sigs),
        st.integers(0, 2 * NOW),
        st.lists(st.binary(min_size=32, max_size=32).map(bytes.hex), max_size=3),
    ),
)


@given(body=st.binary(max_size=300), header=headers, now=st.integers(0, 2 * NOW))
def test_timestamped_verifier_refuses_arbitrary_headers_and_only_that_way(
    body: bytes, header: str, now: int
) -> None:
    refused(lambda: StripeVerifier(SECRET).verify(body, header, now), "", SECRET)


@given(body=st.binary(max_size=300), signature=st.one_of(texts, headers))
@pytest.mark.parametrize("encoding", ["hex", "base64"])
@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_hmac_verifier_refuses_arbitrary_signatures_and_only_that_way(
    algorithm: str, encoding: str, body: bytes, signature: str
) -> None:
    verifier = HmacVerifier(HMAC_SECRET, algorithm=algorithm, encoding=encoding)
    refused(lambda: verifier.verify(body, signature), "", HMAC_SECRET)


urls = st.one_of(
    texts,
    st.builds(
        "{}://{}{}/{}?{}".format,
        st.sampled_from(["http", "https", "ftp", ""]),
        st.sampled_from(["example.test", "[::1]", "[::1", "u:p@h", "h:"]),
        st.sampled_from(["", ":443", ":80", ":0", ":99999", ":x"]),
        texts,
        st.one_of(texts, st.just("bodySHA256=" + TWILIO_BODY_HASH), st.just("bodySHA256=")),
    ),
)
params_strategy = st.one_of(
    texts, st.dictionaries(texts, st.one_of(texts, st.lists(texts, max_size=3)), max_size=4)
)


@given(url=urls, params=params_strategy, signature=st.one_of(texts, headers))
def test_twilio_verifier_refuses_arbitrary_requests_and_only_that_way(
    url: str, params: str | dict[str, str | list[str]], signature: str
) -> None:
    refused(lambda: TwilioVerifier(TWILIO_TOKEN).verify(url, params, signature), "", TWILIO_TOKEN)


@given(
    body=st.binary(max_size=300),
    secret=st.one_of(st.text(min_size=1), st.binary(min_size=1)),
    timestamp=st.integers(0, 2 * NOW),
    data=st.data(),
)
def test_sign_webhook_always_verifies_and_any_byte_change_fails(
    body: bytes, secret: str | bytes, timestamp: int, data: st.DataObject
) -> None:
    header = sign_webhook(body, secret, timestamp)
    verifier = TimestampedHmacVerifier(secret)
    assert verifier.verify(body, header, now=timestamp) == TimestampedSignature(
        timestamp, header.partition(",v1=")[2]
    )
    assume(body)
    index = data.draw(st.integers(0, len(body) - 1))
    replacement = data.draw(st.integers(0, 255).filter(lambda b: b != body[index]))
    changed = body[:index] + bytes([replacement]) + body[index + 1 :]
    refused(
        lambda: TimestampedHmacVerifier(secret).verify(changed, header, now=timestamp),
        "signature mismatch",
    )
