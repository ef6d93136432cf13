"""Drill: Redis dies in the middle of 20 runs and comes back empty (no persistence).

Redis holds the Celery queues, the heartbeat store and the channel layer: when it
comes back empty, queued messages and heartbeats are gone. Workers and beat reconnect
by themselves; TRON's ``reconcile`` re-registers running attempts and re-sends queued
ones whose message was lost. The drill uses a private ``redis-server`` (never the
shared one), on the same port before and after.

Promise: every run completes after Redis returns, and an open HMI stream recovers by
itself (it reconnects with ``Last-Event-ID``) and has every event, none twice.
"""

from __future__ import annotations

import contextlib
import time

import httpx
import pytest
from django.contrib.auth import get_user_model

from pas_core.models import Attempt, Event, Run
from tests import procs
from tests.drills.common import (
    PrivateRedis,
    SseClient,
    duplicates,
    figure,
    session_cookie,
    wait_for,
)
from tests.e2e import short_timings, stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(420),
]

RUNS = 20
DOWN_AFTER_S = 6.0
DOWN_S = 3.0
DEADLINE_S = 240.0


def test_every_run_completes_and_the_stream_recovers_after_redis_restarts(
    tree, proc_env, api_token, tmp_path
):
    short_timings()
    user = get_user_model().objects.create_user("drill-viewer", "", None)
    cookie = session_cookie(user)
    baseline = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    server = PrivateRedis(tmp_path / "redis")
    sse = None
    with server.running(), contextlib.ExitStack() as stack_:
        env = proc_env(REDIS_URL=server.url, PAS_OFFLINE_DELAY_S="0.6")
        stack_.enter_context(stack(env, agents=4))
        web = stack_.enter_context(procs.daphne_server(env))
        sse = SseClient(web.url, cookies={"sessionid": cookie}, last_id=baseline).start()
        stack_.callback(sse.stop, 5)
        wait_for(lambda: sse.connects, "the stream to connect", 20)
        with httpx.Client(
            base_url=web.url, headers={"Authorization": f"Bearer {api_token}"}, timeout=30
        ) as http:
            ids = []
            for i in range(RUNS):
                answer = http.post(
                    "/api/runs",
                    json={"title": f"Redis {i}", "goal": "Implement the parser function in code"},
                )
                assert answer.status_code == 202, answer.text
                ids.append(answer.json()["run_id"])
        started = time.monotonic()
        time.sleep(DOWN_AFTER_S)
        in_flight = Attempt.objects.filter(
            job__run_id__in=ids, status__in=[Attempt.Status.RUNNING, Attempt.Status.QUEUED]
        ).count()
        server.stop(kill=True)  # Gone at once, with every queue and heartbeat in it.
        down_at = time.monotonic()
        time.sleep(DOWN_S)
        server.start()
        back_at = time.monotonic()
        back_id = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
        wait_for(
            lambda: (
                not Run.objects.filter(pk__in=ids)
                .exclude(status__in=["completed", "failed"])
                .exists()
            ),
            "every run to end",
            DEADLINE_S,
            0.5,
        )
        recovered_s = time.monotonic() - back_at
        last = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
        with contextlib.suppress(AssertionError):
            wait_for(lambda: sse.ids and sse.ids[-1] >= last, "the stream to catch up", 30)
        sse.stop(timeout=0)
    elapsed = time.monotonic() - started

    completed = Run.objects.filter(pk__in=ids, status=Run.Status.COMPLETED).count()
    expected = set(Event.objects.filter(id__gt=baseline, id__lte=last).values_list("id", flat=True))
    missing = len(expected - set(sse.ids))
    later = sum(1 for i in sse.ids if i > back_id)
    figure(
        f"DRILL redis-restart: {completed}/{RUNS} runs completed ({in_flight} attempts in "
        f"flight when Redis died, down {back_at - down_at:.1f} s, all ended "
        f"{recovered_s:.1f} s after it returned); stream reconnected "
        f"{max(0, sse.connects - 1)} times, {later} events after the restart, "
        f"{missing} missing, {duplicates(sse.ids)} twice; {elapsed:.1f} s"
    )
    # Every run completes after Redis returns.
    assert completed == RUNS
    # The stream recovered by itself: later events arrived, none missing, none twice.
    assert later > 0
    assert missing == 0
    assert duplicates(sse.ids) == 0
