"""Provider slots: at most ``max_concurrency`` model calls in flight per provider.

Keys (under ``PAS_REDIS_PREFIX``):

- ``slots:<provider>``  sorted set: attempt id -> when its lease runs out. Taking a slot
                        drops expired leases first, so a slot held by a process that
                        died frees itself; a holder renews its lease as it beats.
- ``slots:waiting``     sorted set: attempt id -> when it last asked. An attempt that
                        waits for a slot is ``queued`` (it has not started, it does
                        not time out); TRON's reconcile leaves these alone.

Shared by every worker host, so a burst of directives queues at the cap instead of
tripping the provider's rate limit.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from .redis import redis_client, rkey

WAITING_FRESH_S = 10.0

# KEYS: the provider's set; ARGV: attempt id, now, lease end, cap. 1: taken (or renewed).
TAKE_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0
"""


@functools.cache
def _take_script(client: Any) -> Any:
    return client.register_script(TAKE_LUA)


def slot_take(provider: str, attempt_id: int, *, cap: int, lease_s: float) -> bool:
    """Take (or renew) a slot of ``provider`` for the attempt; False when all are busy."""
    now = time.time()
    client = redis_client()
    keys = [rkey("slots", provider)]
    taken = bool(_take_script(client)(keys=keys, args=[attempt_id, now, now + lease_s, cap]))
    if taken:
        client.zrem(rkey("slots", "waiting"), attempt_id)
    else:
        client.zadd(rkey("slots", "waiting"), {str(attempt_id): now})
    return taken


def slot_renew(provider: str, attempt_id: int, *, lease_s: float) -> None:
    """Push the lease of a slot the attempt holds further out (no-op if it holds none)."""
    redis_client().zadd(rkey("slots", provider), {str(attempt_id): time.time() + lease_s}, xx=True)


def slot_give_back(provider: str, attempt_id: int) -> None:
    pipe = redis_client().pipeline(transaction=False)
    pipe.zrem(rkey("slots", provider), attempt_id)
    pipe.zrem(rkey("slots", "waiting"), attempt_id)
    pipe.execute()


def slots_in_use(provider: str) -> int:
    """Return how many unexpired slots of ``provider`` are held."""
    client = redis_client()
    return int(client.zcount(rkey("slots", provider), time.time(), "+inf"))


def waiting_for_slots(attempt_ids: list[int]) -> set[int]:
    """Return which of the attempts are waiting for a slot right now."""
    if not attempt_ids:
        return set()
    scores = redis_client().zmscore(rkey("slots", "waiting"), [str(a) for a in attempt_ids])
    fresh = time.time() - WAITING_FRESH_S
    return {a for a, s in zip(attempt_ids, scores, strict=True) if s is not None and s > fresh}
