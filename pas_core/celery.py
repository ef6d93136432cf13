"""Celery wiring: two queues, late acks, nothing lost when a worker dies."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pas_core.settings")

app = Celery("pas_core")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("agents"), Queue("hhmrs"))
app.autodiscover_tasks()
