"""What one app instance shares between its requests: built by ``create_app``, never global."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, cast

from fastapi import Depends, Request

from emp_queue.api.auth import Authenticator
from emp_queue.api.event_hub import EventHub
from emp_queue.api.key_store import ApiKeyStore
from emp_queue.api.metrics import ApiMetrics
from emp_queue.api.services import ServiceCatalog
from emp_queue.api.settings import ApiSettings
from emp_queue.core.machines import MachineRegistry
from emp_queue.core.queue import JobQueue
from emp_queue.storage import AssetStorage
from emp_queue.webhooks.guard import TargetGuard
from emp_queue.webhooks.store import WebhookStore

if TYPE_CHECKING:
    from emp_queue.telemetry.tracing import JobTracing


@dataclass(frozen=True)
class ApiState:
    settings: ApiSettings
    queue: JobQueue
    machines: MachineRegistry
    key_store: ApiKeyStore
    authenticator: Authenticator
    metrics: ApiMetrics
    services: ServiceCatalog
    hub: EventHub
    webhooks: WebhookStore
    webhook_guard: TargetGuard
    storage: AssetStorage
    """Built from ``settings.storage`` at start: a misconfigured provider stops the API then."""
    tracing: JobTracing | None = None
    """OpenTelemetry, when the ``OTEL_*`` variables turn it on (docs/observability.md)."""


def state_of(request: Request) -> ApiState:
    return cast(ApiState, request.app.state.emp)


async def api_state(request: Request) -> ApiState:
    return state_of(request)


State = Annotated[ApiState, Depends(api_state)]
