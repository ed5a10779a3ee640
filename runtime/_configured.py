"""`ConfiguredRuntime`: a `Runtime` wired from ``connector.toml``.

``async with Runtime.from_config("connector.toml") as app`` opens the stores
the file names, builds the runtime on them, reads each service's credentials
(from the environment, or the credential store), builds its adapter, and
starts it; ``app.services["stripe"]`` is then the `StripePaymentGateway`.
Leaving the block stops the runtime (flushing its logs), then closes the
stores. Credentials read from the environment are the application's: kept in
memory, never written to the credential store, and used for every tenant.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

import msgspec

from ._auth import Auth
from ._clock import WallClock, system_wall_clock
from ._config import (
    DEFAULT_METHODS,
    ConnectorConfig,
    CredentialsRef,
    EnvRef,
    HttpServiceConfig,
    MailgunConfig,
    PayPalConfig,
    SendGridConfig,
    ServiceConfig,
    StoreKind,
    StripeConfig,
    TwilioConfig,
    adapter_of,
    load_config,
    store_url_error,
)
from ._credential_crypto import SECRET_KEY_ENV
from ._credential_manager import CredentialManager, Refresher
from ._credentials import Credentials, CredentialStore
from ._credstore_memory import MemoryCredentialStore
from ._credstore_sqlite import SqliteCredentialStore
from ._errors import ConfigError
from ._http_service import HttpService
from ._idempotency_sqlite import SqliteIdempotencyStore
from ._idempotency_store import IdempotencyStore, MemoryIdempotencyStore
from ._logstore import LogStore
from ._redaction import is_secret_key
from ._runtime import Runtime
from ._shared_state import FallbackSharedState, MemorySharedState, SharedPolicyState
from ._state_store import StateStore
from ._store_urls import (
    credential_store_from_url,
    log_store_from_url,
    sqlite_path,
    state_store_from_url,
)
from .adapters import (
    MAILGUN_URL,
    PAYPAL_LIVE_URL,
    SENDGRID_URL,
    MailgunEmail,
    PayPalPaymentGateway,
    PayPalTokenRefresher,
    SendGridEmail,
    StripePaymentGateway,
    TwilioSms,
    paypal_credentials,
)
from .adapters._mailgun import REGIONS
from .adapters._stripe import DEFAULT_STRIPE_URL
from .adapters._twilio import TWILIO_API_URL

__all__ = [
    "ConfiguredRuntime",
    "base_url_of",
    "credential_managers",
    "credential_store_of",
    "idempotency_store_of",
    "log_store_of",
    "shared_state_of",
    "state_store_of",
    "store_url",
]

T = TypeVar("T")

_ADAPTERS: dict[type[ServiceConfig], Callable[..., Any]] = {
    SendGridConfig: SendGridEmail,
    MailgunConfig: MailgunEmail,
    TwilioConfig: TwilioSms,
    StripeConfig: StripePaymentGateway,
    PayPalConfig: PayPalPaymentGateway,
}
# Fields of every service table that are not the adapter's own settings.
_COMMON = frozenset({"key_by", "credentials", "policy", "health"})


class ConfiguredRuntime:
    """A `Runtime` and its services, wired from a `ConnectorConfig` (see the module docstring).

    ``environ`` is where credentials and store URLs named by ``env`` are read
    (default: `os.environ`). ``rng`` replaces the one ``runtime.seed`` makes;
    ``wall_clock`` stamps logs and credential expiries. A store given here
    (``log_store``, ``state_store``, ``idempotency``, ``credential_store``)
    replaces the file's and stays the caller's to open and close.
    """

    def __init__(
        self,
        config: ConnectorConfig,
        *,
        environ: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
        wall_clock: WallClock = system_wall_clock,
        log_store: LogStore | None = None,
        state_store: StateStore | None = None,
        idempotency: IdempotencyStore | None = None,
        credential_store: CredentialStore | None = None,
    ) -> None:
        if not isinstance(config, ConnectorConfig):
            raise ConfigError("config", type(config).__name__, "must be a ConnectorConfig")
        if rng is None and config.runtime.seed is not None:
            rng = random.Random(config.runtime.seed)
        self.config = config
        self.services: dict[str, Any] = {}
        self._environ = os.environ if environ is None else environ
        self._rng = rng
        self._wall_clock = wall_clock
        self._log_store = log_store
        self._state_store = state_store
        self._idempotency = idempotency
        self._credential_store = credential_store
        self._runtime: Runtime | None = None
        self._stack: AsyncExitStack | None = None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **options: Any) -> ConfiguredRuntime:
        """`load_config` then wire: a bad file raises `ConfigFileError` here, not on entry."""
        return cls(load_config(path), **options)

    def __repr__(self) -> str:
        return f"<ConfiguredRuntime {self.config.file!r} services={sorted(self.config.services)}>"

    @property
    def runtime(self) -> Runtime:
        """The running `Runtime` (inside ``async with``)."""
        if self._runtime is None:
            raise RuntimeError("the configured runtime is not running: use `async with`")
        return self._runtime

    def service(self, name: str, kind: type[T]) -> T:
        """The service ``name`` as a ``kind`` (``app.service("stripe", StripePaymentGateway)``)."""
        found = self.services.get(name)
        if found is None:
            raise ConfigError("service", name, f"is not in {self.config.file}")
        if not isinstance(found, kind):
            raise ConfigError("service", name, f"is a {type(found).__name__}, not {kind.__name__}")
        return found

    async def __aenter__(self) -> Self:
        if self._stack is not None or self._runtime is not None:
            raise RuntimeError("a ConfiguredRuntime can be entered once")
        config = self.config
        async with AsyncExitStack() as stack:
            environ, wall_clock = self._environ, self._wall_clock
            # Not `given or opened`: an empty store may be falsy (it has a length).
            log_store = self._log_store
            if log_store is None:
                log_store = await _opened(stack, log_store_of(config, environ))
            state_store = self._state_store
            if state_store is None:
                state_store = await _opened(stack, state_store_of(config, environ))
            idempotency = self._idempotency
            if idempotency is None:
                idempotency = await _opened(
                    stack, idempotency_store_of(config, environ, wall_clock)
                )
            credential_store = self._credential_store
            if credential_store is None:
                credential_store = await _opened(
                    stack, credential_store_of(config, environ, wall_clock)
                )
            runtime = Runtime(
                rng=self._rng,
                wall_clock=self._wall_clock,
                state_store=state_store,
                idempotency=idempotency,
                log_store=log_store,
                shutdown_timeout=config.runtime.shutdown_timeout,
            )
            shared = await _opened(stack, shared_state_of(config, self._environ, runtime))
            managers = await credential_managers(
                config, runtime, environ=self._environ, store=credential_store
            )
            services = {
                name: _build(config, runtime, name, service, managers.get(name), shared)
                for name, service in config.services.items()
            }
            await stack.enter_async_context(runtime)
            self._stack = stack.pop_all()
        self._runtime = runtime
        self.services = services
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()


# -- stores ---------------------------------------------------------------------


def store_url(config: ConnectorConfig, kind: StoreKind, environ: Mapping[str, str]) -> str | None:
    """The URL of the ``kind`` store, read from the environment if the file says ``env``."""
    value: str | EnvRef | None = getattr(config.stores, kind)
    if not isinstance(value, EnvRef):
        return value
    url = environ.get(value.env)
    if not url:
        raise config.error(f"stores.{kind}.env", f"environment variable {value.env} is not set")
    reason = store_url_error(kind, url, from_environment=True)
    if reason is not None:
        raise config.error(f"stores.{kind}.env", f"the URL in {value.env}: {reason}")
    return url


def log_store_of(config: ConnectorConfig, environ: Mapping[str, str]) -> LogStore | None:
    """The file's log store, not yet opened; None when it names none."""
    return _store(config, "log", environ, log_store_from_url)


