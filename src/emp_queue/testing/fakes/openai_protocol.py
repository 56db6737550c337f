"""OpenAI's error bodies, request parsing and object shapes, shared by the fake's routes."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

JsonDict = dict[str, Any]
DEFAULT_IMAGE_SIZE = (1024, 1024)


class Outcome(StrEnum):
    REFUSAL = "refusal"
    CONTENT_FILTER = "content_filter"
    BROKEN_STREAM = "broken_stream"
    FAILED = "failed"
    TOOL_CALLS = "tool_calls"


@dataclass(frozen=True)
class ScriptedOutcome:
    outcome: Outcome
    text: str = ""
    after_chunks: int = 0
    tool_calls: tuple[tuple[str, str], ...] = ()  # (function name, JSON arguments)


@dataclass(frozen=True)
class HttpFailure:
    status: int
    message: str
    type: str
    code: str | None
    headers: tuple[tuple[str, str], ...] = ()


class ApiError(Exception):
    """An OpenAI error response: ``{"error": {message, type, param, code}}`` with a status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {
            "error": {"message": message, "type": error_type, "param": param, "code": code}
        }
        self.headers = dict(headers)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


def missing(param: str) -> ApiError:
    return ApiError(
        400,
        f"Missing required parameter: '{param}'.",
        param=param,
        code="missing_required_parameter",
    )


async def json_body(request: Request) -> JsonDict:
    try:
        body = json.loads(await request.body() or b"null")
    except json.JSONDecodeError as error:
        raise ApiError(
            400,
            "We could not parse the JSON body of your request. (HINT: This "
            "likely means you aren't using your HTTP library correctly.)",
        ) from error
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


def pieces_of(text: str) -> list[str]:
    """The text cut into token-like pieces, each with its leading whitespace."""
    return re.findall(r"\s*\S+", text) or [text]


def text_of(content: Any) -> str:
    """The text of a message ``content``: a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return " ".join(str(p) for p in parts if p)
    return ""


def image_size(value: Any) -> tuple[int, int]:
    if value in (None, "auto"):
        return DEFAULT_IMAGE_SIZE
    match = re.fullmatch(r"(\d{2,4})x(\d{2,4})", str(value))
    if match is None:
        raise ApiError(
            400,
            f"Invalid value: '{value}'. Supported values are: '256x256', "
            "'512x512', '1024x1024', '1536x1024', '1024x1536' and 'auto'.",
            param="size",
            code="invalid_value",
        )
    return int(match.group(1)), int(match.group(2))


def completion_usage(prompt_tokens: int, completion_tokens: int) -> JsonDict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def response_usage(input_tokens: int, output_tokens: int) -> JsonDict:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }
