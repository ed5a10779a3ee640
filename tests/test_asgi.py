"""ASGI wiring, with the original's integration test ported to FastAPI.

The original (Laravel) posted ``/api/welcome`` with an email and a name and
expected 200 and one email sent through ``EmailServiceConnectorInterface``.
Here the lifespan opens the runtime, the build binds ``"email"`` to a
`FakeEmailService` running through a registered service, and the handler gets
it by dependency.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from html import escape
from typing import Annotated, Any

import anyio
import httpx
import pytest
from fastapi import Depends, FastAPI
from pydantic import AfterValidator, BaseModel, Field

from connector import ConfigError, Runtime, Service
from connector._asgi import (
    ConnectorState,
    connector_lifespan,
    connector_state,
    service_dependency,
)
from connector._email import EmailMessage, EmailService
from connector._formats import check_email_address
from connector.testing import FakeEmailService

Message = MutableMapping[str, Any]


class Welcome(BaseModel):
    email: Annotated[str, AfterValidator(check_email_address)]
    name: Annotated[str, Field(min_length=1, max_length=100)]


def welcome_app(fake: FakeEmailService | None = None, **lifespan: Any) -> FastAPI:
    """The application under test: it knows only the `EmailService` protocol."""

    def build(rt: Runtime) -> dict[str, object]:
        service = rt.register("email")
        return {"email": fake if fake is not None else FakeEmailService(service)}

    app = FastAPI(lifespan=connector_lifespan(build, **lifespan))

    @app.post("/api/welcome")
    async def send_welcome(
        body: Welcome, email: Annotated[EmailService, Depends(service_dependency("email"))]
    ) -> dict[str, str]:
        await email.send_transactional_email(
            EmailMessage(
                to=[body.email], subject="Welcome!", html=f"<h1>Welcome, {escape(body.name)}!</h1>"
            )
        )
        return {"message": "Email sent"}

    return app


@asynccontextmanager
async def lifespan_protocol(app: FastAPI) -> AsyncIterator[None]:
    """Drive the ASGI lifespan protocol as a server does: startup, then shutdown."""
    to_app, app_receives = anyio.create_memory_object_stream[Message](1)
    app_sends, from_app = anyio.create_memory_object_stream[Message](1)

    async def receive() -> Message:
        return await app_receives.receive()

    async def send(message: Message) -> None:
        await app_sends.send(message)

    scope: Message = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    async with to_app, app_receives, app_sends, from_app, anyio.create_task_group() as tasks:
        tasks.start_soon(app, scope, receive, send)
        await to_app.send({"type": "lifespan.startup"})
        assert (await from_app.receive())["type"] == "lifespan.startup.complete"
        try:
            yield
        finally:
            await to_app.send({"type": "lifespan.shutdown"})
            assert (await from_app.receive())["type"] == "lifespan.shutdown.complete"


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app started as a server starts it, and a client speaking ASGI to it in this loop."""
    async with lifespan_protocol(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def fake_from(app: FastAPI) -> FakeEmailService:
    bound = connector_state(app).get("email")
    assert isinstance(bound, FakeEmailService)
    return bound


@pytest.mark.anyio
async def test_welcome_sends_one_email_through_the_runtime() -> None:
    app = welcome_app()
    async with running(app) as client:
        state = connector_state(app)
        response = await client.post(
            "/api/welcome", json={"email": "user@example.com", "name": "John <3"}
        )
        fake = fake_from(app)
        was_running = state.runtime.running
    assert was_running
    assert response.status_code == 200
    assert response.json() == {"message": "Email sent"}
    (sent,) = fake.sent
    assert sent.to == ("user@example.com",)
    assert sent.subject == "Welcome!"
    assert sent.html == "<h1>Welcome, John &lt;3!</h1>"
    assert fake.name == "email"  # it ran through the registered service
    assert not state.runtime.running  # the lifespan closed it
    with pytest.raises(ConfigError):
        connector_state(app)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "name": "John"},
        {"email": "user@example.com\r\nBcc: all@example.com", "name": "John"},
        {"email": "user@example.com", "name": ""},
        {"name": "John"},
    ],
)
async def test_invalid_input_is_422_and_nothing_is_sent(body: dict[str, str]) -> None:
    app = welcome_app()
    async with running(app) as client:
        response = await client.post("/api/welcome", json=body)
        fake = fake_from(app)
    assert response.status_code == 422
    assert fake.sent == []
    assert fake.calls == []


