"""Checks shared by the policy structs' ``__post_init__``.

msgspec checks types only when it decodes; a struct built in Python is not
checked. These helpers check both type and range, and raise `ConfigError`
naming the field, so a config built either way fails the same clear way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, NoReturn

from ._errors import ConfigError


def number(field: str, value: Any) -> float:
    # bool is an int subclass; True as a rate is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(field, value, "must be a number")
    if not math.isfinite(value):
        raise ConfigError(field, value, "must be finite")
    return float(value)


def positive(field: str, value: Any) -> float:
    result = number(field, value)
    if result <= 0:
        raise ConfigError(field, value, "must be > 0")
    return result


def non_negative(field: str, value: Any) -> float:
    result = number(field, value)
    if result < 0:
        raise ConfigError(field, value, "must be >= 0")
    return result


def at_least(field: str, value: Any, minimum: float) -> float:
    result = number(field, value)
    if result < minimum:
        raise ConfigError(field, value, f"must be >= {minimum:g}")
    return result


def integer(field: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(field, value, "must be an integer")
    if value < minimum:
        raise ConfigError(field, value, f"must be >= {minimum}")
    return value


def fraction(field: str, value: Any) -> float:
    """A rate threshold in (0, 1]."""
    result = number(field, value)
    if not 0 < result <= 1:
        raise ConfigError(field, value, "must be in (0, 1]")
    return result


def one_of(field: str, value: Any, choices: Iterable[str]) -> str:
    options = tuple(choices)
    if value not in options:
        raise ConfigError(field, value, f"must be one of {', '.join(map(repr, options))}")
    return str(value)


def boolean(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(field, value, "must be true or false")
    return value


def fail(field: str, value: Any, reason: str) -> NoReturn:
    raise ConfigError(field, value, reason)
