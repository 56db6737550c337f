"""Placement's deletes for the services that keep their own models, carried out for real: an
Ollama model through a fake Ollama's ``DELETE /api/delete``, an A1111 checkpoint from a real
models folder followed by ``refresh-checkpoints`` on a fake A1111 — each through the placement
loop on the real broker, and seen by the services' connectors afterwards."""

from __future__ import annotations

from pathlib import Path

from emp_queue import JobQueue, JobSpec
from emp_queue.connectors.a1111 import A1111Config, A1111Connector
from emp_queue.connectors.ollama import OllamaConfig, OllamaConnector
from emp_queue.machine.components import ComponentManager, ComponentSettings
from emp_queue.machine.placement import Action
from emp_queue.machine.placement_deletes import A1111Files, OllamaDelete
from emp_queue.machine.placement_loop import Executors, ManifestDownloads, OllamaPreload
from emp_queue.testing.fakes.a1111 import FakeA1111
from emp_queue.testing.fakes.ollama import FakeOllama

from .placement_helpers import Events, decision, loop, register

LLAMA, EMBED = "llama3.2:1b", "nomic-embed-text:latest"


async def test_an_evicted_ollama_model_is_deleted_and_the_worker_no_longer_lists_it(
    job_queue: JobQueue,
) -> None:
    fake = FakeOllama()
    async with fake.running() as url:
        connector = OllamaConnector(OllamaConfig(url=url))
        await connector.start()
        try:
            found = (await connector.discover()).models
            assert found.installed == [LLAMA, EMBED]
            await register(job_queue, "o-0", "ollama", **found.model_dump(exclude_none=True))
            events = Events()
            placement = loop(job_queue, OllamaDelete(url), events)

            outcome = await placement.carry_out(decision(Action.DELETE, "ollama", EMBED))

            assert outcome.done, outcome.detail
            assert events.outcomes() == [("delete", EMBED, "done")]
            assert events.fields[-1]["freed_bytes"] == 274_302_450
            assert events.fields[-1]["detail"] == (
                f"deleted {EMBED} through DELETE {url}/api/delete: 274302450 bytes freed"
            )
            assert (await connector.discover()).models.installed == [LLAMA]
            again = await OllamaDelete(url).carry_out(
                decision(Action.DELETE, "ollama", "nomic-embed-text"), None
            )
            assert (again.done, again.detail) == (False, f"not installed in the ollama at {url}")
            assert again.fields == {"freed_bytes": 0}
        finally:
            await connector.close()


async def test_an_ollama_model_that_is_loaded_or_awaited_is_kept(
    job_queue: JobQueue, settings: ComponentSettings
) -> None:
    fake = FakeOllama()
    async with fake.running() as url:
        fallback = ManifestDownloads(ComponentManager(settings), settings)
        executor = Executors(fallback, OllamaPreload(url), OllamaDelete(url))
        events = Events()
        placement = loop(job_queue, executor, events)
        await placement.carry_out(decision(Action.LOAD, "ollama", LLAMA))
        # The worker's report lags (it says installed only): Ollama's /api/ps still tells.
        await register(job_queue, "o-0", "ollama", installed=[LLAMA, EMBED])
        delete = decision(Action.DELETE, "ollama", LLAMA)

        kept = await placement.carry_out(delete)

        assert kept.detail == f"kept: the ollama at {url} has it loaded (GET /api/ps)"
        await register(job_queue, "o-0", "ollama", installed=[LLAMA, EMBED], loaded=[LLAMA])
        assert (await placement.carry_out(delete)).detail == "kept: worker o-0 has it loaded"
        await job_queue.submit(JobSpec(service_required="ollama", requirements={"models": [EMBED]}))
        waited = await placement.carry_out(decision(Action.DELETE, "ollama", EMBED))
        assert waited.detail == "kept: 1 job(s) wait for it now"
        assert {m.name for m in fake.models.values()} == {LLAMA, EMBED}
        assert [e[2] for e in events.outcomes()] == ["done", "not_done", "not_done", "not_done"]


def checkpoints(folder: Path) -> tuple[Path, Path]:
    (folder / "SDXL").mkdir(parents=True)
    first = folder / "a.safetensors"
    first.write_bytes(b"a" * 1000)
    second = folder / "SDXL" / "b.safetensors"
    second.write_bytes(b"b" * 3000)
    return first, second


async def test_an_evicted_a1111_checkpoint_is_deleted_and_a1111_lists_it_no_more(
    job_queue: JobQueue, tmp_path: Path
) -> None:
    selected, other = checkpoints(tmp_path)
    fake = FakeA1111(models_dir=tmp_path)
    async with fake.running() as url:
        connector = A1111Connector(A1111Config(url=url))
        await connector.start()
        try:
            found = (await connector.discover()).models
            assert (found.installed, found.loaded) == (
                ["a.safetensors", "SDXL/b.safetensors"],
                ["a.safetensors"],
            )
            await register(job_queue, "a-0", "a1111", installed=found.installed)
            events = Events()
            placement = loop(job_queue, A1111Files(url, tmp_path), events)

            done = await placement.carry_out(decision(Action.DELETE, "a1111", "SDXL/b"))
            refused = await placement.carry_out(decision(Action.DELETE, "a1111", "a.safetensors"))

            assert done.detail == "deleted SDXL/b.safetensors: 3000 bytes freed"
            assert done.fields == {"freed_bytes": 3000}
            assert not other.exists()
            assert fake.refreshes == 1
            assert (await connector.discover()).models.installed == ["a.safetensors"]
            assert refused.detail.startswith("refused: it is a1111's selected checkpoint")
            assert selected.exists()
            assert events.outcomes() == [
                ("delete", "SDXL/b", "done"),
                ("delete", "a.safetensors", "not_done"),
            ]
        finally:
            await connector.close()


async def test_an_a1111_delete_refuses_links_out_and_needs_the_models_folder(
    tmp_path: Path,
) -> None:
    models, outside = tmp_path / "models", tmp_path / "outside"
    checkpoints(models)
    outside.mkdir()
    (outside / "c.safetensors").write_bytes(b"c")
    (models / "c.safetensors").symlink_to(outside / "c.safetensors")
    fake = FakeA1111(models_dir=models)
    async with fake.running() as url:
        linked = await A1111Files(url, models).carry_out(
            decision(Action.DELETE, "a1111", "c.safetensors"), None
        )
        unknown = await A1111Files(url, models).carry_out(
            decision(Action.DELETE, "a1111", "zz.safetensors"), None
        )
        unset = await A1111Files(url, None).carry_out(
            decision(Action.DELETE, "a1111", "SDXL/b.safetensors"), None
        )

    assert linked.detail.startswith("refused: ")
    assert "outside the model folders" in linked.detail
    assert (outside / "c.safetensors").exists()
    assert unknown.detail == "not a checkpoint of this a1111 (GET /sdapi/v1/sd-models)"
    assert unset.detail.startswith("EMP_A1111_MODELS_DIR is not set")
    assert fake.refreshes == 0
    assert (models / "SDXL" / "b.safetensors").exists()
