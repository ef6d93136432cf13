"""Drill: the web server is killed and started again while 20 browsers' streams are open.

Promise: events keep coming (emitted by another process: this one), every client
reconnects with ``Last-Event-ID`` by itself, and in the end each client has every
event, in order, none twice.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from pas_core.models import Event
from pas_core.stores.events import event_emit
from tests import procs
from tests.drills.common import SseClient, duplicates, figure, session_cookie, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CLIENTS = 20
RATE_PER_S = 20
EMIT_S = 12.0
KILL_AT_S = 4.0
DOWN_S = 1.0


def test_every_stream_has_every_event_once_after_the_web_server_restarts(proc_env):
    user = get_user_model().objects.create_user("drill-viewer", "", None)
    cookie = session_cookie(user)
    env = proc_env()
    baseline = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    web = procs.daphne_server(env).start()
    port = web.port
    clients = [
        SseClient(web.url, cookies={"sessionid": cookie}, last_id=baseline, name=f"sse-{i}")
        for i in range(CLIENTS)
    ]
    emitted: list[int] = []
    done = threading.Event()

    def emit() -> None:
        # Events keep coming, whatever the web server does.
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < EMIT_S:
            emitted.append(event_emit("drill_tick", {"n": n}).id)
            n += 1
            time.sleep(1 / RATE_PER_S)
        connection.close()  # This thread's own connection.
        done.set()

    started = time.monotonic()
    try:
        for client in clients:
            client.start()
        wait_for(lambda: all(c.connects for c in clients), "every client to connect", 20)
        emitter = threading.Thread(target=emit, name="emitter", daemon=True)
        emitter.start()
        time.sleep(KILL_AT_S)
        web.signal_group(signal.SIGKILL)  # No goodbye to anyone.
        web.stop(grace=2)
        time.sleep(DOWN_S)
        web = procs.daphne_server(env, port=port).start()
        emitter.join(EMIT_S + 10)
        assert done.is_set(), "the emitter did not finish"
        last = emitted[-1]
        wait_for(
            lambda: all(c.ids and c.ids[-1] >= last for c in clients),
            "every client to receive the last event",
            30,
        )
    finally:
        for client in clients:
            client.stop(timeout=0)
        web.stop()  # Closing the streams ends the clients' blocked reads.
        for client in clients:
            client.stop(timeout=5)
    elapsed = time.monotonic() - started

    missing = [len(set(emitted) - set(c.ids)) for c in clients]
    twice = [duplicates(c.ids) for c in clients]
    in_order = sum(1 for c in clients if c.ids == sorted(c.ids))
    reconnected = sum(1 for c in clients if c.connects >= 2)
    figure(
        f"DRILL web-restart: {CLIENTS} streams, {len(emitted)} events, "
        f"{reconnected}/{CLIENTS} reconnected, {sum(missing)} missing, {sum(twice)} twice, "
        f"{in_order}/{CLIENTS} in order, {elapsed:.1f} s"
    )
    # Every client lost its connection and came back by itself.
    assert reconnected == CLIENTS
    # Each client has every event, none twice, in order.
    assert sum(missing) == 0
    assert sum(twice) == 0
    assert in_order == CLIENTS
    for client in clients:
        assert [i for i in client.ids if i in set(emitted)] == emitted
