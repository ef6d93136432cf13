"""The header's search box: a run id (or its start), a job id, an agent id, a title.

One clear match jumps to its page; several are listed; none says so. Job ids start
``jc-<first 8 of the run id>``, so a job id always finds its run even when the job
itself is gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.core.exceptions import ValidationError
from django.urls import reverse

from pas_core.models import Agent, Job, Run

from .forms import run_prefix

LIMIT = 20


@dataclass
class Found:
    """What a search found: ``url`` when one match decides, else the lists."""

    query: str
    url: str = ""
    agents: list[Agent] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.url or self.agents or self.runs or self.jobs)


def job_url(job: Job) -> str:
    return reverse("hmi:run-detail", args=[job.run_id]) + f"#job-{job.job_id}"


def agent_url(agent_id: str) -> str:
    return reverse("hmi:agent", args=[agent_id])


def _runs_by_prefix(q: str) -> list[Run]:
    try:
        prefix = run_prefix(q)
    except ValidationError:
        return []
    if len(prefix) < 4:
        return []  # Too short to mean an id: "ab" would match one run in sixteen.
    return list(Run.objects.filter(run_id__istartswith=prefix)[:LIMIT])


def search(raw: str) -> Found:
    """Return where ``raw`` leads: exact ids first, then one-of-a-kind partial matches."""
    q = raw.strip()[:200]
    found = Found(query=q)
    if not q:
        return found
    job = Job.objects.filter(job_id=q).first()
    if job is not None:
        found.url = job_url(job)
        return found
    agent = Agent.objects.filter(agent_id__iexact=q).first()
    if agent is not None:
        found.url = agent_url(agent.agent_id)
        return found
    by_id = _runs_by_prefix(q)
    if len(by_id) == 1:
        # One run's id starts so (a job id of that run names it too): its page.
        found.url = reverse("hmi:run-detail", args=[by_id[0].run_id])
        return found
    found.runs = by_id or list(Run.objects.filter(title__icontains=q)[:LIMIT])
    found.agents = list(Agent.objects.filter(agent_id__icontains=q)[:LIMIT])
    found.jobs = list(Job.objects.filter(job_id__icontains=q).select_related("run")[:LIMIT])
    hits = len(found.runs) + len(found.agents) + len(found.jobs)
    if hits == 1:
        if found.runs:
            found.url = reverse("hmi:run-detail", args=[found.runs[0].run_id])
        elif found.agents:
            found.url = agent_url(found.agents[0].agent_id)
        else:
            found.url = job_url(found.jobs[0])
    elif len(found.runs) > 1 and not (found.agents or found.jobs):
        found.url = reverse("hmi:runs") + "?" + urlencode({"q": q})
    return found
