"""Tracing is off unless the standard OTEL_* variables ask for it (and says so when misnamed);
on, log lines carry the current span's ids."""

from __future__ import annotations

import json

import pytest
import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from emp_queue.errors import ConfigurationError
from emp_queue.telemetry.logging import configure_logging
from emp_queue.telemetry.tracing import (
    TracingSettings,
    add_trace_ids_to_logs,
    start_tracing,
)


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


def test_with_tracing_on_a_log_line_inside_a_span_carries_its_ids(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", json=True)
    exporter = InMemorySpanExporter()
    tracing = start_tracing(TracingSettings(), "emp-test", exporter=exporter)
    assert tracing is not None
    add_trace_ids_to_logs()
    log = structlog.get_logger("test")
    try:
        with tracing.span("job.upload", {}) as span:
            log.info("asset_stored")
        log.info("outside_any_span")
    finally:
        tracing.close()
        configure_logging("INFO", json=True)  # the processor goes with the next configuration

    inside, outside = (json.loads(line) for line in capsys.readouterr().err.splitlines()[-2:])
    context = span.get_span_context()
    assert inside["event"] == "asset_stored"
    assert inside["trace_id"] == f"{context.trace_id:032x}"
    assert inside["span_id"] == f"{context.span_id:016x}"
    assert "trace_id" not in outside
    [exported] = exporter.get_finished_spans()
    assert exported.resource.attributes["service.name"] == "emp-test"
