"""The lean ASGI route for POST /api/agents/{agent_id}/heartbeat (filled in by the runtime)."""

from __future__ import annotations

from typing import Any


def heartbeat_front(app: Any) -> Any:
    return app
