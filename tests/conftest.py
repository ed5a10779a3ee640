"""Suite-wide settings: hypothesis profiles and the anyio backends every async test runs on.

``HYPOTHESIS_PROFILE=ci`` (set by .ci/run) runs the longer profile; the default
keeps a local run quick.
"""

from __future__ import annotations

import os

import pytest
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
