"""An OpenTelemetry collector's OTLP/HTTP trace endpoint: decodes what exporters send.

``POST /v1/traces`` with an ``ExportTraceServiceRequest`` in protobuf (what
``opentelemetry-exporter-otlp-proto-http`` sends); the spans are kept as
:class:`ReceivedSpan` with the sending process's ``service.name``. Point a process at it
with ``OTEL_EXPORTER_OTLP_ENDPOINT=<url>``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fastapi import FastAPI, Request, Response
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from emp_queue.testing.fakes.server import FakeService

PROTOBUF = "application/x-protobuf"


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, object]


class OtlpReceiver(FakeService):
    service_name = "OTLP receiver"

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[ReceivedSpan] = []
        self._arrived = asyncio.Condition()

    def add_routes(self, app: FastAPI) -> None:
        @app.post("/v1/traces")
        async def traces(request: Request) -> Response:
            if request.headers.get("content-type") != PROTOBUF:
                return Response(f"send {PROTOBUF}", status_code=415)
            export = ExportTraceServiceRequest.FromString(await request.body())
            for resource_spans in export.resource_spans:
                service = next(
                    (a.value.string_value for a in resource_spans.resource.attributes
                     if a.key == "service.name"), "",
                )  # fmt: skip
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend(_received(service, span) for span in scope_spans.spans)
            async with self._arrived:
                self._arrived.notify_all()
            body = ExportTraceServiceResponse().SerializeToString()
            return Response(body, media_type=PROTOBUF)

    def named(self, name: str) -> list[ReceivedSpan]:
        return [span for span in self.spans if span.name == name]

    async def wait_for(self, names: set[str], timeout_s: float) -> None:
        """Until a span of every name in ``names`` has arrived."""
        try:
            async with asyncio.timeout(timeout_s), self._arrived:
                await self._arrived.wait_for(lambda: names <= {span.name for span in self.spans})
        except TimeoutError:
            arrived = sorted({f"{span.service}: {span.name}" for span in self.spans})
            raise AssertionError(
                f"no span named {sorted(names - {span.name for span in self.spans})} arrived "
                f"in {timeout_s} s; arrived: {arrived}"
            ) from None


def _received(service: str, span: Span) -> ReceivedSpan:
    attributes: dict[str, object] = {
        a.key: a.value.string_value or a.value.int_value or a.value.bool_value
        for a in span.attributes
    }
    return ReceivedSpan(
        service=service,
        name=span.name,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex() or None,
        kind=span.kind,
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        attributes=attributes,
    )
