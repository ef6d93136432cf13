"""Drills: real processes, real faults, one printed figure each (issue 6).

They are slow and they SIGKILL things, so the ordinary ``make test`` skips them: they
run when ``PAS_DRILLS=1`` is set or when this directory (or a file in it) is named on
the command line (``make drills``, ``pytest tests/drills/test_worker_killed.py``). The
load drill is also marked ``long`` and runs only with ``PAS_LONG_DRILLS=1``.

Each drill reports its figure with ``tests.drills.common.figure``: printed (``-s`` shows it at once)
and repeated in the terminal summary, one line per drill, ``DRILL <name>: ...``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.drills.common import FIGURES

HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "long: a drill that runs for minutes (PAS_LONG_DRILLS=1)")
    config.addinivalue_line("markers", "drill: a reliability drill in tests/drills")


def _named_explicitly(config: pytest.Config) -> bool:
    """Return whether the command line names this directory or something inside it."""
    for arg in config.args:
        path = Path(str(arg).split("::", 1)[0])
        if not path.is_absolute():
            path = Path(config.invocation_params.dir) / path
        try:
            path.resolve().relative_to(HERE)
        except ValueError:
            continue
        return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    enabled = os.environ.get("PAS_DRILLS") == "1" or _named_explicitly(config)
    long_enabled = os.environ.get("PAS_LONG_DRILLS") == "1"
    off = pytest.mark.skip(reason="drills run with PAS_DRILLS=1 or `make drills`")
    off_long = pytest.mark.skip(reason="the long drills run with PAS_LONG_DRILLS=1")
    for item in items:
        if HERE not in Path(str(item.fspath)).resolve().parents:
            continue
        item.add_marker(pytest.mark.drill)
        if not enabled:
            item.add_marker(off)
        elif item.get_closest_marker("long") and not long_enabled:
            item.add_marker(off_long)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("drill figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
