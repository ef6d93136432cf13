"""The HMI in a real browser: the tree, live updates without reloading, settings,
and a stream that drops and resumes without losing an event."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from tests import procs
from tests.browser.conftest import screenshot
from tests.browser.helpers import django_shell

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _mark_page(page: Any) -> None:
    """Leave a marker in the window: still there later means no reload happened."""
    page.evaluate("window.__noReload = 42")


def _not_reloaded(page: Any) -> bool:
    return page.evaluate("window.__noReload") == 42


def test_log_in_and_see_all_24_agents(page: Any) -> None:
    assert page.locator(".tree .node").count() == 24
    assert page.locator("[data-agent-count]").inner_text() == "24"
    for agent in ("PAS Root", "Architect", "Dir-Code", "Mgr-Code-03", "Prog-GPT-001"):
        assert page.locator(f'.node[data-agent="{agent}"]').count() == 1
    # Collapsible: closing Dir-Code's branch hides its managers.
    page.locator("#node-Dir-Code").click()
    assert not page.locator("#node-Mgr-Code-01").is_visible()
    page.locator("#node-Dir-Code").click()
    assert page.locator("#node-Mgr-Code-01").is_visible()
    assert page.console_errors == []


def test_events_from_another_process_change_the_node_and_the_banner(
    page: Any, proc_env: Any
) -> None:
    _mark_page(page)
    node = page.locator("#node-Dir-Code")
    assert "st-idle" in node.get_attribute("class")
    # What TRON and the parent do, from another process: state first, then the events.
    django_shell(
        proc_env(),
        "from pas_core.models import Agent\n"
        "from pas_core.stores.events import event_emit\n"
        "Agent.objects.filter(pk='Dir-Code').update(status='timed_out')\n"
        "event_emit('hhmrs_timeout', {'agent_id': 'Dir-Code', 'parent_id': 'Architect',"
        " 'restart_count': 0, 'message': 'Dir-Code missed 2 heartbeats'})\n",
    )
    page.wait_for_selector("#node-Dir-Code.st-timed_out", timeout=10_000)
    assert page.locator("#node-Dir-Code [data-badge]").inner_text() == "timed out"
    banner = page.locator("#tron-banner")
    banner.wait_for(state="visible", timeout=10_000)
    assert "Dir-Code missed 2 heartbeats" in banner.inner_text()
    assert page.locator('[data-counter="timeout"]').inner_text() == "1"
    # tron_chime: on by default for timeouts, "ping" at volume 50 (Web Audio, no files).
    page.wait_for_function("PAS.lastChime && PAS.lastChime.sound === 'ping'", timeout=5_000)

    django_shell(
        proc_env(),
        "from pas_core.models import Agent\n"
        "from pas_core.stores.events import event_emit\n"
        "Agent.objects.filter(pk='Dir-Code').update(status='restarting',"
        " current_model='ollama/llama3.1:8b')\n"
        "event_emit('hhmrs_restart', {'agent_id': 'Dir-Code', 'parent_id': 'PAS Root',"
        " 'retry_type': 'llm_change', 'old_llm': 'google/gemini-2.5-flash',"
        " 'new_llm': 'ollama/llama3.1:8b', 'message': 'Retrying Dir-Code with different LLM'})\n",
    )
    page.wait_for_selector("#node-Dir-Code.st-restarting.switched", timeout=10_000)
    assert "llama3.1:8b" in page.locator("#node-Dir-Code .model").inner_text()
    assert page.locator("#node-Dir-Code .switch-mark").count() == 1  # Not its primary model.
    assert page.locator("#tron-banner .tron-item").count() == 2
    assert page.locator('[data-counter="restart"]').inner_text() == "1"
    # The badge goes after 5 s.
    page.wait_for_selector("#node-Dir-Code [data-badge]", state="detached", timeout=8_000)
    assert _not_reloaded(page)
    # Dismiss hides the banner (for 5 minutes, across reloads).
    page.click("[data-banner-dismiss]")
    assert not banner.is_visible()
    page.reload()
    page.wait_for_timeout(500)
    assert not page.locator("#tron-banner").is_visible()
    assert page.console_errors == []


def test_the_banner_clears_itself_after_quiet_time(page: Any, proc_env: Any) -> None:
    from pas_core import config

    config.document_save({"hmi_display": {"banner_auto_clear_s": 2}})
    page.reload()
    page.wait_for_function("document.body.dataset.stream === 'ok'")
    django_shell(
        proc_env(),
        "from pas_core.stores.events import event_emit\n"
        "event_emit('hhmrs_escalation', {'agent_id': 'Dir-Docs', 'message': 'up it goes'})\n",
    )
    page.locator("#tron-banner").wait_for(state="visible", timeout=10_000)
    page.locator("#tron-banner").wait_for(state="hidden", timeout=6_000)


def test_a_setting_changed_in_the_page_is_in_effect(page: Any) -> None:
    page.goto("/settings/")
    page.fill("#id_max_restarts", "7")
    page.fill("#id_max_llm_retries", "1")
    # The worst case follows as you type: (7+1) x (1+1).
    assert page.locator("[data-worst-attempts]").inner_text() == "16"
    page.fill("#id_timeout_threshold_s", "999")
    page.click("text=Save HHMRS settings")
    # Refused by the settings service, shown on its field, nothing saved.
    error = page.locator(".has-error .field-error")
    assert "must be between 2 and 300 (got 999)" in error.inner_text()
    page.fill("#id_timeout_threshold_s", "45")
    page.click("text=Save HHMRS settings")
    page.wait_for_selector(".flash")
    answer = page.request.get("/api/settings/hhmrs")
    assert answer.ok
    values = answer.json()
    assert values["max_restarts"] == 7
    assert values["max_llm_retries"] == 1
    assert values["timeout_threshold_s"] == 45


def test_the_events_and_comms_tails_are_live_and_filtered(page: Any, proc_env: Any) -> None:
    page.goto("/events/?agent=Dir-Code")
    page.wait_for_function("document.body.dataset.stream === 'ok'")
    _mark_page(page)
    django_shell(
        proc_env(),
        "from pas_core.stores.events import event_emit\n"
        "from pas_core.stores.comms import comms_log\n"
        "event_emit('job_started', {'agent_id': 'Dir-Data', 'message': 'not for this page'})\n"
        "event_emit('job_started', {'agent_id': 'Dir-Code', 'message': 'code lane started'})\n"
        "comms_log(sender='Architect', recipient='Dir-Code', kind='CMD', message='Build it')\n",
    )
    page.wait_for_selector("#events-rows >> text=code lane started", timeout=10_000)
    assert "not for this page" not in page.locator("#events-rows").inner_text()
    assert _not_reloaded(page)
    page.goto("/comms/?agent=Dir-Code")
    assert "Build it" in page.locator("#comms-rows").inner_text()
    _mark_page(page)
    django_shell(
        proc_env(),
        "from pas_core.stores.comms import comms_log\n"
        "from pas_core.stores.events import event_emit\n"
        "comms_log(sender='Dir-Code', recipient='Architect', kind='STATUS', message='On it')\n"
        "event_emit('agent_status', {'agent_id': 'Dir-Code', 'status': 'working'})\n",
    )
    page.wait_for_selector("#comms-rows >> text=On it", timeout=10_000)
    assert _not_reloaded(page)
    assert page.console_errors == []


def test_a_dropped_stream_resumes_and_misses_nothing(
    page: Any, daphne: procs.DaphneServer, proc_env: Any
) -> None:
    _mark_page(page)
    django_shell(
        proc_env(),
        "from pas_core.stores.events import event_emit\n"
        "event_emit('hhmrs_restart', {'agent_id': 'Dir-Data', 'n': -1})\n",
    )
    page.wait_for_function("PAS.events.some(e => e.data.n === -1)", timeout=10_000)
    # The server goes away; events keep being committed meanwhile.
    daphne.stop()
    page.wait_for_function("document.body.dataset.stream === 'down'", timeout=10_000)
    out = django_shell(
        proc_env(),
        "import json\n"
        "from pas_core.stores.events import event_emit\n"
        "print(json.dumps([event_emit('hhmrs_restart', {'agent_id': 'Dir-Data', 'n': n}).id"
        " for n in range(8)]))\n",
    )
    missed = json.loads(out.strip().splitlines()[-1])
    # Back on the same address: the browser reconnects with Last-Event-ID by itself.
    with procs.daphne_server(proc_env(), port=daphne.port):
        page.wait_for_function(
            f"(() => {{ const ids = new Set(PAS.events.map(e => e.id));"
            f" return {json.dumps(missed)}.every(i => ids.has(i)); }})()",
            timeout=20_000,
        )
        got = page.evaluate("PAS.events.filter(e => e.data.n >= 0).map(e => [e.id, e.replay])")
    # Every missed event, once each, in order, marked as replayed.
    assert [i for i, _ in got] == missed
    assert all(replay for _, replay in got)
    assert _not_reloaded(page)


def test_the_run_page_is_live(page: Any, proc_env: Any, settings: Any, tree: Any) -> None:
    from pas_core.models import Attempt, Run
    from tests.factories import AttemptFactory, CommsMessageFactory, JobFactory

    now = timezone.now()
    run = Run.objects.create(
        title="Parse the config files",
        goal="Write a parser for the config format, with tests",
        status="running",
        started_at=now - timedelta(seconds=95),
        submitted_by="op",
    )
    root = JobFactory(run=run, agent=tree["PAS Root"], job_id="jc-demo-root", status="waiting")
    AttemptFactory(
        job=root,
        number=1,
        status="succeeded",
        started_at=now - timedelta(seconds=94),
        finished_at=now - timedelta(seconds=93),
    )
    arch = JobFactory(
        run=run, agent=tree["Architect"], parent=root, job_id="jc-demo-arch", status="waiting"
    )
    AttemptFactory(
        job=arch,
        number=1,
        status="succeeded",
        started_at=now - timedelta(seconds=92),
        finished_at=now - timedelta(seconds=85),
    )
    code = JobFactory(
        run=run,
        agent=tree["Dir-Code"],
        parent=arch,
        job_id="jc-demo-Code-1",
        lane="Code",
        status="running",
        restart_count=0,
        llm_failure_count=1,
    )
    t = 84
    for n, status in enumerate(["timed_out", "timed_out", "timed_out", "timed_out"], start=1):
        AttemptFactory(
            job=code,
            number=n,
            status=status,
            model="google/gemini-2.5-flash",
            started_at=now - timedelta(seconds=t),
            finished_at=now - timedelta(seconds=t - 12),
        )
        t -= 13
    AttemptFactory(
        job=code,
        number=5,
        status=Attempt.Status.RUNNING,
        model="ollama/llama3.1:8b",
        started_at=now - timedelta(seconds=t),
    )
    docs = JobFactory(
        run=run,
        agent=tree["Dir-Docs"],
        parent=arch,
        job_id="jc-demo-Docs-1",
        lane="Docs",
        status="succeeded",
        result={
            "lane": "Docs",
            "state": "completed",
            "managers_used": ["Mgr-Docs-01"],
            "actuals": {"tokens": 1830, "duration_s": 21.4, "cost_usd": 0.0},
        },
    )
    AttemptFactory(
        job=docs,
        number=1,
        status="succeeded",
        started_at=now - timedelta(seconds=84),
        finished_at=now - timedelta(seconds=63),
    )
    CommsMessageFactory(
        run_id=str(run.run_id),
        sender="Architect",
        recipient="PAS Root",
        kind="STATUS",
        message="Grandchild escalation: Dir-Code (failure_count=0)",
    )
    art = settings.PAS_ARTIFACTS_DIR / "runs" / str(run.run_id) / "docs"
    art.mkdir(parents=True)
    (art / "README.md").write_text("# Config parser\n")

    page.goto(f"/runs/{run.run_id}/")
    page.wait_for_function("document.body.dataset.stream === 'ok'")
    _mark_page(page)
    assert page.locator("svg.timeline rect.bar").count() == 8
    assert page.locator("svg.timeline rect.tl-timed_out").count() == 4
    assert page.locator("a[href$='/files/docs/README.md']").count() == 1
    screenshot(page, "run")
    # The run ends in another process: the page follows without a reload.
    django_shell(
        proc_env(),
        "from django.utils import timezone\n"
        "from pas_core.models import Run, Job, Attempt\n"
        "from pas_core.stores.events import event_emit\n"
        f"Attempt.objects.filter(job_id='jc-demo-Code-1', number=5).update(status='succeeded',"
        " finished_at=timezone.now())\n"
        "Job.objects.filter(job_id='jc-demo-Code-1').update(status='succeeded')\n"
        f"Run.objects.filter(pk='{run.run_id}').update(status='completed',"
        " finished_at=timezone.now())\n"
        f"event_emit('run_completed', {{'run_id': '{run.run_id}', 'status': 'completed'}})\n",
    )
    page.wait_for_selector("[data-run-status]:has-text('completed')", timeout=10_000)
    assert page.locator("svg.timeline rect.tl-running").count() == 0
    # Comms and events are collapsed; opened, they load and stay live.
    page.click("#run-logs-box > summary")
    page.wait_for_selector("#run-logs .ev-run_completed", timeout=10_000)
    assert _not_reloaded(page)
    page.goto("/runs/")
    assert "completed" in page.locator("#runs-rows").inner_text()
    assert page.console_errors == []


def test_the_tree_shows_every_status_live(page: Any, proc_env: Any) -> None:
    """Statuses pushed by agent_status events from another process, each in its colour."""
    _mark_page(page)
    wanted = {
        "Architect": "working",
        "Dir-Models": "working",
        "Mgr-Data-01": "working",
        "Dir-Docs": "late",
        "Dir-Data": "escalated",
        "Dir-DevSecOps": "failed",
        "Mgr-Code-02": "timed_out",
        "Mgr-Code-03": "restarting",
    }
    django_shell(
        proc_env(),
        "from pas_core.services.agents import agent_status_set\n"
        f"for agent, status in {wanted!r}.items():\n"
        "    agent_status_set(agent, status)\n"
        "from pas_core.services.agents import agent_set_enabled\n"
        "agent_set_enabled('Prog-GPT-001', False, by='test')\n",
    )
    for agent, status in wanted.items():
        dom = "node-" + agent
        page.wait_for_selector(f"#{dom}.st-{status}", timeout=10_000)
    page.wait_for_selector("#node-Prog-GPT-001.st-disabled", timeout=10_000)
    assert _not_reloaded(page)
    screenshot(page, "tree-statuses")
