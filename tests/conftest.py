"""Suite-wide settings: hypothesis profiles and the anyio backends every async test runs on.

``HYPOTHESIS_PROFILE=ci`` (set by .ci/run) runs the longer profile; the default
keeps a local run quick.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from _servers import OwnRedis, unavailable
from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=50, deadline=None)
settings.register_profile(
    "ci",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["asyncio", "trio"])
def virtual_anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    """An anyio backend whose clock is virtual: sleeps take no real time.

    A test module opts in by overriding ``anyio_backend`` with this fixture.
    """
    if request.param == "trio":
        from trio.testing import MockClock

        return ("trio", {"clock": MockClock(autojump_threshold=0)})
    from connector.sim._loop import VirtualTimeLoop

    return ("asyncio", {"loop_factory": VirtualTimeLoop})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drivers that exist only for asyncio (asyncpg, redis-py) are not run on trio.

    A test marked ``asyncio_only``, or parametrised with a value its module lists
    in ``ASYNCIO_ONLY_PARAMS``, is deselected for trio: not run, and not
    reported as a skip, since nothing is missing.
    """
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        params: dict[str, object] = dict(callspec.params) if callspec is not None else {}
        only_asyncio = item.get_closest_marker("asyncio_only") is not None or any(
            value in getattr(item.module, "ASYNCIO_ONLY_PARAMS", ())
            for value in params.values()
            if isinstance(value, str)
        )
        trio = params.get("anyio_backend") == "trio" or (
            isinstance(params.get("anyio_backend"), tuple) and params["anyio_backend"][0] == "trio"  # type: ignore[index]
        )
        (dropped if only_asyncio and trio else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    """A redis-server of the test's own, on a free port, to kill and start again."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed")
    server = OwnRedis(binary)
    server.start()
    try:
        yield server
    finally:
        server.kill()
