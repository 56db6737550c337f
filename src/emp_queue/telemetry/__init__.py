"""Telemetry: structured logs (structlog); metrics and traces join here as they arrive."""
