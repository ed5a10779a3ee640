"""Webhook signatures: verify what vendors send us, sign what we send.

Three incoming schemes, each as the vendor's own SDK checks it (stricter where noted):
a plain HMAC (SHA-256/512, hex or base64, optional ``sha256=`` prefix),
Stripe's timestamped ``t=...,v1=...`` header, and Twilio's
``X-Twilio-Signature``. Every refusal is a `WebhookVerificationFailed` whose
reason names what was wrong and never the secret or the expected signature;
no input string or body makes a verifier raise anything else. Digests are
compared with `hmac.compare_digest`. Nothing here reads the clock: the
timestamped check takes ``now`` from the caller.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import msgspec

from . import _validate as check
from ._errors import ConfigError, WebhookVerificationFailed

__all__ = [
    "HmacVerifier",
    "StripeVerifier",
    "TimestampedHmacVerifier",
    "TimestampedSignature",
    "TwilioVerifier",
    "sign_webhook",
]

_ALGORITHMS: Final = ("sha256", "sha512")
_ENCODINGS: Final = ("hex", "base64")
_DEFAULT_TOLERANCE: Final = 300.0  # seconds, stripe-python's Webhook.DEFAULT_TOLERANCE
# A Unix time in seconds has 10 digits; the cap keeps int() of a hostile header cheap.
_MAX_TIMESTAMP_DIGITS: Final = 20


def _key(field: str, secret: object) -> bytes:
    """The secret's bytes (UTF-8 for text); a bad secret is named, never shown."""
    if isinstance(secret, str):
        if not secret:
            raise ConfigError(field, "", "must not be empty")
        try:
            return secret.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(field, "<redacted>", "must be encodable as UTF-8") from None
    if isinstance(secret, bytes | bytearray):
        if not secret:
            raise ConfigError(field, b"", "must not be empty")
        return bytes(secret)
    raise ConfigError(field, type(secret).__name__, "must be str or bytes")


def _ascii(value: str) -> bytes | None:
    """``value`` as bytes if it is ASCII; a signature that is not cannot match."""
    return value.encode("ascii") if value.isascii() else None


class HmacVerifier:
    """Checks an HMAC of the raw body, as GitHub, Shopify and most generic webhooks send it.

    The signature may carry a prefix naming the algorithm (``sha256=<hex>``); a
    prefix naming any other algorithm, ``sha1=`` included, is refused rather
    than tried, so a sender cannot downgrade the check.
    """

    __slots__ = ("_algorithm", "_encoding", "_key")

    def __init__(
        self, secret: str | bytes, *, algorithm: str = "sha256", encoding: str = "hex"
    ) -> None:
        self._key = _key("secret", secret)
        self._algorithm = check.one_of("algorithm", algorithm, _ALGORITHMS)
        self._encoding = check.one_of("encoding", encoding, _ENCODINGS)

    def verify(self, payload: bytes, signature: str | None) -> None:
        """Return if ``signature`` is the HMAC of ``payload``; raise otherwise."""
        if not signature:
            raise WebhookVerificationFailed("missing signature")
        # A base64 value's only '=' are its trailing padding; any '=' followed by
        # something else separates a prefix.
        name, separator, rest = signature.partition("=")
        if separator and rest.strip("="):
            if name.lower() != self._algorithm:
                raise WebhookVerificationFailed(f"signature prefix does not name {self._algorithm}")
            signature = rest
        given = _ascii(signature)
        if given is None:
            raise WebhookVerificationFailed("malformed signature")
        try:
            digest = (
                binascii.unhexlify(given)
                if self._encoding == "hex"
                else base64.b64decode(given, validate=True)
            )
        except binascii.Error:
            raise WebhookVerificationFailed("malformed signature") from None
        expected = hmac.digest(self._key, payload, self._algorithm)
        if not hmac.compare_digest(expected, digest):
            raise WebhookVerificationFailed("signature mismatch")


class TimestampedSignature(msgspec.Struct, frozen=True):
    """What a timestamped header proved: when it was signed and the ``v1`` value that matched."""

    timestamp: int
    signature: str


