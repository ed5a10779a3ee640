"""The ``connector demo`` scenario: real traffic through the real runtime, against fake vendors.

`serve_vendors` serves `FakeSendGrid`, `FakeTwilio` and `FakeStripe` over
loopback HTTP; `run_demo` wires the real adapters to them through a `Runtime`
that logs every attempt to SQLite, sends a few calls a second to each (as
three tenants, drawn from a seeded ``random.Random``) and breaks things on cue:

- at 20 % of the run SendGrid answers 503 to everything for a while: the
  breaker opens, probes, reopens, and closes once SendGrid is back;
- at 45 % Stripe throttles (429 with ``Retry-After: 1``): the service goes
  quiet for that second, refusing new charges at once (its limiter rejects
  rather than waits), and retries the throttled ones, keyed, once it is over;
- at 60 % Twilio stalls two answers past the 1 s timeout, then a campaign of
  24 messages at once overflows its bulkhead and 6-deep mailbox;
- all along, a few cards are declined and a few recipients unsubscribed.

So the log gets every status: success, failed, timeout, rate_limited,
circuit_open and rejected. When the time is up, or on SIGINT/SIGTERM, traffic
stops, the calls in flight finish (each has a 3 s deadline), the runtime
closes, which flushes the log, and the summary is read back from the log.
Needs the ``testing`` extra (starlette, uvicorn) for the fake servers.
"""

from __future__ import annotations

import functools
import importlib.util
import random
import signal
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, NamedTuple

import anyio
import msgspec
from anyio.abc import TaskGroup
from rich import box
from rich.console import Console
from rich.table import Table

from ._breaker import Breaker
from ._credential_manager import CredentialManager
from ._credentials import AuthMethod, Credentials
from ._credstore_memory import MemoryCredentialStore
from ._dashboard import Dashboard
from ._email import EmailMessage
from ._errors import ConfigError, ConnectorError
from ._logrecord import LogFilters, LogMetrics, LogStatus
from ._logstore import MAX_QUERY_LIMIT, LogStore
from ._logstore_sqlite import SqliteLogStore
from ._payments import ChargeRequest, Money
from ._ratelimit import RateLimit
from ._retry import DEFAULT_RETRYABLE_STATUSES, Retry
from ._runtime import Runtime
from ._sms import SmsMessage
from .testing import FakeSendGrid, FakeStripe, FakeTwilio, serve_asgi
from .testing._fake_twilio import FAKE_AUTH_TOKEN

__all__ = [
    "DEFAULT_DURATION",
    "DEFAULT_LOG",
    "DEFAULT_SEED",
    "DEMO_SECRETS",
    "MAX_DURATION",
    "MIN_DURATION",
    "SERVICES",
    "DemoResult",
    "DemoSettings",
    "Vendors",
    "run_demo",
    "serve_vendors",
]

DEFAULT_DURATION: Final = 20.0
DEFAULT_SEED: Final = 7
DEFAULT_LOG: Final = "connector-demo.sqlite3"
MIN_DURATION: Final = 3.0  # the timeline needs room for an outage and a recovery
MAX_DURATION: Final = 3600.0
SERVICES: Final = ("sendgrid", "twilio", "stripe")
TENANTS: Final = ("acme", "globex", "initech")

# Keys the fakes accept. Made up, but handled as secrets: none may reach the log.
SENDGRID_KEYS: Final = {tenant: f"SG.demo-{tenant}-7f3c9a2e41b8" for tenant in TENANTS}
STRIPE_KEY: Final = "sk_test_demo51Nx0connector0fake0key"
DEMO_SECRETS: Final = (*SENDGRID_KEYS.values(), STRIPE_KEY, FAKE_AUTH_TOKEN)

SENDER: Final = "shop@example.com"
SMS_SENDER: Final = "+15005550006"
UNSUBSCRIBED: Final = "+14155550100"  # FakeTwilio refuses it (Twilio error 21610)
DECLINED_CARD: Final = "pm_card_chargeDeclined"

