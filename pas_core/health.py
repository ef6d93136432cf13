"""GET /health: database, Redis and Celery workers, without authentication."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from .dispatch import workers_ping
from .stores.redis import redis_client


def health_check(worker_timeout_s: float = 1.0) -> dict[str, Any]:
    """Return the health document; ``status`` is ``ok`` only when every part is."""
    problems: list[str] = []
    out: dict[str, Any] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        out["db"] = "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        out["db"] = "error"
        problems.append(f"database: {exc.__class__.__name__}: {exc}")
    try:
        redis_client().ping()
        out["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        out["redis"] = "error"
        problems.append(f"redis: {exc.__class__.__name__}: {exc}")
    workers: list[str] = []
    if out["redis"] == "ok":
        workers = workers_ping(timeout=worker_timeout_s)
    queues = {
        "agents": sum(1 for w in workers if w.startswith("agents@")),
        "hhmrs": sum(1 for w in workers if w.startswith("hhmrs@")),
    }
    out["workers"] = len(workers)
    out["worker_names"] = workers
    out["queues"] = queues
    if not workers:
        problems.append("workers: no Celery worker answered a ping")
    else:
        problems.extend(f"workers: none for the {q} queue" for q, n in queues.items() if n == 0)
    out["status"] = "ok" if not problems else "degraded"
    out["problems"] = problems
    return {"status": out.pop("status"), **out}


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    doc = health_check()
    return JsonResponse(doc, status=200 if doc["status"] == "ok" else 503)
