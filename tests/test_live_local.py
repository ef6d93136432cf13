"""Live mode on a real model: llama.cpp's server (xllamacpp) with SmolLM2-135M.

No fault injection and no fake server here: the model plans and writes (its replies
constrained to each role's schema), the server streams its usage, and a server that
freezes (SIGSTOP) or dies (SIGKILL) mid-stream is what HHMRS has to recover from.
The timeouts are generous: on two cores a prompt takes seconds before its first token.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pas_core.models import Agent, Attempt, Event, Job, Run
from pas_core.services.agents import agents_models_set
from pas_core.services.providers import provider_save
from pas_core.services.submit import run_submit
from pas_core.stores import heartbeats
from tests import local_llm
from tests.e2e import short_timings, stack, wait_run, wait_until

if reason := local_llm.skip_reason():
    pytest.skip(reason, allow_module_level=True)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.live,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(420),
]

MODEL = local_llm.DEFAULT_ALIAS
LIVE = {"heartbeat_interval_s": 2, "timeout_threshold_s": 40, "missed_heartbeat_threshold": 2}
CODE = {"title": "Parse the config", "goal": "Implement the config parser function in code"}


def _serve(tmp_path: Path, name: str, slots: int = 2) -> local_llm.LocalLLMServer:
    """Start a model server and make it provider ``name`` (its model: ``name/<alias>``)."""
    server = local_llm.LocalLLMServer(tmp_path / name, extra_args=["--slots", str(slots)]).start()
    provider_save(name, base_url=server.base_url, structured="json_schema", max_concurrency=slots)
    return server


def _on(name: str, agents: list[str] | None = None, fallback: str | None = None) -> str:
    model = f"{name}/{MODEL}"
    agents_models_set(agents, model, fallbacks=[fallback] if fallback else [])
    return model


def _streaming(agent_id: str) -> Attempt | None:
    """Return the agent's running attempt once its model's reply is streaming in."""
    attempt = Attempt.objects.filter(agent_id=agent_id, status="running").first()
    if attempt and heartbeats.hb_details(attempt.pk).get("message") == "streaming":
        return attempt
    return None


def _troubles(run: Run) -> list[str]:
    """Return the run's jobs that failed or reported a state other than completed."""
    return [
        f"{job.agent_id} {job.status}: {job.error or (job.result or {}).get('state_reason')}"
        for job in Job.objects.filter(run=run).order_by("created_at")
        if job.status != "succeeded" or (job.result or {}).get("state", "completed") != "completed"
    ]


MODEL_VERDICTS = ("acceptance failed", "not run: ")


def _only_acceptance(run: Run) -> bool:
    """True when the run failed on what the tiny model wrote, nothing else: every job
    succeeded and the lanes that did not complete failed their acceptance or named a
    check PAS cannot run (``not run: what could go wrong``), or the jobs that failed
    failed only because every answer was refused (``bad_output``: e.g. an absolute file
    path, each time the ladder asked again)."""
    jobs = Job.objects.filter(run=run)
    failed_jobs = jobs.exclude(status="succeeded")
    if failed_jobs.exists():
        refused = Attempt.objects.filter(job__in=failed_jobs, phase="step").exclude(
            status="succeeded"
        )
        return failed_jobs.filter(agent__role="programmer").count() == failed_jobs.count() and (
            refused.exists() and not refused.exclude(error_kind="bad_output").exists()
        )
    lanes = [j.result or {} for j in jobs.filter(agent__role="director")]
    failed = [r for r in lanes if r.get("state", "completed") != "completed"]
    return bool(failed) and all(
        str(r.get("state_reason", "")).startswith(MODEL_VERDICTS) for r in failed
    )


@pytest.mark.timeout(900)  # Up to four runs of about a minute; the module's 420 s is for one.
def test_a_five_lane_directive_completes_on_the_local_model(
    tree: Any, proc_env: Any, tmp_path: Path
) -> None:
    short_timings(**LIVE)
    server = _serve(tmp_path, "local", slots=4)
    _on("local")
    directive = {
        "title": "A small service",
        "goal": "Write code, a model card, a data schema, a deploy script and the docs",
    }
    with stack(proc_env(PAS_LLM_MODE="live"), agents=6):
        run = wait_run(run_submit(**directive).run_id, timeout=360)
        first = _troubles(run)
        for _ in range(3):
            if run.status == Run.Status.COMPLETED or not _only_acceptance(run):
                break
            # The 135M model, sampling at llama.cpp's default temperature, now and then
            # writes nothing a lane's acceptance finds (about 1 run in 14 here; a clean
            # clone's CI saw it twice in a row), plans a check no one can run ("what
            # could go wrong"), or keeps writing what PAS refuses (an absolute path,
            # through the whole ladder), and PAS rightly fails that lane. Such a run
            # gets up to three more tries; any other failure (an error, a timeout, a
            # crash) fails the test at once.
            run = wait_run(run_submit(**directive).run_id, timeout=360)
    server.stop()

    assert run.status == Run.Status.COMPLETED, f"{run.message}; {_troubles(run)}; {first}"
    assert run.tokens_used > 0  # Real tokens, from the server's streamed usage.
    lanes = Job.objects.filter(run=run, agent__role="director", status="succeeded")
    assert lanes.exists()
    for job in lanes:
        actuals = job.result["actuals"]
        assert actuals["tokens"] > 0
        assert job.result["produced_by"] == f"local/{MODEL}"
    assert run.summary["actuals"]["tokens"] > 0


