"""Scenarios: services with their policies and provider models, workloads, time.

A scenario is a TOML file decoded with msgspec into `Scenario`. Policies are
the runtime's own structs (`ServicePolicy` and what it holds), so a scenario
accepts exactly what ``Runtime.register`` accepts, validated the same way.
TOML has no null: ``false`` turns off any setting that may be absent
(``retry_budget = false``, ``breaker = false``, ``quota = false``).

A bad file raises `ScenarioError` naming the file, the line and the field
(``scenarios/x.toml:12: services.api.policy.breaker.failure_threshold: must be
>= 1 (got 0)``).

Variants and sweeps change a scenario by dotted path
(``services.api.policy.retry_budget = false``), on its builtin form, and
validate the result again: a bad override is named as well as a bad file.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from connector import ConfigError, ServicePolicy
from connector import _validate as check

from ._calls import CALL_SHAPES
from ._provider import DEFAULT_EPOCH, ProviderModel
from ._toml_lines import key_lines, line_of
from ._workload import Workload

__all__ = [
    "Scenario",
    "ScenarioError",
    "ServiceSpec",
    "Sweep",
    "load_scenario",
    "parse_scenario",
    "split_path",
]

_NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
_MISSING = object()


class ScenarioError(ConfigError):
    """A scenario file, or an override of it, is invalid; names the source, line and field."""

    source: str
    line: int | None

    def __init__(
        self, field: str, value: Any, reason: str, *, source: str, line: int | None = None
    ) -> None:
        super().__init__(field, value, reason)
        self.source = source
        self.line = line
        where = source if line is None else f"{source}:{line}"
        shown = "" if value is _MISSING else repr(value)
        got = f" (got {shown})" if shown and shown not in reason else ""
        self.args = (f"{where}: {field}: {reason}{got}",)


class ServiceSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One service: its policies, the provider behind it, and what one call sends.

    ``call`` is the shape of a logical call (see `connector.sim._calls`); for
    ``"request"``, ``method`` and ``path`` make the request (a GET is
    idempotent, so retried after it may have been seen; a POST only with an
    idempotency key).
    """

    policy: ServicePolicy = msgspec.field(default_factory=ServicePolicy)
    provider: ProviderModel = msgspec.field(default_factory=ProviderModel)
    call: str = "request"
    method: str = "GET"
    path: str = "/"

    def __post_init__(self) -> None:
        check.one_of("call", self.call, CALL_SHAPES)
        if not re.fullmatch(r"[A-Z]+", self.method):
            raise ConfigError("method", self.method, "must be an HTTP method in capitals")
        if not self.path.startswith("/"):
            raise ConfigError("path", self.path, "must start with /")


class Sweep(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Run the scenario once per value of ``parameter`` (a dotted path)."""

    parameter: str
    values: list[Any]

    def __post_init__(self) -> None:
        if not split_path(self.parameter):
            raise ConfigError("parameter", self.parameter, "must be a dotted path")
        if not self.values:
            raise ConfigError("values", self.values, "give at least one value")


class Scenario(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What to simulate, for how long (seconds of virtual time), from which seed.

    ``warmup`` seconds of calls are left out of latency and queueing
    statistics (a run starts empty, which biases a steady-state estimate);
    ``resolution`` is the width of the report's time buckets (default: about
    120 buckets); calls still running ``drain`` seconds after the end are
    cancelled and counted as unfinished. ``epoch`` is the Unix time at t = 0
    (the wall clock the runtime and providers see). ``variants`` and ``sweep``
    are for compare mode; ``seeds`` is how many seeds each compared point runs.
    """

    name: str
    duration: float
    services: dict[str, ServiceSpec]
    workloads: dict[str, Workload]
    description: str = ""
    seed: int = 0
    warmup: float = 0.0
    resolution: float | None = None
    drain: float = 600.0
    epoch: float = DEFAULT_EPOCH
    seeds: int = 1
    variants: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    sweep: Sweep | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("name", self.name, "must not be empty")
        check.positive("duration", self.duration)
        check.integer("seed", self.seed, 0)
        if not 0 <= check.number("warmup", self.warmup) < self.duration:
            raise ConfigError("warmup", self.warmup, f"must be in [0, {self.duration:g})")
        if self.resolution is not None:
            check.positive("resolution", self.resolution)
        check.non_negative("drain", self.drain)
        check.non_negative("epoch", self.epoch)
        check.integer("seeds", self.seeds, 1)
        if not self.services:
            raise ConfigError("services", self.services, "define at least one service")
        if not self.workloads:
            raise ConfigError("workloads", self.workloads, "define at least one workload")
        for name, workload in self.workloads.items():
            if workload.service not in self.services:
                raise ConfigError(
                    f"workloads.{name}.service",
                    workload.service,
                    f"is not a service of this scenario ({', '.join(self.services)})",
                )
        for name, settings in self.variants.items():
            for path in settings:
                if not split_path(path):
                    raise ConfigError(f"variants.{name}", path, "keys must be dotted paths")

    @property
    def bucket(self) -> float:
        """The report's time-bucket width in seconds."""
        if self.resolution is not None:
            return self.resolution
        wanted = self.duration / 120
        return next((step for step in _NICE_STEPS if step >= wanted), _NICE_STEPS[-1])

    def config_hash(self) -> str:
        """A digest of everything but the seed: same hash, same configuration."""
        # Encoding the struct itself sorts its sets too (to_builtins keeps set order).
        data = msgspec.json.decode(msgspec.json.encode(self, order="sorted"))
        data.pop("seed")
        encoded = msgspec.json.encode(data, order="sorted")
        return hashlib.sha256(encoded).hexdigest()[:16]

    def override(self, settings: Mapping[str, Any], *, source: str) -> Scenario:
        """A copy with ``settings`` (dotted path -> value) applied and validated again."""
        data = msgspec.to_builtins(self)
        for dotted, value in settings.items():
            path = split_path(dotted)
            if not path:
                raise ScenarioError(dotted, value, "is not a dotted path", source=source)
            _assign(data, path, value, source)
        _nulls(data, _SCENARIO_TYPE)
        return _convert(data, source, {})


# -- decoding ----------------------------------------------------------------


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; `ScenarioError` says what and where."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ScenarioError(
            "file", str(file), error.strerror or str(error), source=str(file)
        ) from None
    return parse_scenario(text, source=str(file))


def parse_scenario(text: str, *, source: str = "<scenario>") -> Scenario:
    """Decode scenario TOML; ``source`` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        found = re.search(r"\(at line (\d+), column \d+\)", message)
        reason = message[: found.start()].strip() if found else message
        line = int(found.group(1)) if found else None
        raise ScenarioError("TOML", _MISSING, reason, source=source, line=line) from None
    _nulls(data, _SCENARIO_TYPE)
    return _convert(data, source, key_lines(text))


def _convert(data: dict[str, Any], source: str, lines: dict[Any, int]) -> Scenario:
    # Services and workloads are converted one by one: msgspec reports a dict
    # value's path as `[...]`, and the error must name the entry.
    for table, kind in (("services", ServiceSpec), ("workloads", Workload)):
        entries = data.get(table)
        if not isinstance(entries, dict):
            continue
        for name, entry in entries.items():
            try:
                entries[name] = msgspec.convert(entry, kind)
            except msgspec.ValidationError as error:
                raise _located(error, (table, name), data, source, lines) from None
    try:
        return msgspec.convert(data, Scenario)
    except msgspec.ValidationError as error:
        raise _located(error, (), data, source, lines) from None


def _located(
    error: msgspec.ValidationError,
    prefix: tuple[str | int, ...],
    data: dict[str, Any],
    source: str,
    lines: dict[Any, int],
) -> ScenarioError:
    """The `ScenarioError` for a msgspec error at ``prefix``: full field path, line, value."""
    message = str(error)
    found = re.fullmatch(r"(.*) - at `\$(.*)`", message, re.DOTALL)
    reason, where = (found.group(1), found.group(2)) if found else (message, "")
    path = prefix + _msgspec_path(where)
    cause = error.__cause__
    value: Any = _MISSING
    if isinstance(cause, ConfigError):
        path += split_path(cause.field) or (cause.field,)
        reason, value = cause.reason, cause.value
    else:
        named = re.fullmatch(r"Object (?:contains unknown|missing required) field `(.+)`", reason)
        if named is not None:
            path += (named.group(1),)
            if reason.startswith("Object contains unknown"):
                reason = "unknown field"
                value = _lookup(data, path)
            else:
                reason = "required field is missing"
        else:
            value = _lookup(data, path)
    field = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)
    field = field.removeprefix(".") or "scenario"
    return ScenarioError(field, value, reason, source=source, line=line_of(lines, path))


def _msgspec_path(where: str) -> tuple[str | int, ...]:
    parts: list[str | int] = []
    for name, index in re.findall(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]", where):
        if name:
            parts.append(name)
        elif index != "...":
            parts.append(int(index))
    return tuple(parts)


def _lookup(data: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        inside = (
            part in data
            if isinstance(data, dict)
            else isinstance(data, list) and isinstance(part, int) and part < len(data)
        )
        if not inside:
            return _MISSING
        data = data[part]
    if isinstance(data, msgspec.Struct):
        return _MISSING
    return data


# -- overrides -----------------------------------------------------------------

_PATH_PART = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([A-Za-z0-9_-]+))\s*(\.|$)')


def split_path(dotted: str) -> tuple[str, ...]:
    """``services."a.b".policy`` as its keys (TOML's dotted-key syntax); () if malformed."""
    parts: list[str] = []
    i = 0
    while i < len(dotted):
        match = _PATH_PART.match(dotted, i)
        if match is None:
            return ()
        parts.append(next(group for group in match.groups()[:3] if group is not None))
        i = match.end()
        if not match.group(4) and i < len(dotted):
            return ()
    return tuple(parts)


def _assign(data: dict[str, Any], path: tuple[str, ...], value: Any, source: str) -> None:
    """Set ``path`` in ``data``: keys into tables, numbers into arrays (``outages.0``)."""
    target: Any = data
    for depth, key in enumerate(path):
        last = depth == len(path) - 1
        where = ".".join(path[: depth + 1])
        if isinstance(target, list):
            if not key.isdigit() or int(key) >= len(target):
                raise ScenarioError(
                    ".".join(path), value, f"{where}: no such element", source=source
                )
            if last:
                target[int(key)] = value
            else:
                target = target[int(key)]
            continue
        if not isinstance(target, dict):
            raise ScenarioError(
                ".".join(path), value, f"{where} is inside a value, not a table", source=source
            )
        if last:
            target[key] = value
        else:
            if target.get(key) is None:
                target[key] = {}  # an optional table that was off (None) or absent
            target = target[key]


# -- false as "off" -----------------------------------------------------------

_SCENARIO_TYPE = msgspec.inspect.type_info(Scenario)


def _admits_none(kind: msgspec.inspect.Type) -> bool:
    if isinstance(kind, msgspec.inspect.UnionType):
        return any(isinstance(t, msgspec.inspect.NoneType) for t in kind.types) and not any(
            isinstance(t, msgspec.inspect.BoolType) for t in kind.types
        )
    return False


def _nulls(data: Any, kind: msgspec.inspect.Type) -> None:
    """Replace ``false`` by None wherever the field may be None and is not a bool."""
    if isinstance(kind, msgspec.inspect.UnionType):
        structs = [t for t in kind.types if isinstance(t, msgspec.inspect.StructType)]
        if isinstance(data, dict) and structs:
            chosen = structs[0]
            for struct in structs:
                if struct.tag is not None and data.get(struct.tag_field or "") == struct.tag:
                    chosen = struct
            _nulls(data, chosen)
        for t in kind.types:
            if isinstance(t, msgspec.inspect.DictType | msgspec.inspect.ListType):
                _nulls(data, t)
    elif isinstance(kind, msgspec.inspect.StructType) and isinstance(data, dict):
        for field in kind.fields:
            if field.encode_name not in data:
                continue
            if data[field.encode_name] is False and _admits_none(field.type):
                data[field.encode_name] = None
            else:
                _nulls(data[field.encode_name], field.type)
    elif isinstance(kind, msgspec.inspect.DictType) and isinstance(data, dict):
        for item in data.values():
            _nulls(item, kind.value_type)
    elif isinstance(kind, msgspec.inspect.ListType) and isinstance(data, list):
        for item in data:
            _nulls(item, kind.item_type)
