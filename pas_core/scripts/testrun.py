"""`make test`: run pytest against a real Redis, starting a private one if needed.

Usage: `python -m pas_core.scripts.testrun [pytest args]`; exits with pytest's status.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from pas_core.scripts.redisctl import ensure_redis, stop_private

PROJECT_DIR = Path(__file__).resolve().parents[2]


def main(args: list[str]) -> int:
    """Run `python -m pytest ARGS` with REDIS_URL set; return pytest's status."""
    try:
        redis_url, redis_proc = ensure_redis(PROJECT_DIR)
    except KeyboardInterrupt:
        return 130
    env = dict(os.environ, REDIS_URL=redis_url)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    try:
        pytest = subprocess.Popen([sys.executable, "-m", "pytest", *args], cwd=PROJECT_DIR, env=env)
    except BaseException:
        stop_private(redis_proc)
        raise

    # pytest shares our terminal, so a Ctrl-C reaches it directly and it reports what
    # it had; we only wait for it. A SIGTERM meant for us is passed on.
    def forward(signum: int, frame: FrameType | None) -> None:
        if pytest.poll() is None:
            pytest.send_signal(signum)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, forward)
    try:
        return pytest.wait()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_private(redis_proc)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
