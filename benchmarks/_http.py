"""Section "http": 64 concurrent callers against a real loopback HTTP server.

The server is uvicorn (h11) in a child process, so it runs on its own core and
its work is not timed with the client's; it reads each request's body and
answers a small JSON object. A sample is ``ops // 100`` POSTs of a small JSON
body (1,000 in a full run, 200 with --quick; the table's ns/op is per request),
shared among 64 callers, from the first caller started to the last answer
decoded. Both cases open their client inside the sample, so both pay the same
64 connection set-ups; both pay httpcore's pool bookkeeping, which grows with
the number of connections and is most of the client's CPU time at 64.

"bare httpx" is one `httpx.AsyncClient` limited to 64 connections, encoding
and decoding the JSON itself. "HttpService" sends the same requests through
`HttpService` (breaker, retry and retry budget, bulkhead of 64, a client of 64
connections) and decodes `ApiResponse.json()`. The figures give requests per
second for each and their ratio: the issue's goal is at least 85 % of bare.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec

from connector import Runtime
from connector._endpoint import Endpoint
from connector._http_service import HttpService

from ._harness import Case, CaseResult, Figure, Runner, Section, Settings, run_cases

__all__ = ["CALLERS", "SECTION", "app", "serve"]

CALLERS = 64
_REQUESTS_PER_OP = 100  # a sample is ops // 100 requests
_GOAL_RATIO = 0.85
_ANSWER = b'{"id":"ch_1","status":"succeeded","amount":1000}'
_PAYLOAD = {"amount": 1000, "currency": "eur", "source": "tok_visa"}
_PATH = "/v1/charges"
_ROOT = Path(__file__).resolve().parent.parent


async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    """The provider: read the body, answer `_ANSWER` (a raw ASGI app: the least server work)."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(_ANSWER))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": _ANSWER})


def serve() -> None:
    """Run in the child process: serve `app`, print the URL, stop when stdin closes."""
    from connector.testing import serve_asgi

    with serve_asgi(app) as url:
        print(url, flush=True)
        sys.stdin.read()


@contextmanager
def _server() -> Iterator[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", "from benchmarks._http import serve; serve()"],
        cwd=_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        url = child.stdout.readline().strip()
        if not url:
            raise RuntimeError(f"the benchmark server did not start (exit code {child.poll()})")
        yield url
    finally:
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _swarm(requests: int, call: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """`CALLERS` callers sharing ``requests`` calls, each caller making its share in turn."""
    shares = [requests // CALLERS + (i < requests % CALLERS) for i in range(CALLERS)]

    async def caller(share: int) -> None:
        for _ in range(share):
            await call()

    async def run() -> None:
        async with anyio.create_task_group() as group:
            for share in shares:
                group.start_soon(caller, share)

    return run


def _limits() -> httpx.Limits:
    return httpx.Limits(max_connections=CALLERS, max_keepalive_connections=CALLERS)


def _cases(url: str) -> list[Case]:
    def bare(ops: int) -> Runner:
        async def run() -> None:
            async with httpx.AsyncClient(base_url=url, limits=_limits(), timeout=30) as client:

                async def call() -> None:
                    response = await client.post(_PATH, json=_PAYLOAD)
                    response.raise_for_status()
                    response.json()

                await _swarm(ops, call)()

        return run

    def service(ops: int) -> Runner:
        endpoint = Endpoint.create(_PATH)

        async def run() -> None:
            async with Runtime() as rt:
                api = HttpService(rt, "bench", base_url=url, max_concurrency=CALLERS, timeout=30)

                async def call() -> None:
                    (await api.request(endpoint, json=_PAYLOAD)).json()

                await _swarm(ops, call)()

        return run

    note = f"{CALLERS} callers, {CALLERS} connections"
    return [
        Case(name="bare httpx", setup=bare, asynchronous=True, note=note, requires=("uvicorn",)),
        Case(
            name="HttpService",
            setup=service,
            asynchronous=True,
            baseline="bare httpx",
            note="breaker, retry + budget, bulkhead 64",
            requires=("uvicorn",),
        ),
    ]


def figures(results: list[CaseResult]) -> list[Figure]:
    """Requests per second for each case, and HttpService's share of bare httpx's."""
    found: list[Figure] = []
    for result in results:
        if result.median is None:
            continue
        found.append(
            Figure(
                section="http",
                name=f"{result.name}: rate",
                backend=result.backend,
                value=round(1e9 / result.median),
                unit="requests/s",
                note=f"{CALLERS} callers over loopback",
            )
        )
    for result in results:
        if result.ratio is not None:
            found.append(
                Figure(
                    section="http",
                    name=f"{result.name} / {result.baseline}",
                    backend=result.backend,
                    value=1 / result.ratio,
                    unit="x rate",
                    note=f"goal >= {_GOAL_RATIO:.0%}",
                )
            )
    return found


def run(settings: Settings) -> list[CaseResult | Figure]:
    sized = msgspec.structs.replace(settings, ops=max(CALLERS, settings.ops // _REQUESTS_PER_OP))
    if importlib.util.find_spec("uvicorn") is None:
        results = run_cases("http", _cases("http://127.0.0.1:9"), sized)  # all skipped
    else:
        with _server() as url:
            results = run_cases("http", _cases(url), sized)
    return [*results, *figures(results)]


SECTION = Section(run=run, packages=("httpx", "uvicorn"))
