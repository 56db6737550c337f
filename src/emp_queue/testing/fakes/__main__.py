"""Run one fake in the foreground until SIGINT or SIGTERM.

python -m emp_queue.testing.fakes comfyui --port 8188
python -m emp_queue.testing.fakes ollama --port 11434 --token-delay-s 0.05
python -m emp_queue.testing.fakes openai --port 8000 --api-key sk-local
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from emp_queue.api.serving import LOOPBACK
from emp_queue.testing.fakes.a1111 import FakeA1111
from emp_queue.testing.fakes.comfyui import FakeComfyUI
from emp_queue.testing.fakes.gemini import FakeGemini
from emp_queue.testing.fakes.ollama import FakeOllama
from emp_queue.testing.fakes.openai import FakeOpenAI
from emp_queue.testing.fakes.server import FakeService

DEFAULT_PORTS = {"comfyui": 8188, "ollama": 11434, "openai": 8000, "a1111": 7860, "gemini": 8089}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m emp_queue.testing.fakes",
        description="Run a fake AI service that speaks the real protocol.",
    )
    services = parser.add_subparsers(dest="service", required=True)
    comfyui = services.add_parser("comfyui", help="ComfyUI (HTTP + WebSocket)")
    comfyui.add_argument("--step-delay-s", type=float, default=0.05, help="per sampler step")
    ollama = services.add_parser("ollama", help="Ollama (HTTP, NDJSON streams)")
    ollama.add_argument("--token-delay-s", type=float, default=0.02, help="per streamed token")
    openai = services.add_parser("openai", help="OpenAI-compatible (HTTP, SSE streams)")
    openai.add_argument("--api-key", default=None, help="require this bearer key")
    openai.add_argument("--chunk-delay-s", type=float, default=0.02, help="per SSE chunk")
    openai.add_argument(
        "--response-duration-s", type=float, default=2.0, help="how long a background response runs"
    )
    a1111 = services.add_parser("a1111", help="AUTOMATIC1111 / Forge API")
    a1111.add_argument("--step-delay-s", type=float, default=0.05, help="per sampling step")
    gemini = services.add_parser("gemini", help="Gemini generateContent")
    gemini.add_argument("--api-key", default=None, help="require this x-goog-api-key")
    for service in (comfyui, ollama, openai, a1111, gemini):
        service.add_argument("--host", default=LOOPBACK)
        service.add_argument(
            "--port",
            type=int,
            default=None,
            help="0 picks a free port (default: the service's usual port)",
        )
    return parser


def make_fake(args: argparse.Namespace) -> FakeService:
    if args.service == "comfyui":
        return FakeComfyUI(step_delay_s=args.step_delay_s)
    if args.service == "ollama":
        return FakeOllama(token_delay_s=args.token_delay_s)
    if args.service == "a1111":
        return FakeA1111(step_delay_s=args.step_delay_s)
    if args.service == "gemini":
        return FakeGemini(api_key=args.api_key)
    return FakeOpenAI(
        api_key=args.api_key,
        chunk_delay_s=args.chunk_delay_s,
        response_duration_s=args.response_duration_s,
    )


async def serve(fake: FakeService, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for received in (signal.SIGINT, signal.SIGTERM):
        # The handler only records the signal; the code below does the stopping.
        loop.add_signal_handler(received, stop.set)
    async with fake.running(host=host, port=port) as url:
        print(f"fake {fake.service_name} listening on {url}", flush=True)
        await stop.wait()
    print(f"fake {fake.service_name} stopped", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    port = DEFAULT_PORTS[args.service] if args.port is None else args.port
    try:
        asyncio.run(serve(make_fake(args), args.host, port))
    except OSError as error:
        print(
            f"cannot serve the fake {args.service} on {args.host}:{port}: {error}; "
            "choose another --port (0 picks a free one)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
