"""A Prime Directive through the whole tree, on the offline planner, with real workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings

from pas_core.models import Attempt, Event, Job, Run
from pas_core.stores.comms import comms_path
from tests.e2e import stack, wait_run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.e2e
def test_a_directive_completes_with_a_lane_report_per_lane_and_artifacts(
    tree, proc_env, client, api_token
):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {api_token}"}
    with stack(proc_env(), beat=False) as running:
        answer = client.post(
            "/api/runs",
            {"title": "Add a health endpoint", "goal": "Add /health with tests and docs"},
            content_type="application/json",
            **auth,
        )
        assert answer.status_code == 202, answer.content
        assert answer.json()["status"] == "queued"
        run = wait_run(answer.json()["run_id"], timeout=90)
        agents_log = running["agents"].log_text(tail=10_000_000)

    assert run.status == Run.Status.COMPLETED, run.message
    # Each step's attempt came to the worker as a message; each aggregate ran on the
    # thread whose attempt's end made it ready, with no message (dispatch.running_here).
    attempts = Attempt.objects.filter(job__run=run)
    assert not attempts.exclude(status="succeeded").exists()
    for attempt in attempts:
        received = f"attempt_execute[{attempt.celery_task_id}] received" in agents_log
        assert received == (attempt.phase == Attempt.Phase.STEP), (attempt.pk, attempt.phase)
    assert attempts.filter(phase=Attempt.Phase.AGGREGATE).count() >= 4
    detail = client.get(f"/api/runs/{run.run_id}", **auth).json()
    # The directive names code, tests and docs: the Code and Docs lanes, both completed.
    assert detail["lanes"] == {"Code": "completed", "Docs": "completed"}
    run_dir = Path(settings.PAS_ARTIFACTS_DIR) / "runs" / str(run.run_id)
    for lane in ("Code", "Docs"):
        report = json.loads((run_dir / lane / "lane_report.json").read_text())
        assert report["lane"] == lane and report["state"] == "completed"
        assert report["artifacts"], f"{lane} lists no artifact"
        for rel in report["artifacts"]:
            path = run_dir / rel if not (run_dir / lane / rel).exists() else run_dir / lane / rel
            assert path.exists(), rel
    produced = [p for p in run_dir.rglob("*") if p.is_file() and p.name != "lane_report.json"]
    assert any("offline planner" in p.read_text(errors="ignore") for p in produced)
    # Every job ended exactly once, and the comms log shows delegation and reports.
    assert not Job.objects.filter(run=run).exclude(status="succeeded").exists()
    lines = comms_path().read_text().splitlines()
    assert any("|Architect|Dir-Code|CMD|" in line for line in lines)
    assert any("|Dir-Docs|Architect|RESPONSE|" in line for line in lines)
    types = set(Event.objects.filter(run_id=str(run.run_id)).values_list("event_type", flat=True))
    assert {"job_started", "job_completed", "run_completed"} <= types


def test_a_malformed_directive_gets_422_naming_the_field(tree, client, api_token):
    answer = client.post(
        "/api/runs",
        {"title": "x", "goal": "y", "budget_tokens_max": -5},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api_token}",
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "budget_tokens_max"
    missing = client.post(
        "/api/runs",
        {"title": "x"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api_token}",
    )
    assert missing.status_code == 422
    assert "goal" in missing.json()["detail"]
    # Nothing was stored for either.
    assert Run.objects.count() == 0


def test_a_duplicate_job_card_id_is_refused_with_400(tree, client, api_token):
    card = {"job_card": {"id": "jc-test-code-001", "task": "Write the parser", "lane": "Code"}}
    auth = {"HTTP_AUTHORIZATION": f"Bearer {api_token}"}
    first = client.post(
        "/api/agents/Dir-Code/submit", card, content_type="application/json", **auth
    )
    assert first.status_code == 202
    assert first.json()["job_card_id"] == "jc-test-code-001"
    again = client.post(
        "/api/agents/Dir-Code/submit", card, content_type="application/json", **auth
    )
    assert again.status_code == 400
    assert "jc-test-code-001" in again.json()["detail"]
