"""HMI forms: parse and type the input; the services and config validate the rest.

Ranges live in one place, ``pas_core.config`` (DESIGN section 6): these forms show them
(help text, ``min``/``max`` attributes) but the settings service decides, and its
``SettingsError`` lands on the field it names.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms

from pas_core import config
from pas_core.models import Fault, Run

SECTION_LABELS = {
    "hhmrs": "HHMRS",
    "tron_chime": "Chimes",
    "notifications": "Notifications",
    "hmi_display": "Display",
}


def _fmt(x: float | None) -> str:
    return "" if x is None else (str(int(x)) if float(x).is_integer() else str(x))


class FaultForm(forms.Form):
    kind = forms.ChoiceField(choices=Fault.Kind.choices)
    count = forms.IntegerField(min_value=1, max_value=100, initial=1)
    model = forms.CharField(max_length=128, required=False, help_text="blank: any model")


class RetryForm(forms.Form):
    model = forms.CharField(max_length=128, required=False)


class RunSubmitForm(forms.Form):
    title = forms.CharField(max_length=200, label="Title")
    goal = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), label="Goal")
    description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), required=False, label="Description"
    )
    repo_root = forms.CharField(
        max_length=500,
        required=False,
        label="Repository",
        help_text="a git checkout to work in (a worktree; yours is never touched)",
    )
    entry_files = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        label="Entry files",
        help_text="one path per line",
    )
    budget_tokens_max = forms.IntegerField(
        min_value=1, max_value=10_000_000, initial=25000, label="Token budget"
    )
    budget_cost_usd_max = forms.FloatField(
        min_value=0, max_value=10_000, initial=2.0, label="Cost budget (USD)"
    )

    def clean_entry_files(self) -> list[str]:
        raw = self.cleaned_data.get("entry_files") or ""
        return [line.strip() for line in raw.replace(",", "\n").splitlines() if line.strip()]


RUN_PREFIX = re.compile(r"[0-9a-f-]{1,36}")
JOB_ID = re.compile(r"jc-([0-9a-f]{8})\b")


def run_prefix(raw: str) -> str:
    """Return the run id prefix a filter names: a run id, its start, or a job id's run.

    Job ids start ``jc-<first 8 of the run id>``, so a job id pasted in finds its run.
    Raises ValidationError for anything else.
    """
    value = raw.strip().lower()
    found = JOB_ID.match(value)
    if found:
        return found.group(1)
    if not RUN_PREFIX.fullmatch(value):
        raise forms.ValidationError(
            "a run id or its first characters (0-9, a-f), or a job id", code="run"
        )
    return value


class CursorForm(forms.Form):
    """Paging by id: ``before`` shows older rows, ``after`` newer ones (newest first)."""

    before = forms.IntegerField(min_value=1, required=False)
    after = forms.IntegerField(min_value=0, required=False)

    def clean_run(self) -> str:
        raw = self.cleaned_data.get("run") or ""
        return run_prefix(raw) if raw.strip() else ""

    def clean_agent(self) -> str:
        return str(self.cleaned_data.get("agent") or "").strip()


class EventFilterForm(CursorForm):
    type = forms.CharField(max_length=64, required=False)
    agent = forms.CharField(max_length=64, required=False)
    run = forms.CharField(max_length=64, required=False)


class CommsFilterForm(CursorForm):
    kind = forms.ChoiceField(
        choices=[
            ("", "any kind"),
            ("CMD", "CMD"),
            ("STATUS", "STATUS"),
            ("HEARTBEAT", "HEARTBEAT"),
            ("RESPONSE", "RESPONSE"),
        ],
        required=False,
    )
    agent = forms.CharField(max_length=64, required=False)
    run = forms.CharField(max_length=64, required=False)


class RunsFilterForm(forms.Form):
    q = forms.CharField(max_length=200, required=False)
    status = forms.ChoiceField(
        choices=[("", "any status"), *[(s, s) for s in Run.Status.values]], required=False
    )
    interventions = forms.ChoiceField(
        choices=[("", "any"), ("1", "with interventions"), ("0", "without")], required=False
    )
    page = forms.IntegerField(min_value=1, max_value=1_000_000, required=False)


class BulkForm(forms.Form):
    """The retry queue's bulk actions: the ticked jobs, what to do, and a model."""

    action = forms.ChoiceField(choices=[("retry", "retry"), ("discard", "discard")])
    selected = forms.MultipleChoiceField(required=False, error_messages={"required": ""})
    model = forms.CharField(max_length=128, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Any id is a valid choice here: the service says which ones are not in the queue.
        ids = self.data.getlist("selected") if hasattr(self.data, "getlist") else []
        self.fields["selected"].choices = [(i, i) for i in ids]  # type: ignore[attr-defined]

    def clean_selected(self) -> list[str]:
        selected = list(self.cleaned_data.get("selected") or [])
        if not selected:
            raise forms.ValidationError("tick at least one job", code="required")
        return selected


class SettingsSectionForm(forms.Form):
    """A form for one section of the settings document; ``section`` names it."""

    section = ""

    def settings_errors(self, errors: dict[str, str]) -> None:
        """Put each ``SettingsError`` reason on its field (``hhmrs.max_restarts`` -> field)."""
        for key, reason in errors.items():
            name = key.split(".", 1)[1] if "." in key else key
            self.add_error(name if name in self.fields else None, reason)


def _number_field(key: str, kind: type, low: float | None, high: float | None) -> forms.Field:
    attrs = {"min": _fmt(low), "max": _fmt(high), "step": "1" if kind is int else "any"}
    help_text = f"{_fmt(low)} to {_fmt(high)}"
    # No min/max validators here: config.hhmrs_validate is the one judge of ranges.
    if kind is int:
        return forms.IntegerField(help_text=help_text, widget=forms.NumberInput(attrs=attrs))
    return forms.FloatField(help_text=help_text, widget=forms.NumberInput(attrs=attrs))


HHMRS_LABELS = {
    "heartbeat_interval_s": "Heartbeat interval (s)",
    "timeout_threshold_s": "Timeout threshold (s)",
    "missed_heartbeat_threshold": "Missed heartbeats before timeout",
    "max_restarts": "Max restarts (by the parent)",
    "max_llm_retries": "Max model switches (by the grandparent)",
    "enable_auto_restart": "Restart timed-out children automatically",
    "enable_llm_switching": "Switch to the next model on escalation",
    "sweep_interval_s": "TRON sweep interval (s)",
    "restart_backoff_initial_s": "Restart backoff: first wait after an error (s)",
    "restart_backoff_factor": "Restart backoff: factor per restart",
    "restart_backoff_max_s": "Restart backoff: longest wait (s)",
    "restart_backoff_jitter": "Restart backoff: jitter (fraction, both ways)",
}


class ProviderForm(forms.Form):
    """Add an OpenAI-compatible provider, or change one (its key stays in the environment)."""

    name = forms.CharField(max_length=32, label="Name (the prefix of its model ids)")
    base_url = forms.CharField(max_length=300, label="Base URL")
    key_env = forms.CharField(
        max_length=64, required=False, label="Environment variable holding its key"
    )
    max_concurrency = forms.IntegerField(label="Calls in flight at once", initial=8)
    structured = forms.ChoiceField(
        label="Structured outputs",
        choices=[
            ("json_schema", "json_schema (constrained to the reply's schema)"),
            ("json_object", "json_object (JSON, schema not enforced)"),
            ("none", "none (no response_format)"),
        ],
        initial="json_object",
    )


class HhmrsForm(SettingsSectionForm):
    section = "hhmrs"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for key, (kind, _default, low, high) in config.HHMRS_FIELDS.items():
            if kind is bool:
                self.fields[key] = forms.BooleanField(required=False)
            else:
                self.fields[key] = _number_field(key, kind, low, high)
            self.fields[key].label = HHMRS_LABELS.get(key, key)


class ChimeForm(SettingsSectionForm):
    section = "tron_chime"

    enabled = forms.BooleanField(required=False, label="Play a chime on interventions")
    sound = forms.ChoiceField(choices=[(s, s) for s in config.CHIME_SOUNDS], label="Sound")
    volume = forms.IntegerField(
        label="Volume",
        help_text="0 to 100",
        widget=forms.NumberInput(attrs={"min": 0, "max": 100}),
    )
    on_timeout = forms.BooleanField(required=False, label="On a timeout")
    on_restart = forms.BooleanField(required=False, label="On a restart")
    on_escalation = forms.BooleanField(required=False, label="On an escalation")
    on_permanent_failure = forms.BooleanField(required=False, label="On a permanent failure")


class NotificationsForm(SettingsSectionForm):
    section = "notifications"

    webhook_url = forms.CharField(
        max_length=500,
        required=False,
        label="Webhook URL",
        help_text="http(s)://…; receives a JSON POST for each permanent failure",
    )
    email = forms.CharField(max_length=254, required=False, label="Email address")
    notify_on_permanent_failure = forms.BooleanField(
        required=False, label="Notify on a permanent failure"
    )


class DisplayForm(SettingsSectionForm):
    section = "hmi_display"

    theme = forms.ChoiceField(choices=[("light", "light"), ("dark", "dark")], label="Theme")
    show_programmers = forms.BooleanField(
        required=False, label="Show programmers", help_text="expanded in the tree"
    )
    banner_auto_clear_s = forms.IntegerField(
        label="Hide the TRON banner after (s)",
        help_text="0 to 3600 (0: never)",
        widget=forms.NumberInput(attrs={"min": 0, "max": 3600}),
    )
    events_page_size = forms.IntegerField(
        label="Rows per page (Events, Comms)",
        help_text="1 to 1000",
        widget=forms.NumberInput(attrs={"min": 1, "max": 1000}),
    )


SETTINGS_FORMS: dict[str, type[SettingsSectionForm]] = {
    "hhmrs": HhmrsForm,
    "tron_chime": ChimeForm,
    "notifications": NotificationsForm,
    "hmi_display": DisplayForm,
}
