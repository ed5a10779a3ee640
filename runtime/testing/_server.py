"""`serve_asgi`: an ASGI app served over real loopback HTTP, for tests and benchmarks.

uvicorn runs in a thread with its own asyncio loop, so the code under test
talks to it through real sockets whichever event loop it runs on (asyncio or
trio) and the server never competes with it for its loop. Needs uvicorn (the
``testing`` extra).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

__all__ = ["ASGIApp", "serve_asgi"]

ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]


@contextmanager
def serve_asgi(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    startup_timeout: float = 10.0,
    shutdown_timeout: float = 5.0,
) -> Iterator[str]:
    """Serve ``app`` on a free port of ``host``; yields its base URL (``http://host:port``).

    Leaving the block stops the server: it stops accepting, lets requests in
    progress finish for up to a second, then cancels them, and the thread is
    joined (up to ``shutdown_timeout``). Use it from a synchronous fixture.
    """
    import uvicorn  # noqa: PLC0415 - optional: the 'testing' extra

    ready = threading.Event()

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            try:
                await super().startup(sockets)
            finally:
                ready.set()

    # Bound here, so the port is known (and taken) before the thread starts. The
    # protocol is named: asyncio sets TCP_NODELAY only on sockets whose proto
    # says TCP, and without it every response waits out a delayed ACK (~40 ms).
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app,
        http="h11",
        ws="none",
        lifespan="off",
        loop="asyncio",
        log_config=None,  # leave the process's logging alone; uvicorn's loggers propagate
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = Server(config)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[listener])
        except BaseException as error:  # reported to the caller below, not lost in the thread
            failure.append(error)
            ready.set()

    thread = threading.Thread(target=run, name=f"serve_asgi:{port}", daemon=True)
    thread.start()
    try:
        if not ready.wait(startup_timeout) or not server.started:
            raise RuntimeError(f"the ASGI server on {host}:{port} did not start") from (
                failure[0] if failure else None
            )
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(shutdown_timeout)
        listener.close()
