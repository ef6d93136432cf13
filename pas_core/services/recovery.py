"""Recovery of what a lost worker process held: blame the culprit, spare the rest."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction
from django.utils import timezone

from .. import dispatch
from ..config import hhmrs_get
from ..models import Attempt, Job
from ..stores import heartbeats
from .attempts import attempts_resend
from .notes import Notes
from .supervision import OPEN, jobs_locked, jobs_restart, route_failure
from .transitions import attempts_move


def attempts_worker_lost(
    attempt_ids: Sequence[int], *, culprits: Sequence[int], cause: str
) -> dict[str, int]:
    """Recover the attempts of a worker process that was replaced (or died).

    ``culprits`` took it down (``runaway``: a loop that never yielded; ``crash``): each
    fails with that kind and its job is restarted as any failure is, counted. Every
    other running attempt was innocent: killed and re-sent without spending its job's
    restart budget. Queued ones (waiting for a provider slot) lost only their message:
    sent again. Attempts that ended meanwhile are left alone.
    """
    cfg = hhmrs_get()
    kind = "runaway" if cause == "runaway" else "crash"
    with transaction.atomic():
        attempts = list(Attempt.objects.filter(pk__in=attempt_ids).order_by("pk"))
        jobs = jobs_locked(a.job_id for a in attempts)
        guilty = [a.pk for a in attempts if a.pk in set(culprits)]
        failed = attempts_move(
            guilty,
            to=Attempt.Status.ERRORED,
            error_kind=kind,
            error=f"{cause}: its worker process had to be replaced",
            finished_at=timezone.now(),
        )
        innocent = [a.pk for a in attempts if a.status == Attempt.Status.RUNNING]
        killed = attempts_move(
            [pk for pk in innocent if pk not in set(guilty)],
            to=Attempt.Status.KILLED,
            error_kind="killed",
            error=f"worker process replaced ({cause}); re-sent, not counted",
            finished_at=timezone.now(),
        )
        resend = [
            a for a in attempts if a.status == Attempt.Status.QUEUED and a.pk not in set(guilty)
        ]
        ended = {a.pk: a for a in Attempt.objects.filter(pk__in=[*failed, *killed])}
        restarts: list[tuple[Job, str]] = []
        uncounted: list[tuple[Job, str]] = []
        for attempt in attempts:
            job = jobs[attempt.job_id]
            if attempt.pk not in ended or job.current_attempt_id != attempt.pk:
                continue
            if job.status not in OPEN:
                continue
            job.current_attempt = ended[attempt.pk]
            if attempt.pk in failed:
                route_failure(job, kind, cfg, restarts)
            else:
                uncounted.append((job, "worker_replaced"))
        jobs_restart(uncounted, cfg=cfg, counted=False)
        jobs_restart(restarts, cfg=cfg)
        if resend:
            dispatch.after_commit(lambda: attempts_resend(resend))
        notes = Notes()
        notes.event(
            "worker_replaced",
            {
                "cause": cause,
                "culprits": failed,
                "innocent": killed,
                "resent": [a.pk for a in resend],
                "message": f"A worker process was replaced ({cause}): {len(failed)} blamed, "
                f"{len(killed)} re-sent without counting, {len(resend)} queued sent again",
            },
        )
        notes.save()
    heartbeats.hb_unregister_many(list(attempt_ids))
    return {"blamed": len(failed), "resent_uncounted": len(killed), "queued_resent": len(resend)}
