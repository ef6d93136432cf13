"""Drill: the artifacts disk fills up while directives keep arriving through the API.

``PAS_ARTIFACTS_DIR`` is a small tmpfs (``mount -t tmpfs -o size=...``, unmounted in a
``finally``); a filler file takes every free page while a client submits a directive
every few tenths of a second over HTTP (a real Daphne, real workers).

Promise (DESIGN 5, ``storage``): the disk is the machine's failure, not the agents':

- every answer is JSON (zero HTML 500s), and no directive is stored twice or stored
  behind an error answer (zero duplicate runs);
- every run the full disk touched fails with a message naming the disk, without
  spending its restart ladder, and completes from the retry queue once space is freed
  (``POST /api/runs/{id}/retry``);
- saving the HHMRS settings answers 200 with a warning (the settings file could not
  be written; the database has them);
- the comms file has no torn line (a short append is cut back).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.db.models import Sum

from pas_core.models import Job, Run
from tests import procs
from tests.drills.common import ended, figure, fill_disk, needs_root, tmpfs, wait_for
from tests.e2e import short_timings, stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(420),
]

SIZE = "4m"
SUBMIT_EVERY_S = 0.3
BEFORE_FULL = 6  # Directives sent before the disk fills, then as many while it is full.
FULL_FOR = 8
GOAL = "Implement the parser function in code, with tests and docs"
FIELDS = 10  # timestamp|from|to|TYPE|message|llm_model|run_id|status|progress|metadata


def comms_fields(line: str) -> int:
    """Return how many fields a comms line has (``\\|`` and ``\\\\`` are escapes)."""
    count, escaped = 1, False
    for char in line:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "|":
            count += 1
    return count


def torn_lines(folder: Path) -> list[str]:
    """Return every comms line that is not whole: wrong field count, or no newline."""
    torn = []
    for path in sorted(folder.glob("logs/pas_comms_*.txt")):
        data = path.read_bytes().decode(errors="replace")
        lines = data.split("\n")
        if lines[-1]:
            torn.append(f"{path.name}: ends without a newline: {lines[-1][-80:]!r}")
        bad = [line for line in lines[:-1] if comms_fields(line) != FIELDS]
        torn += [f"{path.name}: {line[:80]!r}" for line in bad]
    return torn


class Submitter:
    """POST /api/runs every SUBMIT_EVERY_S from a thread; keeps every answer."""

    def __init__(self, base_url: str, token: str):
        self.http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        self.answers: list[tuple[str, int, str, dict[str, Any] | str, float]] = []
        self.sent = 0

    def send(self, count: int) -> None:
        for _ in range(count):
            title = f"Disk {self.sent}"
            self.sent += 1
            started = time.monotonic()
            response = self.http.post("/api/runs", json={"title": title, "goal": GOAL})
            kind = response.headers.get("content-type", "")
            body = response.json() if kind.startswith("application/json") else response.text
            took = time.monotonic() - started
            self.answers.append((title, response.status_code, kind, body, took))
            time.sleep(SUBMIT_EVERY_S)


def test_a_full_disk_fails_runs_cleanly_and_they_complete_once_space_is_freed(
    tree, proc_env, api_token, tmp_path
):
    needs_root("mount -t tmpfs")
    short_timings()
    artifacts = Path(settings.PAS_ARTIFACTS_DIR)
    started = time.monotonic()
    with tmpfs(artifacts, SIZE):
        env = proc_env(PAS_OFFLINE_DELAY_S="0.3")
        with stack(env, agents=8), procs.daphne_server(env) as web:
            client = Submitter(web.url, api_token)
            sender = threading.Thread(target=client.send, args=(2 * BEFORE_FULL,), daemon=True)
            sender.start()
            wait_for(lambda: client.sent >= BEFORE_FULL, "the first directives", 60, 0.05)
            filler = fill_disk(artifacts)  # Mid-stream, while the first runs are at work.
            full_at = time.monotonic()
            sender.join(120)
            settings_answer = client.http.post("/api/settings/hhmrs", json={"max_restarts": 3})
            time.sleep(max(0.0, FULL_FOR - (time.monotonic() - full_at)))
            ids = [b["run_id"] for _, code, _, b, _ in client.answers if code == 202]
            wait_for(lambda: ended(ids), "every run to end on the full disk", 120, 0.3)
            failed_on_disk = list(Run.objects.filter(pk__in=ids, status=Run.Status.FAILED))
            torn_full = torn_lines(artifacts)

            filler.unlink()  # Space is freed: the retry queue gives the runs back.
            retried = [
                client.http.post(f"/api/runs/{run.run_id}/retry").status_code
                for run in failed_on_disk
            ]
            wait_for(lambda: ended(ids), "every retried run to end", 120, 0.3)
            torn_after = torn_lines(artifacts)
            client.http.close()
    elapsed = time.monotonic() - started

    codes = Counter(code for _, code, _, _, _ in client.answers)
    html_errors = [a for a in client.answers if a[1] >= 500 and "html" in a[2]]
    json_errors = [a for a in client.answers if a[1] >= 500 and "json" in a[2]]
    warned = [a for a in client.answers if isinstance(a[3], dict) and a[3].get("warnings")]
    titles = Counter(Run.objects.filter(title__startswith="Disk ").values_list("title", flat=True))
    accepted = {title for title, code, _, _, _ in client.answers if code == 202}
    duplicates = sum(n - 1 for n in titles.values() if n > 1)
    ghosts = [t for t in titles if t not in accepted]  # Stored behind an error answer.
    disk_named = [r for r in failed_on_disk if r.message.startswith("Disk:")]
    ladder = (
        Job.objects.filter(run_id__in=[r.run_id for r in failed_on_disk]).aggregate(
            n=Sum("restart_count")
        )["n"]
        or 0
    )
    completed = Run.objects.filter(pk__in=ids, status=Run.Status.COMPLETED).count()
    settings_warnings = settings_answer.json().get("warnings", [])
    slowest = max(a[4] for a in client.answers)
    figure(
        f"DRILL full-disk: {client.sent} directives over HTTP ({dict(codes)}; {len(warned)} "
        f"answered with warnings; slowest {slowest:.2f} s), {len(html_errors)} HTML 500s, "
        f"{len(json_errors)} JSON 5xx, {duplicates} duplicate runs, {len(ghosts)} stored "
        f"behind an error; {len(failed_on_disk)} runs failed on the full disk, "
        f"{len(disk_named)} naming it, {ladder} restarts spent; {completed}/{len(ids)} "
        f"completed after space was freed and {len(retried)} retried; settings save "
        f"{settings_answer.status_code} with {len(settings_warnings)} warning(s); torn comms "
        f"lines {len(torn_full) + len(torn_after)}; {elapsed:.1f} s"
    )
    for run in failed_on_disk:
        if run not in disk_named:
            print(f"run {run.run_id} failed without naming the disk: {run.message!r}")
    for run in Run.objects.filter(pk__in=ids).exclude(status=Run.Status.COMPLETED):
        print(f"run {run.run_id} {run.status} after the retry: {run.message!r}")
        for job in Job.objects.filter(run=run).order_by("created_at"):
            tried = [
                f"{a.number}:{a.phase}:{a.status}:{a.error_kind}"
                for a in job.attempts.order_by("number")
            ]
            print(f"  job {job.pk} {job.status} restarts={job.restart_count} {tried}")
    for job in Job.objects.filter(run_id__in=ids, restart_count__gt=0):
        print(f"restarted: {job.pk} {job.restart_count} {job.error!r}")
        for a in job.attempts.order_by("number"):
            print(f"  attempt {a.number} {a.phase} {a.status} {a.error_kind}: {a.error[:200]!r}")
    assert failed_on_disk, "the full disk failed no run: it filled too late or too early"
    # Every answer is JSON: no HTML error page; nothing stored twice or behind an error.
    assert html_errors == []
    assert duplicates == 0 and ghosts == []
    # Every run the disk touched failed naming it, without spending its restarts ...
    assert len(disk_named) == len(failed_on_disk)
    assert ladder == 0
    # ... and completed from the retry queue once space was freed.
    assert all(code == 202 for code in retried)
    assert completed == len(ids)
    # The settings were saved (200) and the answer says the file could not be written.
    assert settings_answer.status_code == 200
    assert any("settings file" in w for w in settings_warnings), settings_warnings
    # No torn comms line, while full or after.
    assert torn_full == [] and torn_after == []
