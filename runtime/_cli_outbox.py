"""``connector outbox list|retry|drop``: look after deferred requests in any outbox store.

The store is named by URL (``sqlite:///connector.sqlite3``, ``postgresql://...``),
by default the outbox's own variable, else the integration log's: the outbox
lives where the log does. Listings never show a secret: the request is shown
redacted, and only with ``--json`` (decrypted with `CONNECTOR_SECRET_KEY`
when it was sealed).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
import msgspec
from rich.console import Console
from rich.table import Table

from ._clock import system_wall_clock
from ._errors import ConfigError, ConnectorError
from ._outbox import Outbox, OutboxEntry, redacted_request
from ._outbox_memory import MemoryOutbox
from ._outbox_postgres import PostgresOutbox
from ._outbox_sqlite import SqliteOutbox
from ._redaction import redact_text
from ._store_urls import sqlite_path

__all__ = ["DEFAULT_OUTBOX_STORE", "add_commands", "outbox_from_url"]

DEFAULT_OUTBOX_STORE = "sqlite:///connector.sqlite3"
_ERROR_SHOWN = 80  # characters of an entry's last error in the table

T = TypeVar("T")


def outbox_from_url(url: str, *, field: str = "outbox") -> Outbox:
    """The outbox a URL names: ``sqlite:///file.db``, ``postgresql://...`` or ``memory://``."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(field, redact_text(str(url)), "must be a URL such as sqlite:///file.db")
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        return SqliteOutbox(sqlite_path(field, url))
    if scheme in ("postgresql", "postgres"):
        return PostgresOutbox(url)
    if scheme == "memory":
        return MemoryOutbox()
    raise ConfigError(
        field, redact_text(url), "names no outbox (use sqlite:///, postgresql:// or memory://)"
    )


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    outbox = subparsers.add_parser(
        "outbox",
        help="list, retry or drop deferred requests",
        description="Look after the requests waiting in the outbox, or dead-lettered there.",
        epilog="example: connector outbox list --dead --service sendgrid",
    )
    commands = outbox.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)
    default = os.environ.get(
        "CONNECTOR_OUTBOX_STORE", os.environ.get("CONNECTOR_LOG_STORE", DEFAULT_OUTBOX_STORE)
    )
    store_help = (
        "the outbox store URL (default: $CONNECTOR_OUTBOX_STORE, else $CONNECTOR_LOG_STORE, "
        f"else {DEFAULT_OUTBOX_STORE})"
    )

    listing = commands.add_parser(
        "list", help="pending entries, oldest first", description="List outbox entries."
    )
    listing.add_argument("--store", default=default, help=store_help)
    listing.add_argument("--dead", action="store_true", help="dead-lettered entries instead")
    listing.add_argument("--service", help="only this service")
    listing.add_argument("--limit", type=int, default=100, help="at most this many")
    listing.add_argument("--offset", type=int, default=0, help="skip this many first")
    listing.add_argument(
        "--json", action="store_true", help="one JSON array, with each request redacted"
    )
    listing.set_defaults(handler=_list)

    retry = commands.add_parser(
        "retry",
        help="deliver an entry as soon as possible (a dead one gets a fresh max age)",
        description="Make an entry due now; a dead-lettered one is pending again.",
    )
    retry.add_argument("id", help="the entry's id")
    retry.add_argument("--store", default=default, help=store_help)
    retry.set_defaults(handler=_retry)

    drop = commands.add_parser(
        "drop", help="delete an entry for good", description="Delete an outbox entry."
    )
    drop.add_argument("id", help="the entry's id")
    drop.add_argument("--store", default=default, help=store_help)
    drop.set_defaults(handler=_drop)


def _with_store(url: str, work: Callable[[Outbox], Awaitable[T]]) -> T:
    async def run() -> T:
        store = outbox_from_url(url, field="--store")
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return anyio.run(run)


def _time(moment: float | None) -> str:
    if moment is None:
        return ""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _shown(entry: OutboxEntry, store: Outbox) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.structs.asdict(entry)
    for field in ("payload", "nonce"):
        del data[field]
    data["encrypted"] = entry.key_id is not None
    try:
        data["request"] = redacted_request(entry, store.cipher)
    except ConfigError as error:
        data["request"] = None
        data["request_error"] = error.reason
    return data


def _list(args: argparse.Namespace) -> int:
    async def read(store: Outbox) -> tuple[list[OutboxEntry], list[dict[str, Any]]]:
        entries = await store.entries(
            dead=args.dead, service=args.service, limit=args.limit, offset=args.offset
        )
        # Decrypted (for --json) while the store, and its key, are at hand.
        return entries, [_shown(entry, store) for entry in entries] if args.json else []

    entries, shown = _with_store(args.store, read)
    if args.json:
        sys.stdout.write(msgspec.json.encode(shown).decode() + "\n")
        return 0
    when = "dead-lettered (UTC)" if args.dead else "next attempt (UTC)"
    table = Table("id", "service", "tenant", "request", "reason", "tries", when, "last error")
    for entry in entries:
        error = entry.last_error or ""
        table.add_row(
            entry.id,
            entry.service,
            entry.tenant_id or "",
            entry.target,
            entry.reason,
            str(entry.attempts),
            _time(entry.dead_at if args.dead else entry.next_attempt_at),
            error if len(error) <= _ERROR_SHOWN else error[: _ERROR_SHOWN - 1] + "…",
        )
    Console().print(table)
    return 0


def _retry(args: argparse.Namespace) -> int:
    now = system_wall_clock()

    async def retry(store: Outbox) -> bool:
        return await store.retry(args.id, now)

    if not _with_store(args.store, retry):
        raise ConnectorError(f"no outbox entry {args.id!r}")
    sys.stdout.write(f"outbox entry {args.id} is due now\n")
    return 0


def _drop(args: argparse.Namespace) -> int:
    async def drop(store: Outbox) -> bool:
        return await store.drop(args.id)

    if not _with_store(args.store, drop):
        raise ConnectorError(f"no outbox entry {args.id!r}")
    sys.stdout.write(f"outbox entry {args.id} dropped\n")
    return 0
