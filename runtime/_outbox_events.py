"""Events of the durable outbox: a request deferred, delivered, rescheduled, dead-lettered.

They go out on the runtime's `EventBus` like every other event (``at`` is the
loop clock; times named ``..._at`` inside are Unix seconds, as the outbox
stores them). Errors in them are redacted.
"""

from __future__ import annotations

from typing import Literal

from ._events import Event
from ._outbox import DeferReason

__all__ = ["CallDeferred", "OutboxDeadLettered", "OutboxDelivered", "OutboxRetryScheduled"]


class CallDeferred(Event, frozen=True, kw_only=True):
    """A request was written to the outbox instead of being sent now."""

    outbox_id: str
    reason: DeferReason
    idempotency_key: str
    next_attempt_at: float
    tenant_id: str | None = None
    order_key: str | None = None
    error: str | None = None


class OutboxDelivered(Event, frozen=True, kw_only=True):
    """An entry reached its provider (``status`` is its answer) and left the outbox."""

    outbox_id: str
    attempts: int
    status: int
    tenant_id: str | None = None


class OutboxRetryScheduled(Event, frozen=True, kw_only=True):
    """Delivery round ``attempts`` of an entry failed; the next comes at ``next_attempt_at``."""

    outbox_id: str
    attempts: int
    next_attempt_at: float
    error: str
    tenant_id: str | None = None


class OutboxDeadLettered(Event, frozen=True, kw_only=True):
    """An entry will not be delivered: it ``expired`` (past its max age) or the provider
    ``rejected`` it (the caller's own error, a 4xx); ``error`` is its last error."""

    outbox_id: str
    cause: Literal["expired", "rejected"]
    attempts: int
    error: str
    tenant_id: str | None = None
