"""HHMRS settings: contract ranges, refusals naming the field, the settings file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from pas_core import config
from pas_core.config import SettingsError

pytestmark = pytest.mark.django_db

URL = "/api/settings/hhmrs"

# field, low, high, just below, just above (DESIGN section 6)
RANGES = [
    ("heartbeat_interval_s", 1, 120, 0.99, 120.01),
    ("timeout_threshold_s", 2, 300, 1.99, 300.01),
    ("missed_heartbeat_threshold", 1, 10, 0, 11),
    ("max_restarts", 0, 10, -1, 11),
    ("max_llm_retries", 0, 10, -1, 11),
    ("sweep_interval_s", 0.2, 60, 0.19, 60.01),
    # Added with the restart backoff (an issue may add keys; these are its ranges).
    ("restart_backoff_initial_s", 0, 60, -0.01, 60.01),
    ("restart_backoff_factor", 1, 10, 0.99, 10.01),
    ("restart_backoff_max_s", 0, 600, -0.01, 600.01),
    ("restart_backoff_jitter", 0, 1, -0.01, 1.01),
]
BOUNDS = [(f, v) for f, low, high, _, _ in RANGES for v in (low, high)]
OUTSIDE = [(f, v) for f, _, _, below, above in RANGES for v in (below, above)]
DEFAULTS = {
    "heartbeat_interval_s": 30,
    "timeout_threshold_s": 60,
    "missed_heartbeat_threshold": 2,
    "max_restarts": 3,
    "max_llm_retries": 3,
    "enable_auto_restart": True,
    "enable_llm_switching": True,
    "sweep_interval_s": 5,
    "restart_backoff_initial_s": 1,
    "restart_backoff_factor": 2,
    "restart_backoff_max_s": 60,
    "restart_backoff_jitter": 0.2,
}


def post(client: Any, body: Any) -> Any:
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(URL, data, content_type="application/json")


def error_fields(response: Any) -> list[str]:
    return [e["field"] for e in response.json()["errors"]]


def settings_file() -> dict[str, Any]:
    return json.loads(config.settings_path().read_text())


def test_the_defaults_are_the_contract_ones(user_client: Any) -> None:
    assert config.hhmrs_get().as_dict() == DEFAULTS
    response = user_client.get(URL)
    assert response.status_code == 200
    assert response.json() == DEFAULTS


@pytest.mark.parametrize(("field", "value"), BOUNDS)
def test_it_accepts_each_bound(field: str, value: float) -> None:
    assert getattr(config.hhmrs_update({field: value}), field) == value
    assert getattr(config.hhmrs_get(), field) == value


@pytest.mark.parametrize(("field", "value"), OUTSIDE)
def test_it_refuses_values_just_outside_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(SettingsError) as refused:
        config.hhmrs_update({field: value})

    assert list(refused.value.errors) == [field]
    assert getattr(config.hhmrs_get(), field) == DEFAULTS[field]


@pytest.mark.parametrize(("field", "value"), BOUNDS)
def test_the_api_accepts_each_bound(user_client: Any, field: str, value: float) -> None:
    response = post(user_client, {field: value})

    assert response.status_code == 200
    assert response.json()[field] == value
    assert getattr(config.hhmrs_get(), field) == value


@pytest.mark.parametrize(("field", "value"), OUTSIDE)
def test_the_api_answers_400_naming_the_field(user_client: Any, field: str, value: float) -> None:
    response = post(user_client, {field: value})

    assert response.status_code == 400
    assert error_fields(response) == [field]
    assert field in response.json()["detail"]
    assert getattr(config.hhmrs_get(), field) == DEFAULTS[field]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("heartbeat_interval_s", "abc"),
        ("timeout_threshold_s", [60]),
        ("missed_heartbeat_threshold", 1.5),
        ("max_restarts", "three"),
        ("max_llm_retries", {"n": 1}),
        ("sweep_interval_s", True),
        ("enable_auto_restart", "maybe"),
        ("enable_llm_switching", 7),
    ],
)
def test_wrong_types_are_refused_naming_the_field(user_client: Any, field: str, value: Any) -> None:
    with pytest.raises(SettingsError) as refused:
        config.hhmrs_update({field: value})
    assert list(refused.value.errors) == [field]

    response = post(user_client, {field: value})

    assert response.status_code == 422  # The schema refuses the type before config sees it.
    assert error_fields(response) == [field]
    assert config.hhmrs_get().as_dict() == DEFAULTS


def test_an_unknown_key_is_refused(user_client: Any) -> None:
    with pytest.raises(SettingsError) as refused:
        config.hhmrs_update({"max_restart": 5})
    assert refused.value.errors == {"max_restart": "unknown setting"}

    response = post(user_client, {"max_restart": 5})

    assert response.status_code == 422
    assert error_fields(response) == ["max_restart"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("{bad json", 400),  # Not JSON at all.
        ("{'a': 1}", 400),
        ("", 422),  # JSON, but not the object the schema wants.
        ("[1, 2]", 422),
        ('"text"', 422),
        ("null", 422),
    ],
)
def test_a_malformed_body_is_a_client_error(user_client: Any, body: str, status: int) -> None:
    response = post(user_client, body)

    assert response.status_code == status
    assert "detail" in response.json()
    assert config.hhmrs_get().as_dict() == DEFAULTS


def test_a_refused_update_changes_nothing(
    user_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        config.hhmrs_update({"max_restarts": 4})
    file_before = config.settings_path().read_text()

    with pytest.raises(SettingsError) as refused:
        config.hhmrs_update({"max_restarts": 5, "heartbeat_interval_s": 0})
    with django_capture_on_commit_callbacks(execute=True):
        response = post(user_client, {"max_restarts": 6, "sweep_interval_s": 61})

    # The valid half of each update is not applied either.
    assert list(refused.value.errors) == ["heartbeat_interval_s"]
    assert response.status_code == 400
    assert error_fields(response) == ["sweep_interval_s"]
    assert config.hhmrs_get().max_restarts == 4
    assert config.hhmrs_get().heartbeat_interval_s == 30
    assert config.settings_path().read_text() == file_before


def test_every_save_writes_the_file_in_the_seeds_shape(
    user_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        config.hhmrs_update({"max_restarts": 7})

    doc = settings_file()
    assert sorted(doc) == ["hhmrs", "hmi_display", "notifications", "tron_chime"]
    assert doc["hhmrs"] == {**DEFAULTS, "max_restarts": 7}
    assert doc["tron_chime"]["volume"] == 50

    with django_capture_on_commit_callbacks(execute=True):
        response = post(user_client, {"timeout_threshold_s": 90, "enable_llm_switching": False})

    assert response.status_code == 200
    assert settings_file()["hhmrs"] == {
        **DEFAULTS,
        "max_restarts": 7,
        "timeout_threshold_s": 90,
        "enable_llm_switching": False,
    }


def test_the_file_round_trips_through_export_and_import(tmp_path: Path) -> None:
    path = tmp_path / "saved.json"
    config.hhmrs_update({"max_restarts": 2, "sweep_interval_s": 0.5})
    call_command("pas", "settings", "export", str(path))

    config.hhmrs_update({"max_restarts": 9, "sweep_interval_s": 12, "heartbeat_interval_s": 10})
    call_command("pas", "settings", "import", str(path))

    assert config.hhmrs_get().as_dict() == {
        **DEFAULTS,
        "max_restarts": 2,
        "sweep_interval_s": 0.5,
    }
    assert json.loads(path.read_text())["hhmrs"]["sweep_interval_s"] == 0.5


def test_importing_a_garbage_file_fails_with_the_line_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "garbage.json"
    path.write_text('{\n  "hhmrs": {\n    "max_restarts": 4,\n  }\n}\n')

    with pytest.raises(CommandError) as failed:
        call_command("pas", "settings", "import", str(path))

    assert "line 4" in str(failed.value)
    assert config.hhmrs_get().as_dict() == DEFAULTS


def test_importing_an_out_of_range_file_names_the_field_and_changes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"hhmrs": {"max_restarts": 4, "timeout_threshold_s": 1}}))

    with pytest.raises(CommandError) as failed:
        call_command("pas", "settings", "import", str(path))

    assert "timeout_threshold_s" in str(failed.value)
    assert config.hhmrs_get().as_dict() == DEFAULTS


def test_worst_case_attempts_follow_the_limits() -> None:
    hhmrs = config.hhmrs_update({"max_restarts": 2, "max_llm_retries": 4})

    # (max_restarts + 1) x (max_llm_retries + 1)
    assert hhmrs.worst_case_attempts == 15
