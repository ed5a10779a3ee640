"""`BulkResult`: what a bulk send returns, the original's ``{sent, failed, errors}``.

A bulk send reports per message instead of raising: one bad recipient must not
hide that the other 999 went out. A failure of the whole call (the provider
unreachable, the breaker open) still raises, as a single send does.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

from . import _formats as check
from ._errors import ConfigError

__all__ = ["BulkFailure", "BulkResult"]

R = TypeVar("R")


class BulkFailure(msgspec.Struct, frozen=True, kw_only=True):
    """Message number ``index`` (0-based, in the order given) was not sent, and why.

    ``status`` is the provider's HTTP status when it gave one.
    """

    index: int
    reason: str
    status: int | None = None

    def __post_init__(self) -> None:
        check.count("index", self.index)
        check.text("reason", self.reason)
        if self.status is not None and not (
            isinstance(self.status, int) and 100 <= self.status <= 599
        ):
            raise ConfigError("status", self.status, "must be an HTTP status 100-599")


class BulkResult(msgspec.Struct, Generic[R], frozen=True, kw_only=True):
    """``sent`` receipts, in the order of the messages that went; ``failed`` errors by index.

    ``sent + failed`` is the number of messages given, and no index fails twice.
    """

    sent: int
    failed: int
    receipts: tuple[R, ...] = ()
    errors: tuple[BulkFailure, ...] = ()

    def __post_init__(self) -> None:
        check.count("sent", self.sent)
        check.count("failed", self.failed)
        if len(self.receipts) != self.sent:
            raise ConfigError("receipts", len(self.receipts), f"must number sent={self.sent}")
        if len(self.errors) != self.failed:
            raise ConfigError("errors", len(self.errors), f"must number failed={self.failed}")
        indexes = [error.index for error in self.errors]
        total = self.sent + self.failed
        if len(set(indexes)) != len(indexes) or any(index >= total for index in indexes):
            raise ConfigError("errors", indexes, f"must name distinct messages below {total}")

    @classmethod
    def of(cls, receipts: tuple[R, ...], errors: tuple[BulkFailure, ...]) -> BulkResult[R]:
        """The result with these receipts and errors, counts filled in."""
        return cls(sent=len(receipts), failed=len(errors), receipts=receipts, errors=errors)
