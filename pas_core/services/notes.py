"""What supervision says: every HHMRS event's data and comms line, built in one place.

Each ``*_note`` returns ``(event data, comms line)``; the line is ``comms_log``'s
arguments. ``Notes`` gathers them and writes them in bulk (one INSERT for the events,
one for the comms rows, one file append after commit), in the order they were added,
so event ids tell each attempt's story in order. A list of one is written the same
way as a list of a thousand: one timeout reads the same whoever handled it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..config import Hhmrs
from ..models import Agent, Attempt, Job
from ..stores.comms import comms_log_many, model_short
from ..stores.events import events_emit

Line = dict[str, Any]
Note = tuple[dict[str, Any], Line]


def chain_ids(agent: Agent) -> tuple[str | None, str | None]:
    """Return the agent's parent and grandparent ids (None at the top of the tree)."""
    parent = agent.parent
    return (parent.agent_id if parent else None, parent.parent_id if parent else None)


def silence(seconds: float) -> str:
    """Return how an attempt's silence is written, the same in its row and its event."""
    return f"{seconds:.1f}s"


def timeout_note(attempt: Attempt, job: Job, *, now: float, last_beat: float) -> Note:
    parent_id, _ = chain_ids(attempt.agent)
    quiet = now - last_beat
    data = {
        "agent_id": attempt.agent_id,
        "parent_id": parent_id,
        "job_id": job.pk,
        "run_id": str(job.run_id),
        "restart_count": job.restart_count,
        "last_seen": datetime.fromtimestamp(last_beat, tz=UTC).isoformat(),
        "timeout_duration_s": round(quiet, 3),
        "attempt": attempt.number,
        "llm_model": attempt.model,
        "message": f"{attempt.agent_id} missed heartbeats for {silence(quiet)}",
    }
    line = {
        "sender": "TRON",
        "recipient": parent_id or "PAS Root",
        "kind": "STATUS",
        "message": f"Child timeout: {attempt.agent_id} (restart_count={job.restart_count})",
        "llm_model": attempt.model,
        "run_id": job.run_id,
        "status": "timed_out",
        "metadata": {"job_id": job.pk, "attempt": attempt.number},
    }
    return data, line


def restart_note(
    job: Job, *, cfg: Hhmrs, reason: str, number: int, by: str = "", delay_s: float = 0.0
) -> Note:
    """``job.restart_count`` already counts this restart; ``number`` is the new attempt's.

    ``delay_s``: how long the new attempt waits before it is sent (a backoff).
    """
    parent_id, _ = chain_ids(job.agent)
    count = job.restart_count
    after = f" in {delay_s:.1f}s" if delay_s else ""
    data = {
        "agent_id": job.agent_id,
        "parent_id": parent_id,
        "restart_count": count,
        "max_restarts": cfg.max_restarts,
        "job_id": job.pk,
        "run_id": str(job.run_id),
        "reason": reason,
        "by": by or parent_id or "TRON",
        "delay_s": round(delay_s, 3),
        "message": f"Restarting {job.agent_id} (attempt {number}){after}",
    }
    line = {
        "sender": parent_id or "TRON",
        "recipient": job.agent_id,
        "kind": "STATUS",
        "message": f"Restarting {job.agent_id} and re-sending {job.pk} "
        f"(restart {count}/{cfg.max_restarts}, reason {reason}){after}",
        "llm_model": job.agent.current_model,
        "run_id": job.run_id,
        "status": "restarting",
        "metadata": {"job_id": job.pk, "by": by} if by else {"job_id": job.pk},
    }
    return data, line


def jobless_restart_note(agent: Agent, *, count: int, by: str = "") -> Note:
    """A restart of an agent that has no job: nothing to kill, nothing to re-send."""
    parent_id, _ = chain_ids(agent)
    data = {
        "agent_id": agent.agent_id,
        "parent_id": parent_id,
        "restart_count": count,
        "job_id": None,
        "by": by or parent_id or "TRON",
        "message": f"Successfully restarted {agent.agent_id} (no active task to resend)",
    }
    line = {
        "sender": by or parent_id or "TRON",
        "recipient": agent.agent_id,
        "kind": "STATUS",
        "message": f"Restarting {agent.agent_id} (no active task to resend)",
        "llm_model": agent.current_model,
        "status": "restarting",
        "metadata": {"restart_count": count},
    }
    return data, line


