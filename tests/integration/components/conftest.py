"""Fixtures for the component manager: a local git origin and a local model file server."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from emp_queue.machine.components import ComponentSettings
from emp_queue.testing.fakes.server import serve_in_process

SERVER_CHUNK_BYTES = 64 * 1024


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=30
    )
    return done.stdout.strip()


@dataclass(frozen=True)
class NodeOrigin:
    """A node's origin repository: main (with a tag at its first commit), a feature branch,
    a submodule, and a requirements.txt naming a wheel committed beside it."""

    path: Path
    first: str
    main: str
    feature: str


@pytest.fixture
def git_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An isolated git identity and config. Submodules from local paths use the file
    transport, which git disallows by default since 2.38; the local origin needs it."""
    config = tmp_path / "gitconfig"
    config.write_text("")
    for key, value in {
        "GIT_CONFIG_GLOBAL": str(config),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "protocol.file.allow",
        "GIT_CONFIG_VALUE_0": "always",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }.items():
        monkeypatch.setenv(key, value)


def write_wheel(path: Path, package: str) -> None:
    """A minimal pure-Python wheel, so pip installs it offline in about a second."""
    dist_info = f"{package}-0.1.dist-info"
    files = {
        f"{package}/__init__.py": "VALUE = 1\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + f"{dist_info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
        wheel.writestr(f"{dist_info}/RECORD", record)


@pytest.fixture
def node_origin(tmp_path: Path, git_env: None) -> NodeOrigin:
    sub = tmp_path / "origin-sub"
    sub.mkdir()
    git(sub, "init", "--quiet", "-b", "main")
    (sub / "weights.txt").write_text("submodule content\n")
    git(sub, "add", ".")
    git(sub, "commit", "--quiet", "-m", "sub")

    repo = tmp_path / "origin-node"
    repo.mkdir()
    git(repo, "init", "--quiet", "-b", "main")
    (repo / "node.py").write_text("VERSION = 1\n")
    write_wheel(repo / "tinynodepkg-0.1-py3-none-any.whl", "tinynodepkg")
    (repo / "requirements.txt").write_text("./tinynodepkg-0.1-py3-none-any.whl\n")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "first")
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "tag", "v1.0")
    git(repo, "submodule", "--quiet", "add", str(sub), "vendor/sub")
    (repo / "node.py").write_text("VERSION = 2\n")
    git(repo, "commit", "--quiet", "-am", "second")
    main = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "--quiet", "-b", "feature")
    (repo / "node.py").write_text("VERSION = 3\n")
    git(repo, "commit", "--quiet", "-am", "feature")
    feature = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "--quiet", "main")
    return NodeOrigin(repo, first, main, feature)


@pytest.fixture
def git_log(tmp_path: Path) -> Path:
    """Where the recording git wrapper (see ``recording_git``) appends each command line."""
    return tmp_path / "git-calls.log"


@pytest.fixture
def recording_git(tmp_path: Path, git_log: Path) -> str:
    """A git that appends its arguments to ``git_log`` and runs the real git."""
    script = tmp_path / "bin" / "git"
    script.parent.mkdir()
    script.write_text(f'#!/bin/sh\necho "$*" >> {git_log}\nexec git "$@"\n')
    script.chmod(0o755)
    return str(script)


@pytest.fixture
def settings(tmp_path: Path) -> ComponentSettings:
    return ComponentSettings(
        manifest=None,
        nodes_dir=tmp_path / "comfyui" / "custom_nodes",
        models_dir=tmp_path / "comfyui" / "models",
        cache_dir=tmp_path / "cache",
        disk_reserve_gb=0,
        download_retry_delay_s=0,
        http_timeout_s=10,
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class ModelServer:
    """Serves ``files`` at ``/files/{name}`` with Range support, and records what it saw.

    ``cut_after[name] = n`` makes the next response for ``name`` stop after n bytes by
    dropping the connection (as a preempted proxy or a flaky network does).
    """

    files: dict[str, bytes] = field(default_factory=dict)
    cut_after: dict[str, int] = field(default_factory=dict)
    chunk_delay_s: float = 0.0
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    active: int = 0
    max_active: int = 0
    url: str = ""

    def file_url(self, name: str) -> str:
        return f"{self.url}/files/{name}"

    def app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

        @app.get("/files/{name}")
        async def serve(name: str, request: Request) -> Response:
            range_header = request.headers.get("range")
            self.requests.append((name, range_header))
            if name not in self.files:
                return Response(status_code=404)
            data = self.files[name]
            start = 0
            headers = {"Accept-Ranges": "bytes"}
            status = 200
            if range_header is not None:
                start = int(range_header.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    return Response(status_code=416, headers={"Content-Range": f"*/{len(data)}"})
                status = 206
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            headers["Content-Length"] = str(len(data) - start)
            return StreamingResponse(
                self._body(data[start:], self.cut_after.pop(name, None)),
                status_code=status,
                headers=headers,
                media_type="application/octet-stream",
            )

        @app.get("/manifest/{name}")
        async def manifest(name: str) -> Response:
            return Response(self.files[name], media_type="application/json")

        return app

    async def _body(self, data: bytes, cut: int | None) -> AsyncIterator[bytes]:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            for offset in range(0, len(data), SERVER_CHUNK_BYTES):
                if cut is not None and offset >= cut:
                    raise ConnectionAbortedError("the test server drops the connection")
                await asyncio.sleep(self.chunk_delay_s)
                yield data[offset : offset + SERVER_CHUNK_BYTES]
        finally:
            self.active -= 1


@pytest_asyncio.fixture
async def model_server() -> AsyncIterator[ModelServer]:
    server = ModelServer()
    async with serve_in_process(server.app()) as url:
        server.url = url
        yield server


@dataclass
class ProgressLog:
    calls: list[tuple[str, int, int | None, str]] = field(default_factory=list)

    def __call__(self, component: str, done: int, total: int | None, message: str) -> None:
        self.calls.append((component, done, total, message))

    def last(self, component: str) -> tuple[str, int, int | None, str]:
        return [call for call in self.calls if call[0] == component][-1]


def model_entry(server: ModelServer, name: str, data: bytes, **extra: Any) -> dict[str, Any]:
    server.files[name] = data
    return {
        "name": name,
        "url": server.file_url(name),
        "sha256": sha256(data),
        "size": len(data),
        "dest": f"checkpoints/{name}.safetensors",
        **extra,
    }


@pytest.fixture
def progress() -> ProgressLog:
    return ProgressLog()
