"""Reaching the servers some tests need (PostgreSQL, Redis).

A test that cannot reach its server is skipped with the reason, unless
``CONNECTOR_REQUIRE_SERVICES=1`` (CI, where the servers are started): then it
fails, so a broken service never passes as a skip.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import NoReturn

import pytest

from connector._redaction import redact_text

POSTGRES_DSN = os.environ.get(
    "CONNECTOR_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CONNECTOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


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


@contextmanager
def redis_prefix() -> Iterator[tuple[str, str]]:
    """(url, prefix): a key prefix of its own on a reachable Redis, its keys deleted afterwards.

    Synchronous (redis-py's blocking client), so it serves asyncio tests,
    hypothesis tests and multiprocessing tests alike.
    """
    try:
        import redis
    except ImportError:
        unavailable("redis is not installed (the 'redis' extra)")
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
    except (redis.RedisError, OSError) as error:
        client.close()
        unreachable("Redis", REDIS_URL, error)
    prefix = f"connector_test:{uuid.uuid4().hex}:"
    try:
        yield REDIS_URL, prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class OwnRedis:
    """A redis-server of this test's own, to kill and start again on one port."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), *options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        try:
            for _ in range(100):
                try:
                    client.ping()
                except redis.ConnectionError:
                    time.sleep(0.05)
                else:
                    return
            pytest.fail(f"redis-server on port {self.port} did not answer")
        finally:
            client.close()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
