"""The heartbeat store, in Redis: what TRON sweeps.

Keys (under ``PAS_REDIS_PREFIX``):

- ``hb:running``   sorted set: attempt id -> epoch of its last beat (``started_at`` until
                   the first one). TRON asks it for members older than the threshold, so
                   a sweep costs O(log n + overdue), not O(supervised).
- ``hb:a:<id>``    hash: agent, job, progress, message, state, ts of the last beat.
- ``hb:job:<job>`` the job's latest attempt id, for beats sent over HTTP by job id.
- ``hb:agents``    hash: agent id -> epoch of its last beat (any job, or none).

Every write is one round trip (a pipeline or a Lua script).
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from django.conf import settings

from ..errors import ServiceError
from . import effects
from .redis import redis_client, rkey

log = logging.getLogger(__name__)

# A details hash outlives its attempt only briefly: long enough for the HMI to show it.
DETAILS_TTL_S = 3600


def _running() -> str:
    return rkey("hb", "running")


def hb_register(
    attempt_id: int, *, agent_id: str, job_id: str, now: float | None = None, worker: str = ""
) -> None:
    """Start supervising a running attempt (its first beat is its start).

    ``worker`` names the process that runs it (``stores.workers``): TRON tells an
    agent that stopped beating from a worker that stopped as a whole.
    """
    now = time.time() if now is None else now
    details = rkey("hb", "a", attempt_id)
    mapping = {"agent": agent_id, "job": job_id, "ts": now, "progress": 0, "state": "running"}
    if worker:
        mapping["worker"] = worker
    pipe = redis_client().pipeline(transaction=False)
    pipe.zadd(_running(), {str(attempt_id): now})
    pipe.hset(details, mapping=mapping)
    pipe.expire(details, DETAILS_TTL_S)
    pipe.set(rkey("hb", "job", job_id), attempt_id, ex=DETAILS_TTL_S * 24)
    pipe.hset(rkey("hb", "agents"), agent_id, now)
    pipe.execute()


# One round trip, one command: refresh a supervised attempt's score and details. The
# ZSCORE test comes first, so a late beat from an attempt that is no longer supervised
# writes nothing at all (not even its details hash, which would then never expire).
# KEYS: running zset, details hash, agents hash; ARGV: attempt id, now, agent id, then
# field/value pairs for the details. Returns 1 (recorded) or 0 (not supervised).
BEAT_LUA = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], 'ts', ARGV[2], unpack(ARGV, 4))
redis.call('HSET', KEYS[3], ARGV[3], ARGV[2])
return 1
"""


@functools.cache
def _beat_script(client: Any) -> Any:
    return client.register_script(BEAT_LUA)


def hb_beat(
    attempt_id: int | str,
    *,
    agent_id: str,
    progress: float | None = None,
    message: str = "",
    state: str = "",
    now: float | None = None,
) -> bool:
    """Record a beat; return False when the attempt is no longer supervised.

    Only a member that is still in the running set is updated: a late beat from an
    attempt TRON already timed out can never bring it back. One command (a Lua script)
    instead of a three-command pipeline: the client's own work per beat is what bounds
    a process's beat rate, not Redis.
    """
    now = time.time() if now is None else now
    fields: list[Any] = []
    if progress is not None:
        fields += ["progress", progress]
    if message:
        fields += ["message", message[:500]]
    if state:
        fields += ["state", state[:32]]
    keys = [_running(), rkey("hb", "a", attempt_id), rkey("hb", "agents")]
    return bool(_beat_script(redis_client())(keys=keys, args=[attempt_id, now, agent_id, *fields]))


def hb_agent_beat(agent_id: str, *, now: float | None = None) -> None:
    """Record that an agent is alive without a job (display only)."""
    redis_client().hset(rkey("hb", "agents"), agent_id, time.time() if now is None else now)


def hb_unregister(attempt_id: int, *, job_id: str | None = None) -> bool:
    """Stop supervising an attempt; return whether it was still supervised.

    The job's pointer ``hb:job:<job>`` stays on the ended attempt until the job's next
    attempt registers (or it expires): a late beat sent over HTTP for the job then finds
    an attempt that is no longer supervised and is told so (409: stop working), instead
    of a 404 that reads as "wrong job id". ``job_id`` is accepted for the callers' sake.
    """
    return bool(redis_client().zrem(_running(), str(attempt_id)))


def hb_unregister_after_end(attempt_id: int) -> None:
    """Stop supervising an attempt whose end is already committed; never raises.

    Redis not answering here loses nothing: TRON's next sweep finds the entry, sees the
    attempt is no longer running, and drops it.
    """
    try:
        hb_unregister(attempt_id)
    except Exception as exc:  # noqa: BLE001 - redis errors of every kind
        log.warning("attempt %s ended but stays in the heartbeat set (Redis: %s)", attempt_id, exc)
        effects.failed("heartbeat", f"attempt {attempt_id} not unregistered")


def hb_unregister_many(attempt_ids: list[int]) -> int:
    """Stop supervising many attempts in one command; return how many were supervised."""
    if not attempt_ids:
        return 0
    return int(redis_client().zrem(_running(), *map(str, attempt_ids)))


