"""The SSE stream on a real Daphne: live events from other processes, replay after
Last-Event-ID, refusal without a login, and clean-up when the client leaves."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from hmi.streams import sse_message
from tests import procs

MANAGE = str(procs.PROJECT_DIR / "manage.py")

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


class SseReader:
    """Read an SSE stream in a thread; messages and comments land in a queue."""

    def __init__(self, url: str, *, cookies: dict[str, str] | None = None, headers: Any = None):
        self.url = url
        self.cookies = cookies or {}
        self.headers = headers or {}
        self.items: queue.Queue[dict[str, Any]] = queue.Queue()
        self.status: int | None = None
        self.opened = threading.Event()
        self._response: httpx.Response | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> SseReader:
        self._thread.start()
        assert self.opened.wait(15), "the stream did not answer"
        return self

    def _run(self) -> None:
        timeout = httpx.Timeout(10, read=60)
        try:
            with httpx.Client(cookies=self.cookies, timeout=timeout) as client:
                with client.stream("GET", self.url, headers=self.headers) as response:
                    self._response = response
                    self.status = response.status_code
                    self.content_type = response.headers.get("content-type", "")
                    self.opened.set()
                    message: dict[str, Any] = {}
                    for line in response.iter_lines():
                        if line == "":
                            if message:
                                self.items.put(message)
                            message = {}
                        elif line.startswith(":"):
                            self.items.put({"comment": line[1:].strip()})
                        else:
                            field, _, value = line.partition(":")
                            value = value[1:] if value.startswith(" ") else value
                            if field == "data":
                                message["data"] = (
                                    message["data"] + "\n" + value if "data" in message else value
                                )
                            else:
                                message[field] = value
        except Exception:  # noqa: BLE001 - closing the stream from the test ends it here
            if not self._closed:
                raise
        finally:
            self.opened.set()

    def next(self, timeout: float = 15) -> dict[str, Any]:
        return self.items.get(timeout=timeout)

    def until(self, pred: Any, timeout: float = 20) -> list[dict[str, Any]]:
        """Return every item up to and including the first that satisfies ``pred``."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"not seen within {timeout}s; got {seen}")
            try:
                item = self.items.get(timeout=left)
            except queue.Empty:
                continue
            seen.append(item)
            if pred(item):
                return seen

    def live(self) -> list[dict[str, Any]]:
        """Wait for the end of the replay; return what came before it."""
        return self.until(lambda m: m.get("comment") == "live")[:-1]

    def close(self) -> None:
        """Drop the connection now: shut the socket down under the reading thread."""
        self._closed = True
        if self._response is not None:
            stream = self._response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)
        assert not self._thread.is_alive(), "the reader did not stop"


