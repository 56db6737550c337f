"""A settings class refusing the environment is told in the variables' names, secrets unshown."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from emp_queue.api.settings import ApiSettings
from emp_queue.connectors.comfyui import ComfyUIConfig
from emp_queue.core.settings import CoreSettings
from emp_queue.errors import ConfigurationError
from emp_queue.models import JobSpec
from emp_queue.settings_env import describe_invalid_settings, invalid_settings


def refusal(settings: type, monkeypatch: pytest.MonkeyPatch, **env: str) -> ValidationError:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as raised:
        settings()
    return raised.value


def test_each_invalid_variable_is_named_with_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    error = refusal(ApiSettings, monkeypatch, EMP_API_PORT="abc", EMP_API_KEY_CACHE_S="-")

    line = describe_invalid_settings(error)

    assert line is not None
    assert line.startswith("invalid settings: ")
    assert "EMP_API_PORT='abc': Input should be a valid integer" in line
    assert "EMP_API_KEY_CACHE_S='-': Input should be a valid number" in line
    assert "\n" not in line


def test_a_long_value_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    error = refusal(CoreSettings, monkeypatch, EMP_LEASE_S="9" * 500 + "x")
    line = describe_invalid_settings(error)
    assert line is not None
    assert "EMP_LEASE_S='99999" in line
    assert "..." in line
    assert len(line) < 200


def test_a_rule_across_variables_shows_no_value_not_even_a_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    error = refusal(ComfyUIConfig, monkeypatch, EMP_COMFYUI_PASSWORD="hunter2-secret")
    line = describe_invalid_settings(error)
    assert line is not None
    assert "set both EMP_COMFYUI_USERNAME and EMP_COMFYUI_PASSWORD, or neither" in line
    assert "hunter2-secret" not in line


def test_other_validation_errors_are_not_settings() -> None:
    with pytest.raises(ValidationError) as raised:
        JobSpec(service_required="")
    assert describe_invalid_settings(raised.value) is None


def test_the_projects_error_says_what_the_settings_were_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    error = invalid_settings(refusal(CoreSettings, monkeypatch, EMP_LEASE_S="0"), "of the machine")
    assert isinstance(error, ConfigurationError)
    assert str(error).startswith("invalid settings of the machine: EMP_LEASE_S='0': ")
