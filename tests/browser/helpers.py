"""Helpers for the browser tests: act from another process, as workers would."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from tests import procs

MANAGE = str(procs.PROJECT_DIR / "manage.py")


def django_shell(env: dict[str, str], code: str) -> str:
    """Run ``code`` in ``manage.py shell`` (another process, same DB and Redis)."""
    done = subprocess.run(
        [sys.executable, MANAGE, "shell", "-c", code],
        env=env,
        timeout=60,
        cwd=procs.PROJECT_DIR,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def log_in(context: Any, base_url: str, credentials: tuple[str, str]) -> Any:
    """Open a page in ``context``, log in, wait for the live stream; return the page.

    Every console error and page error is collected in ``page.console_errors``.
    """
    page = context.new_page()
    watch(page)
    page.goto("/login/")
    page.fill("#id_username", credentials[0])
    page.fill("#id_password", credentials[1])
    page.click("button[type=submit]")
    page.wait_for_url(base_url + "/")
    page.wait_for_function("document.body.dataset.stream === 'ok'", timeout=15_000)
    return page


def watch(page: Any) -> list[str]:
    """Collect the page's console errors and uncaught errors in ``page.console_errors``."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.console_errors = errors
    return errors


def open_live(like: Any, path: str) -> Any:
    """Open ``path`` in a new context logged in as ``like`` (a page); wait for its stream.

    A context of its own, not a tab: a browser opens at most six HTTP/1.1 connections
    to one host, and every open page holds one for its event stream.
    """
    context = like.context.browser.new_context(
        storage_state=like.context.storage_state(),
        base_url=like.url.split("/", 3)[0] + "//" + like.url.split("/", 3)[2],
        viewport={"width": 1440, "height": 900},
    )
    page = context.new_page()
    watch(page)
    page.goto(path)
    page.wait_for_function("document.body.dataset.stream === 'ok'", timeout=30_000)
    return page


def no_sideways_scroll(page: Any) -> tuple[int, int]:
    """Return the page's ``(scrollWidth, clientWidth)``."""
    size = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    return int(size[0]), int(size[1])
