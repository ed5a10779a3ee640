"""Field rules shared by the service protocols' structs, their fakes and adapters.

Each check returns the value (normalised where noted) or raises `ConfigError`
naming the field. The rules are the vendors' common ground (VENDORS.md): a
value every targeted vendor accepts passes, and a value that would let one
field spill into another (a line break in a header, a comma in an address)
never does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from ._errors import ConfigError

__all__ = ["check_email_address", "check_phone_number"]

# RFC 5321/5322 dot-atom local part and an LDH domain with at least two labels,
# ASCII only (an IDN domain goes in its xn-- form); no quoted local parts, no
# comments, nothing that could separate two addresses in a vendor's list.
_ATEXT: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL: Final = re.compile(
    rf"(?P<local>{_ATEXT}(?:\.{_ATEXT})*)@(?:{_LABEL}\.)+[A-Za-z][A-Za-z0-9-]{{0,61}}[A-Za-z0-9]"
)
_EMAIL_MAX: Final = 254  # RFC 5321's path limit less the angle brackets
_LOCAL_MAX: Final = 64
_E164: Final = re.compile(r"\+[1-9][0-9]{1,14}")  # [0-9]: \d would take any Unicode digit
_CURRENCY: Final = re.compile(r"[A-Z]{3}")
_COUNTRY: Final = re.compile(r"[A-Z]{2}")
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token
_MEDIA_TYPE: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BREAKS: Final = re.compile(r"[\r\n\x00]")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def check_email_address(value: object, field: str = "address") -> str:
    """``value`` if it is a plain ``local@domain.tld`` address; raise `ConfigError` otherwise.

    Usable as a pydantic ``AfterValidator``: `ConfigError` is a `ValueError`.
    """
    if not isinstance(value, str):
        raise ConfigError(field, value, "must be an email address string")
    match = _EMAIL.fullmatch(value)
    if match is None or len(value) > _EMAIL_MAX or len(match["local"]) > _LOCAL_MAX:
        raise ConfigError(field, value, "is not an email address of the form local@domain.tld")
    return value


def check_phone_number(value: object, field: str = "phone_number") -> str:
    """``value`` if it is an E.164 number (``+`` and up to 15 digits); raise otherwise."""
    if not isinstance(value, str) or _E164.fullmatch(value) is None:
        raise ConfigError(field, value, "must be an E.164 phone number like +14155550123")
    return value


def text(field: str, value: object, *, max_length: int | None = None) -> str:
    """A non-empty string of at most ``max_length`` characters."""
    if not isinstance(value, str) or not value:
        raise ConfigError(field, value, "must be a non-empty string")
    if max_length is not None and len(value) > max_length:
        raise ConfigError(field, f"<{len(value)} characters>", f"must be at most {max_length}")
    return value


def optional_text(field: str, value: object, *, max_length: int | None = None) -> str | None:
    return None if value is None else text(field, value, max_length=max_length)


def identifier(field: str, value: object, *, max_length: int = 255) -> str:
    """A provider's id or a caller's key: non-empty, no control characters."""
    result = text(field, value, max_length=max_length)
    if _CONTROL.search(result):
        raise ConfigError(field, value, "must not contain control characters")
    return result


def header_text(field: str, value: object) -> str:
    """Text that ends up in a header: no line break can start another header."""
    result = text(field, value)
    if _BREAKS.search(result):
        raise ConfigError(field, value, "must not contain line breaks or NUL")
    return result


def header_name(field: str, value: object) -> str:
    if not isinstance(value, str) or _HEADER_NAME.fullmatch(value) is None:
        raise ConfigError(field, value, "must be an HTTP header name (an RFC 9110 token)")
    return value


def media_type(field: str, value: object) -> str:
    if not isinstance(value, str) or _MEDIA_TYPE.fullmatch(value) is None:
        raise ConfigError(field, value, "must be a media type like application/pdf")
    return value


def currency(field: str, value: object) -> str:
    if not isinstance(value, str) or _CURRENCY.fullmatch(value) is None:
        raise ConfigError(field, value, "must be an ISO 4217 code in capitals, like EUR")
    return value


def country(field: str, value: object) -> str:
    if not isinstance(value, str) or _COUNTRY.fullmatch(value) is None:
        raise ConfigError(field, value, "must be an ISO 3166-1 alpha-2 code in capitals, like DE")
    return value


def http_url(field: str, value: object) -> str:
    """An absolute http(s) URL; an error shows only scheme and host (a URL may hold a token)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(field, value, "must be an absolute http(s) URL")
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        raise ConfigError(field, "<malformed URL>", "must be an absolute http(s) URL") from None
    if parts.scheme not in ("http", "https") or not host or _CONTROL.search(value) or " " in value:
        shown = f"{parts.scheme}://{host}" if host else f"<{parts.scheme or 'no'} scheme>"
        raise ConfigError(field, shown, "must be an absolute http(s) URL")
    return value


def count(field: str, value: object) -> int:
    """A count: an int >= 0 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(field, value, "must be an integer >= 0")
    return value


def strings(field: str, value: object) -> tuple[str, ...]:
    """A sequence of strings as a tuple; one bare string is refused, not split into letters."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ConfigError(field, value, "must be a list of strings")
    items = tuple(value)
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(field, item, "must be a string")
    return items


def string_map(
    field: str, value: object, *, max_items: int | None = None, max_key: int | None = None
) -> dict[str, str]:
    """A copy of a str -> str mapping (a copy, so a later change cannot skip the checks)."""
    if not isinstance(value, Mapping):
        raise ConfigError(field, value, "must be a mapping of strings to strings")
    if max_items is not None and len(value) > max_items:
        raise ConfigError(field, f"<{len(value)} entries>", f"must have at most {max_items}")
    result: dict[str, str] = {}
    for key, item in value.items():
        text(field, key, max_length=max_key)
        if not isinstance(item, str):
            raise ConfigError(f"{field}[{key!r}]", item, "must be a string")
        result[key] = item
    return result


def same_type(field: str, value: object, kind: type[Any]) -> None:
    if not isinstance(value, kind):
        raise ConfigError(field, value, f"must be a {kind.__name__}")
