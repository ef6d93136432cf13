"""The comms log: a database row, and on commit one contract line in the day's file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import time_machine

from pas_core.models import CommsMessage
from pas_core.stores.comms import comms_log

NOW = dt.datetime(2025, 3, 4, 5, 6, 7, 89_000, tzinfo=dt.UTC)


def log_file(settings: Any) -> Path:
    return Path(settings.PAS_ARTIFACTS_DIR) / "logs" / "pas_comms_2025-03-04.txt"


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_it_writes_a_row_and_one_contract_line(
    settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        comms_log(
            sender="Architect",
            recipient="PAS Root",
            kind="STATUS",
            message="Grandchild escalation: Dir-Models (failure_count=0)",
            llm_model="anthropic/claude-sonnet-4-5",
            run_id="run-1",
            status="escalated",
            progress=0.5,
            metadata={"failure_count": 0, "agent_id": "Dir-Models"},
        )

    row = CommsMessage.objects.get()
    assert (row.sender, row.recipient, row.kind) == ("Architect", "PAS Root", "STATUS")
    assert row.ts == NOW
    assert log_file(settings).read_text() == (
        "2025-03-04T05:06:07.089|Architect|PAS Root|STATUS|"
        "Grandchild escalation: Dir-Models (failure_count=0)|claude-sonnet-4-5|run-1|"
        'escalated|0.5|{"agent_id":"Dir-Models","failure_count":0}\n'
    )


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_missing_fields_are_dashes(settings: Any, django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        comms_log(sender="PAS Root", recipient="Architect", kind="CMD", message="Plan it")

    assert log_file(settings).read_text() == (
        "2025-03-04T05:06:07.089|PAS Root|Architect|CMD|Plan it|-|-|-|-|-\n"
    )


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_pipes_backslashes_and_newlines_are_escaped(
    settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        comms_log(
            sender="Dir-Code",
            recipient="Architect",
            kind="RESPONSE",
            message="a|b\nc\r\nd\\e",
            status="ok|done",
            progress=1.0,
        )

    line = log_file(settings).read_text()
    assert line == (
        "2025-03-04T05:06:07.089|Dir-Code|Architect|RESPONSE|a\\|b\\nc\\r\\nd\\\\e|-|-|"
        "ok\\|done|1|-\n"
    )
    # Still one line with ten fields once the escaped pipes are set aside.
    assert line.count("\n") == 1
    assert len(line.replace("\\\\", "").replace("\\|", "").split("|")) == 10


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_the_seeds_model_switch_line_appears_word_for_word(
    settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        comms_log(
            sender="PAS Root",
            recipient="Dir-Models",
            kind="STATUS",
            message="Retrying Dir-Models with different LLM: claude-sonnet-4-5 → llama3.1:8b",
            llm_model="ollama/llama3.1:8b",
        )

    assert (
        "|PAS Root|Dir-Models|STATUS|Retrying Dir-Models with different LLM: "
        "claude-sonnet-4-5 → llama3.1:8b|llama3.1:8b|"
    ) in log_file(settings).read_text(encoding="utf-8")


@pytest.mark.django_db
def test_nothing_is_written_before_commit(
    settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        comms_log(sender="Architect", recipient="Dir-Code", kind="CMD", message="Go")

    # The line waits for the commit: a rolled-back message leaves no line behind.
    assert len(callbacks) == 1
    assert not (Path(settings.PAS_ARTIFACTS_DIR) / "logs").exists()


@pytest.mark.django_db(transaction=True)
@time_machine.travel(NOW, tick=False)
def test_lines_append_in_order_outside_a_transaction(settings: Any) -> None:
    comms_log(sender="Architect", recipient="Dir-Code", kind="CMD", message="one")
    comms_log(sender="Dir-Code", recipient="Architect", kind="RESPONSE", message="two")

    lines = log_file(settings).read_text().splitlines()
    assert [line.split("|")[4] for line in lines] == ["one", "two"]
    assert CommsMessage.objects.count() == 2
