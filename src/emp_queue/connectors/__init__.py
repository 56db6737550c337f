"""Connectors: one per external AI service, loaded by the worker. See ``docs/connectors.md``."""

from emp_queue.connectors.base import (
    Connector,
    ConnectorConfig,
    Discovery,
    RunningJob,
    ServiceUnavailableError,
    job_fault,
    service_fault,
)
from emp_queue.connectors.registry import known_connectors, load_connector

__all__ = [
    "Connector",
    "ConnectorConfig",
    "Discovery",
    "RunningJob",
    "ServiceUnavailableError",
    "job_fault",
    "known_connectors",
    "load_connector",
    "service_fault",
]
