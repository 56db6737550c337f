"""A bare FastAPI endpoint with the same request body as ``POST /api/jobs``: the yardstick
the API's submit rate is compared with (same server, same settings, no queue behind it)."""

from __future__ import annotations

import argparse
import uuid

import uvicorn
from fastapi import FastAPI, status

from emp_queue.models import JobSpec


def create_bare_app() -> FastAPI:
    app = FastAPI()

    @app.post("/api/jobs", status_code=status.HTTP_201_CREATED)
    async def submit(spec: JobSpec) -> dict[str, object]:
        return {"id": spec.id or str(uuid.uuid4()), "status": "pending", **spec.model_dump()}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.api.bare_app")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    config = uvicorn.Config(
        create_bare_app(), host="127.0.0.1", port=args.port, log_config=None, lifespan="on"
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
