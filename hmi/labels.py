"""Words the HMI shows for the core's names: event types, statuses, intervention kinds.

Presentation only: the stored names (DESIGN section 5's event types, the status
values) never change; the pages show these labels and keep the stored name in a
``title`` or a small monospace line, so an operator can still grep for it.
"""

from __future__ import annotations

EVENT_LABELS = {
    "hhmrs_timeout": "Timed out",
    "hhmrs_restart": "Restarted",
    "hhmrs_escalation": "Escalated",
    "hhmrs_failure": "Failed for good",
    "job_started": "Job started",
    "job_completed": "Job completed",
    "job_failed": "Job failed",
    "job_retried": "Job retried",
    "job_discarded": "Job discarded",
    "run_completed": "Run completed",
    "run_failed": "Run failed",
    "run_submitted": "Run submitted",
    "agent_status": "Agent status",
    "agent_model_reset": "Model reset",
    "agent_enabled": "Agent enabled",
    "agent_disabled": "Agent disabled",
    "fault_injected": "Fault injected",
    "fault_triggered": "Fault acted out",
    "faults_cleared": "Faults cleared",
}

# The kinds of pas_core.selectors.INTERVENTION_KINDS: (icon, label, plural).
KIND_LABELS = {
    "timeout": ("◷", "Timeout", "timeouts"),
    "restart": ("↻", "Restart", "restarts"),
    "switch": ("⇄", "Model switch", "model switches"),
    "escalation": ("⇪", "Escalation", "escalations"),
    "failure": ("✖", "Permanent failure", "permanent failures"),
}

ATTEMPT_STATUS_LABELS = {
    "queued": "queued",
    "running": "running",
    "succeeded": "succeeded",
    "errored": "errored",
    "timed_out": "timed out",
    "killed": "killed",
}

PHASE_LABELS = {"step": "step", "aggregate": "aggregate"}


def event_label(event_type: str) -> str:
    """Return the words for an event type: ``hhmrs_timeout`` -> ``Timed out``."""
    known = EVENT_LABELS.get(event_type)
    if known:
        return known
    words = event_type.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def status_label(status: str) -> str:
    """Return a status as words: ``timed_out`` -> ``timed out``."""
    return status.replace("_", " ")