def hb_overdue(cutoff: float, limit: int = 10_000) -> list[tuple[int, float]]:
    """Return ``(attempt id, last beat)`` for attempts whose last beat is <= ``cutoff``."""
    rows = redis_client().zrangebyscore(
        _running(), "-inf", cutoff, start=0, num=limit, withscores=True
    )
    return [(int(member), float(score)) for member, score in rows]


def hb_last(attempt_id: int) -> float | None:
    score = redis_client().zscore(_running(), str(attempt_id))
    return None if score is None else float(score)


def hb_last_many(attempt_ids: list[int]) -> list[float | None]:
    """Return each attempt's last beat (None when not supervised), in one round trip."""
    if not attempt_ids:
        return []
    scores = redis_client().zmscore(_running(), [str(a) for a in attempt_ids])
    return [None if score is None else float(score) for score in scores]


def hb_workers(attempt_ids: list[int]) -> dict[int, str]:
    """Return the worker of each attempt that has one recorded, in one round trip."""
    pipe = redis_client().pipeline(transaction=False)
    for attempt_id in attempt_ids:
        pipe.hget(rkey("hb", "a", attempt_id), "worker")
    return {a: w.decode() for a, w in zip(attempt_ids, pipe.execute(), strict=True) if w}


def hb_job_attempt(job_id: str) -> int | None:
    value = redis_client().get(rkey("hb", "job", job_id))
    return None if value is None else int(value)


def hb_details(attempt_id: int) -> dict[str, str]:
    raw = redis_client().hgetall(rkey("hb", "a", attempt_id))
    return {k.decode(): v.decode() for k, v in raw.items()}


def hb_agents() -> dict[str, float]:
    """Return every agent's last beat epoch."""
    raw = redis_client().hgetall(rkey("hb", "agents"))
    return {k.decode(): float(v) for k, v in raw.items()}


def hb_supervised_count() -> int:
    return int(redis_client().zcard(_running()))


# One round trip for a beat sent over HTTP by job id: find the job's running attempt,
# check it belongs to the agent, refresh its score and details. Returns 1 (recorded),
# 0 (the attempt is no longer supervised), -1 (no running attempt for that job),
# -2 (the job's attempt belongs to another agent), 2 (agent-only beat).
HTTP_BEAT_LUA = """
local prefix, agent, now = ARGV[1], ARGV[2], ARGV[3]
redis.call('HSET', prefix .. ':hb:agents', agent, now)
if ARGV[4] == '' then return 2 end
local aid = redis.call('GET', prefix .. ':hb:job:' .. ARGV[4])
if not aid then return -1 end
local details = prefix .. ':hb:a:' .. aid
local owner = redis.call('HGET', details, 'agent')
if owner ~= agent then return -2 end
if not redis.call('ZSCORE', prefix .. ':hb:running', aid) then return 0 end
redis.call('ZADD', prefix .. ':hb:running', now, aid)
redis.call('HSET', details, 'ts', now)
if ARGV[5] ~= '' then redis.call('HSET', details, 'progress', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', details, 'message', ARGV[6]) end
if ARGV[7] ~= '' then redis.call('HSET', details, 'state', ARGV[7]) end
return 1
"""

HTTP_BEAT_ANSWERS = {
    1: (202, {"status": "accepted"}),
    2: (202, {"status": "accepted"}),
    0: (409, {"detail": "job_id: its attempt is no longer running (timed out or ended)"}),
    -1: (404, {"detail": "job_id: no running attempt for that job"}),
    -2: (403, {"detail": "job_id: the job belongs to another agent"}),
}


def http_beat_args(
    agent_id: str, body: dict[str, Any], *, prefix: str, now: float | None = None
) -> list[Any]:
    """Validate a heartbeat body; return the script's ARGV or raise ServiceError (422)."""
    if not isinstance(body, dict):
        raise ServiceError("body", "must be a JSON object", status=422)
    unknown = set(body) - {"job_id", "state", "message", "progress"}
    if unknown:
        raise ServiceError(sorted(unknown)[0], "unknown field", status=422)
    job_id = body.get("job_id") or ""
    if not isinstance(job_id, str) or len(job_id) > 120:
        raise ServiceError("job_id", "must be a string of at most 120 characters", status=422)
    progress = body.get("progress")
    if progress is not None and (
        isinstance(progress, bool)
        or not isinstance(progress, int | float)
        or not 0 <= progress <= 1
    ):
        raise ServiceError("progress", "must be a number from 0 to 1", status=422)
    message = body.get("message") or ""
    state = body.get("state") or ""
    if not isinstance(message, str) or len(message) > 500:
        raise ServiceError("message", "must be a string of at most 500 characters", status=422)
    if not isinstance(state, str) or len(state) > 32:
        raise ServiceError("state", "must be a string of at most 32 characters", status=422)
    return [
        prefix,
        agent_id,
        time.time() if now is None else now,
        job_id,
        "" if progress is None else progress,
        message,
        state,
    ]


def hb_http_beat(agent_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Record a beat sent over HTTP (the Django fallback of the lean ASGI route)."""
    args = http_beat_args(agent_id, body, prefix=settings.PAS_REDIS_PREFIX)
    code = int(redis_client().eval(HTTP_BEAT_LUA, 0, *args))
    return HTTP_BEAT_ANSWERS[code]
