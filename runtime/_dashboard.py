"""`Dashboard`: a live terminal view of services' policy state while traffic runs.

A few times a second it reads each watched service's cell (breaker state,
limiter tokens, calls in flight, mailbox depth); outcomes come from the
runtime's events through a listener that only adds to counters, so watching
never slows a call. The counters follow the integration log's statuses, so
`Dashboard.records` is the number of records the log writer was handed. On a
terminal the view is redrawn in place (rich's `Live`); elsewhere (a pipe, CI)
a plain progress line is printed now and then, and each note as it comes.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Final

import anyio
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ._breaker import BreakerState
from ._events import (
    ActorRestarted,
    AttemptFinished,
    BreakerTransition,
    CallRejected,
    Event,
    LogBufferFull,
    RejectReason,
    RetryScheduled,
    ServiceStopped,
)

if TYPE_CHECKING:
    from ._cell import Cell
    from ._runtime import Runtime

__all__ = ["Dashboard", "ServiceTally"]

# Reasons a call was not sent: always shown, then the rarer ones once they happen.
_REASONS: Final[tuple[tuple[RejectReason, str], ...]] = (
    ("circuit_open", "circuit open"),
    ("rate_limited", "rate limited"),
    ("overloaded", "mailbox full"),
    ("deadline", "deadline"),
)
_RARE_REASONS: Final[tuple[tuple[RejectReason, str], ...]] = (
    ("budget_exhausted", "retry budget"),
    ("shutting_down", "shutting down"),
    ("unavailable", "service stopped"),
)
_BREAKER_STYLES: Final = {
    BreakerState.CLOSED: "green",
    BreakerState.HALF_OPEN: "yellow",
    BreakerState.OPEN: "bold red",
    BreakerState.FORCED_OPEN: "bold red",
    BreakerState.DISABLED: "dim",
}


class ServiceTally:
    """One service's events added up; attempts are split as the log's statuses are."""

    __slots__ = ("failed", "rate_limited", "rejected", "retries", "successes", "timeouts")

    def __init__(self) -> None:
        self.successes = 0
        self.failed = 0
        self.timeouts = 0
        self.rate_limited = 0  # attempts the provider answered 429
        self.retries = 0
        self.rejected: Counter[RejectReason] = Counter()

    @property
    def attempts(self) -> int:
        return self.successes + self.failed + self.timeouts + self.rate_limited

    @property
    def records(self) -> int:
        """Attempts and rejections: one integration log record each."""
        return self.attempts + self.rejected.total()


class Dashboard:
    """Watches ``services`` of a running ``runtime``; use it as a context manager.

    The state shown is each service's unkeyed cell: a service keyed by tenant
    or endpoint shows its counts, with ``-`` for its state.

    Inside the ``with`` block it counts the runtime's events; `run` shows them.
    `note` adds a line to the recent-events list (breaker transitions, restarts
    and stops are noted by themselves). ``title`` heads the view; ``duration``
    (seconds), when given, is shown as how long the run will last.
    """

    def __init__(
        self,
        runtime: Runtime,
        services: Sequence[str],
        *,
        title: str,
        duration: float | None = None,
        notes_shown: int = 5,
    ) -> None:
        self.runtime = runtime
        self.services = tuple(services)
        self.title = title
        self.duration = duration
        self.started = runtime.clock()
        self.tallies: dict[str, ServiceTally] = {}
        self._notes: deque[tuple[float, str]] = deque(maxlen=max(notes_shown, 1))
        self._noted = 0  # notes ever added; plain output prints the ones not printed yet
        self._stop_listening: Callable[[], None] | None = None

    def __enter__(self) -> Dashboard:
        self._stop_listening = self.runtime.events.listen(self.on_event)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None

    # -- counting ---------------------------------------------------------------

    def tally(self, service: str) -> ServiceTally:
        tally = self.tallies.get(service)
        if tally is None:
            tally = self.tallies[service] = ServiceTally()
        return tally

    @property
    def records(self) -> int:
        """Attempts and rejections seen in every service, watched or not."""
        return sum(tally.records for tally in self.tallies.values())

    def on_event(self, event: Event) -> None:
        """The listener: runs on the caller's path, so it only counts (and notes)."""
        if isinstance(event, AttemptFinished):
            tally = self.tally(event.service)
            # The log writer's mapping from an attempt to its record's status.
            if event.status == 429:
                tally.rate_limited += 1
            elif event.outcome == "success":
                tally.successes += 1
            elif event.outcome == "timeout":
                tally.timeouts += 1
            else:
                tally.failed += 1
        elif isinstance(event, CallRejected):
            self.tally(event.service).rejected[event.reason] += 1
        elif isinstance(event, RetryScheduled):
            self.tally(event.service).retries += 1
        elif isinstance(event, BreakerTransition):
            self.note(f"{event.service}: breaker {event.previous} -> {event.current}", event.at)
        elif isinstance(event, ActorRestarted):
            self.note(f"{event.service}: restarted ({event.reason})", event.at)
        elif isinstance(event, ServiceStopped):
            self.note(f"{event.service}: stopped ({event.reason})", event.at)
        elif isinstance(event, LogBufferFull):
            self.note(f"log buffer full: {event.dropped} records dropped", event.at)

    def note(self, text: str, at: float | None = None) -> None:
        """Add ``text`` to the recent events, stamped ``at`` (the runtime's clock) or now."""
        moment = at if at is not None else self.runtime.clock()
        self._notes.append((moment - self.started, text))
        self._noted += 1

    # -- showing ----------------------------------------------------------------

    async def run(self, console: Console, done: anyio.Event, *, live: bool) -> None:
        """Show the view until ``done`` is set, then once more, final.

        ``live`` redraws in place (for a terminal); otherwise notes are printed
        as they come and a progress line every 2 s.
        """
        if live:
            with Live(
                self.render(),
                console=console,
                auto_refresh=False,  # redrawn from this task: state is read on the loop only
                redirect_stdout=False,
                redirect_stderr=False,
            ) as view:
                while not done.is_set():
                    with anyio.move_on_after(0.25):
                        await done.wait()
                    view.update(self.render(), refresh=True)
            return
        printed = 0
        next_line = self.runtime.clock() + 2.0
        while True:
            with anyio.move_on_after(0.25):
                await done.wait()
            fresh = min(self._noted - printed, len(self._notes))
            for elapsed, text in list(self._notes)[len(self._notes) - fresh :]:
                console.print(
                    f"{elapsed:6.1f} s  {text}", markup=False, highlight=False, soft_wrap=True
                )
            printed = self._noted
            if done.is_set() or self.runtime.clock() >= next_line:
                console.print(self.status_line(), markup=False, highlight=False, soft_wrap=True)
                next_line += 2.0
            if done.is_set():
                return

    def _elapsed(self) -> str:
        elapsed = self.runtime.clock() - self.started
        if self.duration is None:
            return f"{elapsed:.1f} s"
        return f"{min(elapsed, self.duration):.1f} s of {self.duration:g} s"

    def status_line(self) -> str:
        """One line: each watched service's breaker and counts so far."""
        parts = []
        for name in self.services:
            cell = self._cell(name)
            breaker = _breaker_state(cell)
            tally = self.tally(name)
            parts.append(
                f"{name} {breaker.value if breaker is not None else 'no breaker'}"
                f" ok {tally.successes} failed {tally.failed} timeout {tally.timeouts}"
                f" 429 {tally.rate_limited} not sent {tally.rejected.total()}"
            )
        return f"{self._elapsed():>14}  " + " | ".join(parts)

    def render(self) -> RenderableType:
        """The view: one column per watched service, then the recent events."""
        now = self.runtime.clock()
        table = Table(
            title=f"{self.title}  {self._elapsed()}",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            padding=(0, 1),
        )
        table.add_column("", style="bold")
        for name in self.services:
            table.add_column(name, justify="right")
        cells = [self._cell(name) for name in self.services]
        tallies = [self.tally(name) for name in self.services]
        table.add_row("breaker", *(_breaker_text(cell) for cell in cells))
        table.add_row("limiter tokens", *(_tokens(cell, now) for cell in cells))
        table.add_row("in flight", *(_in_flight(cell) for cell in cells))
        table.add_row("mailbox", *(_mailbox(cell) for cell in cells), end_section=True)
        table.add_row("ok", *(str(tally.successes) for tally in tallies))
        table.add_row("failed", *(str(tally.failed) for tally in tallies))
        table.add_row("timed out", *(str(tally.timeouts) for tally in tallies))
        table.add_row("answered 429", *(str(tally.rate_limited) for tally in tallies))
        table.add_row("retries", *(str(tally.retries) for tally in tallies), end_section=True)
        shown = list(_REASONS) + [
            (reason, label)
            for reason, label in _RARE_REASONS
            if any(tally.rejected[reason] for tally in tallies)
        ]
        for reason, label in shown:
            table.add_row(f"not sent: {label}", *(str(tally.rejected[reason]) for tally in tallies))
        lines = [f"{elapsed:6.1f} s  {text}" for elapsed, text in self._notes]
        recent = Text.assemble(
            ("recent events\n", "bold"),
            "\n".join(lines) if lines else ("  none yet", "dim"),
        )
        return Group(table, recent)

    def _cell(self, name: str) -> Cell | None:
        """The service's unkeyed cell; None before its first call, or for a missing service."""
        if name not in self.runtime.services:
            return None
        return self.runtime.actor(name).cells.get(None)


