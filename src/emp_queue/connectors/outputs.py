"""Keeping job results small: a value too big for Redis goes to the asset store instead.

A result is stored in Redis and sent in every ``complete_job`` event, so text and vectors past
a few tens of kilobytes are uploaded and the result carries the asset record under
``<key>_asset`` in place of ``<key>``.
"""

from __future__ import annotations

import json
from typing import Any

from emp_queue.connectors.base import RunningJob

INLINE_MAX_BYTES = 64 * 1024
"""The largest value kept inline in a result (UTF-8 text, or compact JSON)."""


async def place(
    result: dict[str, Any],
    key: str,
    value: Any,
    job: RunningJob,
    *,
    max_bytes: int = INLINE_MAX_BYTES,
) -> None:
    """Set ``result[key] = value``, or ``result[key + "_asset"]`` to its stored record."""
    if isinstance(value, str):
        data = value.encode()
        content_type, filename = "text/plain; charset=utf-8", f"{key}.txt"
    else:
        data = json.dumps(value, separators=(",", ":")).encode()
        content_type, filename = "application/json", f"{key}.json"
    if len(data) <= max_bytes:
        result[key] = value
        return
    asset = await job.store(data, content_type=content_type, filename=filename)
    result[f"{key}_asset"] = asset.as_result()