def escalation_note(
    agent: Agent, *, job: Job | None, restart_count: int, failure_count: int, reason: str
) -> Note:
    parent_id, grandparent_id = chain_ids(agent)
    data = {
        "agent_id": agent.agent_id,
        "parent_id": parent_id,
        "grandparent_id": grandparent_id,
        "restart_count": restart_count,
        "failure_count": failure_count,
        "reason": reason,
        "job_id": job.pk if job else None,
        "run_id": str(job.run_id) if job else None,
        "message": f"Escalated {agent.agent_id} to {grandparent_id}",
    }
    line = {
        "sender": parent_id or "",
        "recipient": grandparent_id or "",
        "kind": "STATUS",
        # Contract (DESIGN 5): "Grandchild escalation: Dir-Models (failure_count=0)".
        "message": f"Grandchild escalation: {agent.agent_id} (failure_count={failure_count})",
        "llm_model": agent.current_model,
        "run_id": job.run_id if job else "",
        "status": "escalated",
        "metadata": {"job_id": job.pk, "reason": reason} if job else {"reason": reason},
    }
    return data, line


def switch_note(agent: Agent, *, old: str, new: str, failure_count: int, job: Job | None) -> Note:
    parent_id, grandparent_id = chain_ids(agent)
    # Contract (DESIGN 5): "Retrying Dir-Models with different LLM: a → b", no prefixes.
    message = (
        f"Retrying {agent.agent_id} with different LLM: {model_short(old)} → {model_short(new)}"
    )
    data = {
        "agent_id": agent.agent_id,
        "parent_id": parent_id,
        "grandparent_id": grandparent_id,
        "retry_type": "llm_change",
        "old_llm": old,
        "new_llm": new,
        "failure_count": failure_count,
        "restart_count": 0,
        "job_id": job.pk if job else None,
        "run_id": str(job.run_id) if job else None,
        "message": message,
    }
    line = {
        "sender": grandparent_id or "PAS Root",
        "recipient": agent.agent_id,
        "kind": "STATUS",
        "message": message,
        "llm_model": new,
        "run_id": job.run_id if job else "",
        "status": "retrying",
        "metadata": {"job_id": job.pk} if job else {},
    }
    return data, line


def failure_text(agent_id: str, *, reason: str, last_error: str) -> str:
    """Return the one-line account of a permanent failure: the real cause, not a label."""
    return f"Permanently failed: {agent_id} ({last_error or reason.replace('_', ' ')})"


def failure_note(
    agent: Agent,
    *,
    job: Job | None,
    reason: str,
    last_error: str,
    failure_count: int,
    restart_count: int,
) -> Note:
    """The ``hhmrs_failure`` event and the line that tells the user."""
    parent_id, grandparent_id = chain_ids(agent)
    message = failure_text(agent.agent_id, reason=reason, last_error=last_error)
    data = {
        "agent_id": agent.agent_id,
        "parent_id": parent_id,
        "grandparent_id": grandparent_id,
        "failure_count": failure_count,
        "restart_count": restart_count,
        "reason": reason,
        "last_error": last_error,
        "job_id": job.pk if job else None,
        "run_id": str(job.run_id) if job else None,
        "message": message,
    }
    line = {
        "sender": grandparent_id or parent_id or "TRON",
        "recipient": "user",
        "kind": "STATUS",
        "message": message,
        "llm_model": agent.current_model,
        "run_id": job.run_id if job else "",
        "status": "failed",
        "metadata": {"job_id": job.pk, "reason": reason} if job else {"reason": reason},
    }
    return data, line


class Notes:
    """Events and comms lines to write together, in the order they were added."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.lines: list[Line] = []

    def add(self, event_type: str, note: Note) -> None:
        data, line = note
        self.events.append((event_type, data))
        self.lines.append(line)

    def event(self, event_type: str, data: dict[str, Any]) -> None:
        self.events.append((event_type, data))

    def line(self, line: Line) -> None:
        self.lines.append(line)

    def save(self) -> None:
        """Write what was gathered (rows now, file lines and pushes after commit)."""
        events, lines = self.events, self.lines
        self.events, self.lines = [], []
        events_emit(events)
        comms_log_many(lines)
