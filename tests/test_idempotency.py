"""IdempotencyKey: format, round trip, validation, expiry and seeded generation."""

from __future__ import annotations

import math
import random
import re

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector import ConfigError, IdempotencyKey

PREFIXES = st.from_regex(r"\A[A-Za-z0-9-]{1,64}\Z")


@given(prefix=PREFIXES, seed=st.integers(0, 2**64))
def test_generated_key_format(prefix: str, seed: int) -> None:
    key = IdempotencyKey.generate(prefix, now=1000.0, rng=random.Random(seed))
    assert re.fullmatch(rf"{re.escape(prefix)}_[0-9a-f]{{32}}", key.value)
    assert key.prefix == prefix
    assert str(key) == key.value
    assert key.created_at == 1000.0
    assert key.ttl == 86_400.0  # 24 h, as the original


def test_without_a_prefix_it_is_32_hex() -> None:
    key = IdempotencyKey.generate(now=0.0)
    assert re.fullmatch(r"[0-9a-f]{32}", key.value)
    assert key.prefix == ""


def test_os_randomness_without_an_rng() -> None:
    assert IdempotencyKey.generate(now=0.0) != IdempotencyKey.generate(now=0.0)


@given(seed=st.integers(0, 2**64), prefix=st.sampled_from(["", "pay", "order-7"]))
def test_same_seed_same_key(seed: int, prefix: str) -> None:
    first = IdempotencyKey.generate(prefix, now=5.0, rng=random.Random(seed))
    second = IdempotencyKey.generate(prefix, now=5.0, rng=random.Random(seed))
    assert first == second
    other = IdempotencyKey.generate(prefix, now=5.0, rng=random.Random(seed + 1))
    assert other.value != first.value


@given(
    prefix=st.sampled_from(["", "pay"]),
    seed=st.integers(0, 2**32),
    created_at=st.floats(0, 2e9),
    ttl=st.floats(1e-3, 1e7),
)
def test_from_string_round_trip(prefix: str, seed: int, created_at: float, ttl: float) -> None:
    key = IdempotencyKey.generate(prefix, ttl, now=created_at, rng=random.Random(seed))
    again = IdempotencyKey.from_string(str(key), created_at=created_at, ttl=ttl)
    assert again == key
    assert msgspec.json.decode(msgspec.json.encode(key), type=IdempotencyKey) == key


@pytest.mark.parametrize(
    "value",
    [
        "",
        "abc",
        "0" * 31,
        "0" * 33,
        "A" * 32,  # upper-case hex is not the canonical form
        "g" * 32,
        "_" + "0" * 32,
        "a_b_" + "0" * 32,  # a prefix has no underscore
        "x" * 65 + "_" + "0" * 32,
        "pay " + "0" * 32,
        "pay_" + "0" * 32 + "\n",
    ],
)
def test_malformed_strings_are_refused(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        IdempotencyKey.from_string(value, created_at=0.0)
    assert caught.value.field == "idempotency_key"
    assert caught.value.value == value
    assert repr(value) in str(caught.value)


@pytest.mark.parametrize("prefix", ["a b", "a_b", "x" * 65, "é"])
def test_malformed_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ConfigError, match="prefix") as caught:
        IdempotencyKey.generate(prefix, now=0.0)
    assert caught.value.value == prefix


@given(created_at=st.floats(0, 2e9), ttl=st.floats(1e-3, 1e7))
def test_expires_at_created_at_plus_ttl(created_at: float, ttl: float) -> None:
    key = IdempotencyKey.generate(now=created_at, ttl=ttl, rng=random.Random(0))
    deadline = created_at + ttl
    assert not key.is_expired(created_at)
    assert not key.is_expired(math.nextafter(deadline, -math.inf))
    assert key.is_expired(deadline)  # the boundary itself is expired
    assert key.is_expired(deadline + 1)
