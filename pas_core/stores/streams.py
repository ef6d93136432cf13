"""How many live streams are open, across every web process (for the broadcast's answer).

Keys (under ``PAS_REDIS_PREFIX``): ``streams`` (hash: web process -> open streams) and
``streams:alive:<process>`` (set with a short expiry, refreshed while the process
serves streams): a process that died stops counting when its key expires.
"""

from __future__ import annotations

from .redis import redis_client, rkey

ALIVE_S = 45


def counts_key() -> str:
    return rkey("streams")


def alive_key(proc: str) -> str:
    return rkey("streams", "alive", proc)


def streams_open() -> int:
    """Return how many streams the live web processes serve right now."""
    client = redis_client()
    counts = {k.decode(): int(v) for k, v in client.hgetall(counts_key()).items()}
    if not counts:
        return 0
    procs = list(counts)
    alive = client.pipeline(transaction=False)
    for proc in procs:
        alive.exists(alive_key(proc))
    gone = [p for p, up in zip(procs, alive.execute(), strict=True) if not up]
    if gone:
        client.hdel(counts_key(), *gone)
    return sum(n for p, n in counts.items() if p not in gone)