class TimestampedHmacVerifier:
    """Checks a ``t=<unix time>,v1=<hex>`` header, Stripe's scheme, with replay protection.

    As stripe-python: the header is split on ``,`` then ``=``; ``t`` is the
    timestamp; every ``v1`` is a candidate; ``v0`` and other schemes are
    ignored. The signed message is ``f"{t}.".encode() + payload``, the digest
    hex HMAC-SHA256 keyed with the whole secret. Any ``v1`` matching passes.

    Stricter than stripe-python, for headers Stripe never sends: ``t`` must be
    ASCII digits and appear once; a timestamp more than ``tolerance`` seconds in
    the future is refused like one that old (Stripe accepts any future time), so
    every accepted event leaves the replay window within ``2 * tolerance``.

    Replay: each accepted (timestamp, digest) is remembered until it is older
    than the tolerance; a second delivery of it is refused. The memory is
    bounded: when ``replay_cache_size`` live entries are held, the one nearest
    expiry is forgotten (and could then be replayed until it expires). The cache
    is per instance; processes behind a load balancer should also deduplicate
    on the event id.
    """

    __slots__ = ("_expiry", "_key", "_replay_cache_size", "_seen", "_tolerance")

    def __init__(
        self,
        secret: str | bytes,
        *,
        tolerance: float = _DEFAULT_TOLERANCE,
        replay_cache_size: int = 10_000,
    ) -> None:
        self._key = _key("secret", secret)
        self._tolerance = check.positive("tolerance", tolerance)
        self._replay_cache_size = check.integer("replay_cache_size", replay_cache_size, 1)
        self._seen: set[tuple[int, bytes]] = set()
        self._expiry: list[tuple[int, bytes]] = []  # heap of _seen, oldest timestamp first

    def verify(self, payload: bytes, header: str | None, now: float) -> TimestampedSignature:
        """Return the verified signature; raise if the header is bad, stale or replayed.

        ``now`` is the caller's Unix time in seconds.
        """
        check.number("now", now)
        timestamp, candidates = _parse_timestamped(header)
        expected = hmac.digest(self._key, b"%d." % timestamp + payload, "sha256")
        expected_hex = expected.hex().encode("ascii")
        matched = next(
            (c for c in candidates if hmac.compare_digest(expected_hex, c.encode("ascii"))), None
        )
        if matched is None:
            raise WebhookVerificationFailed("signature mismatch")
        if not now - self._tolerance <= timestamp <= now + self._tolerance:
            raise WebhookVerificationFailed(
                f"timestamp outside the tolerance of {self._tolerance:g} s"
            )
        self._remember((timestamp, expected), now)
        return TimestampedSignature(timestamp, matched)

    def _remember(self, entry: tuple[int, bytes], now: float) -> None:
        oldest = now - self._tolerance
        while self._expiry and self._expiry[0][0] < oldest:
            self._seen.discard(heapq.heappop(self._expiry))
        if entry in self._seen:
            raise WebhookVerificationFailed("replayed signature")
        if len(self._expiry) >= self._replay_cache_size:
            self._seen.discard(heapq.heappop(self._expiry))
        heapq.heappush(self._expiry, entry)
        self._seen.add(entry)


class StripeVerifier(TimestampedHmacVerifier):
    """Verifies ``Stripe-Signature``; ``secret`` is the endpoint's whole ``whsec_...`` string."""

    __slots__ = ()

    def __init__(
        self,
        secret: str,
        *,
        tolerance: float = _DEFAULT_TOLERANCE,
        replay_cache_size: int = 10_000,
    ) -> None:
        super().__init__(secret, tolerance=tolerance, replay_cache_size=replay_cache_size)


