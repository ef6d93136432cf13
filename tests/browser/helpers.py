"""Helpers for the browser tests: act from another process, as workers would."""

from __future__ import annotations

import subprocess
import sys

from tests import procs

MANAGE = str(procs.PROJECT_DIR / "manage.py")


def django_shell(env: dict[str, str], code: str) -> str:
    """Run ``code`` in ``manage.py shell`` (another process, same DB and Redis)."""
    done = subprocess.run(
        [sys.executable, MANAGE, "shell", "-c", code],
        env=env,
        timeout=60,
        cwd=procs.PROJECT_DIR,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
