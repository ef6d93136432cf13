"""What an operator reaches for during an incident, in a real browser (issue 14).

The retry queue follows a permanent failure and a retry live; a fault is injected and
cleared from the browser; Events pages back past its first page and filters by the
run id prefix every job id shows; the banner never moves the page; at 390 px nothing
scrolls sideways.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from pas_core.models import Event, Fault, Job
from pas_core.services.faults import fault_inject
from pas_core.services.submit import run_submit
from tests import procs
from tests.browser.conftest import screenshot
from tests.browser.helpers import django_shell, log_in, no_sideways_scroll, open_live
from tests.e2e import short_timings, stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DOCS = {"title": "User guide", "goal": "Write the user guide documentation"}


def _mark(page: Any) -> None:
    page.evaluate("window.__noReload = 42")


def _not_reloaded(page: Any) -> bool:
    return page.evaluate("window.__noReload") == 42


def test_the_retry_queue_follows_a_permanent_failure_and_a_retry_live(
    page: Any, proc_env: Any
) -> None:
    # No restart, no model switch: the first failure of Dir-Docs is for good.
    short_timings(max_restarts=0, max_llm_retries=0)
    fault_inject("Dir-Docs", "error", count=20, by="test")
    page.goto("/retry/")
    page.wait_for_function("document.body.dataset.stream === 'ok'")
    assert "The retry queue is empty." in page.locator("#retry-queue").inner_text()
    _mark(page)
    with stack(proc_env()):
        run = run_submit(**DOCS)
        # A job fails for good: its row appears without a reload, with the real error.
        row = page.locator(".retry-row").first
        row.wait_for(timeout=90_000)
        job = Job.objects.get(run=run, agent_id="Dir-Docs")
        assert row.get_attribute("data-job") == job.job_id
        # The real cause, as the core stored it, not "max failures exceeded".
        assert job.error.startswith("Permanently failed: Dir-Docs (")
        assert job.error in row.inner_text() and "injected" in job.error
        assert _not_reloaded(page)
        screenshot(page, "retry", docs="retry.png", full_page=False)

        # In another tab: clear the faults on the agent's page, then retry the job.
        other = open_live(page, "/agents/Dir-Docs/")
        other.click("#armed-faults button:has-text('Clear faults')")
        other.wait_for_selector("#armed-faults:has-text('No armed faults.')")
        assert not Fault.objects.filter(agent_id="Dir-Docs").exists()
        other.goto("/retry/")
        other.click(f"#retry-{job.job_id} button:has-text('Retry')")
        other.wait_for_selector(".flash")
        # The first tab follows: the row goes, still without a reload.
        page.wait_for_selector(f"#retry-{job.job_id}", state="detached", timeout=15_000)
        assert _not_reloaded(page)
        retried = Event.objects.get(event_type="job_retried")
        assert retried.data["by"] == "op" and retried.data["job_id"] == job.job_id
    assert page.console_errors == [] and other.console_errors == []
    other.context.close()


EVERY_PAGE = [
    "/overview/",
    "/runs/",
    "/retry/",
    "/events/",
    "/comms/",
    "/notifications/",
    "/settings/",
    "/agents/Dir-Code/",
    "/agents/Architect/",
]


def test_no_page_logs_a_console_error_during_a_hang_recovery(page: Any, proc_env: Any) -> None:
    """Every page open and live through a recovery (timeouts, restart, escalation, switch)."""
    short_timings(max_restarts=1, max_llm_retries=3)
    fault_inject("Dir-Code", "hang", count=2, by="test")
    pages = [page] + [open_live(page, path) for path in EVERY_PAGE]
    try:
        with stack(proc_env()):
            run = run_submit(title="Parse the config files", goal="Implement the parser in code")
            run_page = open_live(page, f"/runs/{run.run_id}/")
            pages.append(run_page)
            run_page.click("#run-logs-box > summary")  # Its comms and events, live too.
            run_page.wait_for_selector("[data-run-status]:has-text('completed')", timeout=180_000)
            # The other pages had the whole story pushed to them meanwhile.
            pages[1].wait_for_selector("[data-total='hour-escalation'].hot", timeout=30_000)
            screenshot(pages[1], "overview", docs="overview.png", full_page=False)
        escalations = Event.objects.filter(event_type="hhmrs_escalation", agent_id="Dir-Code")
        assert escalations.exists()  # The recovery went the whole way.
        for p in pages:
            assert p.console_errors == [], p.url
    finally:
        for p in pages[1:]:
            p.context.close()


def test_a_fault_is_injected_and_cleared_from_the_browser(page: Any) -> None:
    page.click("#node-Dir-Code ~ button.act")
    page.wait_for_selector("#actions-dialog[open] #actions-panel")
    page.select_option("#actions-panel select[name=kind]", "hang")
    page.fill("#actions-panel input[name=count]", "3")
    page.click("#actions-panel button:has-text('Inject')")
    page.wait_for_selector("#armed-faults .fault-item[data-fault='hang']")
    assert "×3" in page.locator("#armed-faults").inner_text()
    assert Fault.objects.get(agent_id="Dir-Code").remaining == 3
    page.click("#armed-faults button:has-text('Clear faults')")
    page.wait_for_selector("#armed-faults:has-text('No armed faults.')")
    assert "1 fault cleared on Dir-Code" in page.locator("#actions-panel").inner_text()
    assert not Fault.objects.filter(agent_id="Dir-Code").exists()
    assert Event.objects.get(event_type="faults_cleared").data["by"] == "op"
    assert page.console_errors == []


def test_events_page_back_and_filter_by_run_prefix(page: Any, tree: Any) -> None:
    from tests.factories import RunFactory

    run = RunFactory(title="Parse the config files")
    prefix = str(run.run_id)[:8]
    rows = [
        Event(event_type="job_started", agent_id="Dir-Code", data={"message": f"row {n}"})
        for n in range(130)
    ]
    rows += [
        Event(
            event_type="hhmrs_timeout",
            agent_id="Dir-Code",
            run_id=str(run.run_id),
            data={"message": f"run event {n}"},
        )
        for n in range(3)
    ]
    Event.objects.bulk_create(rows)
    page.goto("/events/")
    assert page.locator("#events-rows tr.ev").count() == 100
    page.click("a[data-page='older']")
    page.wait_for_url("**/events/?before=*")
    assert page.locator("tr.ev").count() == 33
    assert "row 0" in page.locator("tr.ev").last.inner_text()  # The very first event.
    assert page.locator("#events-rows").count() == 0  # An older page is not live.
    page.goto("/events/")
    page.fill("input[name=run]", prefix)  # The 8 characters every job id shows.
    page.click("form.filters button[type=submit]")
    page.wait_for_url(f"**/events/?*run={prefix}*")
    assert page.locator("tr.ev").count() == 3
    first = page.locator("tr.ev").first
    assert "Timed out" in first.inner_text()
    first.locator("summary").click()  # The data opens.
    assert '"message": "run event 2"' in first.locator("pre.json").inner_text()
    screenshot(page, "events")
    assert page.console_errors == []


def test_the_banner_never_moves_the_page(page: Any, proc_env: Any) -> None:
    top = page.evaluate("document.querySelector('main').getBoundingClientRect().top")
    django_shell(
        proc_env(),
        "from pas_core.stores.events import event_emit\n"
        "for n in range(5):\n"
        "    event_emit('hhmrs_timeout', {'agent_id': 'Dir-Code', 'message': f'late {n}'})\n",
    )
    banner = page.locator("#tron-banner")
    banner.wait_for(state="visible", timeout=10_000)
    page.wait_for_function("document.querySelectorAll('#tron-banner .tron-item').length === 5")
    assert page.evaluate("document.querySelector('main').getBoundingClientRect().top") == top
    assert banner.bounding_box()["height"] <= 40  # One line, not 160 px.
    page.click("[data-banner-more]")  # All five open over the page, moving nothing.
    assert banner.bounding_box()["height"] > 60
    assert page.evaluate("document.querySelector('main').getBoundingClientRect().top") == top
    page.click("[data-banner-dismiss]")
    banner.wait_for(state="hidden")
    assert page.evaluate("document.querySelector('main').getBoundingClientRect().top") == top
    assert page.console_errors == []


def _demo_run(tree: Any) -> Any:
    """A run with a long story: 16 failed attempts, a switch, lanes with reports."""
    from pas_core.models import Run
    from tests.factories import AttemptFactory, CommsMessageFactory, JobFactory

    now = timezone.now()
    run = Run.objects.create(
        title="Parse the config files of every service, with tests and docs",
        goal="Write a parser for the config format, with tests",
        status="running",
        started_at=now - timedelta(seconds=300),
        submitted_by="op",
    )
    r8 = str(run.run_id)[:8]
    root = JobFactory(run=run, agent=tree["PAS Root"], job_id=f"jc-{r8}-root", status="waiting")
    arch = JobFactory(
        run=run, agent=tree["Architect"], parent=root, job_id=f"jc-{r8}-arch", status="waiting"
    )
    code = JobFactory(
        run=run,
        agent=tree["Dir-Code"],
        parent=arch,
        job_id=f"jc-{r8}-Code-1",
        lane="Code",
        status="running",
        llm_failure_count=1,
    )
    t = 290
    for n in range(1, 17):
        AttemptFactory(
            job=code,
            number=n,
            status="errored",
            error_kind="error",
            model="google/gemini-2.5-flash",
            started_at=now - timedelta(seconds=t),
            finished_at=now - timedelta(seconds=t - 4),
        )
        t -= 6
    AttemptFactory(
        job=code, number=17, model="ollama/llama3.1:8b", started_at=now - timedelta(seconds=60)
    )
    Event.objects.create(
        event_type="hhmrs_restart",
        agent_id="Dir-Code",
        run_id=str(run.run_id),
        data={"retry_type": "llm_change", "message": "Retrying Dir-Code with different LLM"},
    )
    JobFactory(
        run=run,
        agent=tree["Dir-Docs"],
        parent=arch,
        job_id=f"jc-{r8}-Docs-1",
        lane="Docs",
        status="succeeded",
        result={
            "lane": "Docs",
            "state": "completed",
            "artifacts": ["docs/config-format-reference-with-a-long-name.md"],
            "acceptance_results": {"artifacts_exist": {"status": "pass", "detail": "1/1"}},
            "managers_used": {"Mgr-Docs-01": "Write the reference"},
            "actuals": {"tokens": 1830, "duration_s": 21.4, "cost_usd": 0.0},
        },
    )
    for n in range(150):
        CommsMessageFactory(run_id=str(run.run_id), message=f"Status line {n}")
    return run


def test_nothing_scrolls_sideways_at_390_px(
    chromium: Any, daphne: procs.DaphneServer, operator_login: Any, tree: Any
) -> None:
    run = _demo_run(tree)
    context = chromium.new_context(
        viewport={"width": 390, "height": 844}, base_url=daphne.url, is_mobile=True
    )
    page = log_in(context, daphne.url, operator_login)
    paths = [
        "/",
        "/runs/",
        f"/runs/{run.run_id}/",
        "/retry/",
        "/events/",
        "/comms/",
        "/overview/",
        "/agents/Dir-Code/",
        "/settings/",
    ]
    for path in paths:
        page.goto(path)
        page.wait_for_load_state("load")
        scroll, client = no_sideways_scroll(page)
        assert scroll <= client, f"{path}: {scroll} px wide in a {client} px window"
    # The header (with the banner's slot) stays small.
    page.goto("/")
    assert page.locator(".chrome").bounding_box()["height"] <= 110
    screenshot(page, "tree-390", full_page=False)
    page.goto(f"/runs/{run.run_id}/")
    screenshot(page, "run-390")
    assert page.console_errors == []
    context.close()


def test_the_run_page_is_short_and_its_timeline_zooms(page: Any, tree: Any) -> None:
    run = _demo_run(tree)
    page.goto(f"/runs/{run.run_id}/")
    page.wait_for_function("document.body.dataset.stream === 'ok'")
    # Comms and events are collapsed: the page is short.
    assert page.evaluate("document.documentElement.scrollHeight") < 2600
    assert page.locator("#run-logs tr.comm").count() == 0
    page.click("#run-logs-box > summary")
    page.wait_for_selector("#run-logs tr.comm")
    # Bars carry their model; the switch is marked.
    assert page.locator("svg.timeline .bar-label").count() >= 1
    assert page.locator("svg.timeline .mark-switch").count() == 1
    # The lane report is a table, not JSON.
    lane = page.locator("#lane-Docs")
    assert "1830" in lane.locator(".lane-actuals").inner_text()
    assert "artifacts_exist" in lane.locator(".lane-checks").inner_text()
    # Drag across the first 100 s of the chart: 16 bars, one for each failed attempt.
    svg = page.locator("svg.timeline")
    svg.evaluate("e => e.scrollIntoView({block: 'center'})")  # Clear of the sticky header.
    box = svg.bounding_box()
    plot_x = box["x"] + box["width"] * 150 / 920
    plot_w = box["width"] * 760 / 920
    y = box["y"] + box["height"] / 2
    page.mouse.move(plot_x + 2, y)
    page.mouse.down()
    page.mouse.move(plot_x + plot_w * 0.34, y, steps=5)
    page.mouse.up()
    page.wait_for_url("**tl_from=*")
    assert page.locator("svg.timeline rect.tl-errored").count() == 16
    widths = page.eval_on_selector_all(
        "svg.timeline rect.tl-errored", "els => els.map(e => e.getBBox().width)"
    )
    assert min(widths) > 5  # Separate bars, not one red smear.
    screenshot(page, "run-zoomed")
    assert page.console_errors == []


def test_an_agents_page_draws_its_heartbeat_live(page: Any, tree: Any) -> None:
    from pas_core.models import Agent
    from tests.factories import AttemptFactory, FaultFactory, JobFactory, RunFactory

    now = timezone.now()
    Agent.objects.filter(pk="Dir-Code").update(status="working")
    run = RunFactory(title="Parse the config files", status="running")
    job = JobFactory(
        run=run, agent=tree["Dir-Code"], job_id="jc-live-Code-1", status="running", restart_count=1
    )
    AttemptFactory(
        job=job,
        number=1,
        status="timed_out",
        model="google/gemini-2.5-flash",
        started_at=now - timedelta(seconds=50),
        finished_at=now - timedelta(seconds=38),
        error_kind="timeout",
        error="no heartbeat for 12.0s",
    )
    AttemptFactory(job=job, number=2, model="google/gemini-2.5-flash", started_at=now)
    for kind in ("hhmrs_timeout", "hhmrs_restart"):
        Event.objects.create(event_type=kind, agent_id="Dir-Code", data={})
    FaultFactory(agent=tree["Dir-Code"], kind="hang", remaining=1, created_by="op")
    page.goto("/agents/Dir-Code/")
    page.wait_for_function("document.body.dataset.stream === 'ok'")
    # The sparkline fills as the page samples the heartbeat age each second.
    points = "document.querySelector('svg[data-spark] .line').getAttribute('points')"
    page.wait_for_function(f"{points}.split(' ').length >= 3", timeout=10_000)
    assert "jc-live-Code-1" in page.locator("#agent-live").inner_text()
    assert "no heartbeat for 12.0s" in page.locator("#agent-live").inner_text()
    screenshot(page, "agent", docs="agent.png", full_page=False)
    assert page.console_errors == []


def test_a_working_node_whose_beat_is_overdue_reads_late(page: Any, tree: Any) -> None:
    from pas_core.models import Agent
    from tests.factories import AttemptFactory, JobFactory, RunFactory

    # Heartbeat interval 30 s: late after 45 s without a beat; this one is 100 s old.
    Agent.objects.filter(pk="Dir-Data").update(status="working")
    job = JobFactory(
        run=RunFactory(status="running"), agent=tree["Dir-Data"], job_id="jc-late", status="running"
    )
    AttemptFactory(job=job, number=1, started_at=timezone.now() - timedelta(seconds=100))
    page.reload()
    node = page.locator("#node-Dir-Data")
    page.wait_for_selector("#node-Dir-Data.is-late")
    # The colour and the words agree: not "working" next to an amber dot.
    assert node.locator("[data-status-label]").inner_text() == "late"
    assert node.locator("[data-age]").inner_text().startswith("♥ 1m")
    assert page.console_errors == []
