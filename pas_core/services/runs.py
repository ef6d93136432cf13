"""Runs: how a Prime Directive ends, and reopens when a failed job is retried."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from ..models import Job, Run
from ..stores.comms import comms_log
from ..stores.events import event_emit
from .transitions import run_move


def run_finish(run_id: Any, root: Job) -> None:
    """End a run from its top job's outcome: completed only if every lane completed."""
    result = root.result if isinstance(root.result, dict) else {}
    ok = root.status == Job.Status.SUCCEEDED and result.get("state", "completed") == "completed"
    status = Run.Status.COMPLETED if ok else Run.Status.FAILED
    stopped = Run.objects.filter(pk=run_id).values_list("stop_reason", flat=True).first()
    if ok:
        message = "All lanes completed"
    elif stopped:
        message = stopped  # Stopped on purpose (a budget): that, not its consequences.
    elif result.get("failed_lanes"):
        message = "Lanes failed: " + ", ".join(result["failed_lanes"])
    else:
        message = result.get("message") or root.error or f"Permanently failed: {root.agent_id}"
    with transaction.atomic(savepoint=False):  # The run's end and its event, together.
        if not run_move(
            run_id, to=status, finished_at=timezone.now(), message=message, summary=result
        ):
            return
        run = Run.objects.get(pk=run_id)
        event_emit(
            "run_completed" if ok else "run_failed",
            {
                "run_id": str(run_id),
                "status": status,
                "message": message,
                "duration_s": run.duration_s,
                "lanes": result.get("lanes", {}),
            },
        )
    comms_log(
        sender="PAS Root",
        recipient="user",
        kind="STATUS",
        message=f"Run {run.title!r} {status}: {message}",
        run_id=run_id,
        status=status,
        progress=1.0,
    )


def run_reopen(run_id: Any) -> bool:
    """Reopen a run whose failed job is sent again: it runs until its top job ends anew."""
    return run_move(run_id, to=Run.Status.RUNNING, finished_at=None, message="", stop_reason="")
