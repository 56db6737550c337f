"""Placement's DOWNLOAD for the ``ollama`` service: Ollama pulls the model into its own store.

``POST /api/pull {"model": <name>, "stream": true}`` answers 200 at once and streams NDJSON
status lines: ``{"status": "pulling manifest"}``, then per layer ``{"status": "pulling <digest
start>", "digest", "total", "completed"}`` (``completed`` starts at what an earlier,
interrupted pull left, or at ``total`` for a layer already held), ``verifying sha256 digest``,
``writing manifest``, ``success``. A failure, such as a name the registry does not have,
arrives as an ``{"error": ...}`` line (``pull model manifest: file does not exist``). The
lines are read by the Ollama connector's :class:`~emp_queue.connectors.ollama_stream.PullProgress`
(the worker's own pull of a missing model); :class:`PullShare` turns them into placement's
progress and the bytes this pull fetched.

The plan decided the download fits the disk budget (placement.plan_placement); the executor
only carries it out. After ``success`` the model is in ``GET /api/tags``, so the Ollama
worker lists it as installed at its next capabilities refresh.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import httpx

from emp_queue.connectors.ollama_stream import PullProgress, error_text, ndjson
from emp_queue.errors import JobFailedError
from emp_queue.http_tls import tls_context
from emp_queue.machine.placement import Action, Outcome, PlacementDecision

__all__ = ["BEFORE_SUCCESS", "OllamaPull", "PullShare"]

Progress = Callable[[float], Coroutine[Any, Any, None]]

BEFORE_SUCCESS = 0.99
"""The most a pull is reported done before Ollama says ``success`` (verifying and writing the
manifest come after the last byte)."""
STEP = 0.1
"""Progress events are sent every tenth, like the manifest downloads'."""


class PullShare:
    """Placement's view of one pull: a fraction that only grows and reaches 1 only with
    ``success``, and the bytes this pull fetched.

    Ollama announces layers one by one, so the sum of the totals seen so far grows during a
    pull; the fraction's denominator is the larger of that sum and the model's size as the
    plan knew it (``expected_bytes``), and a fraction is never reported below an earlier one.
    Bytes fetched are each layer's last ``completed`` less its first (what an earlier pull
    left, or a layer shared with a model already held, is not fetched again)."""

    def __init__(self, pull: PullProgress, expected_bytes: int) -> None:
        self.pull = pull
        self.expected_bytes = max(0, expected_bytes)
        self.first: dict[str, int] = {}
        self.reported = 0.0

    def add(self, line: dict[str, Any]) -> bool:
        """Take one line (PullProgress raises for an error line); ``True`` on ``success``."""
        done = self.pull.add(line)
        for digest, (completed, _) in self.pull.layers.items():
            self.first.setdefault(digest, completed)
        return done

    @property
    def fraction(self) -> float:
        if self.pull.succeeded:
            return 1.0
        layers = self.pull.layers.values()
        total = max(self.expected_bytes, sum(t for _, t in layers))
        share = sum(c for c, _ in layers) / total if total else 0.0
        return min(BEFORE_SUCCESS, share)

    @property
    def fetched_bytes(self) -> int:
        return sum(c - self.first.get(d, c) for d, (c, _) in self.pull.layers.items())

    def due(self) -> float | None:
        """The fraction to report now: a step past the last one reported, or 1 on success;
        else None. What is reported never goes down."""
        fraction = self.fraction
        if (fraction >= 1.0 > self.reported) or fraction >= self.reported + STEP:
            self.reported = fraction
            return fraction
        return None


class OllamaPull:
    """Downloads models of the ``ollama`` service with ``POST /api/pull``."""

    service = "ollama"

    def __init__(self, url: str, *, read_timeout_s: float = 600.0) -> None:
        self.url = url.rstrip("/")
        self.read_timeout_s = read_timeout_s

    def takes(self, decision: PlacementDecision) -> bool:
        return decision.service == self.service and decision.action is Action.DOWNLOAD

    async def carry_out(self, decision: PlacementDecision, progress: Progress) -> Outcome:
        share = PullShare(PullProgress(decision.model), decision.size_bytes)
        async with (
            httpx.AsyncClient(
                base_url=self.url,
                timeout=httpx.Timeout(self.read_timeout_s, connect=10.0),
                trust_env=False,
                verify=tls_context(trust_env=False),
            ) as client,
            client.stream(
                "POST", "/api/pull", json={"model": decision.model, "stream": True}
            ) as response,
        ):
            if not response.is_success:
                await response.aread()
                return _not_done(
                    share, f"ollama answered {response.status_code}: {error_text(response)}"
                )
            try:
                async for line in ndjson(response, self.service):
                    done = share.add(line)
                    if (fraction := share.due()) is not None:
                        await progress(fraction)
                    if done:
                        break
            except JobFailedError as failed:
                # PullProgress's words: "pulling '<model>' failed: <Ollama's error>".
                return _not_done(share, str(failed))
        if not share.pull.succeeded:
            return _not_done(
                share, f"ollama's pull stream ended before 'success' (last: {share.pull.status})"
            )
        fetched = share.fetched_bytes
        return Outcome(
            True,
            f"pulled {decision.model} through POST {self.url}/api/pull: {fetched} bytes fetched",
            {"downloaded_bytes": fetched},
        )


def _not_done(share: PullShare, detail: str) -> Outcome:
    return Outcome(False, detail, {"downloaded_bytes": share.fetched_bytes})
