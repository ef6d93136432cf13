"""The two ways work is refused: a request (ServiceError) and an attempt (AttemptError).

Both carry what they are about as data, never as text to split: every interface (the
API, the HMI, the heartbeat route, the command line) renders a ServiceError from its
``errors``; supervision routes an AttemptError by its ``kind``.
"""

from __future__ import annotations

from typing import Any

# Error kinds of a failed attempt (DESIGN section 5); ``pas_core.policy`` routes each one.
ERROR_KINDS = (
    "timeout",
    "crash",
    "error",
    "bad_output",
    "auth",
    "model_not_found",
    "rate_limit",
    "budget_exceeded",
    "runaway",  # A busy loop that never yielded: its worker process had to be replaced.
    "acceptance_failed",  # A check of the work (its tests, its lint) found a regression.
    "storage",  # The machine's disk (full, read-only): not the agent's doing.
)


class ServiceError(ValueError):
    """A refused request: ``errors`` maps each field at fault to its reason.

    ``status`` is the HTTP status an interface answers with (400 bad input, 404 an
    unknown id, 409 a conflict with the current state, 422 a refused value, 503 the
    system is not ready). A subclass of ValueError, so plain callers may catch that.
    """

    def __init__(self, field: str, message: str, *, status: int = 400) -> None:
        self.status = status
        self.errors: dict[str, str] = {field: message}
        super().__init__(f"{field}: {message}")

    @property
    def field(self) -> str:
        """Return the first field at fault."""
        return next(iter(self.errors))

    @property
    def message(self) -> str:
        return self.errors[self.field]

    def as_dict(self) -> dict[str, Any]:
        """Return the API's refusal: ``{"detail", "errors": [{"field", "message"}]}``."""
        detail = "; ".join(f"{k}: {v}" for k, v in self.errors.items())
        errors = [{"field": k, "message": v} for k, v in self.errors.items()]
        return {"detail": detail, "errors": errors}


class NotFound(ServiceError):
    """An id that names nothing (404)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message, status=404)


class Conflict(ServiceError):
    """A request the current state does not allow (409)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message, status=409)


class SettingsError(ServiceError):
    """Settings were refused; ``errors`` names every bad field at once."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("settings", "refused", status=400)
        self.errors = dict(errors)
        self.args = ("; ".join(f"{k}: {v}" for k, v in errors.items()),)

    def __str__(self) -> str:
        return str(self.args[0])


class AttemptError(Exception):
    """The attempt failed in a known way; ``kind`` is one of ERROR_KINDS."""

    def __init__(self, kind: str, message: str, *, retry_after_s: float | None = None) -> None:
        if kind not in ERROR_KINDS:
            kind = "error"
        self.kind = kind
        self.message = message
        # A provider's Retry-After (rate_limit): the restart waits at least this long.
        self.retry_after_s = retry_after_s
        super().__init__(f"{kind}: {message}")
