"""Workers in Redis: who is alive, and which attempts each process holds.

Keys (under ``PAS_REDIS_PREFIX``):

- ``workers``            sorted set: worker id -> epoch of its last liveness tick. A
                         worker process ticks every second from a thread of its own;
                         one that stops (dead, frozen, cut off) drops out of
                         ``workers_alive`` within ``STALE_S``.
- ``workers:info``       hash: worker id -> JSON (node name, queues, host, pid).
- ``worker:<id>:held``   hash: attempt id -> "<native thread id>:<epoch held since>",
                         for every attempt the process holds (received, running, or
                         waiting for a provider slot).
- ``worker:<id>:dying``  the attempt that is killing the process on purpose (the
                         ``crash`` fault), read by the supervisor when it replaces it.

A worker id is ``<host>:<pid>``: the process, not the Celery node, so a replaced
process is a new worker even under the same node name.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from .redis import redis_client, rkey

STALE_S = 3.0  # A worker whose last tick is older than this is not alive.
HELD_TTL_S = 24 * 3600
# A hold older than this no longer accounts for a queued attempt: one whose release was
# lost (Redis frozen as the task ended) must not keep its attempt from being re-sent.
HELD_FRESH_S = 600.0


def worker_id() -> str:
    """Return this process's worker id."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_tick(wid: str, *, name: str, queues: list[str], now: float | None = None) -> None:
    """Record that a worker process is alive (one round trip)."""
    now = time.time() if now is None else now
    host, _, pid = wid.rpartition(":")
    info = {"name": name, "queues": queues, "host": host, "pid": int(pid)}
    pipe = redis_client().pipeline(transaction=False)
    pipe.zadd(rkey("workers"), {wid: now})
    pipe.hset(rkey("workers", "info"), wid, json.dumps(info))
    pipe.execute()


def worker_forget(wid: str) -> None:
    """Drop a worker that stopped cleanly (or was replaced) from the registry."""
    pipe = redis_client().pipeline(transaction=False)
    pipe.zrem(rkey("workers"), wid)
    pipe.hdel(rkey("workers", "info"), wid)
    pipe.delete(rkey("worker", wid, "held"), rkey("worker", wid, "dying"))
    pipe.execute()


def workers_alive(now: float | None = None, *, within_s: float = STALE_S) -> dict[str, Any]:
    """Return ``{worker id: info}`` of the workers that ticked in the last ``within_s``."""
    now = time.time() if now is None else now
    client = redis_client()
    ids = [w.decode() for w in client.zrangebyscore(rkey("workers"), now - within_s, "+inf")]
    if not ids:
        return {}
    infos = client.hmget(rkey("workers", "info"), ids)
    return {w: json.loads(i) if i else {} for w, i in zip(ids, infos, strict=True)}


def workers_seen(wids: list[str]) -> dict[str, float | None]:
    """Return each worker's last tick (None: never seen, or forgotten)."""
    if not wids:
        return {}
    scores = redis_client().zmscore(rkey("workers"), wids)
    return {w: (None if s is None else float(s)) for w, s in zip(wids, scores, strict=True)}


def workers_prune(before: float) -> int:
    """Forget workers whose last tick is older than ``before`` (dead long ago)."""
    client = redis_client()
    old = [w.decode() for w in client.zrangebyscore(rkey("workers"), "-inf", before)]
    for wid in old:
        worker_forget(wid)
    return len(old)


def held_add(wid: str, attempt_id: int, thread_id: int, *, now: float | None = None) -> None:
    key = rkey("worker", wid, "held")
    now = time.time() if now is None else now
    pipe = redis_client().pipeline(transaction=False)
    pipe.hset(key, attempt_id, f"{thread_id}:{now:.3f}")
    pipe.expire(key, HELD_TTL_S)
    pipe.execute()


def held_remove(wid: str, attempt_id: int) -> None:
    redis_client().hdel(rkey("worker", wid, "held"), attempt_id)


def held_get(wid: str) -> dict[int, int]:
    """Return ``{attempt id: native thread id}`` the worker process holds."""
    raw = redis_client().hgetall(rkey("worker", wid, "held"))
    return {int(a): _held_value(v)[0] for a, v in raw.items()}


def _held_value(raw: bytes) -> tuple[int, float | None]:
    """Return ``(thread id, held since)`` of a hold (since is None for an old-style one)."""
    thread, _, since = raw.decode().partition(":")
    return int(thread), (float(since) if since else None)


def dying_set(wid: str, attempt_id: int) -> None:
    """Say which attempt is about to take the process down (read after it is gone)."""
    redis_client().set(rkey("worker", wid, "dying"), attempt_id, ex=HELD_TTL_S)


def dying_get(wid: str) -> int | None:
    value = redis_client().get(rkey("worker", wid, "dying"))
    return None if value is None else int(value)


def held_by_live(now: float | None = None) -> set[int]:
    """Return every attempt a live worker process holds (received, waiting or running)
    since less than ``HELD_FRESH_S`` ago."""
    now = time.time() if now is None else now
    client = redis_client()
    pipe = client.pipeline(transaction=False)
    alive = list(workers_alive(now))
    for wid in alive:
        pipe.hgetall(rkey("worker", wid, "held"))
    held: set[int] = set()
    for rows in pipe.execute() if alive else []:
        for attempt, raw in rows.items():
            since = _held_value(raw)[1]
            if since is None or now - since < HELD_FRESH_S:
                held.add(int(attempt))
    return held


def stopped(now: float, *, quiet_s: float) -> list[str]:
    """Return the workers that stopped ticking between ``quiet_s`` and a day ago."""
    rows = redis_client().zrangebyscore(rkey("workers"), now - 86400, now - quiet_s)
    return [w.decode() for w in rows]
