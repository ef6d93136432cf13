"""Heartbeat load: N agents beating over HTTP once a second, from one process.

Usage (the load drill starts it)::

    python -m tests.drills.load_client --url http://127.0.0.1:PORT --token T \\
        --agents agents.json --seconds 60 --stop-at 20 --stop 5 --out result.json

``agents.json`` is ``[[agent_id, job_id], ...]``. Beats go over persistent HTTP/1.1
connections (plain asyncio streams: the client must cost less than the server), each
connection carrying its share of the agents in turn, every agent once per second. At
``--stop-at`` seconds the first ``--stop`` agents stop beating (hung agents TRON must
catch). Writes latency percentiles, status counts and how late the rounds ran.
Loopback only; bounded by ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

CONNECTIONS = 100


async def _connection(
    host: str,
    port: int,
    token: str,
    agents: list[tuple[str, str]],
    stopped: set[str],
    args: argparse.Namespace,
    latencies: list[float],
    statuses: Counter[int],
    lateness: list[float],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    start = time.monotonic()
    tick = 0
    try:
        while True:
            now = time.monotonic()
            if now - start >= args.seconds:
                return
            for agent_id, job_id in agents:
                if agent_id in stopped and now - start >= args.stop_at:
                    continue  # Hung: no beat from here on.
                body = json.dumps({"job_id": job_id, "progress": 0.5, "message": "load"})
                request = (
                    f"POST /api/agents/{agent_id}/heartbeat HTTP/1.1\r\n"
                    f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                    f"{body}"
                ).encode()
                t0 = time.monotonic()
                writer.write(request)
                await writer.drain()
                status_line = await asyncio.wait_for(reader.readline(), 30)
                length = 0
                while True:
                    line = await asyncio.wait_for(reader.readline(), 30)
                    if line in (b"\r\n", b""):
                        break
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if length:
                    await asyncio.wait_for(reader.readexactly(length), 30)
                latencies.append(time.monotonic() - t0)
                parts = status_line.split()
                statuses[int(parts[1]) if len(parts) > 1 else 0] += 1
            tick += 1
            due = start + tick
            lateness.append(max(0.0, time.monotonic() - due))
            await asyncio.sleep(max(0.0, due - time.monotonic()))
    finally:
        writer.close()


async def _main(args: argparse.Namespace) -> dict[str, object]:
    url = urlsplit(args.url)
    agents = [tuple(a) for a in json.loads(Path(args.agents).read_text())]
    stopped = {agent_id for agent_id, _ in agents[: args.stop]}
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    lateness: list[float] = []
    shares = [agents[i::CONNECTIONS] for i in range(CONNECTIONS)]
    started = time.monotonic()
    await asyncio.gather(
        *(
            _connection(
                url.hostname or "127.0.0.1",
                url.port or 80,
                args.token,
                share,  # type: ignore[arg-type]
                stopped,
                args,
                latencies,
                statuses,
                lateness,
            )
            for share in shares
            if share
        )
    )
    ordered = sorted(latencies)

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))] if ordered else 0.0

    return {
        "requests": len(latencies),
        "seconds": time.monotonic() - started,
        "p50_ms": q(0.5) * 1000,
        "p95_ms": q(0.95) * 1000,
        "p99_ms": q(0.99) * 1000,
        "max_ms": q(1.0) * 1000,
        "statuses": {str(k): v for k, v in statuses.items()},
        "late_rounds": sum(1 for x in lateness if x > 0.5),
        "max_late_s": max(lateness or [0.0]),
        "stopped": sorted(stopped),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--agents", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--stop-at", type=float, default=1e9)
    parser.add_argument("--stop", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result = asyncio.run(_main(args))
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