def _parse_timestamped(header: str | None) -> tuple[int, list[str]]:
    """``t`` and the ASCII ``v1`` values of a ``t=...,v1=...`` header."""
    if not header:
        raise WebhookVerificationFailed("missing signature header")
    timestamps: list[str] = []
    candidates: list[str] = []
    for item in header.split(","):
        name, separator, value = item.partition("=")
        if name in ("t", "v1") and not separator:
            raise WebhookVerificationFailed(f"malformed signature header: {name} has no value")
        if name == "t":
            timestamps.append(value)
        elif name == "v1" and value.isascii():
            candidates.append(value)
    if len(timestamps) != 1:
        raise WebhookVerificationFailed("malformed signature header: expected one t")
    (raw,) = timestamps
    if not (raw.isascii() and raw.isdigit() and len(raw) <= _MAX_TIMESTAMP_DIGITS):
        raise WebhookVerificationFailed("malformed signature header: t is not a Unix time")
    if not candidates:
        raise WebhookVerificationFailed("no v1 signature in header")
    return int(raw), candidates


def sign_webhook(payload: bytes, secret: str | bytes, timestamp: int) -> str:
    """The ``t=<timestamp>,v1=<hex HMAC-SHA256>`` header for an outgoing webhook.

    Receivers check it as Stripe's are checked (`TimestampedHmacVerifier`, or
    any Stripe-compatible verifier given the same secret).
    """
    key = _key("secret", secret)
    check.integer("timestamp", timestamp, 0)
    digest = hmac.new(key, b"%d." % timestamp + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class TwilioVerifier:
    """Verifies ``X-Twilio-Signature`` as twilio-python's ``RequestValidator`` does.

    The signed string is the URL, then for each sorted unique parameter name
    each of its sorted unique values, name + value; the signature is the base64
    HMAC-SHA1 of it keyed with the auth token. SHA-1 is Twilio's documented
    scheme, allowed here and nowhere else. The URL passes with its port removed
    or with the default port added, as Twilio signs either. For a JSON body
    pass the raw body as ``params``: the URL's ``bodySHA256`` must be its
    SHA-256, and the URL alone is signed.
    """

    __slots__ = ("_key",)

    def __init__(self, auth_token: str) -> None:
        if not isinstance(auth_token, str):
            raise ConfigError("auth_token", type(auth_token).__name__, "must be str")
        self._key = _key("auth_token", auth_token)

    def verify(
        self, url: str, params: Mapping[str, str | Sequence[str]] | str, signature: str | None
    ) -> None:
        """Return if ``signature`` signs this request; raise otherwise."""
        if not signature:
            raise WebhookVerificationFailed("missing signature")
        given = _ascii(signature)
        if given is None:
            raise WebhookVerificationFailed("malformed signature")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise WebhookVerificationFailed("malformed URL") from None
        if isinstance(params, str):
            body_hashes = parse_qs(parts.query).get("bodySHA256")
            if not body_hashes:
                raise WebhookVerificationFailed("raw body given but the URL has no bodySHA256")
            expected_hash = hashlib.sha256(_utf8(params)).hexdigest().encode("ascii")
            claimed = _ascii(body_hashes[0])
            if claimed is None or not hmac.compare_digest(expected_hash, claimed):
                raise WebhookVerificationFailed("body does not match bodySHA256")
            params = {}
        suffix = "".join(
            name + value
            for name in sorted(set(params))
            for value in sorted(set(_values(params, name)))
        )
        if port:
            # Twilio cuts at the first ':'; cutting at the last keeps an IPv6 host intact.
            other = parts._replace(netloc=parts.netloc.rpartition(":")[0])
        else:
            default = 443 if parts.scheme == "https" else 80
            other = parts._replace(netloc=f"{parts.netloc}:{default}")
        urls = (parts.geturl(), other.geturl())
        for candidate in urls:
            mac = hmac.digest(self._key, _utf8(candidate + suffix), "sha1")
            if hmac.compare_digest(base64.b64encode(mac), given):
                return
        raise WebhookVerificationFailed("signature mismatch")


def _values(params: Mapping[str, str | Sequence[str]], name: str) -> Sequence[str]:
    """All values of ``name``: a multidict's (Starlette, Django, werkzeug, aiohttp) or a dict's."""
    getall: Any = getattr(params, "getall", None) or getattr(params, "getlist", None)
    if getall is not None:
        return list(getall(name))
    value = params[name]
    return [value] if isinstance(value, str) else value


def _utf8(text: str) -> bytes:
    # A lone surrogate cannot come from an HTTP request; encode it rather than fail.
    return text.encode("utf-8", "surrogatepass")
