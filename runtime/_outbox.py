"""The durable outbox's vocabulary: `Deferred`, `OutboxEntry`, `OutboxPolicy`, `Outbox`.

A deferrable request that cannot go out now (breaker open, service stopped,
limiter past the deadline, retries spent) is written to an outbox, and the
runtime's `OutboxDispatcher` delivers it later with the same idempotency key.
An entry must be re-executable from stored data alone after a restart, so what
is stored is the `HttpRequest` as built, never a closure; it is sealed with
the credential cipher (AES-GCM, bound to the entry) when a key is configured,
and shown redacted wherever it is listed. Times in entries are Unix seconds
from the runtime's wall clock: the only clock two processes share.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import msgspec

from . import _validate as check
from ._credential_crypto import SECRET_KEY_ENV, CredentialCipher, Sealed
from ._errors import ConfigError, ConnectorError
from ._http import HttpRequest
from ._idempotency import DEFAULT_IDEMPOTENCY_TTL
from ._redaction import redact, redact_text

__all__ = [
    "COLUMNS",
    "EXPIRED_UNTRIED",
    "DeferReason",
    "Deferred",
    "Outbox",
    "OutboxEntry",
    "OutboxPolicy",
    "OutboxStatus",
    "OutboxUnavailable",
    "check_page",
    "delivering",
    "describe_target",
    "entry_from_row",
    "open_request",
    "redacted_request",
    "seal_request",
]

DeferReason = Literal[
    "requested",  # svc.defer(): written without trying
    "ordered",  # an earlier entry with its order key is still pending
    "circuit_open",
    "rate_limited",
    "overloaded",
    "deadline",
    "failed",  # every attempt failed with a retryable error
    "unavailable",  # the supervisor stopped the service
    "shutting_down",
]
OutboxStatus = Literal["pending", "dead"]

EXPIRED_UNTRIED = "expired before any delivery attempt"  # a dead entry's error, if it had none

# The outbox entry an attempt delivers, for the integration log's link to it.
# Set by the dispatcher around one delivery, read only when an attempt is published.
delivering: ContextVar[str | None] = ContextVar("connector_outbox_delivering", default=None)

_BODY_SHOWN = 4096  # characters of a body shown when an entry is listed


class Deferred(msgspec.Struct, frozen=True, kw_only=True):
    """The receipt for a request written to the outbox instead of sent now.

    ``next_attempt_at`` is the Unix time of its first delivery attempt (later
    if the service's breaker is still open then); ``error`` is what the live
    call failed with, redacted, if it was tried.
    """

    id: str
    service: str
    reason: DeferReason
    idempotency_key: str
    next_attempt_at: float
    error: str | None = None


class OutboxEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One deferred request as the store keeps it.

    ``payload`` is the msgpack of the `HttpRequest`, sealed when ``key_id`` is
    set (see `seal_request`); ``target`` is its method and URL without the
    query, redacted, so a listing needs no key. ``seq`` is the store's order
    of arrival: entries sharing an ``order_key`` (within a service) are
    delivered one at a time in that order (a dead-lettered entry no longer
    holds the later ones back). ``lease_owner`` and ``lease_until`` say which
    runtime is delivering it, until when.
    """

    id: str
    service: str
    tenant_id: str | None
    order_key: str | None
    idempotency_key: str
    target: str
    payload: bytes
    nonce: bytes | None
    key_id: str | None
    reason: DeferReason
    created_at: float
    expires_at: float
    next_attempt_at: float
    seq: int = 0
    status: OutboxStatus = "pending"
    attempts: int = 0
    last_error: str | None = None
    dead_at: float | None = None
    lease_owner: str | None = None
    lease_until: float = 0.0


# The stored fields, in the order the SQL stores select them.
COLUMNS = (
    "id",
    "seq",
    "service",
    "tenant_id",
    "order_key",
    "idempotency_key",
    "target",
    "payload",
    "nonce",
    "key_id",
    "reason",
    "status",
    "attempts",
    "last_error",
    "created_at",
    "expires_at",
    "next_attempt_at",
    "dead_at",
    "lease_owner",
    "lease_until",
)


def entry_from_row(row: Sequence[Any]) -> OutboxEntry:
    return OutboxEntry(**dict(zip(COLUMNS, row, strict=True)))


class OutboxPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the dispatcher redelivers deferred requests.

    ``max_age``: seconds an entry may wait before it is dead-lettered with its
    last error; 24 h by default, the life of an idempotency key at Stripe and
    in the original, after which a redelivery could count as a new operation.
    ``lease``: seconds a claimed entry is reserved for one runtime; a delivery
    is cut off before its lease ends, so two runtimes never send one entry at
    once. ``initial_delay``, ``multiplier`` and ``max_delay``: the backoff
    between delivery rounds of one entry (equal jitter). ``batch_size``:
    entries claimed per round. ``concurrency``: deliveries at once per service,
    once the round's first delivery (its probe) went through.
    ``poll_interval``: how often the store is read for entries other processes
    wrote or whose time came.
    """

    max_age: float = DEFAULT_IDEMPOTENCY_TTL
    lease: float = 60.0
    initial_delay: float = 5.0
    multiplier: float = 2.0
    max_delay: float = 300.0
    batch_size: int = 100
    concurrency: int = 10
    poll_interval: float = 5.0

    def __post_init__(self) -> None:
        check.positive("max_age", self.max_age)
        check.positive("lease", self.lease)
        check.positive("initial_delay", self.initial_delay)
        check.at_least("multiplier", self.multiplier, 1)
        check.at_least("max_delay", self.max_delay, self.initial_delay)
        check.integer("batch_size", self.batch_size, 1)
        check.integer("concurrency", self.concurrency, 1)
        check.positive("poll_interval", self.poll_interval)
        for field in ("max_age", "lease", "max_delay", "poll_interval"):
            if not math.isfinite(getattr(self, field)):
                raise ConfigError(field, getattr(self, field), "must be finite")


class OutboxUnavailable(ConnectorError):
    """The outbox could not store a deferred request: the caller must keep it."""

    reason: str

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(
            f"The outbox could not store a request for service '{service}': {reason}",
            service=service,
            reason=reason,
        )


class Outbox(Protocol):
    """Where deferred requests wait. Every method is atomic on its own.

    `claim` is the heart of it: it leases up to ``limit`` pending entries of
    ``services`` that are due, unleased (or whose lease ended) and not past
    their age, and only the oldest pending entry of each order key, so a key's
    entries go out one at a time in order and two runtimes never hold one
    entry at once. ``reschedule`` and ``dead_letter`` only act for the lease's
    owner; ``delivered`` deletes the entry whoever holds it (it is done).
    """

    cipher: CredentialCipher | None

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def add(self, entry: OutboxEntry) -> OutboxEntry:
        """Store a new entry; returns it with its ``seq``."""
        ...

    async def has_pending(self, service: str, order_key: str) -> bool: ...

    async def claim(
        self, services: Sequence[str], owner: str, now: float, lease_until: float, limit: int
    ) -> builtins.list[OutboxEntry]: ...

    async def release(
        self, entry_ids: Sequence[str], owner: str, next_attempt_at: float | None = None
    ) -> None:
        """Give leased entries back unsent; ``next_attempt_at`` (if given) defers them."""
        ...

    async def reschedule(
        self,
        entry_id: str,
        owner: str,
        *,
        attempts: int,
        next_attempt_at: float,
        last_error: str | None,
    ) -> bool: ...

    async def delivered(self, entry_id: str) -> bool: ...

    async def dead_letter(
        self, entry_id: str, owner: str, *, now: float, attempts: int, last_error: str
    ) -> bool: ...

    async def expire(self, now: float) -> builtins.list[OutboxEntry]:
        """Dead-letter the unleased pending entries past their age; returns them."""
        ...

    async def next_due(self, services: Sequence[str]) -> float | None:
        """The earliest time one of ``services``' claimable entries comes due (or its
        lease ends), None when there is none."""
        ...

    async def entries(
        self,
        *,
        dead: bool = False,
        service: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[OutboxEntry]:
        """Pending (or dead-lettered) entries, oldest first."""
        ...

    async def get(self, entry_id: str) -> OutboxEntry | None: ...

    async def retry(self, entry_id: str, now: float) -> bool:
        """Make an entry due now; a dead one is pending again, with a fresh max age."""
        ...

    async def drop(self, entry_id: str) -> bool: ...

    async def count(self, *, dead: bool = False) -> int: ...


def check_page(limit: int, offset: int) -> None:
    check.integer("limit", limit, 1)
    check.integer("offset", offset, 0)


def describe_target(request: HttpRequest) -> str:
    """``POST https://host/path``: what a listing shows of a request without its key."""
    parts = urlsplit(request.url)
    host = parts.netloc.rpartition("@")[2]  # never the user info
    url = f"{parts.scheme}://{host}{parts.path}" if parts.scheme else parts.path
    return redact_text(f"{request.method} {url}")


