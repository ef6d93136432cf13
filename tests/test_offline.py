"""The offline planner: deterministic, labelled, lane selection by the directive's words."""

from __future__ import annotations

import json

import pytest

from pas_core.llm.offline import HEADER, PRODUCED_BY, lanes_for, offline_answer, offline_complete
from pas_core.llm.schemas import (
    ArchitectPlan,
    DirectorPlan,
    ManagerPlan,
    ProgrammerOutput,
    parse_json,
    schema_instructions,
)
from pas_core.runtime.types import AttemptError


def _messages(schema, payload):
    return [
        {"role": "system", "content": "You are a test.\n\n" + schema_instructions(schema)},
        {"role": "user", "content": "Input:\n```json\n" + json.dumps(payload) + "\n```"},
    ]


def _plan(title, goal=""):
    text = offline_answer(_messages(ArchitectPlan, {"title": title, "goal": goal}))
    return parse_json(text, ArchitectPlan)


def test_a_docs_only_directive_gets_the_docs_lane_only():
    assert lanes_for("Update the documentation and the README") == ["Docs"]
    plan = _plan("Write a user guide", "A tutorial for new operators")
    assert list(plan.lane_allocations) == ["Docs"]


def test_an_endpoint_with_tests_and_docs_gets_code_and_docs():
    plan = _plan("Add /health with tests and docs", "Expose a health endpoint")
    # Tests are Code's; "/health" and "endpoint" name Code too.
    assert list(plan.lane_allocations) == ["Code", "Docs"]
    code = plan.lane_allocations["Code"]
    assert [a.path for a in code.expected_artifacts] == ["src/health.py", "tests/test_health.py"]
    assert [a.path for a in plan.lane_allocations["Docs"].expected_artifacts] == ["docs/health.md"]


def test_a_directive_naming_code_data_deploy_and_docs_gets_those_four_lanes():
    lanes = lanes_for("Write code to load the CSV data, deploy it, and update the docs")
    assert lanes == ["Code", "Data", "DevSecOps", "Docs"]


def test_models_words_choose_the_models_lane():
    assert lanes_for("Train an embedding model for search") == ["Models"]


def test_a_directive_with_no_lane_words_goes_to_code():
    assert lanes_for("Make it nicer") == ["Code"]


def test_the_same_prompt_gives_the_same_answer():
    messages = _messages(ArchitectPlan, {"title": "Add /health", "goal": "with tests"})
    first = offline_complete("anthropic/claude-sonnet-4-5", messages)
    second = offline_complete("anthropic/claude-sonnet-4-5", messages)
    assert first.text == second.text
    assert first.produced_by == PRODUCED_BY == "offline-planner"
    # Not an LLM: it spends and reports no tokens.
    assert (first.tokens_in, first.tokens_out, first.cost_usd) == (0, 0, 0.0)


def test_it_beats_while_thinking():
    beats = []
    offline_complete(
        "x/y", _messages(ManagerPlan, {"task": "t"}), beat=lambda p, m: beats.append(p)
    )
    assert len(beats) >= 3
    assert beats == sorted(beats) and all(0 < p < 1 for p in beats)


def test_every_answer_validates_against_its_schema():
    director = parse_json(
        offline_answer(
            _messages(
                DirectorPlan,
                {
                    "task": "Code lane",
                    "managers": ["Mgr-Code-01", "Mgr-Code-02", "Mgr-Code-03"],
                    "expected_artifacts": [{"path": "src/a.py"}, {"path": "tests/test_a.py"}],
                },
            )
        ),
        DirectorPlan,
    )
    # Two artifacts are a small task: one manager does both.
    assert [t.manager_id for t in director.manager_tasks] == ["Mgr-Code-01"]
    assert director.manager_tasks[0].files == ["src/a.py", "tests/test_a.py"]

    manager = parse_json(
        offline_answer(
            _messages(
                ManagerPlan,
                {"task": "t", "programmers": ["Prog-A", "Prog-B"], "files": ["a.py", "b.md"]},
            )
        ),
        ManagerPlan,
    )
    assert [(t.programmer_id, t.files) for t in manager.programmer_tasks] == [
        ("Prog-A", ["a.py"]),
        ("Prog-B", ["b.md"]),
    ]

    out = parse_json(
        offline_answer(_messages(ProgrammerOutput, {"task": "Add /health", "files": ["src/h.py"]})),
        ProgrammerOutput,
    )
    assert out.files[0].path == "src/h.py"
    assert HEADER in out.files[0].content
    compile(out.files[0].content, "src/h.py", "exec")  # The placeholder is valid Python.


def test_a_prompt_without_a_schema_gets_a_labelled_plain_answer():
    text = offline_answer([{"role": "user", "content": "hello"}])
    assert HEADER in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no json here", "ArchitectPlan: no JSON object found"),
        ('{"executive_summary": "x"}', "ArchitectPlan: lane_allocations: Field required"),
        (
            '{"executive_summary": "x", "lane_allocations": {"Marketing": {"task": "t"}}}',
            "ArchitectPlan: lane_allocations.Marketing.[key]",
        ),
        (
            '{"executive_summary": "x", "lane_allocations": {"Code": {}}}',
            "lane_allocations.Code.task",
        ),
        ("[1, 2]", "ArchitectPlan: expected a JSON object, got list"),
    ],
)
def test_output_that_does_not_validate_is_bad_output_naming_the_problem(text, expected):
    with pytest.raises(AttemptError) as caught:
        parse_json(text, ArchitectPlan)
    assert caught.value.kind == "bad_output"
    assert expected in caught.value.message


def test_json_in_a_fence_with_chatter_around_it_is_accepted():
    text = (
        "Sure! Here is the plan:\n```json\n"
        '{"executive_summary": "s", "lane_allocations": {"Docs": {"task": "t", '
        '"expected_artifacts": ["docs/a.md"], "acceptance": ["artifacts_exist"]}}}\n```\nDone.'
    )
    plan = parse_json(text, ArchitectPlan)
    # Plain strings are accepted where objects were asked for.
    assert plan.lane_allocations["Docs"].expected_artifacts[0].path == "docs/a.md"
    assert plan.lane_allocations["Docs"].acceptance[0].check == "artifacts_exist"