def _breaker_state(cell: Cell | None) -> BreakerState | None:
    if cell is None:
        return BreakerState.CLOSED  # no call yet: a breaker starts closed
    return cell.breaker.current if cell.breaker is not None else None


def _breaker_text(cell: Cell | None) -> Text:
    state = _breaker_state(cell)
    if state is None:
        return Text("off", style="dim")
    return Text(state.value, style=_BREAKER_STYLES[state])


def _tokens(cell: Cell | None, now: float) -> Text:
    if cell is None:
        return Text("-", style="dim")
    if now < cell.paused_until:
        return Text(f"paused {cell.paused_until - now:.1f} s", style="yellow")
    limiter = cell.limiter
    if limiter is None:
        return Text("no limit", style="dim")
    capacity = limiter.limit.capacity
    available = limiter.available(now)
    style = "red" if available < 1 else "yellow" if available < capacity / 4 else ""
    return Text(f"{available:.1f} / {capacity:g}", style=style)


def _in_flight(cell: Cell | None) -> str:
    if cell is None:
        return "-"
    return f"{cell.in_flight} / {cell.actor.policy.max_concurrency}"


def _mailbox(cell: Cell | None) -> Text:
    if cell is None:
        return Text("-", style="dim")
    depth, size = cell.queued, cell.actor.policy.mailbox
    return Text(f"{depth} / {size}", style="red" if size and depth >= size else "")
