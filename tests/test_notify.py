"""A permanent failure tells a person: stored for the HMI, POSTed to the webhook, mailed."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail

from pas_core import config
from pas_core.models import Attempt, Event, Job, Notification
from pas_core.services import supervision
from pas_core.services.notifications import notification_deliver
from tests.factories import JobFactory, RunFactory

pytestmark = pytest.mark.django_db


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append({"type": self.headers["Content-Type"], "json": json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook():
    _Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Hook.received
    server.shutdown()


def test_a_permanent_failure_is_stored_posted_to_the_webhook_and_mailed(tree, settings, webhook):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    url, received = webhook
    config.document_save({"notifications": {"webhook_url": url, "email": "ops@example.com"}})
    run = RunFactory(title="Webhook run")
    job = JobFactory(run=run, agent=tree["Dir-Docs"], job_id="jc-hook-docs", status="running")
    last = Attempt.objects.create(
        job=job,
        number=16,
        agent=tree["Dir-Docs"],
        status=Attempt.Status.ERRORED,
        error_kind="error",
        error="injected error",
    )
    Job.objects.filter(pk=job.pk).update(current_attempt=last)
    job.refresh_from_db()

    supervision.job_fail_permanently(job, reason="max_llm_retries_exceeded")

    job.refresh_from_db()
    # The job waits in the retry queue, showing what really went wrong.
    assert job.status == Job.Status.FAILED and job.retryable
    assert job.error == "Permanently failed: Dir-Docs (injected error)"
    note = Notification.objects.get(job=job)
    assert note.title == "Permanently failed: Dir-Docs (injected error)"
    assert note.reason == "max_llm_retries_exceeded"
    assert "Last error: injected error" in note.body
    assert not note.read
    failure = Event.objects.get(event_type="hhmrs_failure")
    assert failure.data["reason"] == "max_llm_retries_exceeded"
    assert failure.data["last_error"] == "injected error"
    assert failure.data["job_id"] == "jc-hook-docs"

    delivery = notification_deliver(note.pk)

    assert delivery == {"webhook": "HTTP 204", "email": "sent"}
    assert received[0]["type"] == "application/json"
    assert received[0]["json"]["agent_id"] == "Dir-Docs"
    assert received[0]["json"]["run_id"] == str(run.run_id)
    # The webhook hears the real reason and the real error, not a fixed label.
    assert received[0]["json"]["reason"] == "max_llm_retries_exceeded"
    assert received[0]["json"]["error"] == "Permanently failed: Dir-Docs (injected error)"
    assert mail.outbox[0].to == ["ops@example.com"]
    assert "Dir-Docs" in mail.outbox[0].subject


def test_a_dead_webhook_is_recorded_not_raised(tree, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    config.document_save({"notifications": {"webhook_url": "http://127.0.0.1:9/none"}})
    job = JobFactory(agent=tree["Dir-Docs"], job_id="jc-dead-hook", status="running")
    supervision.job_fail_permanently(job, reason="budget_exceeded")
    note = Notification.objects.get(job=job)
    assert note.title == "Permanently failed: Dir-Docs (budget exceeded)"  # No attempt ran.

    delivery = notification_deliver(note.pk)

    assert delivery["webhook"].startswith("failed:")
    assert Notification.objects.get(pk=note.pk).delivery == delivery


def test_notifications_can_be_turned_off(tree):
    config.document_save({"notifications": {"notify_on_permanent_failure": False}})
    job = JobFactory(agent=tree["Dir-Docs"], job_id="jc-quiet", status="running")
    supervision.job_fail_permanently(job, reason="max_llm_retries_exceeded")
    assert not Notification.objects.exists()
    # The failure itself is still an event.
    assert Event.objects.filter(event_type="hhmrs_failure").exists()
