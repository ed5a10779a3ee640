"""``connector.toml``: the config file's schema, and `load_config`, which reads and checks it.

The file names the stores (``[stores]``, by URL), runtime options
(``[runtime]``) and one ``[services.<name>]`` table per service: its adapter,
base URL, adapter settings, ``policy`` (the `ServicePolicy` fields; ``false``
turns an optional policy off), credentials and an optional health probe.

Every error is a `ConfigFileError` naming the file, the dotted key path
(``services.stripe.policy.retry.attempts``) and what was expected. Unknown
keys are errors. Secrets are never written in the file: credentials name
environment variables (``env = { token = "STRIPE_SECRET_KEY" }``) or the
credential store (``store = true``), and a store URL holding a password is
given as ``{ env = "VARIABLE" }``. A secret-named key with a value in the file
is refused, and no error shows a secret-named key's value.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from typing import Any, Literal, TypeAlias
from urllib.parse import urlsplit

import msgspec
import msgspec.inspect as types

from . import _validate as check
from ._auth import Auth
from ._credentials import AuthMethod
from ._errors import ConfigError
from ._policy import KeyBy, ServicePolicy
from ._redaction import is_secret_key

__all__ = [
    "ADAPTERS",
    "DEFAULT_METHODS",
    "ConfigFileError",
    "ConnectorConfig",
    "CredentialsRef",
    "EnvRef",
    "HealthProbe",
    "HttpServiceConfig",
    "MailgunConfig",
    "PayPalConfig",
    "RuntimeOptions",
    "SendGridConfig",
    "ServiceConfig",
    "StoreKind",
    "StoresConfig",
    "StripeConfig",
    "TwilioConfig",
    "adapter_of",
    "load_config",
    "store_url_error",
]

ADAPTERS = ("http", "sendgrid", "mailgun", "twilio", "stripe", "paypal")
_SERVICE_NAME = re.compile(r"[A-Za-z0-9_-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRETS_BY_REFERENCE = (
    "secrets only by reference: name an environment variable in "
    "credentials.env, or keep it in the credential store (credentials.store = true)"
)
_URL_PASSWORD = (
    "holds a password: secrets only by reference "
    '(a store URL can be read from the environment: { env = "VARIABLE" })'
)


class ConfigFileError(ConfigError):
    """A config file is wrong: ``file``, the dotted ``key`` path and what was expected.

    Its message is one line: ``connector.toml: services.stripe.timeout: must be > 0 (got -1)``.
    """

    file: str
    key: str

    def __init__(self, file: str, key: str, reason: str) -> None:
        super().__init__(key or file, None, reason)
        self.file = file
        self.key = key
        self.args = (f"{file}: {key}: {reason}" if key else f"{file}: {reason}",)


# -- the schema ---------------------------------------------------------------


class EnvRef(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A value read from the environment variable ``env`` when the runtime is wired."""

    env: str

    def __post_init__(self) -> None:
        if not isinstance(self.env, str) or _ENV_NAME.fullmatch(self.env) is None:
            check.fail("env", self.env, "must be the name of an environment variable")


StoreUrl: TypeAlias = str | EnvRef
StoreKind = Literal["log", "state", "credentials", "idempotency", "shared_state"]

# The URL schemes each store accepts (see connector._store_urls).
_SCHEMES: dict[StoreKind, tuple[str, ...]] = {
    "log": ("sqlite", "postgresql", "postgres", "memory"),
    "state": ("sqlite", "redis", "rediss", "memory"),
    "credentials": ("sqlite", "memory"),
    "idempotency": ("sqlite", "redis", "rediss", "memory"),
    "shared_state": ("redis", "rediss", "memory"),
}


class RuntimeOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[runtime]``: ``shutdown_timeout`` (seconds) and ``seed`` for a repeatable jitter."""

    shutdown_timeout: float = 30.0
    seed: int | None = None

    def __post_init__(self) -> None:
        check.non_negative("shutdown_timeout", self.shutdown_timeout)


class StoresConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[stores]``: where logs, keyed actors' state, credentials and results live.

    None means: no integration log, state in memory, credentials in memory,
    idempotent results in memory, no shared breaker and limiter. With
    ``shared_state`` (Redis), ``shared_state_fallback`` says what a process
    does while Redis is down: admit on its own state or reject. Every key a
    Redis store writes starts with ``redis_prefix``.
    """

    log: StoreUrl | None = None
    state: StoreUrl | None = None
    credentials: StoreUrl | None = None
    idempotency: StoreUrl | None = None
    shared_state: StoreUrl | None = None
    shared_state_fallback: Literal["fail_open", "fail_closed"] = "fail_open"
    redis_prefix: str = "connector:"


