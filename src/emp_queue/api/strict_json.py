"""Request bodies parsed as strict JSON: ``NaN``, ``Infinity`` and overflowing numbers refused.

Python's ``json`` accepts these although JSON does not; stored in a job they would silently
become ``null``. A route class swaps in a request whose ``json()`` refuses them, so FastAPI
answers its usual 422 ``json_invalid`` error naming the offending token.

:func:`json_body` does the same for a route that reads its body itself (``POST /api/jobs``,
see docs/decisions/0008-submit-route-without-dependencies.md), with the errors FastAPI
would give for a body parameter.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi import HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

Model = TypeVar("Model", bound=BaseModel)
JSON_MEDIA_TYPE = re.compile(r"^\s*application/(?:[\w.-]+\+)?json\s*(?:;|$)", re.IGNORECASE)


def refuse_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not a JSON number; send a finite number", name, 0)


def finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise json.JSONDecodeError(f"{text} is too large for a 64-bit float", text, 0)
    return value


def strict_loads(raw: bytes) -> Any:
    return json.loads(raw, parse_constant=refuse_constant, parse_float=finite_float)


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_loads(await self.body())
        return self._json


async def json_body(request: Request, model: type[Model]) -> Model:
    """The request body as ``model``: a JSON media type, strict JSON, then validation; every
    problem a 422 naming the field (``body.<field>``), as for a FastAPI body parameter."""
    try:
        raw = await request.body()
    except ClientDisconnect:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, "the client disconnected before sending its body"
        ) from None
    content_type = request.headers.get("content-type")
    if not raw or content_type is None or not JSON_MEDIA_TYPE.match(content_type):
        problem = "expected a JSON object, sent with Content-Type: application/json"
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": problem}])
    try:
        document = strict_loads(raw)
    except json.JSONDecodeError as error:
        raise RequestValidationError([{
            "type": "json_invalid", "loc": ("body", error.pos), "msg": "JSON decode error",
            "ctx": {"error": error.msg},
        }]) from None  # fmt: skip
    except (ValueError, RecursionError) as error:  # not UTF-8, or nested beyond Python's stack
        raise RequestValidationError([{
            "type": "json_invalid", "loc": ("body",), "msg": "JSON decode error",
            "ctx": {"error": str(error) or type(error).__name__},
        }]) from None  # fmt: skip
    try:
        return model.model_validate(document)
    except ValidationError as error:
        problems = error.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError(
            [{**problem, "loc": ("body", *problem["loc"])} for problem in problems]
        ) from None


class StrictJsonRoute(APIRoute):
    """Use as ``APIRouter(route_class=StrictJsonRoute)`` for routes that read JSON bodies."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict_handler