@pytest.mark.anyio
async def test_a_provider_failure_reaches_the_handler_as_a_typed_error() -> None:
    fake = FakeEmailService()
    fake.fail_next(ConnectionResetError("reset by peer"))
    app = welcome_app(fake)

    @app.exception_handler(ConnectionResetError)
    async def unavailable(request: Any, error: ConnectionResetError) -> Any:
        from fastapi.responses import JSONResponse

        return JSONResponse({"error": str(error)}, status_code=503)

    async with running(app) as client:
        response = await client.post(
            "/api/welcome", json={"email": "user@example.com", "name": "John"}
        )
    assert response.status_code == 503
    assert fake.sent == []


@pytest.mark.anyio
async def test_async_build_own_lifespan_and_registered_services_by_name() -> None:
    seen: list[str] = []

    async def build(rt: Runtime) -> None:
        rt.register("stripe")

    @asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[None]:
        # The app's own startup runs inside: the services are there already.
        seen.append(connector_state(app, "conn").get("stripe").name)
        yield
        seen.append("stopped")

    app = FastAPI(lifespan=connector_lifespan(build, lifespan=own, state_name="conn"))

    @app.get("/service")
    async def which(
        service: Annotated[Service, Depends(service_dependency("stripe", state_name="conn"))],
    ) -> dict[str, str]:
        return {"service": service.name}

    @app.get("/missing")
    async def missing(
        service: Annotated[Any, Depends(service_dependency("nope", state_name="conn"))],
    ) -> None:
        raise AssertionError("unreachable")

    async with running(app) as client:
        assert (await client.get("/service")).json() == {"service": "stripe"}
        with pytest.raises(ConfigError, match="neither bound"):
            await client.get("/missing")
    assert seen == ["stripe", "stopped"]


@pytest.mark.anyio
async def test_a_failing_build_closes_the_runtime() -> None:
    runtimes: list[Runtime] = []

    def make() -> Runtime:
        runtimes.append(Runtime())
        return runtimes[-1]

    def build(rt: Runtime) -> dict[str, object]:
        return {"": object()}

    app = FastAPI(lifespan=connector_lifespan(build, runtime=make))
    with pytest.raises(ConfigError, match="build"):
        async with app.router.lifespan_context(app):
            pass
    assert not runtimes[0].running


def test_bad_wiring_is_refused_early() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"build": "email"}, "build"),
        ({"runtime": Runtime()}, "runtime"),
        ({"lifespan": 3}, "lifespan"),
        ({"state_name": "not an identifier"}, "state_name"),
    ]
    for kwargs, field in cases:
        with pytest.raises(ConfigError) as info:
            connector_lifespan(**kwargs)
        assert info.value.field == field
    with pytest.raises(ConfigError):
        service_dependency("")
    with pytest.raises(ConfigError, match="not running connector_lifespan"):
        connector_state(FastAPI())
    assert "email" in repr(ConnectorState(Runtime(), {"email": object()}))


def test_connector_imports_without_starlette_or_fastapi() -> None:
    script = (
        "import sys\n"
        "sys.modules['starlette'] = sys.modules['fastapi'] = None\n"
        "import connector, connector._asgi, connector.testing\n"
        "lifespan = connector._asgi.connector_lifespan()\n"
        "try:\n"
        "    connector._asgi.service_dependency('email')\n"
        "except ImportError:\n"
        "    print('needs starlette')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout == "needs starlette\n"
