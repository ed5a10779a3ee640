"""``connector credentials set|list|rotate-key|delete``: manage stored credentials.

Secret values are never echoed: ``set`` reads each one without echo from the
terminal, or one per line from standard input when it is not a terminal (for
scripts: ``connector credentials set stripe --field api_key < key.txt``).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from datetime import UTC, datetime

import anyio
from rich.console import Console
from rich.table import Table

from ._clock import system_wall_clock
from ._credential_crypto import SECRET_KEY_ENV, generate_key
from ._credentials import AuthMethod, CredentialInfo, Credentials
from ._errors import ConfigError
from ._store_urls import credential_store_from_url

__all__ = ["DEFAULT_CREDENTIAL_STORE", "NEW_KEY_ENV", "add_commands"]

DEFAULT_CREDENTIAL_STORE = "sqlite:///connector-credentials.sqlite3"
NEW_KEY_ENV = "CONNECTOR_NEW_SECRET_KEY"


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    credentials = subparsers.add_parser(
        "credentials",
        help="store, list, rotate or delete credentials (encrypted at rest)",
        description=(
            "Manage credentials per (service, tenant), encrypted with the key in "
            f"${SECRET_KEY_ENV}. Values are never echoed."
        ),
    )
    credentials.add_argument(
        "--store",
        default=os.environ.get("CONNECTOR_CREDENTIAL_STORE", DEFAULT_CREDENTIAL_STORE),
        help="the credential store URL (default: $CONNECTOR_CREDENTIAL_STORE or %(default)s)",
    )
    actions = credentials.add_subparsers(dest="action", metavar="ACTION", required=True)

    put = actions.add_parser(
        "set",
        help="store credentials for a service (and tenant)",
        description="Store credentials; each --field's value is read without echo.",
        epilog="example: connector credentials set twilio --method basic_auth "
        "--field username --field password",
    )
    put.add_argument("service")
    put.add_argument("--tenant", help="the tenant (default: the default tenant)")
    put.add_argument(
        "--method", choices=[m.value for m in AuthMethod], default="api_key", help="auth method"
    )
    put.add_argument(
        "--field", action="append", required=True, help="a secret's name (repeat for several)"
    )
    put.add_argument("--refresh-token", action="store_true", help="also read a refresh token")
    put.add_argument("--expires-at", help="when the credentials expire (ISO time, UTC)")
    put.set_defaults(handler=_set)

    listing = actions.add_parser(
        "list", help="list stored credentials (no secret is shown)", description="List them."
    )
    listing.add_argument("--tenant", help="only this tenant")
    listing.set_defaults(handler=_list)

    rotate = actions.add_parser(
        "rotate-key",
        help="re-encrypt every credential under a new key",
        description=(
            f"Re-encrypt every row under the key in ${NEW_KEY_ENV} (or a generated one "
            f"with --generate, printed once), then set ${SECRET_KEY_ENV} to it."
        ),
    )
    rotate.add_argument("--generate", action="store_true", help="generate the new key")
    rotate.set_defaults(handler=_rotate)

    delete = actions.add_parser("delete", help="delete stored credentials")
    delete.add_argument("service")
    delete.add_argument("--tenant", help="the tenant (default: the default tenant)")
    delete.set_defaults(handler=_delete)


def _read_secret(name: str) -> str:
    if sys.stdin.isatty():
        value = getpass.getpass(f"{name}: ")
    else:
        line = sys.stdin.readline()
        if not line:
            raise ConfigError(name, None, "no value on standard input")
        value = line.rstrip("\r\n")
    if not value:
        raise ConfigError(name, None, "must not be empty")
    return value


def _set(args: argparse.Namespace) -> int:
    data = {name: _read_secret(name) for name in args.field}
    refresh = _read_secret("refresh_token") if args.refresh_token else None
    expires_at = None
    if args.expires_at:
        try:
            moment = datetime.fromisoformat(args.expires_at)
        except ValueError:
            raise ConfigError("--expires-at", args.expires_at, "must be an ISO time") from None
        expires_at = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    credentials = Credentials(
        auth_method=AuthMethod(args.method),
        data=data,
        refresh_token=refresh,
        expires_at=expires_at,
    )

    async def store() -> None:
        async with credential_store_from_url(args.store, clock=system_wall_clock) as target:
            await target.put(args.service, args.tenant, credentials)

    anyio.run(store)
    Console(stderr=True).print(f"stored {args.method} credentials for {args.service}")
    return 0


def _list(args: argparse.Namespace) -> int:
    async def read() -> list[CredentialInfo]:
        async with credential_store_from_url(args.store, clock=system_wall_clock) as source:
            return await source.list(args.tenant)

    table = Table("service", "tenant", "method", "expires (UTC)", "active")
    for info in anyio.run(read):
        expires = (
            datetime.fromtimestamp(info.expires_at, UTC).strftime("%Y-%m-%d %H:%M")
            if info.expires_at is not None
            else "never"
        )
        table.add_row(
            info.service,
            info.tenant_id or "(default)",
            info.auth_method.value,
            expires,
            "yes" if info.is_active else "no",
        )
    Console().print(table)
    return 0


def _rotate(args: argparse.Namespace) -> int:
    new_key = generate_key() if args.generate else os.environ.get(NEW_KEY_ENV)
    if not new_key:
        raise ConfigError(NEW_KEY_ENV, None, "is not set (or pass --generate)")

    async def rotate() -> int:
        async with credential_store_from_url(args.store, clock=system_wall_clock) as store:
            rotate_key = getattr(store, "rotate_key", None)
            if rotate_key is None:
                raise ConfigError("--store", args.store, "this store keeps no encrypted rows")
            count: int = await rotate_key(new_key)
            return count

    count = anyio.run(rotate)
    if args.generate:
        sys.stdout.write(new_key + "\n")  # the one place the new key is shown: it is asked for
    Console(stderr=True).print(f"re-encrypted {count} credentials; now set ${SECRET_KEY_ENV}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    async def delete() -> bool:
        async with credential_store_from_url(args.store, clock=system_wall_clock) as store:
            return await store.delete(args.service, args.tenant)

    if not anyio.run(delete):
        raise ConfigError("service", args.service, "has no stored credentials for that tenant")
    Console(stderr=True).print(f"deleted the credentials of {args.service}")
    return 0
