"""Stores named by URL, as the config file and the command line name them.

``sqlite:///relative.db`` and ``sqlite:////absolute/path.db`` (SQLAlchemy's
spelling), ``memory://``, ``postgresql://user@host/db`` (logs), and
``redis://host:6379/0`` (state). A URL that names no store this kind has is a
`ConfigError` naming the field, with any password in it hidden.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from ._credentials import CredentialStore
from ._credstore_memory import MemoryCredentialStore
from ._credstore_sqlite import SqliteCredentialStore
from ._errors import ConfigError
from ._logstore import LogStore
from ._logstore_memory import MemoryLogStore
from ._logstore_postgres import PostgresLogStore
from ._logstore_sqlite import SqliteLogStore
from ._redaction import redact_text
from ._sqlite_state_store import SqliteStateStore
from ._state_store import MemoryStateStore, StateStore

__all__ = ["credential_store_from_url", "log_store_from_url", "sqlite_path", "state_store_from_url"]


def _scheme(field: str, url: str) -> str:
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(field, redact_text(str(url)), "must be a URL such as sqlite:///file.db")
    return urlsplit(url).scheme.lower()


def sqlite_path(field: str, url: str) -> str:
    """The file a ``sqlite:///`` URL names (three slashes: relative, four: absolute)."""
    path = url.split("://", 1)[1]
    if not path.startswith("/") or len(path) < 2:
        raise ConfigError(field, url, "a SQLite URL is sqlite:///relative.db or sqlite:////abs.db")
    return path[1:]


def _unknown(field: str, url: str, kinds: str) -> ConfigError:
    return ConfigError(field, redact_text(url), f"names no store of this kind (use {kinds})")


def log_store_from_url(url: str, *, field: str = "log_store") -> LogStore:
    scheme = _scheme(field, url)
    if scheme == "sqlite":
        return SqliteLogStore(sqlite_path(field, url))
    if scheme == "memory":
        return MemoryLogStore()
    if scheme in ("postgresql", "postgres"):
        return PostgresLogStore(url)
    raise _unknown(field, url, "sqlite:///, postgresql:// or memory://")


def credential_store_from_url(
    url: str, *, clock: Callable[[], float], field: str = "credential_store"
) -> CredentialStore:
    scheme = _scheme(field, url)
    if scheme == "sqlite":
        return SqliteCredentialStore(sqlite_path(field, url), clock=clock)
    if scheme == "memory":
        return MemoryCredentialStore()
    raise _unknown(field, url, "sqlite:/// or memory://")


def state_store_from_url(url: str, *, field: str = "state_store") -> StateStore:
    scheme = _scheme(field, url)
    if scheme == "sqlite":
        return SqliteStateStore(sqlite_path(field, url))
    if scheme == "memory":
        return MemoryStateStore()
    if scheme in ("redis", "rediss"):
        from ._redis_state_store import RedisStateStore  # noqa: PLC0415 - redis is optional

        return RedisStateStore.from_url(url)
    raise _unknown(field, url, "sqlite:///, redis:// or memory://")
