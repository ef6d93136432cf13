"""Drill: Redis freezes (SIGSTOP) for 30 s while runs are at work, then goes on (SIGCONT).

A frozen Redis is worse than a dead one: connections open, commands are sent, and no
answer ever comes, so every client waits for its own timeout. PAS bounds them: Redis
commands 3 s (``stores.redis``), broker sends 3 s (``dispatch.SEND_WAIT_S``). The drill
freezes a private ``redis-server`` (never the shared one) with SIGSTOP.

Promise: while Redis is frozen, ``POST /api/runs`` answers within a few seconds (202
with a warning: stored, sent later; or a clear 503), ``GET /health`` answers 503
within a few seconds, and ``GET /metrics`` still answers (Redis reported down); after
SIGCONT everything completes: the runs in flight and the ones accepted meanwhile.
"""

from __future__ import annotations

import contextlib
import signal
import time
from typing import Any

import httpx
import pytest

from pas_core.models import Job, Run
from tests import procs
from tests.drills.common import PrivateRedis, ended, figure, wait_for
from tests.e2e import short_timings, stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(420),
]

RUNS = 5
FROZEN_S = 30.0
FEW_S = 8.0  # "A few seconds": a frozen Redis must never hold a request for 30 s.
GOAL = "Implement the parser function in code"


def _timed(call: Any) -> tuple[float, httpx.Response | None, str]:
    started = time.monotonic()
    try:
        response = call()
        return time.monotonic() - started, response, ""
    except httpx.HTTPError as exc:
        return time.monotonic() - started, None, exc.__class__.__name__


def _explain(run_ids: list[Any], url: str) -> None:
    """Print the open jobs of runs that did not end, and what the worker registry holds."""
    import redis as redis_lib
    from django.conf import settings

    client = redis_lib.Redis.from_url(url)
    prefix = settings.PAS_REDIS_PREFIX
    held = {
        key.decode(): sorted(int(a) for a in client.hkeys(key))
        for key in client.scan_iter(match=f"{prefix}:worker:*:held")
    }
    alive = client.zrange(f"{prefix}:workers", 0, -1, withscores=True)
    print(f"workers {alive} held {held}")
    for job in Job.objects.filter(run_id__in=run_ids).exclude(
        status__in=[Job.Status.SUCCEEDED, Job.Status.WAITING]
    ):
        tried = [(a.pk, a.number, a.status, a.error_kind) for a in job.attempts.order_by("number")]
        print(f"open job {job.pk} {job.status}: {tried}")


def test_a_frozen_redis_gives_clear_answers_and_everything_completes_after_it_thaws(
    tree, proc_env, api_token, tmp_path
):
    short_timings()
    server = PrivateRedis(tmp_path / "redis")
    submits: list[tuple[float, int, str, dict[str, Any] | str]] = []
    healths: list[tuple[float, int]] = []
    scrapes: list[tuple[float, int, bool]] = []
    started = time.monotonic()
    with server.running(), contextlib.ExitStack() as stack_:
        env = proc_env(REDIS_URL=server.url, PAS_OFFLINE_DELAY_S="1")
        stack_.enter_context(stack(env, agents=8))
        web = stack_.enter_context(procs.daphne_server(env))
        http = stack_.enter_context(
            httpx.Client(
                base_url=web.url, headers={"Authorization": f"Bearer {api_token}"}, timeout=60
            )
        )
        ids = []
        for i in range(RUNS):
            answer = http.post("/api/runs", json={"title": f"Frozen {i}", "goal": GOAL})
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["run_id"])
        wait_for(
            lambda: Run.objects.filter(pk__in=ids, status=Run.Status.RUNNING).count() == RUNS,
            "every run to start",
            60,
            0.1,
        )
        assert server.proc is not None
        server.proc.send_signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            i = 0
            while time.monotonic() - frozen_at < FROZEN_S - FEW_S:
                took, response, error = _timed(
                    lambda n=i: http.post(
                        "/api/runs", json={"title": f"Frozen late {n}", "goal": GOAL}
                    )
                )
                body: dict[str, Any] | str = error
                if response is not None:
                    kind = response.headers.get("content-type", "")
                    body = response.json() if "json" in kind else response.text[:200]
                submits.append((took, response.status_code if response else 0, error, body))
                took, response, error = _timed(lambda: http.get("/health"))
                healths.append((took, response.status_code if response else 0))
                took, response, error = _timed(lambda: http.get("/metrics"))
                down = response is not None and 'pas_up{component="redis"} 0.0' in response.text
                scrapes.append((took, response.status_code if response else 0, down))
                i += 1
            time.sleep(max(0.0, FROZEN_S - (time.monotonic() - frozen_at)))
        finally:
            server.proc.send_signal(signal.SIGCONT)  # Always: a stopped server never ends.
        thawed_at = time.monotonic()
        late = [b["run_id"] for _, code, _, b in submits if code == 202 and isinstance(b, dict)]
        everyone = ids + late
        try:
            wait_for(lambda: ended(everyone), "every run to end", 180, 0.3)
        except AssertionError:
            _explain(everyone, server.url)
            raise
        recovered_s = time.monotonic() - thawed_at
    elapsed = time.monotonic() - started

    completed = Run.objects.filter(pk__in=everyone, status=Run.Status.COMPLETED).count()
    codes = sorted({code for _, code, _, _ in submits})
    warned = sum(1 for _, _, _, b in submits if isinstance(b, dict) and b.get("warnings"))
    stored = Run.objects.filter(title__startswith="Frozen late").count()
    unclear = [(code, body) for _, code, _, body in submits if code not in (202, 503) or code == 0]
    figure(
        f"DRILL redis-frozen: Redis stopped {thawed_at - frozen_at:.1f} s; POST /api/runs "
        f"answered {codes} within {max(t for t, *_ in submits):.1f} s (n={len(submits)}, "
        f"{warned} with warnings, {stored} stored); /health "
        f"{sorted({c for _, c in healths})} within {max(t for t, _ in healths):.1f} s; "
        f"/metrics {sorted({c for _, c, _ in scrapes})} within "
        f"{max(t for t, _, _ in scrapes):.1f} s (Redis reported down: "
        f"{all(d for _, _, d in scrapes)}); {completed}/{len(everyone)} runs completed, all "
        f"ended {recovered_s:.1f} s after SIGCONT; {elapsed:.1f} s"
    )
    for took, code, error, body in submits:
        print(f"  POST /api/runs {code} {error} in {took:.2f} s: {str(body)[:300]}")
    assert submits and healths
    # Clear answers, quickly: 202 (with a warning) or a JSON 503, never a hang.
    assert unclear == []
    assert max(t for t, *_ in submits) <= FEW_S
    assert all(code == 503 for _, code in healths)
    assert max(t for t, _ in healths) <= FEW_S
    # A directive answered 202 is stored once; a 503 stored nothing.
    assert stored == len(late)
    # Everything completes after SIGCONT.
    assert completed == len(everyone)
