"""OpenTelemetry traces of jobs, off unless the standard ``OTEL_*`` variables ask for them.

One trace per job (docs/observability.md): the submitting request's span — a child of the
caller's ``traceparent`` header, or of the job's ``traceparent`` field — is stored as the job's
``traceparent`` in its Redis record. The worker that claims the job reads it back and adds
the queue wait, the claim, the run (with the connector's httpx calls and uploads inside) and
the completion; the webhook dispatcher adds each delivery attempt. Spans of the API and the
worker processes thus share one trace id through Redis, with no other channel between them.

Off, nothing here is imported by the submit and claim paths beyond a ``None`` check: the
SDK is loaded only by :func:`start_tracing` when a variable turns tracing on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from emp_queue.errors import ConfigurationError

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span

    from emp_queue.models import Job

EXPORTERS = ("otlp", "console", "none")
INSTRUMENTATION_NAME = "emp_queue"
MS_TO_NS = 1_000_000


class TracingSettings(BaseSettings):
    """The standard OpenTelemetry variables this project reads itself; the SDK and the OTLP
    exporter read the rest (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
    ``OTEL_TRACES_SAMPLER``, ``OTEL_EXPORTER_OTLP_HEADERS``, ``…_TIMEOUT``)."""

    model_config = SettingsConfigDict(env_prefix="OTEL_", extra="ignore")

    sdk_disabled: bool = False
    service_name: str | None = None
    """``OTEL_SERVICE_NAME``; default: the component's (``emp-api``, ``emp-worker``...)."""
    traces_exporter: str | None = None
    """``otlp`` or ``console`` turns tracing on; ``none`` (or unset, without an endpoint)
    keeps it off."""
    exporter_otlp_endpoint: str | None = Field(
        default=None,
        description="The collector's OTLP/HTTP base URL (spans go to <url>/v1/traces).",
        json_schema_extra={"env_source": "TELEMETRY_OTLP_ENDPOINT"},
    )
    exporter_otlp_traces_endpoint: str | None = None

    @field_validator("traces_exporter")
    @classmethod
    def _known_exporter(cls, value: str | None) -> str | None:
        if value is not None and value.strip().lower() not in EXPORTERS:
            raise ConfigurationError(
                f"OTEL_TRACES_EXPORTER={value!r} is not supported; use one of "
                f"{', '.join(EXPORTERS)} (OTLP over HTTP/protobuf is the one exporter shipped)"
            )
        return None if value is None else value.strip().lower()

    @property
    def exporter(self) -> str | None:
        """``otlp`` or ``console`` when traces are wanted; None: tracing is off (the default)."""
        if self.sdk_disabled or self.traces_exporter == "none":
            return None
        if self.traces_exporter is not None:
            return self.traces_exporter
        if self.exporter_otlp_endpoint or self.exporter_otlp_traces_endpoint:
            return "otlp"
        return None


def start_tracing(
    settings: TracingSettings, service_name: str, *, exporter: SpanExporter | None = None
) -> JobTracing | None:
    """The process's tracing, exporting as ``settings`` say (or to ``exporter``, synchronously,
    for tests); None when tracing is off. The caller closes it on the way out (it flushes)."""
    if exporter is None and settings.exporter is None:
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    # OTEL_RESOURCE_ATTRIBUTES are read by Resource.create; OTEL_SERVICE_NAME wins over the
    # component's name.
    resource = Resource.create({SERVICE_NAME: settings.service_name or service_name})
    provider = TracerProvider(resource=resource)
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        provider.add_span_processor(BatchSpanProcessor(_exporter(settings)))
    return JobTracing(provider)


@contextlib.contextmanager
def process_tracing(service_name: str, *, httpx_calls: bool = False) -> Iterator[JobTracing | None]:
    """A service process's tracing from its environment, for the block: log lines carry
    trace ids, and with ``httpx_calls`` every httpx request is a client span. Flushed at the
    end. None when tracing is off."""
    tracing = start_tracing(TracingSettings(), service_name)
    if tracing is None:
        yield None
        return
    add_trace_ids_to_logs()
    if httpx_calls:
        instrument_httpx(tracing)
    try:
        yield tracing
    finally:
        tracing.close()


def _exporter(settings: TracingSettings) -> SpanExporter:
    if settings.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers and timeout from OTEL_EXPORTER_OTLP_*


def traceparent_of(span: Span) -> str:
    """The W3C ``traceparent`` that makes a span the parent of spans in another process."""
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


