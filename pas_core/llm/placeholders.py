"""The offline planner's placeholder files: labelled, and shaped by their extension.

A test it writes passes against the module it writes (both are placeholders): the
offline planner is not an LLM and never claims more than that.
"""

from __future__ import annotations

import json
import re

HEADER = "Produced by the PAS offline planner (not an LLM)"


def _comment_lines(text: str, prefix: str) -> str:
    return "\n".join(f"{prefix}{line}".rstrip() for line in text.splitlines() or [""])


def is_test(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.endswith(".py") and (name.startswith("test_") or "/tests/" in f"/{path}")


def file_content(path: str, task: str, title: str, module_path: str | None = None) -> str:
    """Return a labelled placeholder file for ``path``, shaped by its extension.

    A test loads the module it tests by its path: ``module_path`` (relative to the
    folder ``path`` is relative to), else ``src/<name>.py`` beside the test's folder.
    """
    name = path.rsplit("/", 1)[-1]
    stem, _, ext = name.rpartition(".")
    ext = ext.lower() if stem else ""
    module = re.sub(r"\W", "_", stem or name)
    if ext == "py" and is_test(path):
        target = module.removeprefix("test_")
        where = (
            f'Path(__file__).resolve().parents[{path.count("/")}] / "{module_path}"'
            if module_path
            else f'Path(__file__).resolve().parent.parent / "src" / "{target}.py"'
        )
        return (
            f"# {HEADER}\n{_comment_lines(task, '# Task: ')}\n\n"
            "import importlib.util\nfrom pathlib import Path\n\n"
            f"MODULE = {where}\n\n\n"
            "def test_it_reports_ok():\n"
            f'    spec = importlib.util.spec_from_file_location("{target}", MODULE)\n'
            "    module = importlib.util.module_from_spec(spec)\n"
            "    spec.loader.exec_module(module)\n"
            '    assert module.handle()["status"] == "ok"\n'
        )
    if ext == "py":
        return (
            f"# {HEADER}\n{_comment_lines(task, '# Task: ')}\n\n"
            "from __future__ import annotations\n\n\n"
            "def handle() -> dict[str, str]:\n"
            '    """Return the status this placeholder reports."""\n'
            f'    return {{"status": "ok", "component": "{module}"}}\n'
        )
    if ext in ("md", "rst", "txt", ""):
        heading = title or module.replace("_", " ").title()
        return (
            f"# {heading}\n\n> {HEADER}\n\n## Task\n\n{task}\n\n## Notes\n\n"
            "This placeholder was drafted by the offline planner. Run PAS with "
            "PAS_LLM_MODE=live for model-written content.\n"
        )
    if ext in ("yml", "yaml"):
        return (
            f"# {HEADER}\n{_comment_lines(task, '# Task: ')}\n"
            f"name: {module}\non: [push]\njobs:\n  check:\n    runs-on: ubuntu-latest\n"
            "    steps:\n      - uses: actions/checkout@v4\n"
            "      - run: python -m pytest -q\n"
        )
    if ext == "sql":
        return (
            f"-- {HEADER}\n{_comment_lines(task, '-- Task: ')}\n"
            f"CREATE TABLE IF NOT EXISTS {module} (\n    id INTEGER PRIMARY KEY,\n"
            "    created_at TIMESTAMP NOT NULL\n);\n"
        )
    if ext == "json":
        return json.dumps({"_comment": HEADER, "task": task}, indent=1) + "\n"
    if ext in ("html", "xml", "svg"):
        return f"<!-- {HEADER} -->\n<!-- Task: {task.replace('--', '- -')} -->\n"
    if ext in ("js", "ts", "go", "rs", "java", "c", "h", "cpp", "css", "kt", "swift"):
        return f"// {HEADER}\n{_comment_lines(task, '// Task: ')}\n"
    return f"# {HEADER}\n{_comment_lines(task, '# Task: ')}\n"
