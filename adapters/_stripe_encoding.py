"""How Stripe's v1 API wants values written: form bodies and amounts in its own units.

Form bodies follow stripe-python's ``_api_encode``: a mapping becomes
``key[sub]``, a list ``key[0]``, ``key[1]`` (always indexed), None is left
out and a bool is ``true``/``false``. Keys must not contain square brackets,
which would make two different bodies encode alike.

Amounts: `Money` counts ISO 4217 minor units; Stripe counts its own, which
mostly agree. Where they do not (docs.stripe.com/currencies):

- zero-decimal currencies are sent in whole units, so MGA (two decimals in
  ISO) must be a whole number of ariary;
- ISK and UGX "transitioned to a zero-decimal currency, but backwards
  compatibility requires you to represent it as a two-decimal value, where the
  decimal amount is always 00": 5 UGX is ``500``. The same page also lists UGX
  among the zero-decimal currencies; the special case is what Stripe charges by;
- three-decimal currencies (BHD JOD KWD OMR TND) need the last digit 0:
  5.120 KWD is ``5120``, 5.124 KWD cannot be sent.

Every other currency is two-decimal at Stripe. An amount Stripe cannot take is
refused with `ConfigError` before anything is sent, never rounded: rounding
money is the caller's decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Final, TypeAlias
from urllib.parse import urlencode

from connector._errors import ConfigError
from connector._payments import Money, currency_exponent

__all__ = [
    "FormValue",
    "encode_form",
    "form_pairs",
    "from_stripe_amount",
    "stripe_exponent",
    "to_stripe_amount",
]

FormValue: TypeAlias = "str | int | bool | Mapping[str, FormValue] | Sequence[FormValue] | None"

ZERO_DECIMAL: Final = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA"}
    | {"PYG", "RWF", "VND", "VUV", "XAF", "XOF", "XPF"}
)
# Two decimals on the wire, whole units only.
WHOLE_HUNDREDTHS: Final = frozenset({"ISK", "UGX"})
THREE_DECIMAL: Final = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})


def stripe_exponent(currency: str) -> int:
    """Digits after the decimal point in Stripe's unit for ``currency`` (upper case)."""
    if currency in ZERO_DECIMAL:
        return 0
    if currency in THREE_DECIMAL:
        return 3
    return 2


def _step(currency: str) -> int:
    """What every Stripe amount in ``currency`` must be a multiple of."""
    if currency in WHOLE_HUNDREDTHS:
        return 100
    return 10 if currency in THREE_DECIMAL else 1


def to_stripe_amount(money: Money) -> int:
    """``money`` as Stripe's ``amount``; `ConfigError` if Stripe cannot take it exactly."""
    currency = money.currency
    exponent = stripe_exponent(currency)
    shift = exponent - currency_exponent(currency)
    shown = f"{money.to_decimal()} {currency}"
    if shift >= 0:
        factor: int = 10**shift
        amount = money.amount * factor
    else:
        divisor: int = 10**-shift
        if money.amount % divisor:
            places = "whole units" if exponent == 0 else f"at most {exponent} decimal places"
            raise ConfigError(
                "amount", shown, f"Stripe takes {currency} in {places}: round the amount first"
            )
        amount = money.amount // divisor
    step = _step(currency)
    if amount % step:
        if currency in THREE_DECIMAL:
            reason = f"Stripe requires the last digit of {currency} amounts to be 0"
        else:
            reason = f"Stripe cannot charge fractions of {currency}"
        raise ConfigError("amount", shown, f"{reason}: round the amount first")
    return amount


def from_stripe_amount(amount: int, currency: str) -> Money:
    """Stripe's ``amount`` in ``currency`` (any case) as `Money`; `ConfigError` if ISO
    cannot hold it (a positive amount is required too)."""
    code = currency.upper()
    return Money.of(Decimal(amount).scaleb(-stripe_exponent(code)), code)


def form_pairs(params: Mapping[str, FormValue]) -> list[tuple[str, str]]:
    """The ``(name, value)`` pairs of ``params`` in Stripe's bracketed form, in order."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        _add(pairs, _key("params", key), value)
    return pairs


def encode_form(params: Mapping[str, FormValue]) -> bytes:
    """``params`` as an ``application/x-www-form-urlencoded`` body."""
    return urlencode(form_pairs(params)).encode("ascii")


def _key(where: str, key: object) -> str:
    if not isinstance(key, str) or not key or "[" in key or "]" in key:
        raise ConfigError(where, key, "keys must be non-empty strings without square brackets")
    return key


def _add(pairs: list[tuple[str, str]], name: str, value: FormValue) -> None:
    if value is None:
        return
    if isinstance(value, bool):
        pairs.append((name, "true" if value else "false"))
    elif isinstance(value, int):
        pairs.append((name, str(value)))
    elif isinstance(value, str):
        pairs.append((name, value))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _add(pairs, f"{name}[{_key(name, key)}]", item)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if item is None:
                raise ConfigError(f"{name}[{index}]", None, "a list item cannot be None")
            _add(pairs, f"{name}[{index}]", item)
    else:
        # The type only: the value may be something secret.
        raise ConfigError(
            name, type(value).__name__, "must be a str, int, bool, None, mapping or list"
        )
