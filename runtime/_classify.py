"""Which outcomes are the provider's failures, which the caller's own, which our bugs.

Only provider failures count against the breaker and may be retried. A caller's
own error (a 4xx, a declined card, an exception type the service registered as
such) means the provider answered: it counts as a success for the breaker and
is raised as it is. An exception nobody classified is a crash: a bug or a broken
invariant, handled by the supervisor, never silently retried.
"""

from __future__ import annotations

import enum
import socket

from ._errors import ConnectorError, VendorError
from ._http import TransportFailure

__all__ = ["DEFAULT_FAILURES", "ExceptionClassifier", "Verdict"]

# OSError covers ConnectionError and TimeoutError (and our Timeout).
DEFAULT_FAILURES: tuple[type[BaseException], ...] = (OSError, TransportFailure)
_NOT_SENT: tuple[type[BaseException], ...] = (ConnectionRefusedError, socket.gaierror)


class Verdict(enum.IntEnum):
    SUCCESS = 0
    CALLER_ERROR = 1
    FAILURE = 2  # the provider may have seen the request
    FAILURE_NOT_SENT = 3  # it certainly did not: safe to retry anything
    CRASH = 4


class ExceptionClassifier:
    """Sorts an exception raised by an attempt into a `Verdict`."""

    __slots__ = ("caller_errors", "failures")

    def __init__(
        self,
        failures: tuple[type[BaseException], ...] = (),
        caller_errors: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.failures = DEFAULT_FAILURES + failures
        self.caller_errors: tuple[type[BaseException], ...] = (VendorError, *caller_errors)

    def classify(self, error: BaseException) -> Verdict:
        # Caller errors first: a registered type wins over a broad failure type.
        if isinstance(error, self.caller_errors):
            return Verdict.CALLER_ERROR
        if isinstance(error, TransportFailure):
            return Verdict.FAILURE if error.sent else Verdict.FAILURE_NOT_SENT
        if isinstance(error, _NOT_SENT):
            return Verdict.FAILURE_NOT_SENT
        if isinstance(error, self.failures):
            return Verdict.FAILURE
        if isinstance(error, ConnectorError):
            # Our own rejections raised by a nested service: pass them through.
            return Verdict.CALLER_ERROR
        return Verdict.CRASH
