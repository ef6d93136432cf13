"""Drill: nobody gets in who should not, and no secret leaks.

Promise:
- every page and API endpoint (Django's URL resolver, enumerated, path parameters
  filled with plausible values) but ``/health`` and the login pages refuses anonymous
  access, for GET and POST;
- a viewer (logged in, not an operator) cannot act (every POST: 403) or change settings;
- an agent-bound token can beat for its agent only and call nothing else;
- tokens are stored hashed;
- no provider key or token ever appears in the database (every text column of every
  table), an event, a log line (process logs, comms logs, artifacts) or a page, after
  a live-mode LLM call that fails;
- login attempts are rate-limited.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from pas_core.auth import token_create
from pas_core.models import Agent, ApiToken, Job, Notification, Run
from pas_core.services.submit import run_submit
from tests import procs
from tests.drills.common import figure, proc_logs, wait_for
from tests.e2e import short_timings, stack
from tests.llm_server import llm_server

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# /metrics answers the networks of PAS_METRICS_NETWORKS (loopback by default) without
# a login, as a Prometheus scraper expects; the drill calls from loopback.
PUBLIC = {"/health", "/metrics", "/login/", "/admin/login/"}
LOGIN_PREFIXES = ("/login/", "/admin/login/")
# POSTs a viewer may make: leaving, and marking notifications read (the HMI's rule:
# "reading is not acting"; the flag is display state, it starts or stops nothing).
VIEWER_MAY_POST = {"/logout/", "/admin/logout/", "/notifications/read-all"}
LEAVING = {"/logout/", "/admin/logout/"}  # Logging out is open to anyone.
VIEWER_MAY_POST_RE = re.compile(r"^/notifications/\d+/read$")
PROVIDER_KEYS = {
    "OPENAI_API_KEY": "sk-drill-secret-openai-123",
    "ANTHROPIC_API_KEY": "sk-ant-drill-secret-456",
    "GEMINI_API_KEY": "drill-secret-gemini-789",
    "OPENROUTER_API_KEY": "sk-or-drill-secret-012",
    "PAS_CUSTOM_API_KEY": "sk-drill-secret-custom-345",
}


# -- the URL map ----------------------------------------------------------------


def _fill(regex: str, values: dict[str, str]) -> str:
    """Turn a resolver regex into a path, each named group replaced by a value."""
    out, i = [], 0
    while i < len(regex):
        if regex.startswith("(?P<", i):
            name = regex[i + 4 : regex.index(">", i)]
            depth, j = 0, i
            while True:  # Skip to the group's closing parenthesis.
                if regex[j] == "\\":
                    j += 2
                    continue
                depth += {"(": 1, ")": -1}.get(regex[j], 0)
                j += 1
                if depth == 0:
                    break
            out.append(values.get(name, "x"))
            i = j
        elif regex[i] == "\\" and i + 1 < len(regex):
            out.append("" if regex[i + 1] == "Z" else regex[i + 1])
            i += 2
        elif regex[i] in "^$?":
            i += 1
        else:
            out.append(regex[i])
            i += 1
    return "/" + "".join(out)


def url_map(values: dict[str, str]) -> list[str]:
    """Return one concrete path for every URL pattern Django resolves."""
    paths: list[str] = []

    def walk(patterns: list[Any], prefix: str) -> None:
        for p in patterns:
            regex = prefix + p.pattern.regex.pattern.lstrip("^")
            if isinstance(p, URLResolver):
                walk(p.url_patterns, regex.removesuffix("\\Z"))
            elif isinstance(p, URLPattern):
                paths.append(_fill(regex, values))

    walk(get_resolver().url_patterns, "")
    return sorted(set(paths))


def _refused(response: Any) -> bool:
    """401, 403, 405, 404 (nothing there for anyone), or a redirect to a login page."""
    if response.status_code in (401, 403, 404, 405):
        return True
    location = response.headers.get("Location", "")
    return response.status_code == 302 and location.startswith(LOGIN_PREFIXES)


# -- the drill ---------------------------------------------------------------------


def test_nobody_gets_in_who_should_not_and_no_secret_leaks(tree, proc_env, monkeypatch):
    for name, value in PROVIDER_KEYS.items():
        monkeypatch.setenv(name, value)  # Pages rendered here read this environment.
    user_model = get_user_model()
    admin = user_model.objects.get(username="admin")
    viewer_user = user_model.objects.create_user("drill-viewer", "", None)
    full_token, _ = token_create(name="drill-full")
    agent_token, _ = token_create(name="drill-agent", agent_id="Dir-Code")
    secrets = [*PROVIDER_KEYS.values(), full_token, agent_token]
    started = time.monotonic()

    # A run that makes live LLM calls which fail (401, then 404), on a loopback server.
    short_timings(max_restarts=0, max_llm_retries=1)
    with llm_server() as llm:
        Agent.objects.filter(pk="Architect").update(
            primary_model="custom/unauthorized",
            current_model="custom/unauthorized",
            fallback_models=["custom/missing"],
        )
        env = proc_env(PAS_LLM_MODE="live", PAS_CUSTOM_BASE_URL=llm.base_url, **PROVIDER_KEYS)
        with stack(env), procs.daphne_server(env) as web:
            run = run_submit(title="Live and failing", goal="Implement the parser in code")
            wait_for(
                lambda: Run.objects.filter(pk=run.run_id, status="failed").exists(),
                "the live run to fail",
                90,
            )
            token_findings = _tokens_over_http(web.url, full_token, agent_token)
            leaks_http = _secrets_over_http(web.url, full_token, secrets)
        live_calls = len(llm.requests)

    job = Job.objects.filter(run=run).order_by("created_at").last()
    notification = Notification.objects.first()
    values = {
        "agent_id": "Dir-Code",
        "run_id": str(run.run_id),
        "job_id": job.pk if job else "x",
        "pk": str(notification.pk if notification else 1),
        "relpath": "Code/lane_report.json",
        "section": "hhmrs",
        "app_label": "pas_core",
        "object_id": "1",
        "content_type_id": "1",
    }
    paths = url_map(values)

    # 1. Anonymous: GET and POST everything.
    anonymous = Client()
    open_to_anonymous = []
    for path in paths:
        if path in PUBLIC or path in LEAVING:
            continue
        for method in ("get", "post"):
            response = getattr(anonymous, method)(path)
            if not _refused(response):
                open_to_anonymous.append(f"{method.upper()} {path} -> {response.status_code}")

    # 2. A viewer: every POST refused (403; 405 where there is no action; the admin
    # sends non-staff users to its login page), settings too.
    viewer = Client()
    viewer.force_login(viewer_user)
    viewer_acted = []
    for path in paths:
        if path in VIEWER_MAY_POST or VIEWER_MAY_POST_RE.match(path) or path in PUBLIC:
            continue
        response = viewer.post(path)
        if not _refused(response) or response.status_code == 401:
            viewer_acted.append(f"POST {path} -> {response.status_code}")
    before = viewer.get("/api/settings/hhmrs").json()
    for path, body in (
        ("/api/settings/hhmrs", {"max_restarts": 7}),
        ("/api/runs", {"title": "viewer", "goal": "must not run"}),
        ("/api/agents/Dir-Code/faults", {"kind": "hang"}),
    ):
        response = viewer.post(path, body, content_type="application/json")
        if response.status_code != 403:
            viewer_acted.append(f"POST {path} (valid body) -> {response.status_code}")
    response = viewer.post("/settings/hhmrs/", {"max_restarts": 7})
    if response.status_code != 403:
        viewer_acted.append(f"POST /settings/hhmrs/ (form) -> {response.status_code}")
    settings_untouched = viewer.get("/api/settings/hhmrs").json() == before

    # 3. Tokens are stored hashed: the hash is there, the token is not.
    hashed = all(
        ApiToken.objects.filter(token_hash=hashlib.sha256(raw.encode()).hexdigest()).exists()
        for raw in (full_token, agent_token)
    )

    # 4. No secret in the database, the logs, the artifacts or any page.
    leaks = [*leaks_http, *_secrets_in_database(secrets), *_secrets_in_logs(secrets)]
    admin_client = Client()
    admin_client.force_login(admin)
    for path in paths:
        if path == "/events/stream":
            continue  # Endless; read over HTTP above (its replay of every event).
        response = admin_client.get(path)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        text = body.decode(errors="replace")
        leaks += [f"page {path}" for secret in secrets if secret in text]

    # 5. Login attempts are rate-limited.
    limiter = Client(REMOTE_ADDR="127.0.0.9")
    codes = [
        limiter.post("/login/", {"username": "admin", "password": f"wrong{i}"}).status_code
        for i in range(12)
    ]
    other_user = limiter.post("/login/", {"username": "someone", "password": "x"}).status_code
    first_429 = codes.index(429) + 1 if 429 in codes else None
    elapsed = time.monotonic() - started

    figure(
        f"DRILL security: {len(paths)} URL patterns x GET/POST, {len(open_to_anonymous)} open "
        f"to anonymous; viewer {len(viewer_acted)} actions allowed, settings untouched="
        f"{settings_untouched}; agent token {len(token_findings)} misuses allowed; tokens "
        f"hashed={hashed}; {live_calls} live LLM calls, {len(leaks)} secret leaks (db, events, "
        f"logs, pages); login 429 from attempt {first_429}; {elapsed:.1f} s"
    )
    assert open_to_anonymous == [], "\n".join(open_to_anonymous)
    assert viewer_acted == [], "\n".join(viewer_acted)
    assert settings_untouched
    assert token_findings == [], "\n".join(token_findings)
    assert hashed
    assert live_calls >= 1, "no live LLM call was made: nothing could leak"
    assert leaks == [], "\n".join(leaks)
    assert first_429 == 11, codes
    assert other_user == 200  # The limit is per address and user name.


def _tokens_over_http(base: str, full: str, bound: str) -> list[str]:
    """Return every misuse of the agent-bound token that was allowed (real Daphne)."""
    found = []
    with httpx.Client(base_url=base, timeout=10) as http:
        mine = {"Authorization": f"Bearer {bound}"}
        # Its own agent: accepted (the lean ASGI route), with or without a job.
        r = http.post("/api/agents/Dir-Code/heartbeat", json={}, headers=mine)
        if r.status_code != 202:
            found.append(f"own heartbeat -> {r.status_code} (expected 202)")
        # Another agent: 403, on the lean route and with a body the Django path parses.
        for body in ({}, {"progress": 0.5}):
            r = http.post("/api/agents/Dir-Docs/heartbeat", json=body, headers=mine)
            if r.status_code != 403:
                found.append(f"heartbeat for Dir-Docs -> {r.status_code}")
        for method, path in (
            ("GET", "/api/agents"),
            ("GET", "/api/runs"),
            ("POST", "/api/runs"),
            ("GET", "/api/events"),
            ("POST", "/api/events/broadcast"),
            ("GET", "/api/settings/hhmrs"),
            ("POST", "/api/settings/hhmrs"),
            ("POST", "/api/agents/Dir-Code/faults"),
            ("POST", "/api/agents/Dir-Code/submit"),
            ("POST", "/api/agents/Architect/handle_child_timeout"),
            ("GET", "/api/openapi.json"),
            ("GET", "/events/stream"),
        ):
            r = http.request(method, path, json={} if method == "POST" else None, headers=mine)
            if r.status_code not in (401, 403):
                found.append(f"{method} {path} -> {r.status_code}")
        # HMI pages do not take tokens at all.
        for token in (bound, full):
            r = http.get("/", headers={"Authorization": f"Bearer {token}"})
            if not (r.status_code == 302 and r.headers["Location"].startswith("/login/")):
                found.append(f"GET / with a token -> {r.status_code}")
    return found


def _secrets_over_http(base: str, full: str, secrets: list[str]) -> list[str]:
    """Return where a secret shows in the API's answers or the event stream's replay."""
    leaks = []
    auth = {"Authorization": f"Bearer {full}"}
    with httpx.Client(base_url=base, headers=auth, timeout=10) as http:
        for path in ("/api/events?limit=1000", "/api/agents", "/api/runs", "/health"):
            text = http.get(path).text
            leaks += [f"GET {path}" for s in secrets if s in text]
        with http.stream("GET", "/events/stream", headers={"Last-Event-ID": "0"}) as response:
            text, deadline = "", time.monotonic() + 5
            for chunk in response.iter_text():
                text += chunk
                if ": live" in text or time.monotonic() > deadline:
                    break
        leaks += ["the event stream" for s in secrets if s in text]
    return leaks


def _secrets_in_database(secrets: list[str]) -> list[str]:
    """Return ``table.column`` for every stored value holding a secret (every table)."""
    leaks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            columns = [c[0] for c in cursor.description]
            for row in cursor.fetchall():
                for column, value in zip(columns, row, strict=True):
                    text = value if isinstance(value, str) else str(value)
                    leaks += [f"db {table}.{column}" for s in secrets if s in text]
    return leaks


def _secrets_in_logs(secrets: list[str]) -> list[str]:
    from django.conf import settings

    leaks = [f"log {name}" for name, text in proc_logs().items() for s in secrets if s in text]
    for path in settings.PAS_ARTIFACTS_DIR.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            leaks += [f"file {path.name}" for s in secrets if s in text]
    return leaks
