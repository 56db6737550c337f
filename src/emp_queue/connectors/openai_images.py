"""``openai`` images: ``POST /images/generations``, every image stored as an asset.

Each ``data[i]`` holds a ``url`` (DALL-E by default; downloaded at once, such URLs expire
within an hour) or ``b64_json`` (GPT image models always); both end up in the job's asset
store and the result lists their records under ``outputs``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from emp_queue.connectors.base import RunningJob, service_fault
from emp_queue.connectors.openai_http import OpenAIHttp
from emp_queue.connectors.progress import ProgressGauge

IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
)
OUTPUT_FORMATS = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def image_content_type(data: bytes, declared: str | None = None) -> str:
    """The content type of decoded image bytes: their signature, else the declared format."""
    for signature, content_type in IMAGE_SIGNATURES:
        if data.startswith(signature):
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return OUTPUT_FORMATS.get(declared or "", "application/octet-stream")


def decode_base64_image(encoded: Any, where: str) -> bytes:
    try:
        return base64.b64decode(str(encoded), validate=True)
    except (binascii.Error, ValueError) as error:
        raise service_fault(f"{where} is not valid base64") from error


async def run_images(http: OpenAIHttp, job: RunningJob, body: dict[str, Any]) -> dict[str, Any]:
    gauge = ProgressGauge(job)
    await gauge.report(0.0, f"generating {body.get('n') or 1} image(s)")
    answer = await http.json("POST", "images/generations", body)
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list) or not data:
        raise service_fault("the images answer has no data list", answer=str(answer)[:500])
    await gauge.report(0.5, f"received {len(data)} image(s)")
    outputs = []
    for index, item in enumerate(data):
        if item.get("b64_json"):
            image = decode_base64_image(item["b64_json"], f"data[{index}].b64_json")
            content_type = image_content_type(image, answer.get("output_format"))
        elif item.get("url"):
            image, served_as = await http.download(str(item["url"]))
            content_type = (
                served_as if served_as.startswith("image/") else image_content_type(image)
            )
        else:
            raise service_fault(f"data[{index}] of the images answer has neither url nor b64_json")
        asset = await job.store(image, content_type=content_type)
        outputs.append(asset.as_result())
        await gauge.report(0.5 + 0.5 * (index + 1) / len(data), f"stored image {index + 1}")
    await gauge.done(f"{len(outputs)} image(s)")
    result: dict[str, Any] = {"model": body.get("model"), "outputs": outputs}
    revised = [item.get("revised_prompt") for item in data]
    if any(revised):
        result["revised_prompts"] = revised
    if answer.get("usage"):
        result["usage"] = answer["usage"]
    return result