def events_of(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the JSON event messages (not hmi/run fragments, not comments)."""
    out = []
    for m in items:
        if "id" in m and m.get("event") not in ("hmi", None) and not m["event"].startswith("run"):
            out.append({**json.loads(m["data"]), "_sse_id": m["id"], "_sse_event": m["event"]})
    return out


def emit_elsewhere(env: dict[str, str], *events: tuple[str, dict[str, Any]]) -> None:
    """Emit events from another process (a Django shell) against the same DB and Redis."""
    code = (
        "import json, sys\n"
        "from pas_core.stores.events import event_emit\n"
        f"for t, d in json.loads({json.dumps(json.dumps(events))}):\n"
        "    event_emit(t, d)\n"
    )
    subprocess.run(
        [sys.executable, MANAGE, "shell", "-c", code],
        env=env,
        check=True,
        timeout=60,
        cwd=procs.PROJECT_DIR,
        capture_output=True,
    )


@pytest.fixture
def session_cookie(db: None, plain_user: Any) -> dict[str, str]:
    """Return the cookie of a committed session for a plain (viewer) user."""
    from django.test import Client

    client = Client()
    client.force_login(plain_user)
    return {"sessionid": client.cookies["sessionid"].value}


@pytest.fixture
def server(proc_env: Any, tree: Any) -> Iterator[procs.DaphneServer]:
    with procs.daphne_server(proc_env()) as daphne:
        yield daphne


def test_sse_message_splits_data_lines() -> None:
    text = sse_message("<div>\n  a\n</div>", event="hmi", event_id=7)
    assert text == "id: 7\nevent: hmi\ndata: <div>\ndata:   a\ndata: </div>\n\n"


def test_an_event_from_another_process_arrives_live(
    server: procs.DaphneServer, session_cookie: dict[str, str], proc_env: Any
) -> None:
    reader = SseReader(server.url + "/events/stream", cookies=session_cookie).start()
    try:
        assert reader.status == 200
        assert reader.content_type.startswith("text/event-stream")
        first = reader.next()
        assert first == {"retry": "2000"}
        assert reader.live() == []  # No Last-Event-ID: nothing is replayed.
        emit_elsewhere(
            proc_env(), ("hhmrs_timeout", {"agent_id": "Dir-Code", "message": "from afar"})
        )
        got = events_of(reader.until(lambda m: m.get("event") == "hhmrs_timeout"))
        assert len(got) == 1
        event = got[0]
        assert event["event_type"] == "hhmrs_timeout"
        assert event["agent_id"] == "Dir-Code"
        assert event["data"]["message"] == "from afar"
        assert event["_sse_id"] == str(event["id"])  # id: is the stored event's id
        assert "replay" not in event  # It came live, through the channel layer.
    finally:
        reader.close()


def test_a_transaction_of_many_events_arrives_live_whole_and_in_order(
    server: procs.DaphneServer, session_cookie: dict[str, str]
) -> None:
    """Events a transaction stored together travel in a few ``pas.events`` messages
    (200 each), and every stream gets each of them once, live, in order."""
    from django.db import transaction

    from pas_core.stores import events as event_store

    reader = SseReader(server.url + "/events/stream", cookies=session_cookie).start()
    try:
        assert reader.live() == [{"retry": "2000"}]
        published: list[int] = []
        real = event_store._publish

        def publish(message: dict[str, Any], what: str) -> int:
            published.append(len(message.get("events") or [message]))
            return real(message, what)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(event_store, "_publish", publish)
            with transaction.atomic():
                stored = event_store.events_emit(
                    [("agent_status", {"agent_id": "Dir-Code", "n": n}) for n in range(450)]
                )
        assert published == [200, 200, 50]
        got = events_of(reader.until(lambda m: m.get("id") == str(stored[-1].id)))
        assert [e["id"] for e in got] == [e.id for e in stored]
        assert [e["data"]["n"] for e in got] == list(range(450))
        assert not any(e.get("replay") for e in got)  # Live, not found as a gap.
    finally:
        reader.close()


async def _writes_per_turn(pacer: Any, streams: int) -> list[int]:
    """Wake ``streams`` streams at once, each with one 0.5 ms write paced by ``pacer``;
    return how many wrote in each turn of the loop that saw a write."""
    turn = 0
    per_turn: dict[int, int] = {}

    async def ticker() -> None:
        nonlocal turn
        while True:
            turn += 1
            await asyncio.sleep(0)

    async def stream() -> None:
        await pacer.turn()
        per_turn[turn] = per_turn.get(turn, 0) + 1
        started = time.perf_counter()
        while time.perf_counter() - started < 0.0005:  # A write: 0.5 ms of work.
            pass
        pacer.spend(time.perf_counter() - started)

    tick = asyncio.ensure_future(ticker())
    await asyncio.gather(*(stream() for _ in range(streams)))
    tick.cancel()
    return list(per_turn.values())


def test_the_pacer_spreads_stream_writes_over_turns_of_the_loop() -> None:
    """Fifty streams woken at once write about a budget's worth per turn of the loop,
    so what arrived meanwhile (a heartbeat) runs between them."""
    from hmi.pacer import Pacer

    counts = asyncio.run(_writes_per_turn(Pacer(budget_s=0.002), 50))
    assert sum(counts) == 50
    assert max(counts) <= 5  # About 2 ms of 0.5 ms writes, never all fifty in one turn.
    assert len(counts) >= 10


def test_while_a_beat_is_answered_the_pacer_writes_less_per_turn() -> None:
    """The heartbeat route marks its work urgent: while it is in flight a turn of the
    loop carries one 0.5 ms write instead of four, and after it, four again."""
    from hmi.pacer import Pacer, urgent

    async def run() -> tuple[list[int], list[int]]:
        pacer = Pacer(budget_s=0.002)
        with urgent():
            during = await _writes_per_turn(pacer, 20)
        return during, await _writes_per_turn(pacer, 20)

    during, after = asyncio.run(run())
    assert sum(during) == 20 and max(during) == 1
    assert sum(after) == 20 and max(after) >= 3


def test_replay_after_last_event_id_gives_exactly_the_missed_events_in_order(
    server: procs.DaphneServer, session_cookie: dict[str, str], proc_env: Any
) -> None:
    from pas_core.stores.events import event_emit

    ids = [event_emit("job_started", {"agent_id": "Dir-Data", "n": n}).id for n in range(6)]
    reader = SseReader(
        server.url + "/events/stream",
        cookies=session_cookie,
        headers={"Last-Event-ID": str(ids[2])},
    ).start()
    try:
        replayed = events_of(reader.live())
        # Exactly the events after id 3 of 6, in order, each once.
        assert [e["id"] for e in replayed] == ids[3:]
        assert [e["data"]["n"] for e in replayed] == [3, 4, 5]
        assert all(e["replay"] for e in replayed)
        # Then live: a new event comes once, and no replayed one comes again.
        emit_elsewhere(proc_env(), ("job_completed", {"agent_id": "Dir-Data"}))
        live = events_of(reader.until(lambda m: m.get("event") == "job_completed"))
        assert [e["event_type"] for e in live] == ["job_completed"]
        assert live[0]["id"] > ids[-1]
    finally:
        reader.close()


def test_a_dropped_stream_resumes_without_losing_an_event(
    server: procs.DaphneServer, session_cookie: dict[str, str], proc_env: Any
) -> None:
    url = server.url + "/events/stream"
    reader = SseReader(url, cookies=session_cookie).start()
    reader.live()
    emit_elsewhere(proc_env(), ("agent_status", {"agent_id": "Dir-Code", "status": "working"}))
    first = events_of(reader.until(lambda m: m.get("event") == "agent_status"))
    last_id = first[-1]["_sse_id"]
    reader.close()
    # Emitted while nobody listens.
    batch = [("hhmrs_restart", {"agent_id": "Dir-Code", "n": n}) for n in range(5)]
    emit_elsewhere(proc_env(), *batch)
    again = SseReader(url, cookies=session_cookie, headers={"Last-Event-ID": last_id}).start()
    try:
        missed = events_of(again.live())
        assert [e["data"]["n"] for e in missed] == [0, 1, 2, 3, 4]
        assert [int(e["id"]) for e in missed] == sorted(int(e["id"]) for e in missed)
    finally:
        again.close()


def test_anonymous_is_refused_and_a_token_is_accepted(
    server: procs.DaphneServer, api_token: str
) -> None:
    response = httpx.get(server.url + "/events/stream", timeout=10)
    assert response.status_code == 401
    reader = SseReader(
        server.url + "/events/stream", headers={"Authorization": f"Bearer {api_token}"}
    ).start()
    try:
        assert reader.status == 200
        assert reader.next() == {"retry": "2000"}
    finally:
        reader.close()


def test_an_agent_token_or_a_session_not_logged_in_is_refused(
    server: procs.DaphneServer, tree: Any
) -> None:
    """The route in front of Django checks what the view checks: an agent's token may only
    beat, and a session cookie counts only for a logged-in user."""
    from django.contrib.sessions.backends.db import SessionStore

    from pas_core.auth import token_create

    agent_raw, _ = token_create(name="agent", agent_id="Dir-Code")
    anonymous = SessionStore()
    anonymous["something"] = 1
    anonymous.save()
    for headers, cookies in (
        ({"Authorization": f"Bearer {agent_raw}"}, {}),
        ({"Authorization": "Bearer not-a-token"}, {}),
        ({}, {"sessionid": anonymous.session_key or ""}),
        ({}, {"sessionid": "no-such-session"}),
    ):
        response = httpx.get(
            server.url + "/events/stream", headers=headers, cookies=cookies, timeout=10
        )
        assert response.status_code == 401, (headers, cookies)
        assert response.text == "login required\n"
    # Another method on the path goes on to Django's view, which allows GET only.
    assert httpx.head(server.url + "/events/stream", timeout=10).status_code == 405


def test_the_front_passes_other_requests_to_django() -> None:
    from hmi.streams import stream_front

    seen: list[tuple[str, str]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append((scope["method"], scope["path"]))

    async def run() -> None:
        front = stream_front(app)
        for method, path in (("POST", "/events/stream"), ("GET", "/events/streams"), ("GET", "/")):
            await front({"type": "http", "method": method, "path": path}, None, None)

    asyncio.run(run())
    assert seen == [("POST", "/events/stream"), ("GET", "/events/streams"), ("GET", "/")]


def test_the_hmi_stream_pushes_node_and_banner_fragments(
    server: procs.DaphneServer, session_cookie: dict[str, str], proc_env: Any
) -> None:
    reader = SseReader(server.url + "/events/stream?hmi=tree", cookies=session_cookie).start()
    try:
        reader.live()
        emit_elsewhere(
            proc_env(),
            ("hhmrs_timeout", {"agent_id": "Dir-Code", "run_id": "r-1", "message": "late"}),
        )
        items = reader.until(lambda m: m.get("event") == "run-r-1")
        hmi = [m for m in items if m.get("event") == "hmi"]
        assert len(hmi) == 1
        html = hmi[0]["data"]
        assert 'id="node-Dir-Code"' in html and 'hx-swap-oob="true"' in html
        assert 'id="tron-banner"' in html and "late" in html
        assert 'id="tron-counters"' in html
        assert '<span class="badge" data-badge>timed out</span>' in html
        assert [m.get("event") for m in items if m.get("event", "").startswith("run")] == [
            "run",
            "run-r-1",
        ]
    finally:
        reader.close()


def test_a_client_leaving_unsubscribes_the_stream(
    server: procs.DaphneServer, session_cookie: dict[str, str], redis: Any, settings: Any
) -> None:
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    group = f"{prefix}__group__events"

    def listeners() -> int:
        return int(dict(redis.pubsub_numsub(group)).get(group.encode(), 0))

    readers = [SseReader(server.url + "/events/stream", cookies=session_cookie).start()]
    readers.append(SseReader(server.url + "/events/stream", cookies=session_cookie).start())
    for r in readers:
        r.live()
    assert listeners() == 1  # One Redis subscription per process, however many streams.
    readers[0].close()
    time.sleep(0.5)
    assert listeners() == 1  # The other stream still listens.
    readers[1].close()
    deadline = time.monotonic() + 10
    while listeners() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert listeners() == 0  # The last stream gone, the process left the group.


def test_a_broadcast_counts_the_open_streams_of_every_web_process(
    server: procs.DaphneServer, session_cookie: dict[str, str], proc_env: Any, api_token: str
) -> None:
    with procs.daphne_server(proc_env()) as second:
        readers = [
            SseReader(url + "/events/stream", cookies=session_cookie).start()
            for url in (server.url, server.url, server.url, second.url, second.url)
        ]
        try:
            for r in readers:
                r.live()
            answer = httpx.post(
                server.url + "/api/events/broadcast",
                json={"event_type": "operator_note", "data": {"message": "to all"}},
                headers={"Authorization": f"Bearer {api_token}"},
                timeout=10,
            ).json()
            # Every one of the five streams, on both processes, receives it...
            for r in readers:
                got = events_of(r.until(lambda m: m.get("event") == "operator_note"))
                assert [e["data"]["message"] for e in got] == ["to all"]
        finally:
            for r in readers:
                r.close()
    # ...and that is what the answer counts (not the two Redis subscriptions).
    assert answer["clients"] == 5


def test_the_hub_fills_a_gap_inside_a_batch_from_the_database() -> None:
    """Events received before and after a lost publish drain together: the one lost
    in the middle is read from the database and sent, not skipped."""
    from hmi.hub import Hub, Listener

    stored = {i: {"id": i, "event_type": "x", "agent_id": "", "data": {}} for i in range(1, 13)}
    reads: list[tuple[int, int, int | None]] = []

    def fetch(after: int, limit: int, before: int | None) -> list[dict[str, Any]]:
        reads.append((after, limit, before))
        ids = [i for i in sorted(stored) if i > after and (before is None or i < before)]
        return [stored[i] for i in ids[:limit]]

    async def deliver() -> list[int]:
        hub = Hub(fetch, lambda: 0)
        hub.last_id = 2
        listener = Listener("")
        hub.listeners.add(listener)
        # 3, 4, 5 arrived; 6 and 7 were lost; 8 to 12 arrived after a reconnect.
        await hub._fill_gaps([stored[i] for i in (3, 4, 5, 8, 9, 10, 11, 12)])
        sent: list[int] = []
        while not listener.queue.empty():
            batch = listener.queue.get_nowait()
            assert batch is not None and batch.replay
            sent += batch.ids
        # No gap: nothing read, nothing sent.
        await hub._fill_gaps([stored[i] for i in (3, 4, 5)])
        assert listener.queue.empty()
        return sent

    assert asyncio.run(deliver()) == [6, 7]
    assert len(reads) == 1


def test_the_hub_writes_a_stream_of_events_itself_and_drops_one_whose_write_fails() -> None:
    from hmi.batches import Batch
    from hmi.hub import Hub, Listener

    async def send_three() -> tuple[list[str], Listener, Listener, Listener, int]:
        hub = Hub(lambda after, limit, before: [], lambda: 0)
        written: list[str] = []
        tries = 0

        async def write(text: str) -> None:
            written.append(text)

        async def broken(text: str) -> None:
            nonlocal tries
            tries += 1
            raise OSError("the connection is gone")

        queued, direct, failing = Listener(""), Listener(""), Listener("")
        direct.write, failing.write = write, broken
        direct.seen.fresh(2)  # Already sent (replayed): not written again.
        hub.listeners |= {queued, direct, failing}
        await hub._send(Batch([{"id": 1, "event_type": "x", "data": {}}]))
        await hub._send(Batch([{"id": 2, "event_type": "x", "data": {}}]))
        await hub._send(None)  # A keep-alive.
        return written, queued, direct, failing, tries

    written, queued, direct, failing, tries = asyncio.run(send_three())
    assert [text.split("\n")[0] for text in written] == ["id: 1", ": keep-alive"]
    assert direct.queue.empty()  # Written, not queued: its task was never woken.
    items = [queued.queue.get_nowait() for _ in range(queued.queue.qsize())]
    assert [item.ids if item is not None else None for item in items] == [[1], [2], None]
    # The failing stream: tried once, dropped, its task woken (one None) to end.
    assert failing.dropped and tries == 1
    assert failing.queue.qsize() == 1 and failing.queue.get_nowait() is None


def test_once_live_streams_are_written_by_the_hubs_tasks_not_their_own(
    tree: Any, api_token: str
) -> None:
    """Through the ASGI front, a live stream gets its events from the hub's delivering
    task (one task for every stream) and, with ``?hmi=``, its page's HTML and the run
    pages' triggers from the page's writer task: no task of its own is woken per event."""
    from django.db import connection

    from hmi import hub as hub_module
    from hmi import streams
    from pas_core.stores.events import event_emit

    def emit() -> None:
        try:
            event_emit("hhmrs_timeout", {"agent_id": "Dir-Code", "run_id": "r-1", "message": "x"})
        finally:
            connection.close()

    async def serve() -> tuple[dict[bytes, list[tuple[bytes, Any]]], Any, list[Any]]:
        writes: dict[bytes, list[tuple[bytes, Any]]] = {b"": [], b"hmi=tree": []}
        gone = asyncio.Event()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            raise AssertionError("the front passed the stream on to Django")

        async def receive() -> dict[str, str]:
            await gone.wait()
            return {"type": "http.disconnect"}

        def sender(query: bytes) -> Any:
            async def send(message: dict[str, Any]) -> None:
                writes[query].append((message.get("body", b""), asyncio.current_task()))

            return send

        async def until(query: bytes, text: bytes) -> None:
            deadline = time.monotonic() + 20
            while not any(text in body for body, _ in writes[query]):
                assert time.monotonic() < deadline, f"{text!r} not written: {writes}"
                await asyncio.sleep(0.01)

        served = []
        for query in writes:
            scope = {
                "type": "http",
                "method": "GET",
                "path": "/events/stream",
                "query_string": query,
                "headers": [(b"authorization", f"Bearer {api_token}".encode())],
            }
            front = streams.stream_front(app)
            served.append(asyncio.ensure_future(front(scope, receive, sender(query))))
        the_hub = streams._hub()
        try:
            for query in writes:
                await until(query, b": live")
            await asyncio.to_thread(emit)
            await until(b"", b"event: hhmrs_timeout")
            await until(b"hmi=tree", b"event: run-r-1")
            deliverer, page_writers = the_hub.tasks[1], list(the_hub.page_tasks)
        finally:
            gone.set()
            await asyncio.gather(*served)
            for task in the_hub.tasks + the_hub.page_tasks:
                task.cancel()
            await asyncio.gather(*the_hub.tasks, *the_hub.page_tasks, return_exceptions=True)
            hub_module._hubs.pop(id(asyncio.get_running_loop()), None)
        return writes, deliverer, page_writers

    writes, deliverer, page_writers = asyncio.run(serve())

    def writer(query: bytes, text: bytes) -> Any:
        return next(task for body, task in writes[query] if text in body)

    assert writer(b"", b"event: hhmrs_timeout") is deliverer
    assert writer(b"hmi=tree", b"event: hhmrs_timeout") is deliverer
    assert len(page_writers) == 1
    html = writer(b"hmi=tree", b"event: hmi")
    assert html is page_writers[0] and writer(b"hmi=tree", b"event: run-r-1") is html
    # The page's HTML comes after the events it shows, in the same stream.
    bodies = b"".join(body for body, _ in writes[b"hmi=tree"])
    assert bodies.index(b"event: hhmrs_timeout") < bodies.index(b"event: hmi")
    assert b'id="node-Dir-Code"' in bodies
    for query in writes:  # The replay and ": live" come from the stream's own task.
        assert writer(query, b": live") not in (deliverer, *page_writers)
