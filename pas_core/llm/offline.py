"""The offline planner: answers PAS role prompts without a network. It is not an LLM.

It is deterministic (the same prompt gives the same answer, byte for byte), labels
everything it makes (``produced_by: "offline-planner"``, and the header line
``Produced by the PAS offline planner (not an LLM)`` in every file), and answers with
JSON that validates against the schema the prompt names (``PAS-SCHEMA: <name>``).

Lane selection reads the directive's words (title, goal, description); each lane has
its own words, a directive gets every lane it names, in canonical order:

- Code: code, implement, endpoint, feature, fix, bug, api, function, refactor, test(s),
  testing, pytest, coverage, script, module, and a URL path such as ``/health``
- Models: model, training, ml, embedding, llm, finetune, inference, classifier
- Data: data, dataset, etl, database, schema, migration, csv, sql, parquet
- DevSecOps: deploy, ci, cd, security, docker, container, pipeline, infra, monitoring,
  kubernetes, terraform, vulnerability
- Docs: docs, doc, documentation, document, readme, guide, tutorial, changelog, manual

Tests count as Code (a test is code the Code lane writes). Nothing matched: Code.

On a repository (the input carries ``repository``), it writes new files under
``pas_offline/`` (and its test where the repository keeps tests), never over a file
of the repository: it cannot fix a bug it does not understand, and says so. The
module it writes passes the test it writes, so the checks it asks for pass.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from typing import Any

from .. import inflight
from .placeholders import HEADER, file_content, is_test
from .reply import LlmReply
from .schemas import LANES, SCHEMA_MARKER, json_extract, paths_of

PRODUCED_BY = "offline-planner"

LANE_WORDS: dict[str, frozenset[str]] = {
    "Code": frozenset(
        "code coding implement implementation implements endpoint endpoints feature features "
        "fix fixes bug bugs bugfix api apis function functions refactor refactoring test "
        "tests testing pytest coverage unittest script scripts module modules".split()
    ),
    "Models": frozenset(
        "model models training train ml embedding embeddings llm llms finetune finetuning "
        "inference classifier".split()
    ),
    "Data": frozenset(
        "data dataset datasets etl database databases db schema schemas migration migrations "
        "csv sql parquet".split()
    ),
    "DevSecOps": frozenset(
        "deploy deployment deploying ci cd security secure docker dockerfile container "
        "containers pipeline pipelines infra infrastructure monitoring kubernetes k8s "
        "terraform vulnerability vulnerabilities".split()
    ),
    "Docs": frozenset(
        "docs doc documentation document readme guide guides tutorial tutorials changelog "
        "manual".split()
    ),
}
_URL_PATH = re.compile(r"(?:^|\s)(/[a-z][\w\-/]*)", re.IGNORECASE)
_STOP = frozenset(
    "a an and the with for to of in on at by from into add new make write update create "
    "please our my some all".split()
)
_ALL_LANE_WORDS = frozenset().union(*LANE_WORDS.values())


def lane_matches(text: str) -> dict[str, list[str]]:
    """Return ``{lane: [words that chose it]}`` for a directive, in canonical lane order."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    found: dict[str, list[str]] = {}
    for lane in LANES:
        hits = sorted({w for w in words if w in LANE_WORDS[lane]})
        if lane == "Code":
            hits += sorted(set(_URL_PATH.findall(text)))
        if hits:
            found[lane] = hits
    return found


def lanes_for(text: str) -> list[str]:
    """Return the lanes a directive needs (Code when no lane's words appear)."""
    return list(lane_matches(text)) or ["Code"]


def slug_for(text: str) -> str:
    """Return a short identifier-safe name from the directive's non-lane words."""
    words: list[str] = []
    for w in re.findall(r"[a-z0-9]+", text.lower()):
        if w not in _STOP and w not in _ALL_LANE_WORDS and w not in words:
            words.append(w)
    slug = "_".join(words[:3])[:40].strip("_") or "task"
    return f"t_{slug}" if slug[0].isdigit() else slug


# -- the plans ---------------------------------------------------------------------

