"""HMI pages: every page renders for a viewer, actions need an operator, bad input shows
field errors in place (never a 500)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from pas_core import config
from pas_core.models import Agent, Attempt, Event, Job, Notification
from tests.factories import (
    AttemptFactory,
    CommsMessageFactory,
    EventFactory,
    JobFactory,
    NotificationFactory,
    RunFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def run_with_jobs(tree: dict[str, Agent]) -> Any:
    """A running run: Architect done, Dir-Code on its second attempt after a timeout."""
    now = timezone.now()
    run = RunFactory(title="Build the widget", status="running", started_at=now - timedelta(60))
    arch = JobFactory(run=run, agent=tree["Architect"], job_id="jc-arch", status="waiting")
    AttemptFactory(
        job=arch,
        number=1,
        status=Attempt.Status.SUCCEEDED,
        started_at=now - timedelta(seconds=50),
        finished_at=now - timedelta(seconds=45),
    )
    code = JobFactory(
        run=run,
        agent=tree["Dir-Code"],
        parent=arch,
        job_id="jc-code",
        lane="Code",
        status="running",
        restart_count=1,
    )
    AttemptFactory(
        job=code,
        number=1,
        status=Attempt.Status.TIMED_OUT,
        started_at=now - timedelta(seconds=44),
        finished_at=now - timedelta(seconds=30),
    )
    AttemptFactory(job=code, number=2, started_at=now - timedelta(seconds=29))
    return run


PAGES = [
    "hmi:tree",
    "hmi:runs",
    "hmi:retry",
    "hmi:notifications",
    "hmi:events",
    "hmi:comms",
    "hmi:settings",
]


@pytest.mark.parametrize("name", PAGES)
def test_each_page_renders_for_a_viewer(viewer: Any, name: str) -> None:
    response = viewer.get(reverse(name))
    assert response.status_code == 200
    html = response.content.decode()
    # The live stream is wired on every page, and the nav shows every section.
    assert 'sse-connect="/events/stream?hmi=' in html
    for label in ("Tree", "Runs", "Retry queue", "Events", "Comms", "Settings", "Notifications"):
        assert f">{label}" in html


@pytest.mark.parametrize("tab", ["hhmrs", "models", "notifications", "tron_chime", "hmi_display"])
def test_each_settings_tab_renders(viewer: Any, tab: str) -> None:
    response = viewer.get(reverse("hmi:settings"), {"tab": tab})
    assert response.status_code == 200


def test_pages_need_a_login(client: Any, tree: dict[str, Agent]) -> None:
    response = client.get(reverse("hmi:tree"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("hmi:login"))


def test_the_tree_shows_all_24_agents_nested(viewer: Any) -> None:
    html = viewer.get(reverse("hmi:tree")).content.decode()
    assert html.count('class="node st-') == 24
    # Collapsible: every agent with children is a <details>.
    tree = html[html.index('<ul class="tree"') :]
    assert tree.count("<details") == Agent.objects.filter(children__isnull=False).distinct().count()
    assert 'id="node-PAS-Root"' in html and 'id="node-Dir-Code"' in html


def test_a_node_shows_model_switch_and_counters(viewer: Any, run_with_jobs: Any) -> None:
    Agent.objects.filter(pk="Dir-Code").update(
        current_model="ollama/llama3.1:8b", status="restarting"
    )
    html = viewer.get(reverse("hmi:tree")).content.decode()
    start = html.index('id="node-Dir-Code"')
    node = html[start : html.index("</div>", start)]
    assert "st-restarting" in node
    assert "llama3.1:8b" in node and "⇄" in node  # It marks the model that is not the primary.
    assert "restarts </span><b>1/3</b>" in node  # The open job's restarts over max_restarts.
    assert "switches </span><b>0/3</b>" in node
    assert "jobs </span><b>1</b>" in node
    assert "data-beat=" in node  # The browser ticks the heartbeat age from here.


def test_the_banner_lists_the_last_five_interventions(viewer: Any) -> None:
    for n in range(7):
        EventFactory(
            event_type="hhmrs_timeout", agent_id="Dir-Code", data={"message": f"timeout {n}"}
        )
    EventFactory(event_type="hhmrs_failure", agent_id="Dir-Data", data={"message": "gone"})
    html = viewer.get(reverse("hmi:tree")).content.decode()
    assert html.count('class="tron-item') == 5
    assert "gone" in html and "timeout 6" in html and "timeout 2" not in html
    assert '<b data-counter="timeout">7</b>' in html
    assert '<b data-counter="failure">1</b>' in html


def test_the_run_page_draws_the_timeline_and_the_job_tree(viewer: Any, run_with_jobs: Any) -> None:
    CommsMessageFactory(run_id=str(run_with_jobs.run_id), message="Plan the Code lane")
    EventFactory(event_type="hhmrs_timeout", run_id=str(run_with_jobs.run_id), agent_id="Dir-Code")
    url = reverse("hmi:run-detail", args=[run_with_jobs.run_id])
    html = viewer.get(url).content.decode()
    assert "<svg" in html
    # One bar per attempt, coloured by outcome.
    assert html.count('class="bar tl-') == 3
    assert 'class="bar tl-timed_out ph-step"' in html and 'class="bar tl-running ph-step"' in html
    assert "jc-code" in html
    # Comms and events are collapsed: loaded when opened.
    assert "Plan the Code lane" not in html and 'id="run-logs"' in html
    logs = viewer.get(url, {"partial": "logs"}).content.decode()
    assert "Plan the Code lane" in logs
    assert f'data-refresh-on="run-{run_with_jobs.run_id}"' in html
    live = viewer.get(url, {"partial": "live"})
    assert live.status_code == 200 and b"<svg" in live.content


def test_the_run_page_shows_spend_against_budgets_and_backoff_waits(
    viewer: Any, run_with_jobs: Any
) -> None:
    run = run_with_jobs
    run.tokens_used, run.budget_tokens_max = 9_000, 10_000
    run.cost_usd, run.budget_cost_usd_max = 0.5, 2.0
    run.budget_wall_s, run.stop_reason = 600.0, "Budget exceeded: tokens"
    run.save()
    code = run.jobs.get(job_id="jc-code")
    later = timezone.now() + timedelta(seconds=90)
    waiting = AttemptFactory(job=code, number=3, status=Attempt.Status.QUEUED, not_before=later)
    code.current_attempt = waiting
    code.save(update_fields=["current_attempt"])
    url = reverse("hmi:run-detail", args=[run.run_id])
    html = viewer.get(url, {"partial": "live"}).content.decode()
    assert "9,000 of 10,000 tokens" in html and 'class="spend near"' in html
    assert "$0.5000 of $2.00" in html and "of 600 s wall time" in html
    assert "Budget exceeded: tokens" in html
    assert f"waiting (backoff until {later:%H:%M:%S} UTC)" in html
    # Once the backoff is over, the label goes.
    waiting.not_before = timezone.now() - timedelta(seconds=1)
    waiting.save(update_fields=["not_before"])
    assert "waiting (backoff" not in viewer.get(url, {"partial": "live"}).content.decode()


def test_the_runs_list_shows_lanes_and_status(viewer: Any, run_with_jobs: Any) -> None:
    html = viewer.get(reverse("hmi:runs")).content.decode()
    assert "Build the widget" in html and "run-running" in html
    assert 'title="Code: running"' in html
    # A viewer gets no submit form.
    assert "Submit a Prime Directive" not in html


def test_events_and_comms_filter(viewer: Any) -> None:
    EventFactory(event_type="job_started", agent_id="Dir-Code", data={"message": "code go"})
    EventFactory(event_type="job_started", agent_id="Dir-Data", data={"message": "data go"})
    html = viewer.get(reverse("hmi:events"), {"agent": "Dir-Code"}).content.decode()
    assert "code go" in html and "data go" not in html
    CommsMessageFactory(sender="Architect", recipient="Dir-Code", message="to code")
    CommsMessageFactory(sender="Architect", recipient="Dir-Data", message="to data", kind="STATUS")
    html = viewer.get(reverse("hmi:comms"), {"kind": "STATUS"}).content.decode()
    assert "to data" in html and "to code" not in html
    rows = viewer.get(reverse("hmi:comms"), {"agent": "Dir-Code", "partial": "rows"})
    assert b"to code" in rows.content and b"to data" not in rows.content


def test_the_days_comms_file_downloads(viewer: Any, settings: Any) -> None:
    from pas_core.stores.comms import comms_path

    assert viewer.get(reverse("hmi:comms-download")).status_code == 404
    path = comms_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("2025-01-01T00:00:00.000|Architect|Dir-Code|CMD|go|-|-|-|-|-\n")
    response = viewer.get(reverse("hmi:comms-download"))
    assert response.status_code == 200
    assert b"|Architect|Dir-Code|CMD|go|" in b"".join(response.streaming_content)
    assert viewer.get(reverse("hmi:comms-download"), {"day": "../../x"}).status_code == 404


def test_notifications_count_and_mark_read(viewer: Any) -> None:
    note = NotificationFactory(title="Dir-Code failed for good")
    html = viewer.get(reverse("hmi:notifications")).content.decode()
    assert "Dir-Code failed for good" in html
    assert 'id="unread-count" class="count"' in html and ">1</span>" in html
    response = viewer.post(reverse("hmi:notification-read", args=[note.pk]))
    assert response.status_code == 302
    assert Notification.objects.get(pk=note.pk).read is True


# -- permissions -------------------------------------------------------------------

ACTIONS = [
    ("hmi:agent-restart", ["Dir-Code"], {}),
    ("hmi:agent-fault", ["Dir-Code"], {"kind": "hang", "count": "1"}),
    ("hmi:agent-model-reset", ["Dir-Code"], {}),
    ("hmi:agent-enabled", ["Dir-Code"], {"enabled": "0"}),
    ("hmi:runs", [], {"title": "x", "goal": "y"}),
    ("hmi:job-retry", ["jc-nope"], {}),
    ("hmi:settings-save", ["hhmrs"], {"max_restarts": "1"}),
]


@pytest.mark.parametrize(("name", "args", "data"), ACTIONS)
def test_a_viewer_may_not_act(viewer: Any, name: str, args: list[str], data: dict) -> None:
    before = Event.objects.count()
    response = viewer.post(reverse(name, args=args), data)
    assert response.status_code == 403
    assert Event.objects.count() == before  # Nothing happened.
    assert config.hhmrs_get().max_restarts == 3


def test_a_viewer_may_not_open_the_actions_panel(viewer: Any) -> None:
    assert viewer.get(reverse("hmi:agent-actions", args=["Dir-Code"])).status_code == 403


def test_forms_carry_a_csrf_token(operator: Any) -> None:
    html = operator.get(reverse("hmi:settings")).content.decode()
    assert "csrfmiddlewaretoken" in html
    panel = operator.get(reverse("hmi:agent-actions", args=["Dir-Code"]), HTTP_HX_REQUEST="true")
    assert panel.content.decode().count("csrfmiddlewaretoken") == 4


def test_csrf_is_enforced(tree: dict[str, Agent], operator_user: Any) -> None:
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(operator_user)
    response = client.post(reverse("hmi:settings-save", args=["hhmrs"]), {"max_restarts": "1"})
    assert response.status_code == 403


# -- operator actions --------------------------------------------------------------


def test_an_operator_injects_a_fault_recorded_with_their_name(operator: Any) -> None:
    url = reverse("hmi:agent-fault", args=["Dir-Code"])
    response = operator.post(
        url, {"kind": "hang", "count": "2", "model": ""}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert b"hang" in response.content and b"injected" in response.content
    event = Event.objects.filter(event_type="fault_injected").get()
    assert event.data["by"] == "operator" and event.data["count"] == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "explode", "count": "1"}, "Select a valid choice"),
        ({"kind": "hang", "count": "0"}, "greater than or equal to 1"),
        ({"kind": "hang", "count": "lots"}, "Enter a whole number"),
    ],
)
def test_a_bad_fault_shows_the_error_in_place(operator: Any, data: dict, message: str) -> None:
    url = reverse("hmi:agent-fault", args=["Dir-Code"])
    for headers in ({"HTTP_HX_REQUEST": "true"}, {}):
        response = operator.post(url, data, **headers)
        assert response.status_code == 400
        assert message in response.content.decode()
    assert not Event.objects.filter(event_type="fault_injected").exists()


def test_a_service_refusal_lands_on_its_field(operator: Any) -> None:
    # fault_inject refuses a model id longer than 128 characters: "model: ...".
    url = reverse("hmi:agent-fault", args=["Dir-Code"])
    response = operator.post(url, {"kind": "hang", "count": "1", "model": "m" * 128 + "x"})
    assert response.status_code == 400
    assert "Ensure this value has at most 128 characters" in response.content.decode()


def test_unknown_agent_is_404_not_500(operator: Any) -> None:
    response = operator.post(reverse("hmi:agent-restart", args=["Nobody"]))
    assert response.status_code == 404


def test_operator_restart_reset_and_disable(operator: Any) -> None:
    Agent.objects.filter(pk="Dir-Code").update(current_model="ollama/llama3.1:8b")
    response = operator.post(reverse("hmi:agent-model-reset", args=["Dir-Code"]))
    assert response.status_code == 302
    assert Agent.objects.get(pk="Dir-Code").current_model == "google/gemini-2.5-flash"
    response = operator.post(
        reverse("hmi:agent-restart", args=["Dir-Code"]), HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200 and b"restarted" in response.content
    response = operator.post(reverse("hmi:agent-enabled", args=["Dir-Code"]), {"enabled": "0"})
    assert Agent.objects.get(pk="Dir-Code").enabled is False
    bad = operator.post(reverse("hmi:agent-enabled", args=["Dir-Code"]), {"enabled": "maybe"})
    assert bad.status_code == 400 and b"must be 0 or 1" in bad.content
    by = Event.objects.filter(event_type__in=["agent_model_reset", "hhmrs_restart", "agent_status"])
    assert {e.data.get("by") for e in by} == {"operator"}


def test_a_directive_with_errors_keeps_them_in_place(operator: Any) -> None:
    response = operator.post(
        reverse("hmi:runs"), {"title": "", "goal": "", "budget_tokens_max": "-5"}
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert html.count('class="field-error"') >= 3
    assert "This field is required." in html
    assert "greater than or equal to 1" in html


def test_an_operator_submits_a_directive(
    operator: Any, django_capture_on_commit_callbacks: Any
) -> None:
    data = {
        "title": "Add a health page",
        "goal": "Serve /health",
        "entry_files": "app.py\nREADME.md",
        "budget_tokens_max": "1000",
        "budget_cost_usd_max": "0.5",
    }
    with django_capture_on_commit_callbacks(execute=False):
        response = operator.post(reverse("hmi:runs"), data)
    assert response.status_code == 302
    from pas_core.models import Run

    run = Run.objects.get(title="Add a health page")
    assert response["Location"] == reverse("hmi:run-detail", args=[run.run_id])
    assert run.entry_files == ["app.py", "README.md"] and run.submitted_by == "operator"


def test_the_retry_queue_lists_failed_jobs_and_refuses_a_bad_model(
    operator: Any, tree: dict[str, Agent]
) -> None:
    run = RunFactory(status="failed")
    job = JobFactory(
        run=run,
        agent=tree["Dir-Code"],
        job_id="jc-failed",
        status=Job.Status.FAILED,
        retryable=True,
        error="max_llm_retries_exceeded",
    )
    JobFactory(run=run, agent=tree["Dir-Data"], job_id="jc-done", status="succeeded")
    html = operator.get(reverse("hmi:retry")).content.decode()
    assert "jc-failed" in html and "jc-done" not in html
    assert "Retry on model" in html
    response = operator.post(reverse("hmi:job-retry", args=[job.job_id]), {"model": "nonsense"})
    assert response.status_code == 400
    assert "model: must be provider/model" in response.content.decode()
    missing = operator.post(reverse("hmi:job-retry", args=["jc-nope"]))
    assert missing.status_code == 404 and b"not in the retry queue" not in missing.content
    assert b"no job" in missing.content


# -- settings ----------------------------------------------------------------------


def _hhmrs_post(**changes: Any) -> dict[str, Any]:
    values = config.hhmrs_get().as_dict()
    values.update(changes)
    return {k: ("on" if v is True else "" if v is False else v) for k, v in values.items()}


def test_settings_save_takes_effect(operator: Any) -> None:
    response = operator.post(
        reverse("hmi:settings-save", args=["hhmrs"]), _hhmrs_post(max_restarts=5)
    )
    assert response.status_code == 302
    assert config.hhmrs_get().max_restarts == 5


def test_out_of_range_hhmrs_values_show_their_reasons(operator: Any) -> None:
    response = operator.post(
        reverse("hmi:settings-save", args=["hhmrs"]),
        _hhmrs_post(max_restarts=99, heartbeat_interval_s=0.5, sweep_interval_s="fast"),
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "must be between 0 and 10 (got 99)" in html  # From config, on its field.
    assert "must be between 1 and 120 (got 0.5)" in html
    assert "Enter a number." in html
    assert config.hhmrs_get().max_restarts == 3  # Nothing was saved.


@pytest.mark.parametrize(
    ("section", "data", "message"),
    [
        ("notifications", {"webhook_url": "ftp://x", "email": ""}, "must start with http://"),
        ("notifications", {"webhook_url": "", "email": "not an email"}, "must be an email"),
        (
            "tron_chime",
            {"enabled": "on", "sound": "ping", "volume": "500"},
            "must be between 0 and 100",
        ),
        ("tron_chime", {"sound": "kazoo", "volume": "50"}, "Select a valid choice"),
        (
            "hmi_display",
            {"theme": "light", "banner_auto_clear_s": "30", "events_page_size": "0"},
            "must be between 1 and 1000",
        ),
    ],
)
def test_bad_section_values_show_their_reasons(
    operator: Any, section: str, data: dict, message: str
) -> None:
    response = operator.post(reverse("hmi:settings-save", args=[section]), data)
    assert response.status_code == 400
    assert message in response.content.decode()


def test_unknown_settings_section_is_404(operator: Any) -> None:
    assert operator.post(reverse("hmi:settings-save", args=["nope"]), {}).status_code == 404


def test_the_worst_case_is_shown(viewer: Any) -> None:
    config.hhmrs_update({"max_restarts": 2, "max_llm_retries": 1})
    html = viewer.get(reverse("hmi:settings")).content.decode()
    assert "<b data-worst-attempts>6</b>" in html  # (2+1) x (1+1)


# -- artifacts ---------------------------------------------------------------------


def test_artifacts_are_served_safely(viewer: Any, settings: Any, run_with_jobs: Any) -> None:
    root = settings.PAS_ARTIFACTS_DIR / "runs" / str(run_with_jobs.run_id)
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("print('hi')\n")
    (root / "page.html").write_text("<script>alert(1)</script>")
    (settings.PAS_ARTIFACTS_DIR / "secret.txt").write_text("secret")
    run_id = run_with_jobs.run_id

    def get(rel: str) -> Any:
        return viewer.get(f"/runs/{run_id}/files/{rel}")

    response = get("src/app.py")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"print('hi')\n"
    assert response["Content-Type"].startswith("text/plain")
    # HTML is never rendered in our origin.
    assert get("page.html")["Content-Type"].startswith("text/plain")
    for rel in ("../../secret.txt", "..%2F..%2Fsecret.txt", "/etc/passwd", "src", "nope.txt"):
        assert get(rel).status_code == 404, rel
    (root / "link").symlink_to(settings.PAS_ARTIFACTS_DIR / "secret.txt")
    assert get("link").status_code == 404
    html = viewer.get(reverse("hmi:run-detail", args=[run_id])).content.decode()
    assert f"/runs/{run_id}/files/src/app.py" in html


@pytest.mark.parametrize(
    ("name", "tail"), [("hmi:events", "events-rows"), ("hmi:comms", "comms-rows")]
)
def test_a_refreshed_tail_stays_live(viewer: Any, name: str, tail: str) -> None:
    # The tail replaces itself (outerHTML): the new one must listen again, filters kept.
    html = viewer.get(reverse(name), {"agent": "Dir-Code", "partial": "rows"}).content.decode()
    assert f'id="{tail}"' in html and 'data-refresh-on="hmi"' in html
    assert "agent=Dir-Code&amp;partial=rows" in html


# -- settings: providers ---------------------------------------------------------------


def test_the_models_tab_sets_a_providers_cap_and_adds_a_provider(
    operator: Any, tree: dict[str, Agent]
) -> None:
    from pas_core.models import Provider

    html = operator.get(reverse("hmi:settings") + "?tab=models").content.decode()
    assert 'id="provider-anthropic"' in html and 'name="max_concurrency" value="8"' in html

    capped = operator.post(reverse("hmi:provider-cap", args=["anthropic"]), {"max_concurrency": 3})
    added = operator.post(
        reverse("hmi:provider-save"),
        {
            "name": "vllm",
            "base_url": "http://127.0.0.1:8001/v1",
            "key_env": "VLLM_API_KEY",
            "max_concurrency": 12,
            "structured": "json_schema",
        },
    )
    refused = operator.post(
        reverse("hmi:provider-save"),
        {"name": "Bad Name", "base_url": "ftp://x", "max_concurrency": 1, "structured": "none"},
    )

    assert capped.status_code == 302 and added.status_code == 302
    assert Provider.objects.get(name="anthropic").max_concurrency == 3
    vllm = Provider.objects.get(name="vllm")
    assert (vllm.base_url, vllm.key_env, vllm.max_concurrency) == (
        "http://127.0.0.1:8001/v1",
        "VLLM_API_KEY",
        12,
    )
    assert refused.status_code == 400
    assert "lower-case letters" in refused.content.decode()  # The field's reason, in place.
    assert not Provider.objects.filter(name="Bad Name").exists()


def test_a_viewer_cannot_change_a_provider(client: Any, plain_user: Any, tree: Any) -> None:
    from pas_core.models import Provider

    client.force_login(plain_user)
    response = client.post(reverse("hmi:provider-cap", args=["anthropic"]), {"max_concurrency": 1})

    assert response.status_code == 403
    assert Provider.objects.get(name="anthropic").max_concurrency == 8
