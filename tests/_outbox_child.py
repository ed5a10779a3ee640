"""A process for tests/test_outbox_durable.py to kill: it defers requests, then waits.

``python tests/_outbox_child.py FILE COUNT`` registers a service whose provider
is down (every request answers 503), makes COUNT deferrable requests into the
SQLite outbox FILE (each one carrying the idempotency key ``evt-N`` in its
header), prints ``ready`` and sleeps; its dispatcher keeps probing the dead
provider, so entries are leased and rescheduled when the kill comes.
"""

from __future__ import annotations

import sys

import anyio

from connector import Breaker, HttpRequest, HttpResponse, Retry, Runtime
from connector._outbox import Deferred, OutboxPolicy
from connector._outbox_sqlite import SqliteOutbox
from connector.testing import FakeTransport

POLICY = OutboxPolicy(lease=1.0, initial_delay=0.05, max_delay=0.2, poll_interval=0.05)


async def main(path: str, count: int) -> None:
    down = FakeTransport(handler=lambda request: HttpResponse(status=503), delay=0.01)
    async with Runtime(outbox=SqliteOutbox(path), outbox_policy=POLICY) as rt:
        hooks = rt.register(
            "hooks",
            transport=lambda: down,
            retry=Retry(attempts=1),
            breaker=Breaker(failure_threshold=1, open_duration=0.1),
        )
        for n in range(count):
            key = f"evt-{n}"
            request = HttpRequest(
                method="POST",
                url=f"https://hooks.example/orders/{n}",
                headers={"Idempotency-Key": key},
                content=b'{"paid": true}',
            )
            receipt = await hooks.request(request, idempotency_key=key, on_unavailable="defer")
            if not isinstance(receipt, Deferred):
                raise SystemExit(f"request {n} was not deferred: {receipt!r}")
        print("ready", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], int(sys.argv[2]))
