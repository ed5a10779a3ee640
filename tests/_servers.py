"""Reaching the servers some tests need (PostgreSQL; Redis later).

A test that cannot reach its server is skipped with the reason, unless
``CONNECTOR_REQUIRE_SERVICES=1`` (CI, where the servers are started): then it
fails, so a broken service never passes as a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import NoReturn

import pytest

from connector._redaction import redact_text

POSTGRES_DSN = os.environ.get(
    "CONNECTOR_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)


def unavailable(reason: str) -> NoReturn:
    """Skip (or, when services are required, fail) the current test, saying why."""
    if os.environ.get("CONNECTOR_REQUIRE_SERVICES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def unreachable(service: str, address: str, error: BaseException) -> NoReturn:
    # The address may carry a password (a DSN's user info): never print it.
    unavailable(f"{service} not reachable at {redact_text(address)}: {error!r}")


@asynccontextmanager
async def postgres_schema() -> AsyncIterator[tuple[str, str]]:
    """(dsn, schema): a fresh schema of its own, dropped afterwards, so runs never clash."""
    try:
        import asyncpg
    except ImportError:
        unavailable("asyncpg is not installed (the 'postgres' extra)")
    try:
        connection = await asyncpg.connect(POSTGRES_DSN, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        unreachable("PostgreSQL", POSTGRES_DSN, error)
    schema = f"connector_test_{uuid.uuid4().hex}"
    try:
        await connection.execute(f"CREATE SCHEMA {schema}")
        yield POSTGRES_DSN, schema
    finally:
        await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await connection.close()
