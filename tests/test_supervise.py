"""The agents worker's supervisor (``pas_core/scripts/supervise.py``) on its own process.

A stop of the whole process group (``make run``'s Ctrl-C, honcho, systemd) reaches the
supervisor and the worker at once; the worker may be gone before the supervisor looks.
That is a stop, not a death: no "exited" line (which the drills read as a process of the
stack that died) and no restart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SUPERVISOR = Path(__file__).resolve().parents[1] / "pas_core" / "scripts" / "supervise.py"

# A worker that leaves at once, with status 0, on SIGTERM (as Celery's warm shutdown of an
# idle worker does, only faster). Its end of the tick pipe outlives it for a few seconds
# (a process of its own holds a copy), so its exit does not wake the supervisor, which
# finds it gone only at the end of a wait: the order in which a busy supervisor sees
# things, made certain.
QUICK_TO_LEAVE = (
    "import os, signal, subprocess, sys, time\n"
    "fd = int(os.environ['PAS_SUPERVISOR_FD'])\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3)'],\n"
    "                 pass_fds=[fd], start_new_session=True)\n"
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
    "print('worker up', flush=True)\n"
    "time.sleep(60)\n"
)


def test_a_stop_of_the_group_is_a_stop_not_a_death(tmp_path: Path) -> None:
    log_path = tmp_path / "supervise.log"
    with log_path.open("wb") as log:
        sup = subprocess.Popen(
            [sys.executable, str(SUPERVISOR), "--grace-s", "5", "--"]
            + [sys.executable, "-c", QUICK_TO_LEAVE],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 20
            while "worker up" not in log_path.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "worker up" in log_path.read_text(), log_path.read_text()
            os.killpg(sup.pid, signal.SIGTERM)  # The supervisor and the worker together.
            assert sup.wait(40) == 0
        finally:
            if sup.poll() is None:
                os.killpg(sup.pid, signal.SIGKILL)
                sup.wait()
    out = log_path.read_text()
    assert "exited" not in out, out
    assert out.count("supervise: started") == 1, out  # Not restarted either.