def test_a_frozen_server_is_a_real_hang_recovered_on_another_server(
    tree: Any, proc_env: Any, tmp_path: Path
) -> None:
    short_timings(
        heartbeat_interval_s=1,
        missed_heartbeat_threshold=2,
        timeout_threshold_s=15,
        max_restarts=1,
        max_llm_retries=1,
    )
    first = _serve(tmp_path, "locala")
    _serve(tmp_path, "localb")
    _on("localb")
    _on("locala", ["Dir-Code"], fallback=f"localb/{MODEL}")
    with stack(proc_env(PAS_LLM_MODE="live"), agents=6):
        submitted = run_submit(**CODE)
        hung = wait_until(lambda: _streaming("Dir-Code"), "Dir-Code's reply to stream", 120)
        first.freeze()  # No fault injection: the model server itself stops mid-stream.
        run = wait_run(submitted.run_id, timeout=300)
        first.thaw()  # Its late output, if any, reaches nobody.
        time.sleep(3)

    # The run completes, or fails only on what the 135M model wrote (a lane's check PAS
    # cannot run, files its acceptance rejects): what is tested here is the recovery.
    assert run.status == Run.Status.COMPLETED or _only_acceptance(run), (
        f"{run.message}; {_troubles(run)}"
    )
    job = Job.objects.get(pk=hung.job_id)
    steps = list(job.attempts.filter(phase="step").order_by("number"))
    # The hung attempt and its restart (the server still frozen) timed out...
    assert [(a.status, a.model) for a in steps[:2]] == [("timed_out", f"locala/{MODEL}")] * 2
    # ...then PAS Root switched Dir-Code to its fallback on the other server.
    assert (steps[-1].status, steps[-1].model) == ("succeeded", f"localb/{MODEL}")
    assert job.restart_count == 0 and job.llm_failure_count == 1
    switch = Event.objects.get(event_type="hhmrs_restart", data__retry_type="llm_change")
    assert switch.data["new_llm"] == f"localb/{MODEL}"
    assert Event.objects.filter(event_type="job_completed", job_id=job.pk).count() == 1


def test_a_server_killed_mid_stream_is_a_crash_and_the_restart_completes(
    tree: Any, proc_env: Any, tmp_path: Path
) -> None:
    short_timings(**LIVE, restart_backoff_initial_s=6, restart_backoff_jitter=0)
    server = _serve(tmp_path, "local")
    _on("local")
    with stack(proc_env(PAS_LLM_MODE="live"), agents=6):
        submitted = run_submit(**CODE)
        killed = wait_until(lambda: _streaming("Dir-Code"), "Dir-Code's reply to stream", 120)
        server.kill()
        again = local_llm.LocalLLMServer(
            tmp_path / "again", port=server.port, extra_args=["--slots", "2"]
        ).start()  # Back within the restart's 6 s backoff.
        # The restarted step plans on the server that came back (the run goes on).
        redone = wait_until(
            lambda: Attempt.objects.filter(job_id=killed.job_id, status="succeeded").first(),
            "Dir-Code's restarted step to succeed",
            240,
        )
        again.stop()

    killed.refresh_from_db()
    assert (killed.status, killed.error_kind) == ("errored", "crash")
    assert "cannot reach the provider" in killed.error or "local/" in killed.error
    assert redone.number == killed.number + 1
    assert Job.objects.get(pk=killed.job_id).restart_count == 1
    assert Run.objects.get(pk=submitted.run_id).status in (Run.Status.RUNNING, Run.Status.COMPLETED)


def test_a_reply_without_a_schema_is_bad_output(tree: Any, proc_env: Any, tmp_path: Path) -> None:
    short_timings(**LIVE, max_restarts=0, max_llm_retries=0)
    server = _serve(tmp_path, "local")
    # The same server as a provider that sends no response_format: the model answers
    # as it likes (usually Python), and the Architect's plan does not parse.
    provider_save("localraw", base_url=server.base_url, structured="none")
    _on("local")
    _on("localraw", ["Architect"])
    with stack(proc_env(PAS_LLM_MODE="live"), agents=2):
        submitted = run_submit(**CODE)
        ended = wait_until(
            lambda: (
                Attempt.objects.filter(agent_id="Architect")
                .exclude(status__in=["queued", "running"])
                .first()
            ),
            "the Architect's attempt to end",
            180,
        )

    assert (ended.status, ended.error_kind) == ("errored", "bad_output")
    assert ended.error.startswith("ArchitectPlan: ")
    assert Run.objects.get(pk=submitted.run_id).status != Run.Status.COMPLETED


def test_a_budget_of_a_few_hundred_tokens_fails_the_run(
    tree: Any, proc_env: Any, tmp_path: Path
) -> None:
    short_timings(**LIVE)
    _serve(tmp_path, "local")
    _on("local")
    with stack(proc_env(PAS_LLM_MODE="live"), agents=2):
        run = wait_run(run_submit(**CODE, budget_tokens_max=300).run_id, timeout=240)

    assert run.status == Run.Status.FAILED
    assert run.message.startswith("Budget exceeded: tokens "), run.message
    assert run.tokens_used > 300
    architect = Job.objects.get(run=run, agent_id="Architect")
    assert architect.status == "failed"
    assert architect.current_attempt.error_kind == "budget_exceeded"
    assert Agent.objects.get(pk="Architect").current_model == f"local/{MODEL}"  # No switch.
