"""Call shapes: what one logical call of a service does.

A workload's arrival becomes one logical call, made by the shape its
service names (``call = "request"``). "request" sends one HTTP request through
`Service.request`. A vendor adapter plugs in here with a shape of its own
that builds the adapter over the service (same runtime, same fake provider
behind the transport) and calls one of its methods, so a scenario can drive
``send_transactional_email`` as easily as a bare request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from connector import HttpRequest, Service

if TYPE_CHECKING:
    from ._scenario import ServiceSpec

__all__ = ["CALL_SHAPES", "CallShape", "LogicalCall"]

# call(tenant_id, idempotency_key, deadline, cost): one logical call, raising its outcome.
LogicalCall = Callable[[str | None, str | None, float | None, float], Awaitable[Any]]


class CallShape(Protocol):
    """Makes the logical call of service ``name`` from its spec."""

    def __call__(self, service: Service, spec: ServiceSpec, name: str) -> LogicalCall: ...


def _request(service: Service, spec: ServiceSpec, name: str) -> LogicalCall:
    request = HttpRequest(
        method=spec.method,
        url=f"https://{name}.sim.invalid{spec.path}",
        endpoint=f"{spec.method} {spec.path}",
    )
    send = service.request

    async def call(
        tenant_id: str | None, idempotency_key: str | None, deadline: float | None, cost: float
    ) -> Any:
        return await send(
            request,
            tenant_id=tenant_id,
            idempotency_key=idempotency_key,
            deadline=deadline,
            cost=cost,
        )

    return call


CALL_SHAPES: dict[str, CallShape] = {"request": _request}
