"""Idempotency keys: one logical operation, one key, however often it is sent."""

from __future__ import annotations

import random
import re
import secrets

import msgspec

from . import _validate as check
from ._errors import ConfigError

__all__ = ["DEFAULT_IDEMPOTENCY_TTL", "IdempotencyKey"]

DEFAULT_IDEMPOTENCY_TTL = 86_400.0  # 24 h, as the original and Stripe's pruning window

_PREFIX = re.compile(r"[A-Za-z0-9-]{1,64}")
_KEY = re.compile(r"(?:([A-Za-z0-9-]{1,64})_)?([0-9a-f]{32})")


class IdempotencyKey(msgspec.Struct, frozen=True, kw_only=True):
    """``prefix_`` + 32 lowercase hex digits, valid for ``ttl`` seconds from ``created_at``.

    ``created_at`` is a Unix time from the caller's wall clock (runtime code
    passes its injected clock), so expiry is as testable as everything else.
    """

    value: str
    created_at: float
    ttl: float = DEFAULT_IDEMPOTENCY_TTL

    def __post_init__(self) -> None:
        if not isinstance(self.value, str) or _KEY.fullmatch(self.value) is None:
            raise ConfigError(
                "idempotency_key", self.value, "must be [prefix_] followed by 32 lowercase hex"
            )
        check.number("created_at", self.created_at)
        check.positive("ttl", self.ttl)

    @classmethod
    def generate(
        cls,
        prefix: str = "",
        ttl: float = DEFAULT_IDEMPOTENCY_TTL,
        *,
        now: float,
        rng: random.Random | None = None,
    ) -> IdempotencyKey:
        """A fresh key; 128 random bits from ``rng`` if given (simulation), else the OS."""
        if prefix and _PREFIX.fullmatch(prefix) is None:
            raise ConfigError("prefix", prefix, "must be 1-64 letters, digits or '-'")
        digits = f"{rng.getrandbits(128):032x}" if rng is not None else secrets.token_hex(16)
        value = f"{prefix}_{digits}" if prefix else digits
        return cls(value=value, created_at=now, ttl=ttl)

    @classmethod
    def from_string(
        cls, value: str, *, created_at: float, ttl: float = DEFAULT_IDEMPOTENCY_TTL
    ) -> IdempotencyKey:
        return cls(value=value, created_at=created_at, ttl=ttl)

    @property
    def prefix(self) -> str:
        match = _KEY.fullmatch(self.value)
        assert match is not None  # checked in __post_init__
        return match.group(1) or ""

    def is_expired(self, now: float) -> bool:
        """True from ``created_at + ttl`` on (the boundary itself is expired)."""
        return now >= self.created_at + self.ttl

    def __str__(self) -> str:
        return self.value