class JobTracing:
    """The spans of a job's life, on one tracer provider (one per process, built in main)."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.tracer = provider.get_tracer(INSTRUMENTATION_NAME)
        self._propagator = TraceContextTextMapPropagator()

    def close(self) -> None:
        """Send what is buffered and stop exporting."""
        self.provider.shutdown()

    def parent(self, traceparent: str | None) -> Context | None:
        """The context a ``traceparent`` names; None for none (or a malformed one: the span
        then starts a trace of its own, as the W3C spec asks)."""
        if not traceparent:
            return None
        return self._propagator.extract({"traceparent": traceparent})

    # The API ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def request(self, method: str, route: str, incoming: str | None) -> Iterator[Span]:
        """A server span for one request, a child of the caller's ``traceparent`` if any."""
        from opentelemetry.trace import SpanKind

        attributes = {"http.request.method": method, "http.route": route}
        with self.tracer.start_as_current_span(
            f"{method} {route}", context=self.parent(incoming), kind=SpanKind.SERVER,
            attributes=attributes,
        ) as span:  # fmt: skip
            yield span

    # The worker ------------------------------------------------------------------------------
    def claimed(
        self, job: Job, attempt: int, worker_id: str, started_ns: int, ended_ns: int
    ) -> Context | None:
        """Record the job's wait in the queue (submit → assigned, both on Redis's clock) and
        the claim call that took it; the context the job's later spans are children of."""
        from opentelemetry.trace import SpanKind

        parent = self.parent(job.traceparent)
        attributes = job_attributes(job, attempt, worker_id)
        assigned_ns = (job.assigned_at or 0) * MS_TO_NS or started_ns
        created_ns = min(job.created_at * MS_TO_NS, assigned_ns)
        wait = self.tracer.start_span(
            "job.queue_wait", context=parent, start_time=created_ns, attributes=attributes
        )
        wait.end(end_time=assigned_ns)
        claim = self.tracer.start_span(
            "job.claim", context=parent, kind=SpanKind.CONSUMER, start_time=started_ns,
            attributes=attributes,
        )  # fmt: skip
        claim.end(end_time=max(ended_ns, started_ns))
        return parent

    @contextlib.contextmanager
    def run(self, job: Job, attempt: int, worker_id: str, parent: Context | None) -> Iterator[Span]:
        """The connector's run, the current span while the handler runs: the httpx calls to
        the AI service and the uploads nest inside it."""
        with self.tracer.start_as_current_span(
            "job.run", context=parent, attributes=job_attributes(job, attempt, worker_id)
        ) as span:
            yield span

    def completed(self, job_id: str, parent: Context | None, started_ns: int) -> None:
        """The completion report (one batch call may carry several jobs)."""
        span = self.tracer.start_span(
            "job.complete", context=parent, start_time=started_ns, attributes={"emp.job_id": job_id}
        )
        span.end()

    @contextlib.contextmanager
    def span(self, name: str, attributes: Mapping[str, Any]) -> Iterator[Span]:
        """A child of the current span (an upload inside ``job.run``)."""
        with self.tracer.start_as_current_span(name, attributes=dict(attributes)) as span:
            yield span

    # Webhooks --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def delivery(
        self, traceparent: str | None, attributes: Mapping[str, Any]
    ) -> Iterator[tuple[Span, str]]:
        """One webhook attempt, in the job's trace; yields the span and the ``traceparent``
        the request carries so a receiver can continue the trace."""
        from opentelemetry.trace import SpanKind

        with self.tracer.start_as_current_span(
            "webhook.deliver", context=self.parent(traceparent), kind=SpanKind.CLIENT,
            attributes=dict(attributes),
        ) as span:  # fmt: skip
            yield span, traceparent_of(span)


def mark_failed(span: Span, message: str | None) -> None:
    from opentelemetry.trace import StatusCode

    span.set_status(StatusCode.ERROR, message)


def job_attributes(job: Job, attempt: int, worker_id: str) -> dict[str, Any]:
    return {
        "emp.job_id": job.id,
        "emp.service": job.service_required,
        "emp.attempt": attempt,
        "emp.worker_id": worker_id,
        "emp.customer_id": job.customer_id or "",
    }


def instrument_httpx(tracing: JobTracing) -> None:
    """Client spans (and an outgoing ``traceparent``) for every httpx request this process
    makes: the connectors' calls to the AI services."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor().instrument(tracer_provider=tracing.provider)


def add_trace_ids_to_logs() -> None:
    """Log lines written inside a span carry its ``trace_id`` and ``span_id``."""
    import structlog

    processors = list(structlog.get_config()["processors"])
    if _add_trace_ids not in processors:
        structlog.configure(processors=[_add_trace_ids, *processors])


def _add_trace_ids(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", f"{context.trace_id:032x}")
        event.setdefault("span_id", f"{context.span_id:016x}")
    return event
