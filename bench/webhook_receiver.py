"""A bare webhook receiver for the benchmark: answers 204 and counts requests and distinct
webhook-ids (``GET /count``). No framework, so the receiver is not what is measured.

    python -m bench.webhook_receiver PORT
"""

from __future__ import annotations

import json
import sys
from typing import Any

import uvicorn

requests = 0
ids: set[bytes] = set()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global requests
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["method"] == "GET":
        body = json.dumps({"requests": requests, "distinct": len(ids)}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    requests += 1
    ids.update(value for name, value in scope["headers"] if name == b"webhook-id")
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
