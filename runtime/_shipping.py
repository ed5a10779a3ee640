"""Shipping: the `ShippingProvider` protocol, addresses, parcels and what comes back.

Weights are whole grams and sizes whole millimetres, exact as `Money` is;
an adapter converts to its carrier's units. Countries are ISO 3166-1 alpha-2.
One `ShipmentRequest` serves both quoting (`calculate_rates`) and buying the
label (`create_shipment`), so the quote is for exactly what is shipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Final, Literal, Protocol, runtime_checkable

import msgspec

from . import _formats as check
from ._errors import ConfigError
from ._payments import Money

__all__ = [
    "Address",
    "Parcel",
    "Shipment",
    "ShipmentCancellation",
    "ShipmentRequest",
    "ShippingProvider",
    "ShippingRate",
    "TrackingEvent",
    "TrackingInfo",
    "TrackingStatus",
]

TrackingStatus = Literal[
    "pre_transit",
    "in_transit",
    "out_for_delivery",
    "delivered",
    "failed_attempt",
    "exception",
    "returned",
    "cancelled",
    "unknown",
]
TRACKING_STATUSES: Final[tuple[TrackingStatus, ...]] = (
    "pre_transit",
    "in_transit",
    "out_for_delivery",
    "delivered",
    "failed_attempt",
    "exception",
    "returned",
    "cancelled",
    "unknown",
)


class Address(msgspec.Struct, frozen=True, kw_only=True):
    """A postal address; ``postal_code`` and ``state`` are optional as some countries have none."""

    name: str
    line1: str
    city: str
    country: str
    line2: str | None = None
    state: str | None = None
    postal_code: str | None = None
    company: str | None = None
    phone: str | None = None
    email: str | None = None

    def __post_init__(self) -> None:
        for field in ("name", "line1", "city"):
            check.header_text(field, getattr(self, field))
        check.country("country", self.country)
        for field in ("line2", "state", "postal_code", "company"):
            value = getattr(self, field)
            if value is not None:
                check.header_text(field, value)
        if self.phone is not None:
            check.check_phone_number(self.phone, "phone")
        if self.email is not None:
            check.check_email_address(self.email, "email")


class Parcel(msgspec.Struct, frozen=True, kw_only=True):
    """One package: its weight, and its three dimensions or none of them."""

    weight_grams: int
    length_mm: int | None = None
    width_mm: int | None = None
    height_mm: int | None = None

    def __post_init__(self) -> None:
        if check.count("weight_grams", self.weight_grams) == 0:
            raise ConfigError("weight_grams", 0, "must be > 0")
        sizes = (self.length_mm, self.width_mm, self.height_mm)
        if any(size is not None for size in sizes):
            for field, size in zip(("length_mm", "width_mm", "height_mm"), sizes, strict=True):
                if size is None or check.count(field, size) == 0:
                    raise ConfigError(field, size, "give all three dimensions, each > 0, or none")


class ShipmentRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Parcels from ``origin`` to ``destination``.

    ``service`` is the carrier's service level (None: its cheapest), ``reference``
    the caller's own (an order number), printed on the label where supported.
    """

    origin: Address
    destination: Address
    parcels: Sequence[Parcel]
    service: str | None = None
    reference: str | None = None

    def __post_init__(self) -> None:
        check.same_type("origin", self.origin, Address)
        check.same_type("destination", self.destination, Address)
        if isinstance(self.parcels, Parcel) or not isinstance(self.parcels, Sequence):
            raise ConfigError("parcels", self.parcels, "must be a list of Parcel")
        parcels = tuple(self.parcels)
        if not parcels:
            raise ConfigError("parcels", [], "must name at least one parcel")
        for parcel in parcels:
            check.same_type("parcels", parcel, Parcel)
        msgspec.structs.force_setattr(self, "parcels", parcels)
        if self.service is not None:
            check.identifier("service", self.service)
        if self.reference is not None:
            check.header_text("reference", self.reference)

    @property
    def weight_grams(self) -> int:
        return sum(parcel.weight_grams for parcel in self.parcels)


class ShippingRate(msgspec.Struct, frozen=True, kw_only=True):
    """One way to ship it: the service level, its price and the days it usually takes."""

    service: str
    cost: Money
    estimated_days: int | None = None
    carrier: str | None = None


class Shipment(msgspec.Struct, frozen=True, kw_only=True):
    """A bought label: the provider's id, the tracking number, what it cost."""

    id: str
    tracking_number: str
    service: str
    cost: Money
    status: TrackingStatus = "pre_transit"
    label_url: str | None = None


class TrackingEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One scan or status change; ``at`` is time-zone aware."""

    at: datetime
    status: TrackingStatus
    description: str
    location: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.at, datetime) or self.at.utcoffset() is None:
            raise ConfigError("at", self.at, "must be a time-zone aware datetime")


class TrackingInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Where a shipment is: its latest status and location, and every event, oldest first."""

    tracking_number: str
    status: TrackingStatus
    location: str | None = None
    estimated_delivery: date | None = None
    events: tuple[TrackingEvent, ...] = ()


class ShipmentCancellation(msgspec.Struct, frozen=True, kw_only=True):
    """Whether the label was voided; a carrier refuses once the parcel is on its way."""

    tracking_number: str
    cancelled: bool
    reason: str | None = None


@runtime_checkable
class ShippingProvider(Protocol):
    """Quotes, buys, tracks and voids labels; the original's ``ShippingProviderConnectorInterface``.

    An unknown tracking number raises `VendorError` with status 404.
    """

    async def create_shipment(
        self, request: ShipmentRequest, *, tenant_id: str | None = None
    ) -> Shipment:
        """Buy a label for the request's service (its cheapest when None)."""
        ...

    async def track_shipment(
        self, tracking_number: str, *, tenant_id: str | None = None
    ) -> TrackingInfo:
        """The shipment's status and events."""
        ...

    async def calculate_rates(
        self, request: ShipmentRequest, *, tenant_id: str | None = None
    ) -> list[ShippingRate]:
        """Every service that can ship it, cheapest first."""
        ...

    async def cancel_shipment(
        self, tracking_number: str, *, tenant_id: str | None = None
    ) -> ShipmentCancellation:
        """Void the label if the carrier still allows it."""
        ...
