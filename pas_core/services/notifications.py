"""Notifications: a permanent failure told to a person, stored and delivered.

Stored for the HMI at once; delivered to the webhook (a JSON POST) and the email
address, if set, by a task on the hhmrs queue after the transaction commits.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from django.core.mail import send_mail

from .. import dispatch
from ..config import document_get
from ..models import Job, Notification
from ..stores.events import event_emit


def notification_create(
    job: Job, *, message: str, reason: str, last_error: str
) -> Notification | None:
    """Store a notice of the job's permanent failure; deliver it after commit if configured.

    ``reason`` is the rung of the ladder that gave up (``max_llm_retries_exceeded``, or
    the error kind that skips the ladder); ``last_error`` is what actually went wrong.
    """
    notify = document_get()["notifications"]
    if not notify.get("notify_on_permanent_failure", True):
        return None
    run = job.run
    note = Notification.objects.create(
        title=message[:200],
        body=(
            f"Run {run.title!r} ({run.run_id}): job {job.pk} on {job.agent_id} failed for good "
            f"after {job.restart_count} restarts and {job.llm_failure_count} model switches "
            f"({reason}). Last error: {last_error or 'none recorded'}. "
            "It waits in the retry queue."
        ),
        reason=reason,
        run=run,
        job=job,
        agent_id=job.agent_id,
    )
    if notify.get("webhook_url") or notify.get("email"):
        dispatch.notification_send(note.pk)
    event_emit("notification", {"id": note.pk, "title": note.title, "agent_id": job.agent_id})
    return note


def notification_payload(note: Notification) -> dict[str, Any]:
    """Return what the webhook receives: the notice, its real reason and last error."""
    return {
        "title": note.title,
        "body": note.body,
        "agent_id": note.agent_id,
        "run_id": str(note.run_id) if note.run_id else None,
        "job_id": note.job_id,
        "reason": note.reason,
        "error": note.job.error if note.job else "",
        "created_at": note.created_at.isoformat(),
    }


def notification_deliver(notification_id: int) -> dict[str, Any]:
    """POST the notice to the webhook and mail it; record how each went."""
    note = Notification.objects.select_related("run", "job").filter(pk=notification_id).first()
    if note is None:
        return {}
    conf = document_get()["notifications"]
    delivery: dict[str, Any] = {}
    if conf.get("webhook_url"):
        request = urllib.request.Request(
            conf["webhook_url"],
            data=json.dumps(notification_payload(note)).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                delivery["webhook"] = f"HTTP {response.status}"
        except Exception as exc:  # noqa: BLE001 - recorded, not raised
            delivery["webhook"] = f"failed: {exc.__class__.__name__}: {exc}"
    if conf.get("email"):
        try:
            send_mail(f"[PAS] {note.title}", note.body, None, [conf["email"]])
            delivery["email"] = "sent"
        except Exception as exc:  # noqa: BLE001
            delivery["email"] = f"failed: {exc.__class__.__name__}: {exc}"
    Notification.objects.filter(pk=note.pk).update(delivery=delivery)
    return delivery


def notifications_mark_read(pk: int | None = None) -> int:
    """Mark one notification read (or all of them); return how many changed."""
    rows = Notification.objects.filter(read=False)
    if pk is not None:
        rows = rows.filter(pk=pk)
    return rows.update(read=True)
