"""The whole recovery in a real browser: a directive, a hang on Dir-Code, real workers,
a real beat and Daphne; the tree and the banner follow without a reload.

Timed out -> restarting (the parent restarts it, ``max_restarts`` = 1) -> timed out
again -> escalated -> restarting on the next model of its chain -> the run completes.
"""

from __future__ import annotations

from typing import Any

import pytest

from pas_core.services.faults import fault_inject
from tests.browser.conftest import screenshot
from tests.e2e import short_timings, stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Every status, model and badge Dir-Code's node shows, in order, recorded in the page.
RECORD_TRAIL = """
(() => {
  window.__trail = [];
  const note = () => {
    const n = document.getElementById('node-Dir-Code');
    if (!n) return;
    const badge = n.querySelector('[data-badge]');
    const step = n.dataset.status + '|' + n.querySelector('.model').textContent.trim()
      + '|' + (badge ? badge.textContent.trim() : '');
    if (window.__trail[window.__trail.length - 1] !== step) window.__trail.push(step);
  };
  note();
  new MutationObserver(note).observe(document.querySelector('.tree'),
    {subtree: true, childList: true, attributes: true});
})()
"""


def test_a_hang_on_dir_code_recovers_live_on_the_tree(page: Any, proc_env: Any) -> None:
    short_timings(max_restarts=1, max_llm_retries=3)
    # The first attempt and its one restart hang: then a model switch.
    fault_inject("Dir-Code", "hang", count=2, by="test")
    page.evaluate("window.__noReload = 1")
    page.evaluate(RECORD_TRAIL)
    runs = page.context.new_page()
    with stack(proc_env()):
        runs.goto("/runs/")
        runs.fill("#id_title", "Parse the config files")
        runs.fill("#id_goal", "Implement the parser function in code, with tests")
        runs.click("form.form button[type=submit]")
        runs.wait_for_url("**/runs/*/")
        # The tree, without a reload: the node walks through the recovery.
        page.wait_for_selector("#node-Dir-Code.switched", timeout=90_000)
        page.locator("#tron-banner").wait_for(state="visible")
        banner = page.locator("#tron-banner").inner_text()
        screenshot(page, "tree-live", docs="tree.png")
        runs.wait_for_selector("[data-run-status]:has-text('completed')", timeout=120_000)
        runs.wait_for_timeout(1000)
        screenshot(runs, "run-live", docs="run.png", full_page=False)
    trail = page.evaluate("window.__trail")
    statuses = [step.split("|")[0] for step in trail]
    models = [step.split("|")[1] for step in trail]
    assert page.evaluate("window.__noReload") == 1
    assert "working" in statuses
    # Events that arrive together (a timeout and its restart, an escalation and the
    # switch it causes) replace the node once: the status jumps to the last one, and the
    # badge tells the steps between ("timed out → restart"). The story is both.
    badges = [step.split("|")[2] for step in trail]
    first_timeout = next(
        i
        for i, (s, b) in enumerate(zip(statuses, badges, strict=True))
        if s == "timed_out" or "timed out" in b
    )
    restarted = "restarting" in statuses[first_timeout:]
    assert restarted or any("restart" in b for b in badges[first_timeout:]), "\n".join(trail)
    assert "escalated" in statuses or any("escalated" in b for b in badges), "\n".join(trail)
    # The model switch: gemini until the escalation, then llama3.1 marked as not primary.
    assert models[0].startswith("gemini-2.5-flash")
    assert any(m.startswith("llama3.1:8b") and "⇄" in m for m in models)
    assert "Timed out" in banner and "Dir-Code" in banner
    assert "Escalation" in banner
    counts = {k: page.locator(f'[data-counter="{k}"]').inner_text() for k in ("timeout", "restart")}
    assert int(counts["timeout"]) >= 2 and int(counts["restart"]) >= 2
    # The run page followed too: timed-out attempts on the timeline, lanes completed.
    assert runs.locator("svg.timeline rect.tl-timed_out").count() >= 2
    assert runs.locator("svg.timeline .mark-escalation").count() >= 1
    assert runs.locator("svg.timeline .mark-switch").count() >= 1
    # After recovery the tree still shows what happened in the last hour.
    assert "in 1h" in page.locator("#node-Dir-Code .c-restarts").inner_text()
    assert page.console_errors == []