def state_store_of(config: ConnectorConfig, environ: Mapping[str, str]) -> StateStore | None:
    """The file's store of keyed actors' state, not yet opened; None when it names none."""

    def make(url: str) -> StateStore:
        if urlsplit(url).scheme.lower() in ("redis", "rediss"):
            from ._redis_state_store import RedisStateStore  # noqa: PLC0415 - the extra

            return RedisStateStore.from_url(url, prefix=config.stores.redis_prefix)
        return state_store_from_url(url)

    return _store(config, "state", environ, make)


def idempotency_store_of(
    config: ConnectorConfig, environ: Mapping[str, str], wall_clock: WallClock
) -> IdempotencyStore | None:
    """The file's store of idempotent results, not yet opened; None when it names none."""

    def make(url: str) -> IdempotencyStore:
        scheme = urlsplit(url).scheme.lower()
        if scheme == "sqlite":
            return SqliteIdempotencyStore(sqlite_path("idempotency", url), clock=wall_clock)
        if scheme in ("redis", "rediss"):
            from ._idempotency_redis import RedisIdempotencyStore  # noqa: PLC0415 - the extra

            return RedisIdempotencyStore.from_url(
                url, prefix=config.stores.redis_prefix, clock=wall_clock
            )
        return MemoryIdempotencyStore()

    return _store(config, "idempotency", environ, make)