def _associated(entry_id: str, service: str) -> tuple[str, str]:
    # The cipher binds to a (service, tenant) pair; here to (outbox of service, entry),
    # so a sealed payload opens only as the entry it was written for.
    return f"outbox {service}", entry_id


def seal_request(
    request: HttpRequest, cipher: CredentialCipher | None, entry_id: str, service: str
) -> tuple[bytes, bytes | None, str | None]:
    """``(payload, nonce, key_id)`` to store for ``request``; plain without a cipher."""
    plaintext = msgspec.msgpack.encode(request)
    if cipher is None:
        return plaintext, None, None
    sealed = cipher.encrypt(plaintext, *_associated(entry_id, service))
    return sealed.ciphertext, sealed.nonce, sealed.key_id


def open_request(entry: OutboxEntry, cipher: CredentialCipher | None) -> HttpRequest:
    """The request ``entry`` stores; `ConfigError` when its key is missing or wrong."""
    payload = entry.payload
    if entry.key_id is not None:
        if cipher is None:
            raise ConfigError(
                SECRET_KEY_ENV,
                None,
                f"outbox entry {entry.id} is encrypted (key id {entry.key_id}): set the key",
            )
        if cipher.key_id != entry.key_id:
            raise ConfigError(
                SECRET_KEY_ENV,
                "***",
                f"outbox entry {entry.id} was encrypted with key id {entry.key_id}, "
                f"this key's id is {cipher.key_id}",
            )
        assert entry.nonce is not None  # stored with the key id
        try:
            payload = cipher.decrypt(
                Sealed(entry.payload, entry.nonce, entry.key_id),
                *_associated(entry.id, entry.service),
            )
        except ConfigError:
            raise ConfigError(
                "outbox entry", entry.id, "fails authentication: it was altered or moved"
            ) from None
    try:
        return msgspec.msgpack.decode(payload, type=HttpRequest)
    except msgspec.DecodeError as error:
        raise ConfigError("outbox entry", entry.id, f"is not a stored request: {error}") from None


def redacted_request(entry: OutboxEntry, cipher: CredentialCipher | None) -> dict[str, Any]:
    """The stored request as a listing shows it: secrets and credentials hidden."""
    request = open_request(entry, cipher)
    content = request.content or b""
    body = content[:_BODY_SHOWN].decode("utf-8", errors="replace") if content else None
    return {
        "method": request.method,
        "url": redact_text(request.url),
        "headers": redact(dict(request.headers)),
        "body": redact_text(body) if body is not None else None,
        "endpoint": request.endpoint,
    }
