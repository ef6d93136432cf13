"""What the drills (tests/drills) found, pinned down by quick tests that `make test` runs."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from pas_core import tron
from pas_core.config import SettingsError, hhmrs_get, settings_import
from pas_core.models import Attempt, Event, Job, Run
from pas_core.stores.redis import rkey
from tests import procs
from tests.drills.common import SseClient, session_cookie, wait_for

pytestmark = pytest.mark.django_db


def _attempt(agent_id: str, status: str, *, age_s: float, job_status: str = "running") -> Attempt:
    """Create a run, a job for ``agent_id`` and its current attempt created ``age_s`` ago."""
    run = Run.objects.create(title="Reconciled", goal="Survive Redis", status="running")
    job = Job.objects.create(
        job_id=f"jc-{str(run.run_id)[:8]}-{agent_id.lower()}",
        run=run,
        agent_id=agent_id,
        status=job_status,
    )
    then = timezone.now() - timedelta(seconds=age_s)
    attempt = Attempt.objects.create(
        job=job,
        number=1,
        agent_id=agent_id,
        status=status,
        celery_task_id=uuid.uuid4().hex,
        error_kind="error" if status == "errored" else "",
        finished_at=then if status == "errored" else None,
    )
    Attempt.objects.filter(pk=attempt.pk).update(created_at=then)
    Job.objects.filter(pk=job.pk).update(current_attempt=attempt)
    return attempt


def _queued(redis: Any) -> int:
    return int(redis.llen("agents"))


def test_an_emptied_redis_gets_lost_queued_attempts_again_within_seconds(tree, redis):
    lost = _attempt("Dir-Code", "queued", age_s=8)  # Sent before Redis came back empty.
    young = _attempt("Dir-Docs", "queued", age_s=1)  # Most likely sent to the new Redis.

    tron.sweep()

    # The epoch key was missing: the old message is re-sent at once, the young one not.
    assert _queued(redis) == 1
    assert redis.exists(rkey("tron", "resent", lost.pk))
    assert not redis.exists(rkey("tron", "resent", young.pk))
    assert redis.exists(rkey("tron", "epoch"))


def test_with_its_epoch_known_redis_waits_three_timeouts_before_resending(tree, redis):
    redis.set(rkey("tron", "epoch"), 1)
    _attempt("Dir-Code", "queued", age_s=8)

    tron.sweep()

    assert _queued(redis) == 0  # 8 s is not stale with a 60 s timeout.


def test_a_failure_whose_handler_message_was_lost_is_handled_by_reconcile(tree, redis):
    orphan = _attempt("Dir-Code", "errored", age_s=30)

    result = tron.reconcile(time.time(), hhmrs_get())

    assert result["failures"] == 1
    job = Job.objects.get(pk=orphan.job_id)
    # The parent restarted the job: a second attempt, current and queued.
    assert job.restart_count == 1
    assert job.current_attempt.number == 2
    assert Event.objects.filter(event_type="hhmrs_restart", job_id=job.pk).count() == 1
    # Handled once: a second reconcile finds nothing to do.
    assert tron.reconcile(time.time(), hhmrs_get())["failures"] == 0


def test_a_viewer_session_cannot_act_through_the_api(tree, client, plain_user, operator_user):
    client.force_login(plain_user)
    assert client.get("/api/settings/hhmrs").status_code == 200  # Reading is fine.
    answer = client.post("/api/settings/hhmrs", {"max_restarts": 7}, "application/json")
    assert answer.status_code == 403
    assert "operators" in answer.json()["detail"]
    assert hhmrs_get().max_restarts == 3
    client.force_login(operator_user)
    answer = client.post("/api/settings/hhmrs", {"max_restarts": 7}, "application/json")
    assert answer.status_code == 200


def test_the_schema_needs_a_session_or_a_full_token(client, api_token, tree):
    assert client.get("/api/docs").status_code == 401
    answer = client.get("/api/openapi.json", HTTP_AUTHORIZATION=f"Bearer {api_token}")
    assert answer.status_code == 200


def test_an_oversized_body_is_a_413_naming_the_body(client, api_token, tree):
    body = '{"title": "x", "goal": "' + "y" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1) + '"}'
    answer = client.post(
        "/api/runs", body, "application/json", HTTP_AUTHORIZATION=f"Bearer {api_token}"
    )
    assert answer.status_code == 413
    assert answer.json()["detail"].startswith("body: larger than")


def test_the_eleventh_login_attempt_in_a_minute_is_refused(client, tree):
    codes = [
        client.post("/login/", {"username": "admin", "password": "wrong"}).status_code
        for _ in range(11)
    ]
    assert codes == [200] * 10 + [429]
    # Per address and user name: another name may still try.
    assert client.post("/login/", {"username": "other", "password": "x"}).status_code == 200


def test_a_refused_settings_file_names_the_line_of_the_key(tree, tmp_path):
    path = tmp_path / "settings.json"
    path.write_text('{\n  "hhmrs": {\n    "max_restarts": 3,\n    "max_llm_retries": 99\n  }\n}\n')
    with pytest.raises(SettingsError) as refused:
        settings_import(path)
    assert f"{path} line 4: hhmrs.max_llm_retries" in refused.value.errors
    assert hhmrs_get().max_llm_retries == 3


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_stream_fills_a_gap_with_an_event_that_was_stored_but_never_published(
    tree, proc_env, plain_user
):
    from pas_core.stores.events import event_emit

    baseline = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    with procs.daphne_server(proc_env()) as web:
        client = SseClient(
            web.url, cookies={"sessionid": session_cookie(plain_user)}, last_id=baseline
        ).start()
        try:
            wait_for(lambda: client.connects, "the stream to connect", 20)
            time.sleep(0.5)  # Past the replay: from here on only live events come.
            # Stored while Redis was away: its publish never reached any stream.
            lost = event_emit("drill_lost", {"n": 1}, publish=False).id
            later = event_emit("drill_later", {"n": 2}).id
            wait_for(lambda: later in client.ids, "the later event", 20)
        finally:
            client.stop(timeout=0)
    # The gap before the later event was filled from the database, in order.
    assert client.ids[-2:] == [lost, later]