_LANE_PLANS: dict[str, tuple[list[str], list[str], list[str]]] = {
    # lane: (expected artifacts, acceptance checks, risks); {s} is the slug.
    "Code": (
        ["src/{s}.py", "tests/test_{s}.py"],
        # Only what PAS evaluates in an artifacts folder: a check it cannot run there
        # (pytest, lint) would leave the lane unchecked. On a repository, the run's
        # checks (its tests, its lint) are asked for by name instead.
        ["artifacts_exist", "python_syntax"],
        ["the change may break existing callers", "tests may not cover edge cases"],
    ),
    "Models": (
        ["models/{s}_model_card.md", "models/{s}_train.py"],
        ["artifacts_exist", "python_syntax"],
        ["training data may not represent production", "evaluation may be too small"],
    ),
    "Data": (
        ["data/{s}_schema.sql", "data/{s}_etl.py"],
        ["artifacts_exist", "python_syntax"],
        ["a migration may lose data without a backup", "input files may be malformed"],
    ),
    "DevSecOps": (
        ["ci/{s}_pipeline.yml", "ci/{s}_security_checklist.md"],
        ["artifacts_exist"],
        ["secrets must not reach the pipeline logs", "a failed deploy needs a rollback"],
    ),
    "Docs": (
        ["docs/{s}.md"],
        ["artifacts_exist"],
        ["the docs may drift from the code"],
    ),
}


def _test_dir(repository: dict[str, Any]) -> str:
    """Return where the repository keeps its tests (from its map): tests/ or test/."""
    files = (repository.get("map") or {}).get("files") or ""
    paths = [line.split("\t", 1)[0] for line in str(files).splitlines()]
    for folder in ("tests", "test"):
        if any(p.startswith(f"{folder}/") for p in paths):
            return folder
    return "tests"


def _lane_plan(
    lane: str, slug: str, repository: dict[str, Any] | None
) -> tuple[list[str], list[str]]:
    """Return a lane's (expected artifacts, acceptance checks)."""
    artifacts, checks, _ = _LANE_PLANS[lane]
    paths = [a.format(s=slug) for a in artifacts]
    if repository is None:
        return paths, list(checks)
    if lane == "Code":
        paths = [f"pas_offline/{slug}.py", f"{_test_dir(repository)}/test_pas_offline_{slug}.py"]
    else:
        paths = [f"pas_offline/{p}" for p in paths]
    return paths, ["artifacts_exist", *sorted(repository.get("checks") or {})]


def _architect(inp: dict[str, Any]) -> dict[str, Any]:
    title = str(inp.get("title") or "")
    goal = str(inp.get("goal") or inp.get("prd") or "")
    text = " ".join([title, goal, str(inp.get("description") or "")])
    matches = lane_matches(text)
    lanes = list(matches) or ["Code"]
    slug = slug_for(title)
    slug = slug if slug != "task" else slug_for(goal)
    inputs = [{"path": str(p)} for p in inp.get("entry_files") or []]
    repository = inp.get("repository") if isinstance(inp.get("repository"), dict) else None
    allocations = {}
    for lane in lanes:
        artifacts, checks = _lane_plan(lane, slug, repository)
        allocations[lane] = {
            "task": f"{lane} lane for '{title}': {goal}".strip(),
            "inputs": inputs,
            "expected_artifacts": [{"path": a} for a in artifacts],
            "acceptance": [{"check": c} for c in checks],
            "risks": list(_LANE_PLANS[lane][2]),
        }
    why = "; ".join(f"{lane} ({', '.join(words)})" for lane, words in matches.items())
    summary = (
        f"{HEADER}. Lanes for '{title}': {', '.join(lanes)}, chosen by the directive's "
        f"words: {why or 'none matched, so Code'}."
    )
    if repository is not None:
        summary += (
            " On the repository it adds new files under pas_offline/ and changes none of "
            "its files: a planner that is not an LLM cannot do what the goal asks."
        )
    return {"executive_summary": summary, "lane_allocations": allocations}


def _director(inp: dict[str, Any]) -> dict[str, Any]:
    managers = [str(m) for m in inp.get("managers") or []] or ["Mgr-01"]
    artifacts = paths_of(inp.get("expected_artifacts"))
    acceptance = inp.get("acceptance") or []
    task = str(inp.get("task") or "")
    # About two artifacts per manager: a small task stays with one manager.
    count = max(1, min(len(managers), math.ceil(len(artifacts) / 2)))
    groups: list[list[str]] = [[] for _ in range(count)]
    for i, path in enumerate(artifacts):
        groups[i % count].append(path)
    tasks = []
    for manager, paths in zip(managers, groups, strict=False):
        deliver = f" Deliver: {', '.join(paths)}." if paths else ""
        tasks.append(
            {
                "manager_id": manager,
                "task": f"{task}{deliver}",
                "files": paths,
                "expected_artifacts": [{"path": p} for p in paths],
                "acceptance": acceptance,
            }
        )
    return {"manager_tasks": tasks}


