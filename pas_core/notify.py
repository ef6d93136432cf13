"""Deliver notifications: a JSON POST to the webhook, a mail to the address."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from django.core.mail import send_mail

from .config import document_get
from .models import Notification


def notification_deliver(notification_id: int) -> dict[str, Any]:
    note = Notification.objects.select_related("run", "job").filter(pk=notification_id).first()
    if note is None:
        return {}
    conf = document_get()["notifications"]
    payload = {
        "title": note.title,
        "body": note.body,
        "agent_id": note.agent_id,
        "run_id": str(note.run_id) if note.run_id else None,
        "job_id": note.job_id,
        "reason": "max_llm_retries_exceeded",
        "created_at": note.created_at.isoformat(),
    }
    delivery: dict[str, Any] = {}
    if conf.get("webhook_url"):
        request = urllib.request.Request(
            conf["webhook_url"],
            data=json.dumps(payload).encode(),
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
