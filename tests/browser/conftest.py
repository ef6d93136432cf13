"""Browser tests: Playwright driving Debian's Chromium against a real Daphne.

The module skips when /usr/bin/chromium is missing (``apt-get install chromium``; ``make
test`` installs it when it can). Screenshots go to ``tests/_screens/`` (git-ignored);
with ``PAS_SCREENS_TO_DOCS=1`` the chosen ones are also copied to ``docs/screens/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import procs

CHROMIUM = Path("/usr/bin/chromium")
SCREENS = procs.PROJECT_DIR / "tests" / "_screens"
DOCS_SCREENS = procs.PROJECT_DIR / "docs" / "screens"
PASSWORD = "browser-test-pw"

if not CHROMIUM.exists():
    pytest.skip("no /usr/bin/chromium (apt-get install chromium)", allow_module_level=True)

# Playwright's sync API runs an event loop in this thread; Django refuses ORM calls from a
# thread with a running loop unless told that this (test-only) use is safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


# Package scope, not session: while Playwright runs, this thread has a running event
# loop, and every later test calling asyncio.run() (test_heartbeat_http) would fail.
@pytest.fixture(scope="package")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def daphne(proc_env: Any, tree: Any) -> Iterator[procs.DaphneServer]:
    with procs.daphne_server(proc_env()) as server:
        yield server


@pytest.fixture
def operator_login(db: None) -> tuple[str, str]:
    """Return the credentials of an operator with a real password."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from pas_core.bootstrap import OPERATORS

    user = get_user_model().objects.create_user("op", "", PASSWORD)
    user.groups.add(Group.objects.get_or_create(name=OPERATORS)[0])
    return "op", PASSWORD


@pytest.fixture
def page(
    chromium: Any, daphne: procs.DaphneServer, operator_login: tuple[str, str]
) -> Iterator[Any]:
    """Return a logged-in page on the tree; console errors fail the test."""
    context = chromium.new_context(viewport={"width": 1440, "height": 900}, base_url=daphne.url)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto("/login/")
    page.fill("#id_username", operator_login[0])
    page.fill("#id_password", operator_login[1])
    page.click("button[type=submit]")
    page.wait_for_url(daphne.url + "/")
    page.wait_for_function("document.body.dataset.stream === 'ok'", timeout=15_000)
    page.console_errors = errors  # type: ignore[attr-defined]
    yield page
    context.close()


def screenshot(page: Any, name: str, *, docs: str | None = None, full_page: bool = True) -> Path:
    """Save ``tests/_screens/<name>.png``; also ``docs/screens/<docs>`` when asked to."""
    SCREENS.mkdir(parents=True, exist_ok=True)
    path = SCREENS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    if docs and os.environ.get("PAS_SCREENS_TO_DOCS") == "1":
        DOCS_SCREENS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SCREENS / docs)
    return path