CALL_DEADLINE: Final = 3.0  # seconds a call may take, retries and waits included
RATES: Final = {"sendgrid": 6.0, "twilio": 3.0, "stripe": 4.0}  # calls a second, Poisson
CAMPAIGN: Final = 24  # messages Twilio is sent at once


class DemoSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What ``connector demo`` was asked for: seconds of traffic, the seed, the log file."""

    duration: float = DEFAULT_DURATION
    seed: int = DEFAULT_SEED
    log: str = DEFAULT_LOG

    def __post_init__(self) -> None:
        duration = self.duration
        if isinstance(duration, bool) or not isinstance(duration, int | float):
            raise ConfigError("duration", duration, "must be a number of seconds")
        if not MIN_DURATION <= duration <= MAX_DURATION:
            raise ConfigError(
                "duration", duration, f"must be {MIN_DURATION:g} to {MAX_DURATION:g} seconds"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError("seed", self.seed, "must be an integer")
        if not isinstance(self.log, str) or not self.log:
            raise ConfigError("log", self.log, "must be a file path")
        parent = Path(self.log).parent
        if not parent.is_dir():
            raise ConfigError("log", self.log, f"its directory {str(parent)!r} does not exist")

    @property
    def open_duration(self) -> float:
        """How long a breaker stays open: short, so a recovery fits in the run."""
        return min(3.0, max(1.0, self.duration / 10))

    @property
    def outage(self) -> tuple[float, float]:
        """When SendGrid fails, in seconds from the start: long enough for its breaker to
        reopen once, over by the middle of the run."""
        start = 0.2 * self.duration
        return start, start + min(max(2.5, 0.2 * self.duration), 0.3 * self.duration)


class Vendors(NamedTuple):
    """The fake vendors and the base URLs they are served at."""

    sendgrid: FakeSendGrid
    sendgrid_url: str
    twilio: FakeTwilio
    twilio_url: str
    stripe: FakeStripe
    stripe_url: str


class DemoResult(msgspec.Struct, frozen=True, kw_only=True):
    """How the run ended: ``records`` is what the runtime reported (attempts and
    rejections), ``logged`` what the log holds for the run; ``signal`` stopped it, or None."""

    records: int
    logged: int
    signal: int | None

    @property
    def exit_code(self) -> int:
        """128 + the signal when one stopped the run (130 for Ctrl-C), 1 when records
        went missing from the log, else 0."""
        if self.signal is not None:
            return 128 + self.signal
        return 0 if self.logged == self.records else 1


def _require_fake_servers() -> None:
    missing = [name for name in ("starlette", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            "demo",
            ", ".join(missing),
            "the fake vendor servers need the testing extra: "
            "pip install 'nexus-connector[testing]'",
        )


@contextmanager
def serve_vendors(seed: int) -> Iterator[Vendors]:
    """Serve the three fake vendors on free loopback ports until the block ends."""
    _require_fake_servers()
    sendgrid = FakeSendGrid(SENDGRID_KEYS.values())
    twilio = FakeTwilio()
    twilio.reject(UNSUBSCRIBED)
    stripe = FakeStripe(STRIPE_KEY, rng=random.Random(f"{seed}:stripe-ids"))
    with (
        serve_asgi(sendgrid.app) as sendgrid_url,
        serve_asgi(twilio.app) as twilio_url,
        serve_asgi(stripe.app) as stripe_url,
    ):
        yield Vendors(sendgrid, sendgrid_url, twilio, twilio_url, stripe, stripe_url)


async def _credentials(vendors: Vendors, wall_clock: Callable[[], float]) -> CredentialManager:
    store = MemoryCredentialStore()
    for tenant in TENANTS:
        await store.put(
            "sendgrid",
            tenant,
            Credentials(auth_method=AuthMethod.BEARER_TOKEN, data={"token": SENDGRID_KEYS[tenant]}),
        )
        await store.put("twilio", tenant, vendors.twilio.credentials())
        await store.put(
            "stripe",
            tenant,
            Credentials(auth_method=AuthMethod.BEARER_TOKEN, data={"token": STRIPE_KEY}),
        )
    return CredentialManager(store, {}, clock=wall_clock)


class _Scenario:
    """The adapters, the traffic and the timeline of one run."""

    def __init__(
        self,
        runtime: Runtime,
        vendors: Vendors,
        credentials: CredentialManager,
        settings: DemoSettings,
        board: Dashboard,
    ) -> None:
        # Imported here: the core package does not depend on the adapters.
        from connector.adapters import (  # noqa: PLC0415
            SendGridEmail,
            StripePaymentGateway,
            TwilioSms,
        )

        self.runtime = runtime
        self.vendors = vendors
        self.settings = settings
        self.board = board
        self.calls: Counter[str] = Counter()
        self.succeeded: Counter[str] = Counter()
        seed = settings.seed
        self._rngs = {name: random.Random(f"{seed}:{name}") for name in SERVICES}
        self._orders = 0
        breaker = Breaker(failure_threshold=3, open_duration=settings.open_duration)
        retry = Retry(attempts=3, initial_delay=0.2, max_delay=1.0, deadline=CALL_DEADLINE)
        self.email = SendGridEmail(
            runtime,
            credentials=credentials,
            base_url=vendors.sendgrid_url,
            sender=SENDER,
            breaker=breaker,
            rate_limit=RateLimit.per_second(20),
            retry=retry,
            timeout=2.0,
            max_concurrency=8,
            mailbox=20,
        )
        self.sms = TwilioSms(
            runtime,
            credentials=credentials,
            account_sid=vendors.twilio.account_sid,
            sender=SMS_SENDER,
            base_url=vendors.twilio_url,
            lookup_base_url=vendors.twilio_url,
            breaker=breaker,
            rate_limit=RateLimit.per_second(5),
            retry=retry,
            timeout=1.0,
            max_concurrency=4,
            mailbox=6,
        )
        self.payments = StripePaymentGateway(
            runtime,
            credentials=credentials,
            base_url=vendors.stripe_url,
            breaker=breaker,
            rate_limit=RateLimit.per_second(8, mode="reject"),
            retry=msgspec.structs.replace(
                retry, retryable_statuses=DEFAULT_RETRYABLE_STATUSES | {409}
            ),
            timeout=2.0,
            max_concurrency=8,
            mailbox=20,
        )

    async def play(self, console: Console, interrupt: _Interrupt, *, live: bool) -> None:
        """Traffic and faults until the time is up or ``interrupt``; then the calls in
        flight finish, each within its deadline, while the dashboard keeps showing."""
        board = self.board
        finished = anyio.Event()
        async with anyio.create_task_group() as view:
            view.start_soon(functools.partial(board.run, console, finished, live=live))
            async with anyio.create_task_group() as calls:
                async with anyio.create_task_group() as traffic:
                    for service in SERVICES:
                        traffic.start_soon(self.traffic, calls, service)
                    traffic.start_soon(self.timeline, calls)
                    with anyio.move_on_after(self.settings.duration):
                        await interrupt.event.wait()
                    traffic.cancel_scope.cancel()
                if interrupt.signal is not None:
                    board.note(
                        f"{signal.Signals(interrupt.signal).name}: traffic stopped, calls in "
                        f"flight finish (at most {CALL_DEADLINE:g} s)"
                    )
            finished.set()

    # -- calls ------------------------------------------------------------------

    async def _call(self, service: str, send: Callable[[], Awaitable[object]]) -> None:
        """One caller: every call gets exactly one reply, a result or a typed error."""
        self.calls[service] += 1
        try:
            await send()
        except ConfigError:
            raise  # a bug in the demo, not an outcome to count
        except ConnectorError:
            return
        self.succeeded[service] += 1

    def _email(self) -> Callable[[], Awaitable[object]]:
        rng = self._rngs["sendgrid"]
        message = EmailMessage(
            to=[f"customer{rng.randrange(1000):03d}@example.com"],
            subject="Your order has shipped",
            text="It is on its way.",
        )
        return functools.partial(
            self.email.send_transactional_email, message, tenant_id=rng.choice(TENANTS)
        )

    def _sms(self, tenant: str | None = None) -> Callable[[], Awaitable[object]]:
        rng = self._rngs["twilio"]
        to = UNSUBSCRIBED if rng.random() < 0.05 else f"+1415555{rng.randrange(200, 10_000):04d}"
        message = SmsMessage(to=to, body=f"Your code is {rng.randrange(10**6):06d}")
        return functools.partial(self.sms.send, message, tenant_id=tenant or rng.choice(TENANTS))

    def _charge(self) -> Callable[[], Awaitable[object]]:
        rng = self._rngs["stripe"]
        self._orders += 1
        card = DECLINED_CARD if rng.random() < 0.08 else "pm_card_visa"
        request = ChargeRequest(
            amount=Money(rng.randrange(500, 25_000), "USD"), payment_method=card
        )
        return functools.partial(
            self.payments.charge,
            request,
            idempotency_key=f"order-{self._orders:05d}",
            tenant_id=rng.choice(TENANTS),
        )

    async def traffic(self, calls: TaskGroup, service: str) -> None:
        """Calls to ``service`` at Poisson arrivals, each in its own task, until cancelled."""
        rng = self._rngs[service]
        make = {"sendgrid": self._email, "twilio": self._sms, "stripe": self._charge}[service]
        while True:
            await anyio.sleep(rng.expovariate(RATES[service]))
            calls.start_soon(self._call, service, make())

    # -- the timeline -----------------------------------------------------------

    async def _at(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, self.board.started + seconds - self.runtime.clock()))

    async def timeline(self, calls: TaskGroup) -> None:
        """The faults, on cue (see the module docstring); runs while traffic does."""
        duration = self.settings.duration
        vendors = self.vendors
        outage_start, outage_end = self.settings.outage
        events: list[tuple[float, str, Callable[[], None]]] = [
            (
                outage_start,
                "SendGrid goes down: every request answers 503",
                functools.partial(vendors.sendgrid.fail_next, 1_000_000, 503),
            ),
            # The fake counts failures rather than timing them: clearing them ends the outage.
            (outage_end, "SendGrid is back", vendors.sendgrid.reset),
            (
                0.45 * duration,
                "Stripe throttles: 429 with Retry-After: 1",
                functools.partial(vendors.stripe.throttle, 2, "1"),
            ),
            (
                0.6 * duration,
                "Twilio stalls 2 answers past the 1 s timeout",
                functools.partial(vendors.twilio.timeout_after_processing, 2, 5.0),
            ),
            (
                0.62 * duration,
                f"a campaign sends {CAMPAIGN} texts to Twilio at once",
                functools.partial(self._campaign, calls),
            ),
        ]
        for moment, text, act in sorted(events, key=lambda event: event[0]):
            await self._at(moment)
            self.board.note(text)
            act()

    def _campaign(self, calls: TaskGroup) -> None:
        for _ in range(CAMPAIGN):
            calls.start_soon(self._call, "twilio", self._sms("globex"))


class _Interrupt:
    """Set by the first SIGINT or SIGTERM: the run stops gracefully; later ones change nothing."""

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.signal: int | None = None

    async def watch(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if self.signal is None:
                    self.signal = int(signum)
                    self.event.set()


async def run_demo(
    vendors: Vendors, settings: DemoSettings, console: Console, *, live: bool
) -> DemoResult:
    """Run the scenario against ``vendors``; show it on ``console`` (``live``: redrawn in
    place), then print the summary read back from the log."""
    interrupt = _Interrupt()
    async with anyio.create_task_group() as watcher:
        if sys.platform != "win32":  # no signal receiver there: Ctrl-C raises KeyboardInterrupt
            watcher.start_soon(interrupt.watch)
        result = await _run(vendors, settings, console, interrupt, live=live)
        watcher.cancel_scope.cancel()
    return result


async def _run(
    vendors: Vendors, settings: DemoSettings, console: Console, interrupt: _Interrupt, *, live: bool
) -> DemoResult:
    console.print(
        f"Fake SendGrid, Twilio and Stripe are serving on 127.0.0.1. {settings.duration:g} s of "
        f"traffic, seed {settings.seed}, logging every attempt to {settings.log}. "
        "Ctrl-C stops early.",
        highlight=False,
        soft_wrap=True,
    )
    async with SqliteLogStore(settings.log) as store:
        runtime = Runtime(
            rng=random.Random(f"{settings.seed}:runtime"), log_store=store, shutdown_timeout=5.0
        )
        since = datetime.fromtimestamp(runtime.wall_clock(), UTC)
        async with runtime:
            credentials = await _credentials(vendors, runtime.wall_clock)
            title = f"connector demo (seed {settings.seed})"
            with Dashboard(runtime, SERVICES, title=title, duration=settings.duration) as board:
                scenario = _Scenario(runtime, vendors, credentials, settings, board)
                await scenario.play(console, interrupt, live=live)
            await runtime.aclose()  # flushes the log writer
        counts, metrics = await _read_back(store, since)
    logged = sum(count.total() for count in counts.values())
    result = DemoResult(records=board.records, logged=logged, signal=interrupt.signal)
    console.print(_summary(scenario, counts, metrics, settings.log))
    console.print(
        f"{result.records} attempts and rejections logged to {settings.log}"
        + ("" if logged == result.records else f", but the log holds {logged}"),
        highlight=False,
        soft_wrap=True,
    )
    url = f"sqlite:///{settings.log}"
    console.print(
        f"Look closer: connector logs --store {url} --status circuit_open\n"
        f"             connector metrics stripe --store {url}",
        highlight=False,
        soft_wrap=True,
        markup=False,
    )
    return result


async def _read_back(
    store: LogStore, since: datetime
) -> tuple[dict[str, Counter[LogStatus]], dict[str, LogMetrics]]:
    """The run's records counted by service and status, and each demo service's metrics."""
    counts: dict[str, Counter[LogStatus]] = {}
    offset = 0
    while True:  # nothing is written any more, so pages do not shift
        page = await store.query(LogFilters(date_from=since), limit=MAX_QUERY_LIMIT, offset=offset)
        for record in page:
            counts.setdefault(record.service_name, Counter())[record.status] += 1
        if len(page) < MAX_QUERY_LIMIT:
            break
        offset += len(page)
    metrics = {name: await store.metrics(name, since, None) for name in SERVICES}
    return counts, metrics


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _summary(
    scenario: _Scenario,
    counts: dict[str, Counter[LogStatus]],
    metrics: dict[str, LogMetrics],
    path: str,
) -> Table:
    table = Table(
        title=f"summary, from the log in {path}", title_justify="left", box=box.SIMPLE_HEAD
    )
    table.add_column("", style="bold")
    for name in SERVICES:
        table.add_column(name, justify="right")
    table.add_row("calls made", *(str(scenario.calls[name]) for name in SERVICES))
    table.add_row(
        "calls succeeded", *(str(scenario.succeeded[name]) for name in SERVICES), end_section=True
    )
    for status in LogStatus:
        table.add_row(
            status.value, *(str(counts.get(name, Counter())[status]) for name in SERVICES)
        )
    table.add_row(
        "records",
        *(str(counts.get(name, Counter()).total()) for name in SERVICES),
        end_section=True,
    )
    rows: list[tuple[str, Callable[[LogMetrics], Any]]] = [
        (
            "success rate",
            lambda m: "-" if m.success_rate is None else f"{m.success_rate:.1f} %",
        ),
        ("p50 latency", lambda m: _ms(m.p50_duration_ms)),
        ("p95 latency", lambda m: _ms(m.p95_duration_ms)),
        ("p99 latency", lambda m: _ms(m.p99_duration_ms)),
    ]
    for label, show in rows:
        table.add_row(label, *(show(metrics[name]) for name in SERVICES))
    return table
