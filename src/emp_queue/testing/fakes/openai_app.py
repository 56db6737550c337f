"""The fake OpenAI server's routes: ``/v1`` behind the API-key check, image files outside it."""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from emp_queue.testing.fakes.openai_chat import ChatCompletion, check_model
from emp_queue.testing.fakes.openai_protocol import (
    ApiError,
    JsonDict,
    Outcome,
    image_size,
    json_body,
    missing,
    new_id,
    pieces_of,
    response_usage,
    text_of,
)

if TYPE_CHECKING:
    from emp_queue.testing.fakes.openai import FakeOpenAI

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "incomplete"})
POLICY_VIOLATION = (
    "Your request was rejected as a result of our safety system. Your prompt may contain text "
    "that is not allowed by our safety system."
)


def _gate(fake: FakeOpenAI) -> Callable[[Request], Awaitable[None]]:
    async def check(request: Request) -> None:
        given = request.headers.get("authorization")
        if fake.api_key is not None and given is None:
            raise ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key "
                "in an Authorization header using Bearer auth (i.e. Authorization: "
                "Bearer YOUR_KEY).",
            )
        if fake.api_key is not None and given != f"Bearer {fake.api_key}":
            shown = (given or "").removeprefix("Bearer ")[-4:]
            raise ApiError(
                401,
                f"Incorrect API key provided: ...{shown}. You can find your API "
                "key at https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )
        failure = fake.take_failure()
        if failure is not None:
            raise ApiError(
                failure.status,
                failure.message,
                error_type=failure.type,
                code=failure.code,
                headers=failure.headers,
            )

    return check


def _chat_routes(router: APIRouter, fake: FakeOpenAI) -> None:
    @router.post("/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = await json_body(request)
        completion = ChatCompletion(fake, check_model(fake, body.get("model")), body)
        if body.get("stream"):
            return StreamingResponse(completion.stream(), media_type="text/event-stream")
        return JSONResponse(completion.whole())

    @router.get("/models")
    async def list_models() -> JsonDict:
        listing = [
            {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "system"}
            for m in fake.models
        ]
        return {"object": "list", "data": listing}


def _image_routes(router: APIRouter, fake: FakeOpenAI) -> None:
    @router.post("/images/generations")
    async def generate_images(request: Request) -> JsonDict:
        body = await json_body(request)
        model = check_model(fake, body.get("model") or "dall-e-2")
        prompt = body.get("prompt")
        if not prompt:
            raise missing("prompt")
        width, height = image_size(body.get("size"))
        if fake.take_outcome({Outcome.REFUSAL, Outcome.CONTENT_FILTER}) is not None:
            raise ApiError(400, POLICY_VIOLATION, code="content_policy_violation")
        # GPT image models always answer base64; DALL-E answers URLs unless told otherwise.
        gpt_image = model.startswith("gpt-image")
        response_format = "b64_json" if gpt_image else body.get("response_format") or "url"
        if response_format not in ("url", "b64_json"):
            raise ApiError(
                400,
                f"Invalid value: '{response_format}'. Supported values are: 'url' and 'b64_json'.",
                param="response_format",
                code="invalid_value",
            )
        data = []
        for index in range(int(body.get("n") or 1)):
            name, png = fake.store_image(f"{prompt}:{index}", width, height)
            item: JsonDict = (
                {"b64_json": base64.b64encode(png).decode()}
                if response_format == "b64_json"
                else {"url": f"{str(request.base_url).rstrip('/')}/files/{name}"}
            )
            if model == "dall-e-3":
                item["revised_prompt"] = prompt
            data.append(item)
        result: JsonDict = {"created": int(time.time()), "data": data}
        if gpt_image:
            result["usage"] = {
                **response_usage(len(pieces_of(prompt)), 1056 * len(data)),
                "input_tokens_details": {"text_tokens": len(pieces_of(prompt)), "image_tokens": 0},
            }
        return result


def _response_output(fake: FakeOpenAI, body: JsonDict, prompt: str) -> JsonDict:
    """The fields a response gets when it finishes (status, output, usage, error...)."""
    scripted = fake.take_outcome({Outcome.REFUSAL, Outcome.CONTENT_FILTER, Outcome.FAILED})
    kind = scripted.outcome if scripted is not None else None
    if kind is Outcome.FAILED and scripted is not None:
        return {"status": "failed", "error": {"code": "server_error", "message": scripted.text}}
    text = fake.reply_for(prompt)
    output: list[JsonDict] = []
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and tool.get("type") == "image_generation" and kind is None:
            width, height = image_size(tool.get("size"))
            _, png = fake.store_image(prompt, width, height)
            output.append(
                {
                    "type": "image_generation_call",
                    "id": new_id("ig_"),
                    "status": "completed",
                    "output_format": "png",
                    "size": f"{width}x{height}",
                    "revised_prompt": prompt,
                    "result": base64.b64encode(png).decode(),
                }
            )
    limit = body.get("max_output_tokens")
    cut = kind is None and isinstance(limit, int) and 0 < limit < len(pieces_of(text))
    if kind is Outcome.REFUSAL and scripted is not None:
        content: list[JsonDict] = [{"type": "refusal", "refusal": scripted.text}]
    else:
        if kind is Outcome.CONTENT_FILTER:
            text = "".join(pieces_of(text)[: len(pieces_of(text)) // 2])
        elif cut:
            text = "".join(pieces_of(text)[:limit])
        content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    output.append(
        {
            "type": "message",
            "id": new_id("msg_"),
            "status": "completed",
            "role": "assistant",
            "content": content,
        }
    )
    finish: JsonDict = {
        "status": "completed",
        "output": output,
        "usage": response_usage(len(pieces_of(prompt)), len(pieces_of(text))),
    }
    if kind is Outcome.CONTENT_FILTER:
        finish.update(status="incomplete", incomplete_details={"reason": "content_filter"})
    elif cut:
        finish.update(status="incomplete", incomplete_details={"reason": "max_output_tokens"})
    return finish


def _response_routes(router: APIRouter, fake: FakeOpenAI) -> None:
    def stored(response_id: str) -> JsonDict:
        if response_id not in fake.responses:
            raise ApiError(404, f"Response with id '{response_id}' not found.", param="response_id")
        return fake.responses[response_id]

    @router.post("/responses")
    async def create_response(request: Request) -> JsonDict:
        body = await json_body(request)
        model = check_model(fake, body.get("model"))
        given = body.get("input")
        if not given:
            raise missing("input")
        items = given if isinstance(given, list) else [{"role": "user", "content": given}]
        prompt = " ".join(text_of(i.get("content")) for i in items if isinstance(i, dict))
        response: JsonDict = {
            "id": new_id("resp_"),
            "object": "response",
            "created_at": int(time.time()),
            "status": "queued",
            "background": bool(body.get("background")),
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "model": model,
            "output": [],
            "tools": body.get("tools") or [],
            "usage": None,
            "metadata": body.get("metadata") or {},
        }
        finish = _response_output(fake, body, prompt)
        if response["background"]:
            fake.start_background(response, finish)
            return dict(response)
        response.update(finish)
        fake.responses[response["id"]] = response
        return response

    @router.get("/responses/{response_id}")
    async def get_response(response_id: str) -> JsonDict:
        return stored(response_id)

    @router.post("/responses/{response_id}/cancel")
    async def cancel_response(response_id: str) -> JsonDict:
        response = stored(response_id)
        if not response["background"]:
            raise ApiError(400, "Only responses created with background=true can be cancelled.")
        if response["status"] == "cancelled":
            return response
        if response["status"] in TERMINAL_STATUSES:
            raise ApiError(400, f"Cannot cancel a response with status '{response['status']}'.")
        fake.cancel_response(response_id)
        return response


def add_openai_routes(app: FastAPI, fake: FakeOpenAI) -> None:
    async def api_error(_request: Request, error: Exception) -> Response:
        assert isinstance(error, ApiError)
        return error.response()

    app.add_exception_handler(ApiError, api_error)
    router = APIRouter(prefix="/v1", dependencies=[Depends(_gate(fake))])
    for add in (_chat_routes, _image_routes, _response_routes):
        add(router, fake)
    app.include_router(router)

    @app.get("/files/{name}")
    async def image_file(name: str) -> Response:
        png = fake.files.get(name)
        if png is None:
            return Response(status_code=404)
        return Response(png, media_type="image/png")
