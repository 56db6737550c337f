"""Models a worker can fetch before a job: the component manifest's (``EMP_COMPONENTS_MANIFEST``).

A worker with a manifest reports, besides what its service has installed and loaded, the
manifest's models it does not have as ``fetchable``, with their sizes, when they fit its disk
(free space minus ``EMP_COMPONENTS_DISK_RESERVE_GB``) — so a job whose model is installed
nowhere is claimable by a worker that can make room for it, and only by such a worker.
Before running a job, the worker downloads each model the job needs that is not in place,
reporting ``downloading <model>: N %`` as the job's progress message, then runs the job.
"""

from __future__ import annotations

from emp_queue.machine.components.fetch import fetch_model, find_model, fits_on_disk, model_name
from emp_queue.machine.components.manifest import Manifest
from emp_queue.machine.components.settings import ComponentSettings
from emp_queue.models import WorkerCapabilities
from emp_queue.worker.context import JobContext


class ModelFetcher:
    def __init__(self, settings: ComponentSettings, manifest: Manifest) -> None:
        self.settings = settings
        self.manifest = manifest

    def with_fetchable(self, capabilities: WorkerCapabilities) -> WorkerCapabilities:
        """``capabilities`` with the manifest's missing models that fit on disk as fetchable."""
        models = {}
        for service, held in capabilities.models.items():
            missing = [
                spec
                for spec in self.manifest.models
                if model_name(spec) not in held.installed and fits_on_disk(self.settings, spec)
            ]
            sizes = dict(held.sizes)  # the manifest knows the size of every model it lists
            sizes.update({model_name(s): s.size for s in self.manifest.models if s.size})
            fetchable = sorted({*held.fetchable, *(model_name(s) for s in missing)})
            models[service] = held.model_copy(update={"fetchable": fetchable, "sizes": sizes})
        return capabilities.model_copy(update={"models": models})

    async def ensure(self, context: JobContext) -> list[str]:
        """Download the job's models that the manifest has and are not in place; their names."""
        fetched = []
        for name in context.job.requirements.get("models", []):
            spec = find_model(self.manifest, name)
            if spec is None:
                continue

            async def report(fraction: float, name: str = name) -> None:
                await context.report_progress(None, f"downloading {name}: {fraction:.0%}")

            done, _ = await fetch_model(self.settings, spec, report)
            if done:
                fetched.append(name)
        return fetched