class CredentialsRef(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where a service's credentials come from; never the secrets themselves.

    ``env`` maps each credential field to the environment variable holding it
    (``{ token = "STRIPE_SECRET_KEY" }``), read when the runtime is wired;
    ``data`` adds fields that are not secret (a username, an account SID);
    ``method`` is the `AuthMethod` (a default per adapter). Or ``store = true``:
    the credential store already holds them, per tenant (`connector credentials set`).
    """

    method: AuthMethod | None = None
    env: dict[str, Any] = msgspec.field(default_factory=dict)
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    store: bool = False

    def __post_init__(self) -> None:
        if self.store:
            if self.env or self.data or self.method is not None:
                check.fail(
                    "store", True, "takes no env, data or method: the stored entry holds them"
                )
            return
        if not self.env:
            check.fail("env", None, "name an environment variable per secret, or set store = true")
        for name, variable in self.env.items():
            if not isinstance(variable, str) or _ENV_NAME.fullmatch(variable) is None:
                check.fail(f"env.{name}", variable, "must be the name of an environment variable")
        for name, value in self.data.items():
            if not isinstance(value, str) or not value:
                check.fail(f"data.{name}", value, "must be a non-empty string")
            if name in self.env:
                check.fail(f"data.{name}", value, "is also given in env: give it once")


class HealthProbe(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[services.<name>.health]``: a request `connector health` sends to the provider.

    ``path`` is relative to the service's base URL; the probe passes when the
    answer's status is ``expect_status``, within ``timeout`` seconds, in one attempt.
    """

    path: str
    method: Literal["GET", "HEAD"] = "GET"
    expect_status: int = 200
    timeout: float = 5.0

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            check.fail("path", self.path, "must start with /")
        check.integer("expect_status", self.expect_status, 100)
        if self.expect_status > 599:
            check.fail("expect_status", self.expect_status, "must be an HTTP status (100-599)")
        check.positive("timeout", self.timeout)


class _Service(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="adapter"
):
    """What every ``[services.<name>]`` table may hold besides its adapter's settings.

    After `load_config`, ``policy`` holds the `ServicePolicy` fields the file
    sets, as values (``key_by`` included): the adapter's defaults stay for the others.
    """

    key_by: KeyBy | None = None
    credentials: CredentialsRef | None = None
    policy: dict[str, Any] = msgspec.field(default_factory=dict)
    health: HealthProbe | None = None


class HttpServiceConfig(_Service, frozen=True, kw_only=True, tag="http"):
    """``adapter = "http"``: any JSON API, an `HttpService`; ``auth`` places the credentials."""

    base_url: str
    headers: dict[str, Any] = msgspec.field(default_factory=dict)
    auth: Auth | None = None
    idempotency_header: str = "Idempotency-Key"

    def __post_init__(self) -> None:
        for name, value in self.headers.items():
            if not isinstance(value, str):
                check.fail(f"headers.{name}", value, "must be a string")


class SendGridConfig(_Service, frozen=True, kw_only=True, tag="sendgrid"):
    base_url: str | None = None
    sender: str | None = None
    sender_name: str | None = None


class MailgunConfig(_Service, frozen=True, kw_only=True, tag="mailgun"):
    domain: str
    region: Literal["us", "eu"] = "us"
    base_url: str | None = None
    sender: str | None = None
    sender_name: str | None = None


class TwilioConfig(_Service, frozen=True, kw_only=True, tag="twilio"):
    base_url: str | None = None
    account_sid: str | None = None
    sender: str | None = None
    messaging_service_id: str | None = None
    status_callback: str | None = None
    lookup_base_url: str | None = None
    line_type_lookup: bool = False
    bulk_concurrency: int = 10


class StripeConfig(_Service, frozen=True, kw_only=True, tag="stripe"):
    base_url: str | None = None
    api_version: str | None = None


class PayPalConfig(_Service, frozen=True, kw_only=True, tag="paypal"):
    base_url: str | None = None


ServiceConfig: TypeAlias = (
    HttpServiceConfig | SendGridConfig | MailgunConfig | TwilioConfig | StripeConfig | PayPalConfig
)

# The method each adapter's provider expects, when the file names none.
DEFAULT_METHODS: dict[str, AuthMethod] = {
    "sendgrid": AuthMethod.BEARER_TOKEN,
    "mailgun": AuthMethod.BASIC_AUTH,
    "twilio": AuthMethod.BASIC_AUTH,
    "stripe": AuthMethod.BEARER_TOKEN,
    "paypal": AuthMethod.OAUTH2,
}
# The credential fields a method needs (any one of a tuple's names will do).
_NEEDED: dict[AuthMethod, tuple[tuple[str, ...], ...]] = {
    AuthMethod.API_KEY: (("api_key",),),
    AuthMethod.BEARER_TOKEN: (("token", "access_token"),),
    AuthMethod.BASIC_AUTH: (("username",), ("password",)),
    AuthMethod.OAUTH2: (("access_token",),),
    AuthMethod.HMAC: (("secret",),),
}
_PAYPAL_NEEDED: tuple[tuple[str, ...], ...] = (("client_id",), ("client_secret",))


class _Document(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # Services are decoded one by one: msgspec's error paths do not name dict keys.
    runtime: RuntimeOptions = msgspec.field(default_factory=RuntimeOptions)
    stores: StoresConfig = msgspec.field(default_factory=StoresConfig)
    services: dict[str, Any] = msgspec.field(default_factory=dict)


class ConnectorConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A checked ``connector.toml``; ``file`` is the path it was read from, for errors."""

    file: str
    runtime: RuntimeOptions
    stores: StoresConfig
    services: dict[str, ServiceConfig]

    def error(self, key: str, reason: str) -> ConfigFileError:
        """An error about ``key`` of this file (for checks made when wiring)."""
        return ConfigFileError(self.file, key, reason)


# -- loading ------------------------------------------------------------------


def load_config(path: str | os.PathLike[str]) -> ConnectorConfig:
    """Read and check the config file at ``path``; raises `ConfigFileError`.

    Environment variables are not read here: a missing one is an error when
    the runtime is wired (`Runtime.from_config`), naming its key.
    """
    file = os.fspath(path)
    try:
        with open(file, "rb") as stream:
            raw = tomllib.load(stream)
    except OSError as error:
        raise ConfigFileError(file, "", f"cannot be read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ConfigFileError(file, "", "is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigFileError(file, "", f"is not valid TOML: {_toml_reason(error)}") from None
    _refuse_secrets(file, raw, ())
    document = _decode(file, "", raw, _Document)
    services: dict[str, ServiceConfig] = {}
    for name, table in document.services.items():
        services[name] = _service(file, name, table, document.stores)
    for kind in _SCHEMES:
        url = getattr(document.stores, kind)
        if isinstance(url, str):
            reason = store_url_error(kind, url)
            if reason is not None:
                raise ConfigFileError(file, f"stores.{kind}", reason)
    return ConnectorConfig(
        file=file, runtime=document.runtime, stores=document.stores, services=services
    )


def store_url_error(kind: StoreKind, url: str, *, from_environment: bool = False) -> str | None:
    """Why ``url`` cannot name a ``kind`` store, or None; never quotes a password.

    A URL written in the file may hold no password; one ``from_environment`` may.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "must be a URL such as sqlite:///file.db"
    if "://" not in url:
        return "must be a URL such as sqlite:///file.db"
    schemes = _SCHEMES[kind]
    if parts.scheme.lower() not in schemes:
        return f"must be a {', '.join(s + '://' for s in schemes)} URL, not {parts.scheme}://"
    if password is not None and not from_environment:
        return _URL_PASSWORD
    rest = url.split("://", 1)[1]
    if parts.scheme.lower() == "sqlite" and (not rest.startswith("/") or len(rest) < 2):
        return "a SQLite URL is sqlite:///relative.db or sqlite:////absolute.db"
    return None


def _service(file: str, name: str, table: dict[str, Any], stores: StoresConfig) -> ServiceConfig:
    key = f"services.{name}"
    if _SERVICE_NAME.fullmatch(name) is None:
        raise ConfigFileError(file, key, "a service name is letters, digits, _ and - only")
    service: ServiceConfig = _decode(file, key, table, ServiceConfig)
    adapter = adapter_of(service)
    policy = dict(table.get("policy", {}))
    if service.key_by is not None:
        if "key_by" in policy:
            raise ConfigFileError(file, f"{key}.key_by", "is also set in policy: set it once")
        policy["key_by"] = service.key_by
    decoded = _decode(file, f"{key}.policy", _off_to_none(policy, ServicePolicy), ServicePolicy)
    fields = {field: getattr(decoded, field) for field in policy}
    credentials = service.credentials
    if credentials is None:
        if adapter != "http":
            raise ConfigFileError(
                file,
                f"{key}.credentials",
                f"is required for a {adapter} service: "
                '{ env = { field = "VARIABLE" } } or { store = true }',
            )
        if isinstance(service, HttpServiceConfig) and service.auth is not None:
            raise ConfigFileError(file, f"{key}.auth", "needs credentials to place")
    elif credentials.store:
        if stores.credentials is None:
            raise ConfigFileError(
                file, f"{key}.credentials.store", "needs a credential store: set stores.credentials"
            )
    else:
        _check_fields(file, f"{key}.credentials", adapter, credentials)
    return msgspec.structs.replace(service, policy=fields)


def adapter_of(service: ServiceConfig) -> str:
    """The service's ``adapter``: ``"http"``, ``"stripe"``, ..."""
    return str(type(service).__struct_config__.tag)


def _check_fields(file: str, key: str, adapter: str, credentials: CredentialsRef) -> None:
    method = credentials.method
    if adapter == "paypal":
        if method not in (None, AuthMethod.OAUTH2):
            raise ConfigFileError(file, f"{key}.method", "PayPal takes oauth2 (client credentials)")
        needed = _PAYPAL_NEEDED
    elif method is None:
        if adapter not in DEFAULT_METHODS:
            raise ConfigFileError(
                file, f"{key}.method", f"is required: one of {', '.join(m for m in AuthMethod)}"
            )
        needed = _NEEDED[DEFAULT_METHODS[adapter]]
    else:
        needed = _NEEDED[method]
    given = set(credentials.env) | set(credentials.data)
    for names in needed:
        if not given.intersection(names):
            raise ConfigFileError(
                file,
                f"{key}.env.{names[0]}",
                f"is required: the environment variable holding the {' or '.join(names)}",
            )


def _refuse_secrets(file: str, value: Any, path: tuple[str, ...]) -> None:
    """Raise if the document holds a secret: a secret-named key's value, a URL's password."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            here = (*path, str(key))
            # Values that name where a secret is, not the secret: variables, header names.
            if _names_only(here):
                continue
            if is_secret_key(key) and not isinstance(item, Mapping | bool):
                raise ConfigFileError(file, ".".join(here), _SECRETS_BY_REFERENCE)
            _refuse_secrets(file, item, here)
    elif isinstance(value, list):
        for item in value:
            _refuse_secrets(file, item, path)
    elif isinstance(value, str) and "://" in value:
        try:
            password = urlsplit(value).password
        except ValueError:
            return  # not a URL after all; the schema says what it should be
        if password is not None:
            raise ConfigFileError(file, ".".join(path), _URL_PASSWORD)


def _names_only(path: tuple[str, ...]) -> bool:
    return (len(path) == 4 and path[0] == "services" and path[2:] == ("credentials", "env")) or (
        len(path) == 3 and path[0] == "services" and path[2] == "auth"
    )


def _off_to_none(table: dict[str, Any], kind: type[msgspec.Struct]) -> dict[str, Any]:
    """``table`` with ``false`` as None wherever the field takes None and no bool (off)."""
    info = types.type_info(kind)
    assert isinstance(info, types.StructType)
    fields = {field.encode_name: field.type for field in info.fields}
    result: dict[str, Any] = {}
    for key, value in table.items():
        field = fields.get(key)
        options = field.types if isinstance(field, types.UnionType) else (field,)
        struct = next((t for t in options if isinstance(t, types.StructType)), None)
        if value is False and _takes_none(options):
            result[key] = None
        elif isinstance(value, dict) and struct is not None:
            result[key] = _off_to_none(value, struct.cls)
        else:
            result[key] = value
    return result


def _takes_none(options: tuple[types.Type | None, ...]) -> bool:
    return any(isinstance(t, types.NoneType) for t in options) and not any(
        isinstance(t, types.BoolType) for t in options
    )


# -- errors -------------------------------------------------------------------


def _decode(file: str, prefix: str, raw: Any, kind: Any) -> Any:
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as error:
        raise _file_error(file, prefix, raw, kind, error) from None


_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<key>[^`]+)`")
_MISSING = re.compile(r"Object missing required field `(?P<key>[^`]+)`")
_EXPECTED = re.compile(r"Expected `(?P<expected>[^`]+)`, got `(?P<got>[^`]+)`")
_INVALID = re.compile(r"Invalid (?:enum )?value")
_TOML_NAMES = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "object": "a table",
    "array": "an array",
    "null": "nothing",
}


def _file_error(
    file: str, prefix: str, raw: Any, kind: Any, error: msgspec.ValidationError
) -> ConfigFileError:
    match = _AT.match(str(error))
    assert match is not None  # the pattern matches any text
    message = match["message"]
    parts = [part for part in re.split(r"\.|(?=\[)", match["path"] or "") if part]
    cause = error.__cause__
    if isinstance(cause, ConfigError):
        parts += cause.field.split(".")
        key = _join(prefix, parts)
        reason = cause.reason
        shown = not is_secret_key(parts[-1]) and cause.value is not None
        return ConfigFileError(file, key, f"{reason} (got {cause.value!r})" if shown else reason)
    if found := _UNKNOWN.match(message):
        where = _type_at(kind, raw, parts)
        parts.append(found["key"])
        reason = "unknown key"
        if isinstance(where, types.StructType):
            names = [f.encode_name for f in where.fields]
            reason += f" (expected one of: {', '.join(names)})"
        return ConfigFileError(file, _join(prefix, parts), reason)
    if found := _MISSING.match(message):
        parts.append(found["key"])
        return ConfigFileError(file, _join(prefix, parts), "is required")
    if found := _EXPECTED.match(message):
        expected = [
            _TOML_NAMES.get(name, name) for name in found["expected"].split(" | ") if name != "null"
        ]
        got = _TOML_NAMES.get(found["got"], found["got"])
        return ConfigFileError(
            file, _join(prefix, parts), f"expected {' or '.join(expected)}, got {got}"
        )
    if _INVALID.match(message):
        where = _type_at(kind, raw, parts)
        if parts and parts[-1] == "adapter":
            return ConfigFileError(
                file, _join(prefix, parts), f"expected one of: {', '.join(ADAPTERS)}"
            )
        if isinstance(where, types.LiteralType):
            choices = ", ".join(str(value) for value in where.values)
            return ConfigFileError(file, _join(prefix, parts), f"expected one of: {choices}")
        if isinstance(where, types.EnumType):
            choices = ", ".join(str(member.value) for member in where.cls)
            return ConfigFileError(file, _join(prefix, parts), f"expected one of: {choices}")
    return ConfigFileError(file, _join(prefix, parts), message[:1].lower() + message[1:])


def _join(prefix: str, parts: list[str]) -> str:
    path = ".".join(parts).replace(".[", "[")
    return f"{prefix}.{path}" if prefix and path else prefix or path


def _type_at(kind: Any, raw: Any, parts: list[str]) -> types.Type | None:
    """The schema's type at ``parts`` of ``raw``, for a message saying what was expected."""
    current: types.Type | None = types.type_info(kind)
    for part in parts:
        current = _concrete(current, raw)
        if isinstance(current, types.StructType):
            field = next((f for f in current.fields if f.encode_name == part), None)
            current = field.type if field is not None else None
        elif isinstance(current, types.DictType):
            current = current.value_type
        else:
            return None
        raw = raw.get(part) if isinstance(raw, Mapping) else None
    return _concrete(current, raw)


def _concrete(current: types.Type | None, raw: Any) -> types.Type | None:
    """The member of a union that ``raw`` decodes as (a table: the struct its tag names)."""
    if not isinstance(current, types.UnionType):
        return current
    structs = [t for t in current.types if isinstance(t, types.StructType)]
    if isinstance(raw, Mapping) and structs:
        for struct in structs:
            if struct.tag_field is None or raw.get(struct.tag_field) == struct.tag:
                return struct
        return None
    others = [t for t in current.types if not isinstance(t, types.StructType | types.NoneType)]
    return others[0] if len(others) == 1 else None


_TOML_AT = re.compile(r"^(?P<message>.*) \(at line (?P<line>\d+), column (?P<column>\d+)\)$")


def _toml_reason(error: tomllib.TOMLDecodeError) -> str:
    match = _TOML_AT.match(str(error))
    if match is None:
        return str(error)
    return f"line {match['line']}, column {match['column']}: {match['message']}"
