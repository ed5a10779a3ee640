"""Secret redaction: what is logged or raised never carries a credential.

Two tools. `redact` copies JSON-like data (dicts, lists, tuples, scalars),
replacing the value of every secret-named key (``password``, ``token``,
``api_key``, ``secret``, ``authorization``, ``credit_card`` and kin, in any
case and spelling: ``X-Api-Key``, ``accessToken``, ``card[number]``) and
scrubbing every string it keeps with `redact_text`. `redact_text` scrubs free
text such as an error message or a response body: credential values the caller
knows, ``Bearer``/``Basic`` credentials, ``key=value`` / ``"key": value`` pairs
with a secret-named key (query strings, JSON, headers), and URL user info.

Both err on the side of hiding: a word that merely looks like a credential may
be hidden too, a credential is never shown. Neither mutates its input.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = ["REDACTED", "is_secret_key", "redact", "redact_text"]

REDACTED = "***REDACTED***"

# Matched against a key lower-cased with everything but letters and digits
# removed, so "X-Api-Key", "api_key" and "apiKey" all read "...apikey". The
# first six are the original's; the others leak the same things under other names.
_SECRET_KEY_PARTS = (
    "password",
    "token",
    "apikey",
    "secret",
    "authorization",
    "creditcard",
    "passwd",
    "cardnumber",
    "cvc",
    "cvv",
    "cookie",
    "privatekey",
)
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")

# A key followed by ":" or "=": quoted (JSON, Python reprs) or bare (query
# strings, headers, prose). A bare key starts only where no key character
# precedes it, so the scan stays linear on long words.
_KEY = re.compile(
    r"""(?:(?P<quote>["'])(?P<quoted>[^"'\n]{1,100})(?P=quote)"""
    r"""|(?<![\w.\-\[\]])(?P<bare>[A-Za-z_][\w.\-\[\]]{0,99}))"""
    r"""\s*[:=]\s*"""
)
_VALUE = re.compile(
    r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'"""
    r"""|(?:(?:bearer|basic|digest|token)\s+)?[^\s&,;}\])"'<>]+""",
    re.IGNORECASE,
)
_AUTH_SCHEME = re.compile(
    r"(?<![\w-])(?P<scheme>bearer|basic)(?P<space>\s+)(?P<token>[A-Za-z0-9\-._~+/]+=*)",
    re.IGNORECASE,
)
# "Basic" is also an English word ("Basic authentication required"): a plain
# word after it is kept unless it decodes as base64 to "user:password".
_PLAIN_WORD = re.compile(r"[A-Za-z][a-z]*")
_USER_INFO = re.compile(r"(?<=://)[^/\s@?#]+@")


@functools.lru_cache(maxsize=4096)
def _is_secret_name(name: str) -> bool:
    normalised = _NOT_ALNUM.sub("", name.lower())
    return any(part in normalised for part in _SECRET_KEY_PARTS)


def is_secret_key(key: object) -> bool:
    """True if a value stored under ``key`` must be hidden; any key type is fine."""
    return _is_secret_name(key if isinstance(key, str) else str(key))


def _known_values(secrets: Iterable[str]) -> tuple[str, ...]:
    """The secrets and their URL-encoded forms, longest first so none is half-hidden."""
    return _encoded_forms(frozenset(s for s in secrets if isinstance(s, str) and s))


@functools.lru_cache(maxsize=256)
def _encoded_forms(secrets: frozenset[str]) -> tuple[str, ...]:
    # Cached: one service's credentials come back with every call it logs.
    values = {form for s in secrets for form in (s, quote(s, safe=""), quote_plus(s))}
    return tuple(sorted(values, key=len, reverse=True))


def _redact_pairs(text: str) -> str:
    pieces: list[str] = []
    kept_from = position = 0
    while (key := _KEY.search(text, position)) is not None:
        position = key.end()
        if not is_secret_key(key["quoted"] or key["bare"]):
            continue
        if text[: key.start()].rstrip().lower().endswith(("basic", "bearer")):
            continue  # a scheme's token that merely looks like key=value: hidden whole below
        value = _VALUE.match(text, position)
        if value is None:
            continue
        quote_char = value.group()[0] if value.group()[0] in "\"'" else ""
        pieces += (text[kept_from:position], quote_char, REDACTED, quote_char)
        kept_from = position = value.end()
    pieces.append(text[kept_from:])
    return "".join(pieces)


def _is_basic_credential(token: str) -> bool:
    try:
        return b":" in base64.b64decode(token, validate=True)
    except ValueError:
        return False


def _redact_scheme(match: re.Match[str]) -> str:
    token = match["token"]
    if (
        match["scheme"].lower() == "basic"
        and _PLAIN_WORD.fullmatch(token)
        and not _is_basic_credential(token)
    ):
        return match.group()
    return f"{match['scheme']}{match['space']}{REDACTED}"


def _redact_text(text: str, known: tuple[str, ...]) -> str:
    for secret in known:
        if secret in text:
            text = text.replace(secret, REDACTED)
    # Most strings in request data are short values that no pattern can match;
    # the substring tests skip the regex passes for them.
    if "://" in text:
        text = _USER_INFO.sub(REDACTED + "@", text)
    if ":" in text or "=" in text:
        text = _redact_pairs(text)
    return _AUTH_SCHEME.sub(_redact_scheme, text)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with the given secret values and recognisable credentials hidden."""
    return _redact_text(text, _known_values(secrets))


def _redact(value: Any, known: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return _redact_text(value, known)
    if isinstance(value, Mapping):
        return {
            key: REDACTED if is_secret_key(key) else _redact(item, known)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_redact(item, known) for item in value]
    if isinstance(value, tuple):
        return tuple(_redact(item, known) for item in value)
    return value


def redact(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of JSON-like ``value`` with secret-named keys' values and secrets hidden.

    Mappings (headers included: ``Authorization`` and ``X-Api-Key`` are secret
    names) come back as dicts, lists and tuples as their own type; other values
    are returned as they are.
    """
    return _redact(value, _known_values(secrets))
