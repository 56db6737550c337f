"""Tracing is off unless the standard OTEL_* variables ask for it, and says so when misnamed."""

from __future__ import annotations

import pytest

from emp_queue.errors import ConfigurationError
from emp_queue.telemetry.tracing import TracingSettings, start_tracing


def test_tracing_is_off_unless_the_otel_variables_ask(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    assert TracingSettings().exporter is None
    assert start_tracing(TracingSettings(), "emp-api") is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert TracingSettings().exporter == "otlp"
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert TracingSettings().exporter is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert TracingSettings().exporter == "console"
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert TracingSettings().exporter is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "jaeger")
    with pytest.raises(ConfigurationError, match="OTEL_TRACES_EXPORTER='jaeger' is not supported"):
        TracingSettings()
