"""Placement's Ollama downloads carried out for real: ``POST /api/pull`` on the fake Ollama
(which streams Ollama's status lines and error line), through the placement loop on the real
broker, and the model seen installed by a running Ollama worker afterwards."""

from __future__ import annotations

from emp_queue import JobQueue, JobSpec
from emp_queue.connectors.ollama import OllamaConfig, OllamaConnector
from emp_queue.machine.components import ComponentManager, ComponentSettings
from emp_queue.machine.placement import Action, PlacementDecision
from emp_queue.machine.placement_loop import Executors, ManifestDownloads, OllamaPreload
from emp_queue.machine.placement_pull import OllamaPull
from emp_queue.storage import AssetStorage
from emp_queue.testing.fakes.ollama import FakeOllama

from ..test_service_health import WORKER, until, worker_process
from .placement_helpers import Events, loop, register

QWEN, QWEN_BYTES = "qwen2.5:0.5b", 397_821_319
"""The fake registry's model (fakes/ollama_protocol.py): not installed, pullable."""


def executors(url: str, settings: ComponentSettings) -> Executors:
    """As `emp machine` wires them for Ollama (cli/machine_commands.py)."""
    fallback = ManifestDownloads(ComponentManager(settings), settings)
    return Executors(fallback, OllamaPull(url), OllamaPreload(url))


async def installed_by_worker(queue: JobQueue) -> list[str]:
    for info in await queue.workers():
        if info.worker_id == WORKER:
            return list(info.capabilities.models["ollama"].installed)
    return []


async def test_a_model_in_demand_is_pulled_with_progress_loaded_and_then_reported_installed(
    job_queue: JobQueue, asset_storage: AssetStorage, settings: ComponentSettings
) -> None:
    fake = FakeOllama(pull_delay_s=0.005)
    async with fake.running() as url:
        connector = OllamaConnector(OllamaConfig(url=url))
        async with worker_process(
            job_queue, asset_storage, url, connector, capabilities_refresh_s=0.2, machine_id="here"
        ):
            assert QWEN not in await installed_by_worker(job_queue)
            # What the plan needs to download a model: a report of it as fetchable, with its
            # size, from this machine (a worker with a manifest reports it that way).
            await register(
                job_queue, "catalog", "ollama", fetchable=[QWEN], sizes={QWEN: QWEN_BYTES}
            )
            await job_queue.submit(
                JobSpec(service_required="ollama", requirements={"models": [QWEN]})
            )
            events = Events()
            placement = loop(job_queue, executors(url, settings), events)

            decisions = await placement.step()

            assert [(d.action, d.model) for d in decisions] == [
                (Action.DOWNLOAD, QWEN),
                (Action.LOAD, QWEN),
            ]
            statuses = [(e["action"], e["status"]) for e in events.fields]
            download = [e for e in events.fields if e["action"] == "download"]
            fractions = [e["progress"] for e in download if e["status"] == "progress"]
            assert statuses[0] == ("download", "started")
            assert statuses[-3:] == [("download", "done"), ("load", "started"), ("load", "done")]
            assert set(statuses[1:-3]) == {("download", "progress")}
            assert len(fractions) >= 3
            assert fractions == sorted(fractions)
            assert fractions[-1] == 1.0
            assert all(f < 1.0 for f in fractions[:-1])
            assert download[-1]["downloaded_bytes"] == QWEN_BYTES
            assert download[-1]["detail"] == (
                f"pulled {QWEN} through POST {url}/api/pull: {QWEN_BYTES} bytes fetched"
            )
            assert QWEN in fake.models
            assert [m["name"] for m in fake.running_models()] == [QWEN]

            async def listed() -> bool:
                return QWEN in await installed_by_worker(job_queue)

            await until(listed)  # the worker's next capabilities refresh


async def test_a_model_the_registry_lacks_is_not_done_in_ollamas_words_and_its_load_skipped(
    job_queue: JobQueue, settings: ComponentSettings
) -> None:
    fake = FakeOllama()
    missing = "no-such-model:latest"
    async with fake.running() as url:
        await register(job_queue, "catalog", "ollama", fetchable=[missing], sizes={missing: 10})
        await job_queue.submit(
            JobSpec(service_required="ollama", requirements={"models": [missing]})
        )
        events = Events()
        placement = loop(job_queue, executors(url, settings), events)

        await placement.step()

        assert events.outcomes() == [
            ("download", missing, "not_done"),
            ("load", missing, "not_done"),
        ]
        pulled, skipped = [e for e in events.fields if e["status"] == "not_done"]
        assert pulled["detail"] == (
            f"pulling '{missing}' failed: pull model manifest: file does not exist "
            "(no such model in the registry)"
        )
        assert pulled["downloaded_bytes"] == 0
        assert skipped["detail"] == f"skipped: the download of {missing} was not done"
        assert not [e for e in events.fields if e["status"] == "progress"]
        assert missing not in fake.models


async def test_an_interrupted_pull_counts_only_the_bytes_this_pull_fetched(
    settings: ComponentSettings,
) -> None:
    fake = FakeOllama()
    fake.pulled_bytes[f"sha256:{fake.registry[QWEN].digest}"] = (
        100_000_000  # left by an earlier pull
    )
    async with fake.running() as url:
        reported: list[float] = []

        async def progress(fraction: float) -> None:
            reported.append(fraction)

        wanted = PlacementDecision(Action.DOWNLOAD, "ollama", QWEN, QWEN_BYTES, "test")
        outcome = await OllamaPull(url).carry_out(wanted, progress)

    assert outcome.done, outcome.detail
    assert outcome.fields == {"downloaded_bytes": QWEN_BYTES - 100_000_000}
    assert reported[0] >= 100_000_000 / QWEN_BYTES  # what was there counts as progress
    assert reported[-1] == 1.0


async def test_a_pull_ollama_refuses_outright_is_not_done_with_its_error() -> None:
    fake = FakeOllama()
    fake.fail_next_requests(500, "write /root/.ollama/models/blobs: no space left on device")
    async with fake.running() as url:
        wanted = PlacementDecision(Action.DOWNLOAD, "ollama", QWEN, QWEN_BYTES, "test")

        async def progress(fraction: float) -> None:
            raise AssertionError("no progress for a refused pull")

        outcome = await OllamaPull(url).carry_out(wanted, progress)

    assert (outcome.done, outcome.detail) == (
        False,
        "ollama answered 500: write /root/.ollama/models/blobs: no space left on device",
    )
    assert QWEN not in fake.models
