"""Request bodies parsed as strict JSON: ``NaN``, ``Infinity`` and overflowing numbers refused.

Python's ``json`` accepts these although JSON does not; stored in a job they would silently
become ``null``. A route class swaps in a request whose ``json()`` refuses them, so FastAPI
answers its usual 422 ``json_invalid`` error naming the offending token.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


def refuse_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not a JSON number; send a finite number", name, 0)


def finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise json.JSONDecodeError(f"{text} is too large for a 64-bit float", text, 0)
    return value


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = json.loads(
                await self.body(), parse_constant=refuse_constant, parse_float=finite_float
            )
        return self._json


class StrictJsonRoute(APIRoute):
    """Use as ``APIRouter(route_class=StrictJsonRoute)`` for routes that read JSON bodies."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict_handler