def credential_store_of(
    config: ConnectorConfig, environ: Mapping[str, str], wall_clock: WallClock
) -> CredentialStore | None:
    """The file's credential store, not yet opened; its key is read from ``environ`` too."""

    def make(url: str) -> CredentialStore:
        if urlsplit(url).scheme.lower() == "sqlite":
            return SqliteCredentialStore(
                sqlite_path("credentials", url), clock=wall_clock, key=environ.get(SECRET_KEY_ENV)
            )
        return credential_store_from_url(url, clock=wall_clock)

    return _store(config, "credentials", environ, make)


def shared_state_of(
    config: ConnectorConfig,
    environ: Mapping[str, str],
    runtime: Runtime | None = None,
    *,
    fallback: bool = True,
) -> SharedPolicyState | None:
    """The file's shared breaker and limiter state; Redis behind a `FallbackSharedState`.

    With a ``runtime``, its outages and recoveries are published on its events.
    ``fallback=False`` gives Redis itself, whose failures raise (to read it).
    """

    def make(url: str) -> SharedPolicyState:
        if urlsplit(url).scheme.lower() == "memory":
            return MemorySharedState()
        from ._redis_state import RedisSharedState  # noqa: PLC0415 - redis is an extra

        shared = RedisSharedState.from_url(url, prefix=config.stores.redis_prefix)
        if not fallback:
            return shared
        return FallbackSharedState(
            shared,
            mode=config.stores.shared_state_fallback,
            on_event=runtime.events.publish if runtime is not None else None,
            store="redis",
        )

    return _store(config, "shared_state", environ, make)


def _store(
    config: ConnectorConfig,
    kind: StoreKind,
    environ: Mapping[str, str],
    make: Callable[[str], T],
) -> T | None:
    url = store_url(config, kind, environ)
    if url is None:
        return None
    try:
        return make(url)
    except ConfigError as error:
        raise config.error(f"stores.{kind}", error.reason) from None
    except ImportError as error:
        raise config.error(
            f"stores.{kind}", f"needs the Python package {error.name!r}: install its extra"
        ) from None


async def _opened(stack: AsyncExitStack, store: T) -> T:
    """``store``, opened if it is a context manager, closed when ``stack`` unwinds."""
    if isinstance(store, AbstractAsyncContextManager):
        await stack.enter_async_context(store)
    elif (aclose := getattr(store, "aclose", None)) is not None:
        stack.push_async_callback(aclose)
    return store


# -- credentials ----------------------------------------------------------------


class _ApplicationCredentials(MemoryCredentialStore):
    """Credentials from the environment: the application's, so every tenant uses them.

    A tenant's own entry (a PayPal token refreshed for it) is kept and found
    first; per-tenant secrets belong in the credential store (``store = true``).
    """

    async def get(self, service: str, tenant_id: str | None) -> Credentials | None:
        own = await super().get(service, tenant_id)
        if own is None and tenant_id is not None:
            return await super().get(service, None)
        return own


