"""The JSON each role asks its LLM for, and the one parser that checks it.

LLMs drift: they answer a list of strings where a list of ``{"path"}`` objects was asked
for, wrap the JSON in a Markdown fence, or add keys of their own. The models accept the
first two and ignore the third; anything else is ``bad_output``, which supervision
handles like any other attempt failure.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import AttemptError

LANES = ("Code", "Models", "Data", "DevSecOps", "Docs")
LaneName = Literal["Code", "Models", "Data", "DevSecOps", "Docs"]

# A role names the schema it wants in its system prompt with this marker; the offline
# planner answers by it.
SCHEMA_MARKER = "PAS-SCHEMA:"


def _as_objects(value: Any, key: str) -> Any:
    """Turn ``["a.py"]`` into ``[{"path": "a.py"}]`` (``key`` is the object's one field)."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return [{key: item} if isinstance(item, str) else item for item in value]
    return value


def _as_strings(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item if isinstance(item, str) else json.dumps(item) for item in value]
    return value


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class PathRef(_Lenient):
    path: str = Field(min_length=1)


class Check(_Lenient):
    check: str = Field(min_length=1)


class LaneAllocation(_Lenient):
    task: str = Field(min_length=1)
    inputs: list[PathRef] = Field(default_factory=list)
    expected_artifacts: list[PathRef] = Field(default_factory=list)
    acceptance: list[Check] = Field(default_factory=list)
    risks: list[str] = Field(default_factory=list)

    @field_validator("inputs", "expected_artifacts", mode="before")
    @classmethod
    def _paths(cls, value: Any) -> Any:
        return _as_objects(value, "path")

    @field_validator("acceptance", mode="before")
    @classmethod
    def _checks(cls, value: Any) -> Any:
        return _as_objects(value, "check")

    @field_validator("risks", mode="before")
    @classmethod
    def _risks(cls, value: Any) -> Any:
        return _as_strings(value)


class ArchitectPlan(_Lenient):
    executive_summary: str = Field(min_length=1)
    lane_allocations: dict[LaneName, LaneAllocation] = Field(min_length=1)


class ManagerTask(_Lenient):
    manager_id: str = Field(min_length=1)
    task: str = Field(min_length=1)
    files: list[str] = Field(default_factory=list)
    expected_artifacts: list[PathRef] = Field(default_factory=list)
    acceptance: list[Check] = Field(default_factory=list)

    @field_validator("files", mode="before")
    @classmethod
    def _files(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [v.get("path", v) if isinstance(v, dict) else v for v in value]
        return _as_strings(value)

    @field_validator("expected_artifacts", mode="before")
    @classmethod
    def _paths(cls, value: Any) -> Any:
        return _as_objects(value, "path")

    @field_validator("acceptance", mode="before")
    @classmethod
    def _checks(cls, value: Any) -> Any:
        return _as_objects(value, "check")


class DirectorPlan(_Lenient):
    manager_tasks: list[ManagerTask] = Field(min_length=1)


class ProgrammerTask(_Lenient):
    programmer_id: str = Field(min_length=1)
    task: str = Field(min_length=1)
    files: list[str] = Field(default_factory=list)
    operation: Literal["create", "modify", "delete", "refactor"] = "create"

    @field_validator("files", mode="before")
    @classmethod
    def _files(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [v.get("path", v) if isinstance(v, dict) else v for v in value]
        return _as_strings(value)


class ManagerPlan(_Lenient):
    programmer_tasks: list[ProgrammerTask] = Field(min_length=1)


class FileOut(_Lenient):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    path: str = Field(min_length=1)
    content: str


class ProgrammerOutput(_Lenient):
    """Whole files, or a unified diff (``git diff`` format) of a repository, or both."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    files: list[FileOut] = Field(default_factory=list)
    diff: str = ""
    summary: str = ""

    @model_validator(mode="after")
    def _something(self) -> ProgrammerOutput:
        if not self.files and not self.diff.strip():
            raise ValueError("give at least one file or a diff")
        return self


# One example per schema, shown to the LLM in the system prompt.
EXAMPLES: dict[str, dict[str, Any]] = {
    "ArchitectPlan": {
        "executive_summary": "One paragraph: what will be built and by which lanes.",
        "lane_allocations": {
            "Code": {
                "task": "What this lane must do",
                "inputs": [{"path": "app/main.py"}],
                "expected_artifacts": [{"path": "src/feature.py"}],
                "acceptance": [{"check": "artifacts_exist"}],
                "risks": ["what could go wrong"],
            }
        },
    },
    "DirectorPlan": {
        "manager_tasks": [
            {
                "manager_id": "one of the managers listed in the input",
                "task": "What this manager must deliver",
                "files": ["src/feature.py"],
                "expected_artifacts": [{"path": "src/feature.py"}],
                "acceptance": [{"check": "artifacts_exist"}],
            }
        ]
    },
    "ManagerPlan": {
        "programmer_tasks": [
            {
                "programmer_id": "one of the programmers listed in the input",
                "task": "Exactly what to write",
                "files": ["src/feature.py"],
                "operation": "create",
            }
        ]
    },
    "ProgrammerOutput": {
        "files": [{"path": "src/feature.py", "content": "the whole file"}],
        "summary": "One line on what was written",
    },
}
# In a repository, a Programmer may answer with a unified diff instead of whole files.
REPO_EXAMPLES: dict[str, dict[str, Any]] = {
    "ProgrammerOutput": {
        "files": [],
        "diff": "--- a/pkg/parser.py\n+++ b/pkg/parser.py\n@@ -1,2 +1,2 @@\n def parse(s):\n"
        "-    return s.split(',')\n+    return [p.strip() for p in s.split(',')]\n",
        "summary": "One line on what was changed",
    },
}

SCHEMAS: dict[str, type[BaseModel]] = {
    "ArchitectPlan": ArchitectPlan,
    "DirectorPlan": DirectorPlan,
    "ManagerPlan": ManagerPlan,
    "ProgrammerOutput": ProgrammerOutput,
}

S = TypeVar("S", bound=BaseModel)

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n(.*?)```", re.DOTALL)


def json_extract(text: str) -> Any:
    """Return the JSON value in ``text``: the whole text, a fenced block, or the outer ``{...}``.

    Raises ValueError when none of them parses.
    """
    stripped = text.strip()
    candidates = [stripped]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    start, end = stripped.find("{"), stripped.rfind("}")
    if 0 <= start < end:
        candidates.append(stripped[start : end + 1])
    error: Exception | None = None
    for candidate in candidates:
        if not candidate:
            continue
        try:
            return json.loads(candidate)
        except ValueError as exc:
            error = error or exc
    raise ValueError(f"no JSON object found ({error or 'empty reply'})")


def parse_json(text: str, schema: type[S]) -> S:
    """Return ``text`` parsed and validated as ``schema``.

    Raises AttemptError("bad_output") naming what is wrong: no JSON at all, or each
    field that failed validation (``lane_allocations.Code.task: Field required``).
    """
    name = schema.__name__
    try:
        data = json_extract(text or "")
    except ValueError as exc:
        raise AttemptError("bad_output", f"{name}: {exc}") from None
    if not isinstance(data, dict):
        raise AttemptError(
            "bad_output", f"{name}: expected a JSON object, got {type(data).__name__}"
        )
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors()[:5]:
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            problems.append(f"{loc}: {err['msg']}")
        more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
        raise AttemptError("bad_output", f"{name}: " + "; ".join(problems) + more) from None


def schema_instructions(schema: type[BaseModel], *, repo: bool = False) -> str:
    """Return the system-prompt paragraph that asks for ``schema`` (with its marker).

    ``repo``: the work is on a repository; a Programmer is shown the diff form too.
    """
    name = schema.__name__
    example = json.dumps(EXAMPLES[name], separators=(",", ":"))
    text = f"Reply with ONE JSON object and nothing else, shaped like this example:\n{example}"
    if repo and name in REPO_EXAMPLES:
        other = json.dumps(REPO_EXAMPLES[name], separators=(",", ":"))
        text += f"\nor, to change part of an existing file, with a unified diff:\n{other}"
    return f"{text}\n{SCHEMA_MARKER} {name}"


def paths_of(items: Any) -> list[str]:
    """Return the paths of ``[{"path": ...}]`` or ``["..."]`` items, skipping empty ones."""
    out = []
    for item in items or []:
        path = item.get("path") if isinstance(item, dict) else item
        if path:
            out.append(str(path))
    return out


# -- the schemas sent to the model ------------------------------------------------
# What a provider that constrains decoding (response_format json_schema) is held to:
# the same shapes as the models above, in their plainest form, with every string and
# list bounded so a small model cannot loop until max_tokens (a cut reply never
# parses). The reply is validated by the models above all the same.


REPO_TEXT = 12000  # A whole file or a diff of a real repository's file.


def _text(limit: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": limit}


def _list(item: dict[str, Any], most: int, *, least: int = 0) -> dict[str, Any]:
    return {"type": "array", "items": item, "minItems": least, "maxItems": most}


def _object(required: list[str], **properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _path() -> dict[str, Any]:
    return _object(["path"], path=_text(80))


def _one_of(values: list[str] | None, limit: int = 64) -> dict[str, Any]:
    return {"type": "string", "enum": values} if values else _text(limit)


def wire_schema(
    name: str, choices: dict[str, list[str]] | None = None, *, repo: bool = False
) -> dict[str, Any]:
    """Return ``{"name", "schema"}`` for a role's reply, to send as its response format.

    ``choices`` narrows fields to the values the role may write (``manager_id``,
    ``programmer_id``, and ``file``: the paths its card names): a model that can only
    write a real id or an expected path never invents one, so the files a lane's
    plan expects are the files its Programmers write. ``repo``: a Programmer works on
    a repository, whose files are longer than placeholders; it may answer a diff.
    """
    choices = choices or {}
    check = _object(["check"], check=_text(60))
    if name == "ArchitectPlan":
        lane = _object(
            ["task", "expected_artifacts"],
            task=_text(200),
            inputs=_list(_path(), 3),
            expected_artifacts=_list(_path(), 3, least=1),
            acceptance=_list(check, 3),
            risks=_list(_text(80), 2),
        )
        lanes = {
            "type": "object",
            "properties": {lane_name: lane for lane_name in LANES},
            "additionalProperties": False,
            "minProperties": 1,
        }
        schema = _object(
            ["executive_summary", "lane_allocations"],
            executive_summary=_text(240),
            lane_allocations=lanes,
        )
    elif name == "DirectorPlan":
        task = _object(
            ["manager_id", "task", "files"],
            manager_id=_one_of(choices.get("manager_id")),
            task=_text(200),
            files=_list(_one_of(choices.get("file"), 120), 4, least=1),
            expected_artifacts=_list(_path(), 4),
            acceptance=_list(check, 4),
        )
        schema = _object(["manager_tasks"], manager_tasks=_list(task, 3, least=1))
    elif name == "ManagerPlan":
        task = _object(
            ["programmer_id", "task", "files"],
            programmer_id=_one_of(choices.get("programmer_id")),
            task=_text(200),
            files=_list(_one_of(choices.get("file"), 120), 3, least=1),
            operation={"type": "string", "enum": ["create", "modify", "delete", "refactor"]},
        )
        schema = _object(["programmer_tasks"], programmer_tasks=_list(task, 3, least=1))
    elif name == "ProgrammerOutput" and repo:
        file = _object(
            ["path", "content"], path=_one_of(choices.get("file"), 120), content=_text(REPO_TEXT)
        )
        schema = _object(
            ["files", "diff", "summary"],
            files=_list(file, 3),
            diff={"type": "string", "maxLength": REPO_TEXT},
            summary=_text(120),
        )
    elif name == "ProgrammerOutput":
        file = _object(
            ["path", "content"], path=_one_of(choices.get("file"), 120), content=_text(1200)
        )
        schema = _object(["files", "summary"], files=_list(file, 2, least=1), summary=_text(120))
    else:
        raise ValueError(f"no wire schema for {name!r}")
    return {"name": name, "schema": schema}
