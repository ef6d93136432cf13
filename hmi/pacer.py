"""The pacer: the stream writes of one process spread over turns of its event loop."""

from __future__ import annotations

import asyncio

TURN_BUDGET_S = 0.002  # Stream writes per event-loop turn.


class Pacer:
    """Spread the writes of every stream of a process over event-loop turns.

    A storm wakes every stream at once, and a turn of the loop runs every task that is
    ready: fifty streams writing a storm's events and fragments made one turn last tens
    of milliseconds. The heartbeat route shares the loop and needs a few turns to answer
    a beat (request, Redis, reply), so its latency was a few of those turns. With the
    pacer a turn spends about ``budget_s`` on stream writes; the streams past it wait
    for the next turn, after the I/O that arrived meanwhile (a beat) has had its go.
    """

    def __init__(self, budget_s: float = TURN_BUDGET_S) -> None:
        self.budget_s = budget_s
        self.spent = 0.0
        self.reset_pending = False

    def _reset(self) -> None:
        self.spent = 0.0
        self.reset_pending = False

    async def turn(self) -> None:
        """Return when this turn still has budget left (at once, mostly)."""
        while self.spent >= self.budget_s:
            self._schedule_reset()
            await asyncio.sleep(0)  # The next turn: after the I/O that waited.

    def spend(self, seconds: float) -> None:
        self.spent += seconds
        self._schedule_reset()

    def _schedule_reset(self) -> None:
        if not self.reset_pending:
            self.reset_pending = True
            asyncio.get_running_loop().call_soon(self._reset)  # Runs at the next turn.
