"""GET /health: database, Redis and Celery workers, without authentication.

Workers are not asked (a broadcast ping waits a second for every answer and costs
every worker a reply to each anonymous request): each worker process ticks into the
registry from a thread of its own every second (``pas_core.runtime.liveness``), and
this reads the registry in one round trip. A worker that died, froze or was cut off
drops out within ``stores.workers.STALE_S``.
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from .stores import workers
from .stores.redis import redis_client

QUEUES = ("agents", "hhmrs")


def health_check() -> dict[str, Any]:
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
    alive: dict[str, Any] = {}
    try:
        redis_client().ping()
        out["redis"] = "ok"
        alive = workers.workers_alive()
    except Exception as exc:  # noqa: BLE001
        out["redis"] = "error"
        problems.append(f"redis: {exc.__class__.__name__}: {exc}")
    names = sorted({str(info.get("name") or wid) for wid, info in alive.items()})
    queues = {q: sum(1 for info in alive.values() if q in info.get("queues", [])) for q in QUEUES}
    out["workers"] = len(names)
    out["worker_names"] = names
    out["queues"] = queues
    if out["redis"] == "ok" and not alive:
        problems.append("workers: no Celery worker is alive (none ticked in the last seconds)")
    elif alive:
        problems.extend(f"workers: none for the {q} queue" for q, n in queues.items() if n == 0)
    out["status"] = "ok" if not problems else "degraded"
    out["problems"] = problems
    return {"status": out.pop("status"), **out}


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    doc = health_check()
    return JsonResponse(doc, status=200 if doc["status"] == "ok" else 503)
