"""Drill: bad input, from a fuzzer and by hand, against a real web server.

Promise: no server error, ever; every refusal is JSON with a ``detail`` that names the
field; oversized bodies and malformed JSON are refused cleanly (4xx); a garbage
settings file is refused by ``pas settings import`` with the line at fault, a non-zero
exit, and the stored settings untouched.

``PAS_FUZZ_EXAMPLES`` (default 60) sets the examples per operation and mode.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from django.conf import settings
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings

from pas_core.config import document_get
from tests import procs
from tests.drills.common import figure

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MIN_REQUESTS = 1000


def _refusal_problem(response: Any) -> str | None:
    """Return what is wrong with a response, or None when it is acceptable."""
    if response.status_code >= 500:
        return f"{response.status_code} server error"
    if 400 <= response.status_code < 500:
        try:
            body = response.json()
        except ValueError:
            return f"{response.status_code} without a JSON body"
        if not isinstance(body, dict) or not str(body.get("detail") or "").strip():
            return f"{response.status_code} without a detail"
    return None


def test_the_api_refuses_bad_input_cleanly_and_never_fails(tree, proc_env, api_token):
    import schemathesis
    from schemathesis import GenerationMode

    per_op = int(os.environ.get("PAS_FUZZ_EXAMPLES") or 60)
    auth = {"Authorization": f"Bearer {api_token}"}
    statuses: Counter[int] = Counter()
    problems: list[str] = []
    started = time.monotonic()
    with procs.daphne_server(proc_env()) as web:
        schema = schemathesis.openapi.from_url(web.url + "/api/openapi.json", headers=auth)
        operations = [result.ok() for result in schema.get_all_operations()]
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @given(case=operation.as_strategy(generation_mode=mode))
                @hsettings(
                    max_examples=per_op,
                    deadline=None,
                    database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                def fuzz(case: Any) -> None:
                    response = case.call(base_url=web.url, headers=auth, timeout=30)
                    statuses[response.status_code] += 1
                    problem = _refusal_problem(response)
                    if problem and len(problems) < 50:
                        problems.append(
                            f"{case.method} {case.formatted_path} -> {problem}: "
                            f"{response.text[:200]!r}"
                        )

                fuzz()  # noqa: B023 - runs at once, inside this iteration
        fuzzed = sum(statuses.values())

        # By hand: malformed JSON, oversized bodies, on a few writing endpoints.
        big = (
            b'{"title": "x", "goal": "' + b"y" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10) + b'"}'
        )
        manual = {}
        with httpx.Client(base_url=web.url, headers=auth, timeout=30) as http:
            for path in (
                "/api/runs",
                "/api/settings/hhmrs",
                "/api/agents/Dir-Code/faults",
                "/api/events/broadcast",
                "/api/agents/Dir-Code/heartbeat",
            ):
                for name, body in (
                    ("malformed", b'{"title": '),
                    ("oversized", big),
                    ("not an object", b"[1, 2]"),
                    ("not JSON", b"\xff\xfe"),
                ):
                    r = http.post(path, content=body, headers={"Content-Type": "application/json"})
                    manual[f"{name} {path}"] = r.status_code
                    problem = _refusal_problem(r)
                    if problem or not 400 <= r.status_code < 500:
                        problems.append(f"{name} POST {path} -> {r.status_code}: {r.text[:200]!r}")
    elapsed = time.monotonic() - started

    server_errors = sum(n for code, n in statuses.items() if code >= 500)
    rejected = sum(n for code, n in statuses.items() if 400 <= code < 500)
    figure(
        f"DRILL bad-input: {fuzzed} generated requests on {len(operations)} operations "
        f"({rejected} refused, {server_errors} server errors), {len(manual)} malformed or "
        f"oversized bodies all 4xx={all(400 <= c < 500 for c in manual.values())}, "
        f"{len(problems)} problems, {elapsed:.1f} s"
    )
    assert problems == [], "\n".join(problems)
    assert fuzzed >= MIN_REQUESTS
    assert server_errors == 0


def test_a_garbage_settings_file_is_refused_with_the_line_at_fault(tree, proc_env, tmp_path):
    before = document_get()
    cases = {
        "syntax error": (
            '{\n  "hhmrs": {\n    "max_restarts": 3,\n    "timeout_threshold_s": 60,,\n  }\n}\n',
            4,
        ),
        "truncated": ('{\n  "hhmrs": {\n    "max_restarts": 3,\n', 4),
        "out of range": (
            '{\n  "hhmrs": {\n    "max_restarts": 3,\n    "timeout_threshold_s": 9999\n  }\n}\n',
            4,
        ),
        "wrong type": ('{\n  "hhmrs": {\n    "enable_auto_restart": "maybe"\n  }\n}\n', 3),
        "unknown key": ('{\n  "hhmrs": {\n    "max_restarts": 3\n  },\n  "bogus": {}\n}\n', 5),
        "not JSON at all": ("max_restarts = 3\n", 1),
    }
    refused = 0
    failures = []
    for name, (text, line) in cases.items():
        path = tmp_path / f"{name.replace(' ', '-')}.json"
        path.write_text(text)
        out = subprocess.run(
            [sys.executable, "manage.py", "pas", "settings", "import", str(path)],
            cwd=procs.PROJECT_DIR,
            env=proc_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        said = out.stdout + out.stderr
        if out.returncode == 0:
            failures.append(f"{name}: accepted (exit 0)")
        elif f"line {line}" not in said:
            failures.append(f"{name}: no 'line {line}' in {said.strip()[-300:]!r}")
        elif "Traceback" in said:
            failures.append(f"{name}: a traceback instead of a message")
        else:
            refused += 1
    untouched = document_get() == before
    figure(
        f"DRILL settings-import: {refused}/{len(cases)} garbage files refused with the line "
        f"at fault, stored settings untouched={untouched}"
    )
    assert failures == [], "\n".join(failures)
    assert untouched
