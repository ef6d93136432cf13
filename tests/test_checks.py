"""System checks: a wrong PAS setting stops PAS at start with a clear message."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from pas_core.checks import llm_mode_check
from pas_core.errors import AttemptError
from pas_core.llm.providers import llm_complete
from tests import procs


@pytest.mark.parametrize("mode", ["offline", "live"])
def test_the_two_llm_modes_pass(settings: Any, mode: str) -> None:
    settings.PAS_LLM_MODE = mode
    assert llm_mode_check() == []


def test_an_unknown_llm_mode_is_error_e001(settings: Any) -> None:
    settings.PAS_LLM_MODE = "online"

    (error,) = llm_mode_check()

    assert error.id == "pas_core.E001"
    assert "PAS_LLM_MODE is 'online'" in error.msg
    assert "offline, live" in error.msg


def test_an_unknown_llm_mode_never_plans_offline_quietly(settings: Any) -> None:
    settings.PAS_LLM_MODE = "online"
    with pytest.raises(AttemptError) as failed:
        llm_complete("google/gemini-2.5-flash", [{"role": "user", "content": "hi"}])
    assert "neither offline nor live" in failed.value.message


def test_a_command_refuses_to_start_with_an_unknown_llm_mode(proc_env: Any) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", "pas", "status"],
        cwd=procs.PROJECT_DIR,
        env=proc_env(PAS_LLM_MODE="Online"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "pas_core.E001" in done.stderr
    assert "PAS_LLM_MODE is 'online'" in done.stderr  # Read case-blind, refused all the same.
