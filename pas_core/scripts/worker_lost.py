"""Report a lost worker process to supervision; run by the supervisor, once per loss.

Usage::

    python -m pas_core.scripts.worker_lost HOST:PID --cause runaway --hot 1234
    python -m pas_core.scripts.worker_lost HOST:PID --cause crash --exit-code 70

Reads which attempts the process held (``stores.workers``), blames those held by the
busy thread(s) ``--hot`` (a runaway) or the one the process named as it died (a
``crash``), sends ``attempts_worker_lost`` on the hhmrs queue (the culprit's job counts
a restart, the innocent attempts are re-sent without spending their budget), and drops
the process from the registry.

A process of its own: the supervisor stays a small process with the standard library
only (a process with Django, Celery and Redis loaded is about 60 MiB that would sit idle
beside every agents worker), and pays the project's imports (about a second) only when
a worker is lost, while the new worker starts.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pas_core.settings")

import django  # noqa: E402 - after the settings module is named

log = logging.getLogger("pas.supervise")


def report(wid: str, *, cause: str, hot: list[int], exit_code: int | None) -> int:
    """Blame, report and forget the lost process ``wid``; return the exit status."""
    from pas_core import dispatch
    from pas_core.stores import workers

    pid = wid.rpartition(":")[2]
    try:
        held = workers.held_get(wid)
    except Exception:  # noqa: BLE001 - Redis away: TRON recovers them after the grace
        log.warning("supervise: cannot read what %s held", wid, exc_info=True)
        held = {}
    if cause == "runaway":
        culprits = [a for a, tid in held.items() if tid in set(hot)]
        log.error("supervise: worker %s held attempt(s) %s on its busy thread", pid, culprits)
    elif cause == "shutdown":  # Stopped on purpose: nobody to blame, nothing died.
        culprits = []
        if held:
            log.info("supervise: worker %s stopped holding %s attempt(s)", pid, len(held))
    else:
        dying = None
        with contextlib.suppress(Exception):
            dying = workers.dying_get(wid)
        culprits = [dying] if dying is not None else []
        log.error(
            "supervise: worker %s exited (%s); culprit %s", pid, exit_code, culprits or "none"
        )
    try:
        if held:
            dispatch.worker_lost_send(list(held), culprits=culprits, cause=cause)
        workers.worker_forget(wid)
    except Exception:  # noqa: BLE001 - TRON times them out after the grace instead
        log.warning("supervise: could not report worker %s", wid, exc_info=True)
        return 1
    return 0


def main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wid", help="the lost process's worker id, HOST:PID")
    parser.add_argument(
        "--cause", required=True, choices=["runaway", "crash", "killed", "shutdown"]
    )
    parser.add_argument("--hot", default="", help="busy native thread ids, comma-separated")
    parser.add_argument("--exit-code", type=int, default=None)
    opts = parser.parse_args(args)
    try:
        hot = [int(t) for t in opts.hot.split(",") if t]
    except ValueError:
        parser.error(f"--hot: thread ids are integers, got {opts.hot!r}")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    django.setup()
    return report(opts.wid, cause=opts.cause, hot=hot, exit_code=opts.exit_code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
