"""`SqliteStateStore`: passivated cells' breaker and limiter state in one SQLite file.

One row per (service, key) holding the `CellState` as JSON. The instants in a
`CellState` are on the saving process's loop clock, which another process (or
this one, restarted) does not share, so they are stored on the wall clock:
`CellStateCodec` moves them by the loop-to-wall offset on the way in and back
by the loading process's offset on the way out. `RedisStateStore` uses it too.
"""

from __future__ import annotations

import math
import os
import sqlite3
from types import TracebackType
from typing import Self

import msgspec

from . import _validate as check
from ._breaker import CircuitBreakerState
from ._clock import Clock, WallClock, loop_clock, system_wall_clock
from ._ratelimit import LimiterState
from ._sqlite import SqliteDatabase
from ._state_store import CellState

__all__ = ["CellStateCodec", "SqliteStateStore", "shift_cell_state"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cell_states (
    service TEXT NOT NULL,
    key TEXT,
    state TEXT NOT NULL,
    saved_at REAL NOT NULL,
    UNIQUE (service, key)
);
-- UNIQUE lets NULLs repeat, so a service's unkeyed cell needs an index of its own.
CREATE UNIQUE INDEX IF NOT EXISTS cell_states_unkeyed ON cell_states (service)
    WHERE key IS NULL;
CREATE INDEX IF NOT EXISTS cell_states_saved_at ON cell_states (saved_at);
"""


def _plus(value: float | None, delta: float) -> float | None:
    return None if value is None else value + delta


def shift_cell_state(state: CellState, delta: float) -> CellState:
    """``state`` with every instant moved by ``delta`` seconds (counts and tokens kept)."""
    breaker = state.breaker
    if breaker is not None:
        seconds = round(delta)  # the time window's buckets are whole seconds
        breaker = msgspec.structs.replace(
            breaker,
            opened_at=_plus(breaker.opened_at, delta),
            buckets=[(second + seconds, c, f, w) for second, c, f, w in breaker.buckets],
        )
    limiter = state.limiter
    if limiter is not None:
        # GCRA's level is an instant (its TAT) and GCRA never sets `updated`; a
        # token bucket's level is tokens, and while its `updated` is None it reads
        # full whatever its level says, so moving the level then is harmless.
        level = limiter.level
        limiter = LimiterState(
            level=_plus(level, delta) if limiter.updated is None else level,
            updated=_plus(limiter.updated, delta),
            paused_until=_plus(limiter.paused_until, delta),
        )
    return CellState(breaker=breaker, limiter=limiter, paused_until=state.paused_until + delta)


class _Stored(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A `CellState` as stored: JSON has no infinity, so "never paused" is null."""

    breaker: CircuitBreakerState | None = None
    limiter: LimiterState | None = None
    paused_until: float | None = None


class CellStateCodec:
    """`CellState` to JSON with its instants on the wall clock, and back.

    ``clock`` is the clock the states are on; by default the running event
    loop's (call it inside that loop), as the runtime's.
    """

    def __init__(
        self, wall_clock: WallClock = system_wall_clock, clock: Clock | None = None
    ) -> None:
        self._wall_clock = wall_clock
        self._clock = clock
        self._decoder = msgspec.json.Decoder(_Stored)

    def _offset(self) -> float:
        clock = self._clock if self._clock is not None else loop_clock()
        return self._wall_clock() - clock()

    def encode(self, state: CellState) -> bytes:
        wall = shift_cell_state(state, self._offset())
        paused = wall.paused_until if math.isfinite(wall.paused_until) else None
        return msgspec.json.encode(
            _Stored(breaker=wall.breaker, limiter=wall.limiter, paused_until=paused)
        )

    def decode(self, data: bytes | str) -> CellState:
        stored = self._decoder.decode(data)
        wall = CellState(
            breaker=stored.breaker,
            limiter=stored.limiter,
            paused_until=-math.inf if stored.paused_until is None else stored.paused_until,
        )
        return shift_cell_state(wall, -self._offset())


class SqliteStateStore:
    """A `StateStore` in the SQLite file at ``path``; ``async with`` closes it.

    ``clock`` is the runtime's loop clock (default: the running loop's) and
    ``wall_clock`` the Unix time the states are stored on.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        wall_clock: WallClock = system_wall_clock,
        clock: Clock | None = None,
    ) -> None:
        self._wall_clock = wall_clock
        self._codec = CellStateCodec(wall_clock, clock)
        self._db = SqliteDatabase(path, _SCHEMA, owner=type(self).__name__)

    @property
    def path(self) -> str:
        return self._db.path

    async def load(self, service: str, key: str | None) -> CellState | None:
        def load(connection: sqlite3.Connection) -> str | None:
            row = connection.execute(
                "SELECT state FROM cell_states WHERE service = ? AND key IS ?", (service, key)
            ).fetchone()
            return None if row is None else str(row[0])

        data = await self._db.run(load)
        return None if data is None else self._codec.decode(data)

    async def save(self, service: str, key: str | None, state: CellState) -> None:
        data = self._codec.encode(state).decode()
        saved_at = self._wall_clock()

        def save(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT OR REPLACE INTO cell_states (service, key, state, saved_at) "
                "VALUES (?, ?, ?, ?)",
                (service, key, data, saved_at),
            )

        await self._db.run(save)

    async def purge(self, older_than: float) -> int:
        """Delete states saved more than ``older_than`` seconds ago; returns how many."""
        check.non_negative("older_than", older_than)
        cutoff = self._wall_clock() - older_than

        def purge(connection: sqlite3.Connection) -> int:
            return connection.execute(
                "DELETE FROM cell_states WHERE saved_at < ?", (cutoff,)
            ).rowcount

        return await self._db.run(purge)

    async def close(self) -> None:
        await self._db.close()

    async def __aenter__(self) -> Self:
        await self._db.connection()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
