"""HMI forms: parse and type the input; the services and config validate the rest.

Ranges live in one place, ``pas_core.config`` (DESIGN section 6): these forms show them
(help text, ``min``/``max`` attributes) but the settings service decides, and its
``SettingsError`` lands on the field it names.
"""

from __future__ import annotations

from typing import Any

from django import forms

from pas_core import config
from pas_core.models import Fault

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
    title = forms.CharField(max_length=200)
    goal = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    repo_root = forms.CharField(max_length=500, required=False)
    entry_files = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        help_text="one path per line",
    )
    budget_tokens_max = forms.IntegerField(min_value=1, max_value=10_000_000, initial=25000)
    budget_cost_usd_max = forms.FloatField(min_value=0, max_value=10_000, initial=2.0)

    def clean_entry_files(self) -> list[str]:
        raw = self.cleaned_data.get("entry_files") or ""
        return [line.strip() for line in raw.replace(",", "\n").splitlines() if line.strip()]


class EventFilterForm(forms.Form):
    type = forms.CharField(max_length=64, required=False)
    agent = forms.CharField(max_length=64, required=False)
    run = forms.CharField(max_length=64, required=False)


class CommsFilterForm(forms.Form):
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
}


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

    enabled = forms.BooleanField(required=False)
    sound = forms.ChoiceField(choices=[(s, s) for s in config.CHIME_SOUNDS])
    volume = forms.IntegerField(
        help_text="0 to 100", widget=forms.NumberInput(attrs={"min": 0, "max": 100})
    )
    on_timeout = forms.BooleanField(required=False)
    on_restart = forms.BooleanField(required=False)
    on_escalation = forms.BooleanField(required=False)
    on_permanent_failure = forms.BooleanField(required=False)


class NotificationsForm(SettingsSectionForm):
    section = "notifications"

    webhook_url = forms.CharField(max_length=500, required=False, help_text="http(s)://…")
    email = forms.CharField(max_length=254, required=False)
    notify_on_permanent_failure = forms.BooleanField(required=False)


class DisplayForm(SettingsSectionForm):
    section = "hmi_display"

    theme = forms.ChoiceField(choices=[("light", "light"), ("dark", "dark")])
    show_programmers = forms.BooleanField(required=False, help_text="expanded in the tree")
    banner_auto_clear_s = forms.IntegerField(
        help_text="0 to 3600 (0: never)",
        widget=forms.NumberInput(attrs={"min": 0, "max": 3600}),
    )
    events_page_size = forms.IntegerField(
        help_text="1 to 1000", widget=forms.NumberInput(attrs={"min": 1, "max": 1000})
    )


SETTINGS_FORMS: dict[str, type[SettingsSectionForm]] = {
    "hhmrs": HhmrsForm,
    "tron_chime": ChimeForm,
    "notifications": NotificationsForm,
    "hmi_display": DisplayForm,
}
