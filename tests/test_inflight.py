"""Ending one attempt of many in one process, and finding the thread that spins."""

from __future__ import annotations

import threading
import time
from typing import Any

from pas_core import inflight
from pas_core.scripts.supervise import hot_threads


def _run(attempt_id: int, work: Any, results: dict[int, str]) -> threading.Thread:
    def body() -> None:
        try:
            with inflight.holding(attempt_id):
                work()
            results[attempt_id] = "done"
        except inflight.AttemptKilled:
            results[attempt_id] = "killed"

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


def _python_loop() -> None:
    while True:
        pass


def test_a_kill_ends_only_the_attempts_it_names() -> None:
    results: dict[int, str] = {}
    cut: list[str] = []
    hook_ready = threading.Event()

    def blocked_call() -> None:
        inflight.on_abort(lambda: cut.append("socket shut"))
        hook_ready.set()
        inflight.wait(30)

    threads = [
        _run(1, lambda: inflight.wait(30), results),  # A hang: waits on its cancel event.
        _run(2, _python_loop, results),  # A Python loop: interrupted between instructions.
        _run(3, blocked_call, results),  # A model call: its socket is shut.
        _run(4, lambda: time.sleep(0.5), results),  # Innocent: must finish its work.
    ]
    hook_ready.wait(5)
    time.sleep(0.1)

    killed = inflight.attempts_kill([1, 2, 3, 99])

    for thread in threads:
        thread.join(5)
    assert sorted(killed) == [1, 2, 3]  # 99 is not held here: ignored.
    assert results == {1: "killed", 2: "killed", 3: "killed", 4: "done"}
    assert cut == ["socket shut"]
    assert inflight.held() == {}


def test_a_late_kill_never_reaches_the_next_attempt_of_the_same_thread() -> None:
    results: dict[int, str] = {}
    first = _run(7, lambda: None, results)
    first.join(5)

    assert inflight.attempts_kill([7]) == []  # Ended already: nothing to do.
    assert results == {7: "done"}


def test_the_busy_thread_is_the_one_found() -> None:
    stop = threading.Event()

    def burn() -> None:
        while not stop.is_set():
            sum(range(10_000))

    thread = threading.Thread(target=burn, daemon=True)
    thread.start()
    time.sleep(0.1)
    try:
        busy = hot_threads(__import__("os").getpid(), window_s=0.5)
    finally:
        stop.set()
        thread.join(5)
    assert busy[:1] == [thread.native_id]
