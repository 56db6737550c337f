"""``emp up``: the whole system on one machine, in one process tree.

The embedded Valkey (unless ``EMP_REDIS_URL`` names a server), the API with the monitor,
and a local machine agent whose services are the protocol fakes (ComfyUI, Ollama, OpenAI) on
mock GPUs, with real ``emp worker`` processes in front of them. Stopping (Ctrl-C, SIGTERM)
drains the machine, stops the API, then the broker: nothing is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.asyncio import Redis

from emp_queue.api.app import create_app
from emp_queue.api.key_store import ApiKeyStore, Role
from emp_queue.api.serving import serve_in_process
from emp_queue.api.settings import ApiSettings
from emp_queue.core.broker import connect
from emp_queue.core.keys import Keys
from emp_queue.core.settings import CoreSettings
from emp_queue.hardware import GpuMode, HardwareSettings
from emp_queue.machine.agent import MachineAgent
from emp_queue.machine.mapping import load_mapping
from emp_queue.machine.plan import parse_workers
from emp_queue.machine.settings import MachineSettings, ServicesMode
from emp_queue.telemetry.tracing import process_tracing


class LocalStackSettings(BaseSettings):
    """``EMP_UP_*``: what the local machine runs."""

    model_config = SettingsConfigDict(env_prefix="EMP_UP_", extra="ignore")

    workers: str = Field(
        default="simulation:2,comfyui:auto,ollama:1,openai:1",
        description="The local machine's WORKERS (its services are the protocol fakes).",
    )
    mock_gpus: int = Field(default=2, ge=0, le=16, description="Pretend GPUs of the machine.")
    machine_id: str = Field(default="local", description="The local machine's id.")
    port_offset: int = Field(
        default=0, ge=0, le=40_000, description="Added to every fake service's port."
    )
    health_port: int = Field(default=0, ge=0, le=65535, description="0: any free port.")


@dataclass(frozen=True)
class StackInfo:
    api_url: str
    monitor_url: str
    admin_key: str
    redis_url: str
    services: set[str]
    startup_ms: int | None


async def admin_key(store: ApiKeyStore, saved: Path) -> str:
    """The local stack's admin key: the saved one while it is valid, else a new one.

    Saved (mode 0600) under the data directory so every ``emp up`` can print it; revoke it
    with ``emp keys revoke`` and the next start issues another.
    """
    secret = await asyncio.to_thread(_read_saved, saved)
    if secret and await store.is_valid(secret):
        return secret
    issued = await store.create(Role.ADMIN, label="emp up")
    await asyncio.to_thread(_save, saved, issued.secret)
    return issued.secret


def _read_saved(saved: Path) -> str | None:
    return saved.read_text().strip() if saved.exists() else None


def _save(saved: Path, secret: str) -> None:
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.touch(mode=0o600)
    saved.chmod(0o600)
    saved.write_text(secret + "\n")


def served_services(workers: str) -> set[str]:
    """The services a WORKERS spec serves (the API accepts them before the workers are up)."""
    mapping = load_mapping(None)
    return {
        service
        for worker_type in parse_workers(workers, mapping)
        for service in mapping.worker_types[worker_type.worker_type].services
    }


class LocalStack:
    def __init__(
        self, core: CoreSettings, api: ApiSettings, up: LocalStackSettings, redis_url: str
    ) -> None:
        self.core = core
        self.up = up
        self.redis_url = redis_url
        self.services = served_services(up.workers)
        self.api = api.model_copy(update={"services": sorted(set(api.services) | self.services)})

    def machine_settings(self) -> MachineSettings:
        return MachineSettings(
            machine_id=self.up.machine_id,
            workers=self.up.workers,
            services=ServicesMode.FAKE,
            health_port=self.up.health_port,
            log_dir=self.core.data_dir / "logs",
            drain_grace_s=5.0,
        )

    def worker_environ(self) -> dict[str, str]:
        return {
            **os.environ,
            "EMP_GPU_MODE": GpuMode.MOCK.value,
            "EMP_MOCK_GPUS": str(self.up.mock_gpus),
            "EMP_NAMESPACE": self.core.namespace,
            "EMP_STORAGE_LOCAL_DIR": str(self.api.storage.local_dir),
            "EMP_STORAGE_PUBLIC_URL": f"http://{self.api.host}:{self.api.port}/assets",
        }

    async def run(
        self, stop: asyncio.Event, on_ready: Callable[[StackInfo], Awaitable[None]]
    ) -> None:
        redis: Redis = connect(self.redis_url, namespace=self.core.namespace)
        exits = contextlib.ExitStack()
        try:
            secret = await admin_key(
                ApiKeyStore(redis, Keys(self.core.namespace)), self.core.data_dir / "admin-key"
            )
            # The workers are processes of their own and trace from the same OTEL_* variables.
            tracing = exits.enter_context(process_tracing("emp-api"))
            app = create_app(self.api, self.core, redis, tracing=tracing)
            async with serve_in_process(
                app, self.api.host, self.api.port, port_setting="EMP_API_PORT"
            ) as api_url:
                agent = MachineAgent(
                    self.machine_settings(),
                    redis=redis,
                    redis_url=self.redis_url,
                    core=self.core,
                    hardware_settings=HardwareSettings(
                        gpu_mode=GpuMode.MOCK, mock_gpus=self.up.mock_gpus
                    ),
                    environ=self.worker_environ(),
                    mapping=load_mapping(None).shifted(self.up.port_offset),
                )
                running = asyncio.create_task(agent.run(stop), name="local-machine")
                ready = asyncio.create_task(agent.ready.wait(), name="local-machine-ready")
                await asyncio.wait({running, ready}, return_when=asyncio.FIRST_COMPLETED)
                if ready.done():
                    info = StackInfo(
                        api_url=api_url,
                        monitor_url=f"{api_url}/monitor",
                        admin_key=secret,
                        redis_url=self.redis_url,
                        services=self.services,
                        startup_ms=agent.snapshot().startup_ms,
                    )
                    await on_ready(info)
                else:
                    ready.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
        finally:
            exits.close()
            await redis.aclose()
