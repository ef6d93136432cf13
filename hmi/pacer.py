"""The pacer: the stream writes of one process spread over turns of its event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterator

TURN_BUDGET_S = 0.002  # Stream writes per event-loop turn.
URGENT_BUDGET_S = 0.0003  # ... while urgent work (a heartbeat's answer) is in the loop.

_urgent = 0  # Urgent pieces of work in this process's event loop now.


@contextlib.contextmanager
def urgent() -> Iterator[None]:
    """Mark work of the event loop that must not queue behind stream writes.

    The heartbeat route answers a beat over a few turns of the loop (request, Redis,
    reply). While one is in flight, every pacer of the process spends a smaller budget
    per turn, so those turns stay short: in a storm (2,000 events to 50 streams, 200
    agents beating) the beats' p95 went from 79-109 ms to 42-76 ms, and the events'
    p95 from emit to receipt from 405-441 ms to 438-486 ms.
    """
    global _urgent
    _urgent += 1
    try:
        yield
    finally:
        _urgent -= 1


class Pacer:
    """Spread the writes of every stream of a process over event-loop turns.

    A storm wakes every stream at once, and a turn of the loop runs every task that is
    ready: fifty streams writing a storm's events and fragments made one turn last tens
    of milliseconds. The heartbeat route shares the loop and needs a few turns to answer
    a beat (request, Redis, reply), so its latency was a few of those turns. With the
    pacer a turn spends about ``budget_s`` on stream writes (less while ``urgent``
    work is in flight); the streams past it wait for the next turn, after the I/O that
    arrived meanwhile (a beat) has had its go.
    """

    def __init__(self, budget_s: float = TURN_BUDGET_S) -> None:
        self.budget_s = budget_s
        self.spent = 0.0
        self.reset_pending = False
        # Streams past the budget wait in line, each on a future of its own: a turn
        # wakes only those it lets write (a loop of sleep(0) woke every waiting stream
        # at every turn: at 500 streams a tenth of a core).
        self.waiting: deque[asyncio.Future[None]] = deque()
        self.write_s = 0.0002  # What a write costs, on average (to size a turn's release).

    def budget(self) -> float:
        return min(self.budget_s, URGENT_BUDGET_S) if _urgent else self.budget_s

    def _reset(self) -> None:
        """A new turn: let as many waiting streams write as its budget will carry."""
        self.spent = 0.0
        self.reset_pending = False
        room = max(1, int(self.budget() / max(self.write_s, 1e-6)))
        while self.waiting and room:
            waiter = self.waiting.popleft()
            if not waiter.done():  # A stream that left while it waited is skipped.
                waiter.set_result(None)
                room -= 1
        if self.waiting:
            self._schedule_reset()

    async def turn(self) -> None:
        """Return when this stream may write (at once, mostly; else in a later turn)."""
        if self.spent < self.budget() and not self.waiting:
            return
        again = False
        while True:
            waiter = asyncio.get_running_loop().create_future()
            if again:  # Let go past what the turn carried: first in line for the next.
                self.waiting.appendleft(waiter)
            else:
                self.waiting.append(waiter)
            self._schedule_reset()
            await waiter  # After the I/O that arrived meanwhile (a beat) has had its go.
            if self.spent < self.budget():
                return
            again = True

    def spend(self, seconds: float) -> None:
        self.spent += seconds
        self.write_s += (seconds - self.write_s) / 8
        self._schedule_reset()

    def _schedule_reset(self) -> None:
        if not self.reset_pending:
            self.reset_pending = True
            asyncio.get_running_loop().call_soon(self._reset)  # Runs at the next turn.