async def credential_managers(
    config: ConnectorConfig,
    runtime: Runtime,
    *,
    environ: Mapping[str, str],
    store: CredentialStore | None,
) -> dict[str, CredentialManager]:
    """A `CredentialManager` per service that has credentials, with PayPal's refreshers.

    Credentials named by ``env`` are read now (a variable that is not set is a
    `ConfigFileError` naming its key) into memory and serve every tenant; the
    others are read from ``store``, per tenant, on each call. PayPal's token
    exchange is a runtime service of its own, ``<name>-oauth``.
    """
    refreshers: dict[str, Refresher] = {}
    for name, service in config.services.items():
        if isinstance(service, PayPalConfig):
            token_service = f"{name}-oauth"
            if token_service in config.services:
                raise config.error(
                    f"services.{token_service}", f"is the name of {name}'s token service"
                )
            refreshers[name] = PayPalTokenRefresher(
                runtime, name=token_service, base_url=base_url_of(service)
            )
    from_environment = _ApplicationCredentials()
    environment_manager = CredentialManager(from_environment, refreshers, runtime.wall_clock)
    stored_manager = (
        CredentialManager(store, refreshers, runtime.wall_clock) if store is not None else None
    )
    managers: dict[str, CredentialManager] = {}
    for name, service in config.services.items():
        reference = service.credentials
        if reference is None:
            continue
        if reference.store:
            if stored_manager is None:
                raise config.error(f"services.{name}.credentials.store", "no credential store")
            managers[name] = stored_manager
        else:
            credentials = _from_environment(config, name, service, reference, environ)
            await from_environment.put(name, None, credentials)
            managers[name] = environment_manager
    return managers


def _from_environment(
    config: ConnectorConfig,
    name: str,
    service: ServiceConfig,
    reference: CredentialsRef,
    environ: Mapping[str, str],
) -> Credentials:
    key = f"services.{name}.credentials"
    data: dict[str, str] = dict(reference.data)
    for field, variable in reference.env.items():
        value = environ.get(variable)
        if not value:
            raise config.error(f"{key}.env.{field}", f"environment variable {variable} is not set")
        data[field] = value
    try:
        if isinstance(service, PayPalConfig):
            return paypal_credentials(data["client_id"], data["client_secret"])
        method = reference.method or DEFAULT_METHODS[adapter_of(service)]
        return Credentials(auth_method=method, data=data)
    except ConfigError as error:
        raise config.error(key, f"{error.field}: {error.reason}") from None


# -- services -------------------------------------------------------------------


def base_url_of(service: ServiceConfig) -> str:
    """Where the service's requests go: its ``base_url``, else its vendor's API."""
    if service.base_url is not None:
        return service.base_url
    if isinstance(service, MailgunConfig):
        return REGIONS.get(service.region, MAILGUN_URL)
    defaults = {
        SendGridConfig: SENDGRID_URL,
        TwilioConfig: TWILIO_API_URL,
        StripeConfig: DEFAULT_STRIPE_URL,
        PayPalConfig: PAYPAL_LIVE_URL,
    }
    return defaults[type(service)]


def _build(
    config: ConnectorConfig,
    runtime: Runtime,
    name: str,
    service: ServiceConfig,
    credentials: CredentialManager | None,
    shared: SharedPolicyState | None,
) -> Any:
    before = set(runtime.services)
    try:
        if isinstance(service, HttpServiceConfig):
            built: Any = HttpService(
                runtime,
                name,
                base_url=service.base_url,
                headers=service.headers,
                credentials=credentials,
                auth=(service.auth or Auth()) if credentials is not None else None,
                idempotency_header=service.idempotency_header,
                **service.policy,
            )
        else:
            settings = {
                field: value
                for field, value in msgspec.structs.asdict(service).items()
                if field not in _COMMON and value is not None
            }
            built = _ADAPTERS[type(service)](
                runtime, credentials=credentials, name=name, **settings, **service.policy
            )
    except ConfigError as error:
        shown = error.value is not None and not is_secret_key(error.field)
        reason = f"{error.reason} (got {error.value!r})" if shown else error.reason
        raise config.error(f"services.{name}.{error.field}", reason) from None
    if shared is not None:
        # HttpService takes no shared state, so it is given to the runtime
        # services the adapter registered, before any of them has a cell.
        for registered in set(runtime.services) - before:
            runtime.actor(registered).shared_state = shared
    return built
