"""ASGI wiring: the runtime in a Starlette or FastAPI app's lifespan, services by dependency.

The counterpart of the original's Laravel service provider and Symfony
``services.yaml``: one place binds names to implementations, and handlers
ask for them by name::

    def build(rt: Runtime) -> dict[str, object]:
        return {"email": MyEmailAdapter(rt.register("sendgrid", ...))}

    app = FastAPI(lifespan=connector_lifespan(build))

    @app.post("/api/welcome")
    async def welcome(email: EmailService = Depends(service_dependency("email"))): ...

In tests the same ``build`` binds a fake instead (`connector.testing`).

Neither Starlette nor FastAPI is imported when this module is: the lifespan
needs only the app's ``state`` attribute, and `service_dependency` imports
Starlette when it is called, for the connection type FastAPI injects. So
``import connector`` works without them; they are needed only by the apps
that use this.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the annotation
# of the dependency made in `service_dependency`, which must be the class itself.

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from ._errors import ConfigError
from ._runtime import Runtime

__all__ = ["ConnectorState", "connector_lifespan", "connector_state", "service_dependency"]

Bindings = Mapping[str, object]
Build = Callable[[Runtime], Bindings | Awaitable[Bindings | None] | None]
Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


class ConnectorState:
    """What the lifespan keeps on ``app.state``: the running runtime and the bindings."""

    __slots__ = ("bindings", "runtime")

    def __init__(self, runtime: Runtime, bindings: Bindings) -> None:
        self.runtime = runtime
        self.bindings = dict(bindings)

    def __repr__(self) -> str:
        return f"<ConnectorState bindings={sorted(self.bindings)} services={self.runtime.services}>"

    def get(self, name: str) -> Any:
        """What ``name`` is bound to, else the runtime's service of that name."""
        if name in self.bindings:
            return self.bindings[name]
        if name in self.runtime.services:
            return self.runtime.service(name)
        raise ConfigError("service", name, "is neither bound by the build nor registered")


def _state_name(value: object) -> str:
    if not isinstance(value, str) or not value.isidentifier():
        raise ConfigError("state_name", value, "must be a Python identifier")
    return value


def connector_lifespan(
    build: Build | None = None,
    *,
    runtime: Callable[[], Runtime] = Runtime,
    lifespan: Lifespan | None = None,
    state_name: str = "connector",
) -> Lifespan:
    """A lifespan for ``Starlette(lifespan=...)`` or ``FastAPI(lifespan=...)``.

    At startup it makes a runtime with ``runtime()`` (a factory: a runtime
    runs once, an app may start again), enters it, calls ``build(rt)`` (plain
    or async) to register services and return name -> implementation
    bindings, and stores a `ConnectorState` as ``app.state.<state_name>``.
    An app's own ``lifespan`` runs inside, so its startup can use the
    services. At shutdown the runtime stops gracefully (DESIGN.md §3).
    """
    if build is not None and not callable(build):
        raise ConfigError("build", build, "must be callable with the Runtime")
    if not callable(runtime):
        raise ConfigError("runtime", runtime, "must be a callable returning a Runtime")
    if lifespan is not None and not callable(lifespan):
        raise ConfigError("lifespan", lifespan, "must be a lifespan (a callable taking the app)")
    name = _state_name(state_name)

    @asynccontextmanager
    async def connector(app: Any) -> AsyncIterator[Any]:
        rt = runtime()
        if not isinstance(rt, Runtime):
            raise ConfigError("runtime", rt, "the factory must return a Runtime")
        async with rt:
            made = build(rt) if build is not None else None
            bindings = await made if inspect.isawaitable(made) else made
            if bindings is None:
                bindings = {}
            elif not isinstance(bindings, Mapping) or not all(
                isinstance(key, str) and key for key in bindings
            ):
                raise ConfigError("build", bindings, "must return a mapping of names or None")
            setattr(app.state, name, ConnectorState(rt, bindings))
            try:
                if lifespan is None:
                    yield None
                else:
                    async with lifespan(app) as inner:
                        yield inner
            finally:
                # A handler reached after shutdown finds no state, not a closed runtime.
                delattr(app.state, name)

    return connector


def connector_state(app: Any, state_name: str = "connector") -> ConnectorState:
    """The `ConnectorState` the lifespan stored on ``app``; a clear error if it is not running."""
    state = getattr(getattr(app, "state", None), _state_name(state_name), None)
    if not isinstance(state, ConnectorState):
        raise ConfigError(
            "lifespan", None, "the app is not running connector_lifespan (pass it as lifespan=)"
        )
    return state


def service_dependency(name: str, *, state_name: str = "connector") -> Callable[..., Any]:
    """A FastAPI dependency giving what ``name`` is bound to (or the service registered so).

    ``email: EmailService = Depends(service_dependency("email"))``; the
    handler's annotation gives the type.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError("name", name, "must be a non-empty string")
    state = _state_name(state_name)
    # Optional dependency, imported only by apps that use it (see the module docstring).
    from starlette.requests import HTTPConnection  # noqa: PLC0415

    def dependency(connection: HTTPConnection) -> Any:
        return connector_state(connection.app, state).get(name)

    return dependency