def _stem(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def _grouped(files: list[str]) -> list[list[str]]:
    """Return the files as tasks: one each, but a test goes with the module it tests.

    Each Programmer's change is checked on its own: a test written apart from its
    module would fail until the module came.
    """
    groups: list[list[str]] = []
    modules: dict[str, int] = {}
    for path in files:
        stem = _stem(path)
        if stem.startswith("test_"):
            target = stem.removeprefix("test_")
            keys = (target, target.removeprefix("pas_offline_"))
            key = next((k for k in keys if k in modules), None)
            if key is not None:
                groups[modules[key]].append(path)
                continue
        else:
            modules.setdefault(stem, len(groups))
        groups.append([path])
    return groups


def _manager(inp: dict[str, Any]) -> dict[str, Any]:
    programmers = [str(p) for p in inp.get("programmers") or []] or ["Prog-01"]
    files = paths_of(inp.get("files")) or paths_of(inp.get("expected_artifacts"))
    files = files or [f"notes/{slug_for(str(inp.get('task') or ''))}.md"]
    task = str(inp.get("task") or "")
    return {
        "programmer_tasks": [
            {
                "programmer_id": programmers[i % len(programmers)],
                "task": f"Write {', '.join(paths)} for: {task}",
                "files": paths,
                "operation": "create",
            }
            for i, paths in enumerate(_grouped(files))
        ]
    }


def _programmer(inp: dict[str, Any]) -> dict[str, Any]:
    task = str(inp.get("task") or "")
    title = str(inp.get("title") or "")
    files = paths_of(inp.get("files")) or [f"notes/{slug_for(task)}.md"]
    modules = [p for p in files if p.endswith(".py") and not is_test(p)]
    module = modules[0] if len(modules) == 1 else None
    summary = f"{HEADER}: wrote {len(files)} placeholder file(s): {', '.join(files)}"
    feedback = inp.get("feedback")
    if isinstance(feedback, dict):
        names = ", ".join(str(c.get("name")) for c in feedback.get("checks") or [])
        summary += f"; again after failed checks ({names}): it cannot read why they failed"
    return {
        "files": [{"path": p, "content": file_content(p, task, title, module)} for p in files],
        "summary": summary,
    }


_ANSWERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "ArchitectPlan": _architect,
    "DirectorPlan": _director,
    "ManagerPlan": _manager,
    "ProgrammerOutput": _programmer,
}
_MARKER = re.compile(re.escape(SCHEMA_MARKER) + r"\s*(\w+)")


def _prompt_input(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the JSON input of the last user message ({} when it has none)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            try:
                value = json_extract(str(message.get("content") or ""))
            except ValueError:
                return {}
            return value if isinstance(value, dict) else {}
    return {}


def offline_answer(messages: list[dict[str, Any]]) -> str:
    """Return the offline planner's reply text to a conversation (pure: no I/O)."""
    schema = None
    for message in messages:
        found = _MARKER.search(str(message.get("content") or ""))
        if found and found.group(1) in _ANSWERS:
            schema = found.group(1)
    if schema is None:
        return (
            f"{HEADER}. It answers PAS role prompts only; set PAS_LLM_MODE=live to talk "
            "to a real model."
        )
    answer = _ANSWERS[schema](_prompt_input(messages))
    return json.dumps(answer, indent=1, ensure_ascii=False)


def offline_complete(
    model_id: str,
    messages: list[dict[str, Any]],
    *,
    beat: Callable[[float, str], None] | None = None,
) -> LlmReply:
    """Answer as the offline planner, beating a few times like a stream would.

    ``PAS_OFFLINE_DELAY_S`` (environment, default 0) spreads that many seconds over the
    beats, so demos can watch agents work; the answer does not depend on it.
    """
    try:
        delay = max(0.0, min(float(os.environ.get("PAS_OFFLINE_DELAY_S") or 0), 600.0))
    except ValueError:
        delay = 0.0
    steps = 4
    for i in range(steps):
        if beat is not None:
            beat((i + 1) / (steps + 1), "offline planner: thinking")
        if delay:
            inflight.wait(delay / steps)  # A kill ends the wait, as it would a model call.
    text = offline_answer(messages)
    return LlmReply(
        text=text,
        model=model_id,
        tokens_in=0,  # Not an LLM: no tokens are spent, none are reported.
        tokens_out=0,
        cost_usd=0.0,
        produced_by=PRODUCED_BY,
    )
