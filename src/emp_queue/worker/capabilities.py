"""What a worker tells the matcher it can do: from its settings, the host and its connector.

Capabilities must be true: models come from the service itself (the connector's
``discover``), hardware from NVML/psutil (or the mock GPUs of ``EMP_GPU_MODE=mock``), and a
worker bound to one GPU advertises that GPU only.
"""

from __future__ import annotations

from collections.abc import Mapping

from emp_queue.connectors.base import Discovery
from emp_queue.machine_models import MachineHardware
from emp_queue.models import (
    CustomerAccess,
    Hardware,
    NodeClasses,
    ServiceModels,
    WorkerCapabilities,
)
from emp_queue.worker.settings import WorkerProcessSettings


def worker_hardware(
    machine: MachineHardware, gpu_index: int | None, discovery: Discovery
) -> Hardware:
    """The hardware one worker may use: its bound GPU, or every GPU of the machine."""
    gpus = machine.gpus
    if gpu_index is not None:
        gpus = [gpu for gpu in machine.gpus if gpu.index == gpu_index]
    memory = max((gpu.memory_gb for gpu in gpus), default=0.0)
    if discovery.gpu_memory_gb is not None:
        memory = discovery.gpu_memory_gb  # what the service itself sees wins
    return Hardware(
        gpu_count=len(gpus),
        gpu_memory_gb=memory,
        gpu_model=gpus[0].name if gpus else None,
        cpu_cores=machine.cpu_cores,
        ram_gb=machine.ram_gb,
    )


def worker_capabilities(
    settings: WorkerProcessSettings, machine: MachineHardware, discovery: Discovery
) -> WorkerCapabilities:
    models = ServiceModels(
        installed=sorted(set(discovery.models.installed)),
        loaded=sorted(set(discovery.models.loaded)),
        fetchable=sorted(set(discovery.models.fetchable)),
        sizes=dict(discovery.models.sizes),
    )
    labels: dict[str, object] = dict(settings.labels)
    labels["connector"] = settings.connector
    if discovery.version:
        labels["version"] = discovery.version
    return WorkerCapabilities(
        services=settings.served,
        hardware=worker_hardware(machine, settings.gpu_index, discovery),
        models={service: models for service in settings.served},
        nodes=NodeClasses.of(discovery.node_classes) if discovery.node_classes else None,
        customer_access=CustomerAccess(
            isolation=settings.isolation,
            allowed_customers=settings.allowed_customers,
            denied_customers=settings.denied_customers,
        ),
        pool=settings.pool,
        labels=labels,
    )


def with_last_used(
    capabilities: WorkerCapabilities, uses: Mapping[tuple[str, str], int]
) -> WorkerCapabilities:
    """``capabilities`` with each service's ``last_used``: when a job needing the model last
    finished here (``uses``: (service, model) → Unix seconds), for the models the service
    still has installed or loaded (a deleted model's last use is no longer news)."""
    models = {}
    for service, held in capabilities.models.items():
        present = {*held.installed, *held.loaded}
        last_used = {m: t for (s, m), t in sorted(uses.items()) if s == service and m in present}
        models[service] = held.model_copy(update={"last_used": last_used or None})
    return capabilities.model_copy(update={"models": models})
