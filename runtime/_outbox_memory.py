"""`MemoryOutbox`: the outbox in a dict, for tests, the simulator and runs that may lose it.

It keeps the `Outbox` contract to the letter (the SQL stores are checked
against it), but nothing survives the process: use `SqliteOutbox` or
`PostgresOutbox` where a deferred request must outlive a restart.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Self

from msgspec.structs import replace

from ._credential_crypto import CredentialCipher
from ._errors import ConfigError
from ._outbox import EXPIRED_UNTRIED, OutboxEntry, check_page

__all__ = ["MemoryOutbox"]


class MemoryOutbox:
    """An `Outbox` in this process's memory; ``cipher`` seals payloads as the others do."""

    def __init__(self, *, cipher: CredentialCipher | None = None) -> None:
        self.cipher = cipher
        self._entries: dict[str, OutboxEntry] = {}  # in seq order: seq grows with insertion
        self._seq = 0

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def add(self, entry: OutboxEntry) -> OutboxEntry:
        if entry.id in self._entries:
            raise ConfigError("entry.id", entry.id, "is already in the outbox")
        self._seq += 1
        stored = self._entries[entry.id] = replace(entry, seq=self._seq)
        return stored

    async def has_pending(self, service: str, order_key: str) -> bool:
        return any(
            e.status == "pending" and e.service == service and e.order_key == order_key
            for e in self._entries.values()
        )

    def _heads(self, services: Sequence[str]) -> Iterator[OutboxEntry]:
        """Pending entries of ``services`` that no earlier entry of their order key holds back."""
        wanted = set(services)
        seen: set[tuple[str, str]] = set()
        for entry in self._entries.values():
            if entry.status != "pending":
                continue
            if entry.order_key is not None:
                key = (entry.service, entry.order_key)
                if key in seen:
                    continue
                seen.add(key)
            if entry.service in wanted:
                yield entry

    async def claim(
        self, services: Sequence[str], owner: str, now: float, lease_until: float, limit: int
    ) -> builtins.list[OutboxEntry]:
        claimed: list[OutboxEntry] = []
        for entry in self._heads(services):
            if len(claimed) >= limit:
                break
            if entry.next_attempt_at <= now and entry.lease_until <= now < entry.expires_at:
                leased = replace(entry, lease_owner=owner, lease_until=lease_until)
                self._entries[entry.id] = leased
                claimed.append(leased)
        return claimed

    def _owned(self, entry_id: str, owner: str) -> OutboxEntry | None:
        entry = self._entries.get(entry_id)
        if entry is None or entry.status != "pending" or entry.lease_owner != owner:
            return None
        return entry

    async def release(
        self, entry_ids: Sequence[str], owner: str, next_attempt_at: float | None = None
    ) -> None:
        for entry_id in entry_ids:
            entry = self._owned(entry_id, owner)
            if entry is not None:
                self._entries[entry_id] = replace(
                    entry,
                    lease_owner=None,
                    lease_until=0.0,
                    next_attempt_at=entry.next_attempt_at
                    if next_attempt_at is None
                    else next_attempt_at,
                )

    async def reschedule(
        self,
        entry_id: str,
        owner: str,
        *,
        attempts: int,
        next_attempt_at: float,
        last_error: str | None,
    ) -> bool:
        entry = self._owned(entry_id, owner)
        if entry is None:
            return False
        self._entries[entry_id] = replace(
            entry,
            attempts=attempts,
            next_attempt_at=next_attempt_at,
            last_error=last_error,
            lease_owner=None,
            lease_until=0.0,
        )
        return True

    async def delivered(self, entry_id: str) -> bool:
        return self._entries.pop(entry_id, None) is not None

    async def dead_letter(
        self, entry_id: str, owner: str, *, now: float, attempts: int, last_error: str
    ) -> bool:
        entry = self._owned(entry_id, owner)
        if entry is None:
            return False
        self._entries[entry_id] = replace(
            entry,
            status="dead",
            dead_at=now,
            attempts=attempts,
            last_error=last_error,
            lease_owner=None,
            lease_until=0.0,
        )
        return True

    async def expire(self, now: float) -> builtins.list[OutboxEntry]:
        expired: list[OutboxEntry] = []
        for entry in list(self._entries.values()):
            if entry.status == "pending" and entry.expires_at <= now and entry.lease_until <= now:
                dead = replace(
                    entry,
                    status="dead",
                    dead_at=now,
                    last_error=entry.last_error or EXPIRED_UNTRIED,
                    lease_owner=None,
                    lease_until=0.0,
                )
                self._entries[entry.id] = dead
                expired.append(dead)
        return expired

    async def next_due(self, services: Sequence[str]) -> float | None:
        return min(
            (max(e.next_attempt_at, e.lease_until) for e in self._heads(services)), default=None
        )

    async def entries(
        self,
        *,
        dead: bool = False,
        service: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[OutboxEntry]:
        check_page(limit, offset)
        status = "dead" if dead else "pending"
        found = [
            e
            for e in self._entries.values()
            if e.status == status and (service is None or e.service == service)
        ]
        return found[offset : offset + limit]

    async def get(self, entry_id: str) -> OutboxEntry | None:
        return self._entries.get(entry_id)

    async def retry(self, entry_id: str, now: float) -> bool:
        entry = self._entries.get(entry_id)
        if entry is None:
            return False
        if entry.status == "pending":
            self._entries[entry_id] = replace(entry, next_attempt_at=now)
        else:
            self._entries[entry_id] = replace(
                entry,
                status="pending",
                dead_at=None,
                next_attempt_at=now,
                expires_at=now + (entry.expires_at - entry.created_at),
            )
        return True

    async def drop(self, entry_id: str) -> bool:
        return self._entries.pop(entry_id, None) is not None

    async def count(self, *, dead: bool = False) -> int:
        status = "dead" if dead else "pending"
        return sum(1 for e in self._entries.values() if e.status == status)
