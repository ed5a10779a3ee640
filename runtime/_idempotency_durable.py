"""What the durable idempotency stores share: the result codec and the claim protocol.

A durable store keeps each key's result where other processes (and this one,
restarted) find it, and runs the operation once across all of them: a runner
*claims* the key with a lease, and everyone else polls until the result is
stored or the lease runs out (its runner died). Within one process, calls
with one key also share a single flight in memory, so only one of them polls.

Results cross the store as msgpack (msgspec), so they must be msgspec-encodable
and come back equal: None, bools, numbers, str, bytes, lists and str-keyed
dicts of those, and instances of the msgspec Struct types named in ``types``
(`HttpResponse` always). A result that would come back different (a tuple, a
set, an unregistered class) is not stored: the operation has run, its caller
gets a `ConfigError` naming the type, and the key stays free. A failure of the
store itself (`SharedStateError` from Redis, ``sqlite3.Error``) reaches the caller.

Time is the store's injected wall clock, Unix seconds: the protocol's ``now``
is the caller's loop clock, which means nothing to another process, so these
stores take ``clock`` instead. A failure is not stored (as in memory); a
waiter in another process then runs the operation itself, since the error
cannot reach it.
"""

from __future__ import annotations

import abc
import contextlib
import enum
import random
import secrets
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Any, TypeVar

import anyio
import msgspec

from . import _validate as check
from ._clock import WallClock
from ._errors import ConfigError
from ._http import HttpResponse

__all__ = ["Claim", "DurableIdempotencyStore", "ResultCodec", "encode_key"]

T = TypeVar("T")


def encode_key(key: Hashable) -> str:
    """The key as JSON text: a str or a tuple of str, int and None (the runtime's keys)."""
    try:
        return msgspec.json.encode(key).decode()
    except TypeError:
        raise ConfigError(
            "idempotency key", key, "a durable store needs a str or a tuple of str/int/None"
        ) from None


class ResultCodec:
    """Results as msgpack ``[tag, value]``; ``tag`` names a registered Struct type, or is ''."""

    def __init__(self, types: Iterable[type[msgspec.Struct]] = ()) -> None:
        self._types: dict[str, type[msgspec.Struct]] = {}
        for cls in (HttpResponse, *types):
            if not (isinstance(cls, type) and issubclass(cls, msgspec.Struct)):
                raise ConfigError("types", cls, "must be msgspec Struct types")
            self._types[f"{cls.__module__}.{cls.__qualname__}"] = cls
        self._tags = {cls: tag for tag, cls in self._types.items()}

    def encode(self, result: Any) -> bytes:
        tag = self._tags.get(type(result), "")
        try:
            data = msgspec.msgpack.encode([tag, result])
        except TypeError as error:
            raise self._unstorable(result, str(error)) from None
        if self.decode(data) != result:
            raise self._unstorable(result, "it would come back as a different value")
        return data

    def decode(self, data: bytes) -> Any:
        tag, value = msgspec.msgpack.decode(data)
        return value if not tag else msgspec.convert(value, self._types[tag])

    @staticmethod
    def _unstorable(result: Any, reason: str) -> ConfigError:
        return ConfigError(
            "result",
            type(result).__name__,
            f"a durable idempotency store cannot keep it ({reason}); return builtins or a "
            "msgspec Struct registered with types=",
        )


class Claim(enum.Enum):
    MINE = "mine"  # the lease is ours: run the operation
    BUSY = "busy"  # another runner holds the lease: wait
    DONE = "done"  # a result is stored


class _Flight:
    __slots__ = ("done", "error", "result", "taken_over")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.taken_over = False


class DurableIdempotencyStore(abc.ABC):
    """The `IdempotencyStore` protocol over a backend's four primitives.

    ``lease`` must outlast the longest operation (its deadline), or a second
    runner may start; a runner that dies blocks its key for at most one lease.
    ``poll_interval`` is how often a waiter in another process looks again.
    """

    def __init__(
        self,
        *,
        clock: WallClock,
        lease: float,
        poll_interval: float,
        types: Iterable[type[msgspec.Struct]],
        rng: random.Random | None,
    ) -> None:
        check.positive("lease", lease)
        check.positive("poll_interval", poll_interval)
        self._clock = clock
        self._lease = float(lease)
        self._poll = float(poll_interval)
        self._codec = ResultCodec(types)
        self._rng = rng
        self._flights: dict[str, _Flight] = {}

    # -- the backend --------------------------------------------------------

    @abc.abstractmethod
    async def _claim(self, name: str, token: str, now: float) -> tuple[Claim, bytes | None]:
        """Take the lease if nothing live is stored; a stored result is returned with DONE."""

    @abc.abstractmethod
    async def _complete(self, name: str, token: str, data: bytes, expires_at: float) -> None:
        """Store the result (unless another runner stored one first) and drop our lease."""

    @abc.abstractmethod
    async def _abandon(self, name: str, token: str) -> None:
        """Drop our lease, storing nothing."""

    # -- the protocol -------------------------------------------------------

    async def run(
        self, key: Hashable, ttl: float, now: float, operation: Callable[[], Awaitable[T]]
    ) -> T:
        """``operation``'s result, run once per ``key`` within ``ttl`` across processes.

        ``now`` (the caller's loop clock) is not used: expiry is on ``clock``.
        """
        check.positive("ttl", ttl)
        name = encode_key(key)
        while (flight := self._flights.get(name)) is not None:
            await flight.done.wait()
            if flight.taken_over:
                continue  # its runner was cancelled: try again, perhaps as the runner
            if flight.error is not None:
                raise flight.error
            shared: T = flight.result
            return shared
        flight = self._flights[name] = _Flight()
        try:
            result: T = await self._run_once(name, ttl, operation)
        except Exception as error:
            flight.error = error
            raise
        except BaseException:
            flight.taken_over = True
            raise
        else:
            flight.result = result
            return result
        finally:
            del self._flights[name]
            flight.done.set()

    async def _run_once(self, name: str, ttl: float, operation: Callable[[], Awaitable[T]]) -> T:
        rng = self._rng
        token = f"{rng.getrandbits(128):032x}" if rng is not None else secrets.token_hex(16)
        while True:
            # Shielded: a claim that succeeded must reach the `try` below, which
            # gives the lease back on cancellation; lost here, it would block the key.
            with anyio.CancelScope(shield=True):
                claim, data = await self._claim(name, token, self._clock())
            if claim is Claim.DONE:
                assert data is not None
                stored: T = self._codec.decode(data)
                return stored
            if claim is Claim.MINE:
                break
            await anyio.sleep(self._poll)
        started = self._clock()
        try:
            result = await operation()
            encoded = self._codec.encode(result)
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                # Best effort: if the store fails here too, the lease runs out by itself,
                # and the operation's own error is the one the caller must see.
                await self._abandon(name, token)
            raise
        with anyio.CancelScope(shield=True):
            await self._complete(name, token, encoded, started + ttl)
        return result
