"""Instrumentation for applications: one call sets up OpenTelemetry, then decorators and context
managers record a function's inputs and outputs. Spans from any OTel instrumentation (OpenAI,
LangChain, ...) nest under them, and everything lands in the warehouse through Kafka (or the
OTLP/HTTP gateway).

    import spanlake

    spanlake.instrument(service_name="support-bot", bootstrap_servers="localhost:9092",
                        autolog=["openai"])

    @spanlake.trace(span_type="TOOL")
    def lookup_order(order_id: str) -> dict: ...

    with spanlake.start_span("retrieve", span_type="RETRIEVER", inputs={"query": q}) as span:
        span.set_outputs(documents)

Spans carry MLflow's attribute keys (mlflow.spanType, mlflow.spanInputs, mlflow.spanOutputs,
JSON-encoded), which ingest maps like any MLflow span. This module imports the OpenTelemetry SDK
and the exporters only: an app that instruments loads none of the warehouse (Polars, Delta,
Arrow, Streamlit); the `spanlake-tracing` distribution (tracing/) ships just this part.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import inspect
import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, Status, StatusCode

logger = logging.getLogger("spanlake")

F = TypeVar("F", bound=Callable[..., Any])
TRACER_NAME = "spanlake"
SPAN_TYPE, SPAN_INPUTS, SPAN_OUTPUTS = "mlflow.spanType", "mlflow.spanInputs", "mlflow.spanOutputs"
MAX_GENERATOR_ITEMS = 1000  # a generator's outputs are its items, up to this many

_lock = threading.Lock()
_provider: TracerProvider | None = None
_exporter: SpanExporter | None = None


# --- set-up ----------------------------------------------------------------------------------


def instrument(
    service_name: str,
    *,
    bootstrap_servers: str | None = None,
    endpoint: str | None = None,
    topic: str = "otlp_spans",
    sample_rate: float = 1.0,
    environment: str | None = None,
    autolog: Sequence[str] = (),
    resource_attributes: dict[str, str] | None = None,
    max_buffered_spans: int = 100_000,
) -> TracerProvider:
    """Send this process's spans to spanlake: to Kafka (`bootstrap_servers`, the topic ingest
    reads) or to `spanlake gateway` over OTLP/HTTP (`endpoint`, e.g. http://localhost:4318).

    Sets the global TracerProvider (or joins one the app already set) with a batch processor, so
    exporting runs off the request path; keeps `sample_rate` of the traces (by trace id, parents'
    decisions kept); turns on `autolog` instrumentations. Calling it again changes nothing."""
    global _provider, _exporter
    if (bootstrap_servers is None) == (endpoint is None):
        raise ValueError("spanlake.instrument: give one of bootstrap_servers='host:9092' (Kafka) or "
                         "endpoint='http://host:4318' (spanlake gateway)")  # fmt: skip
    if not 0.0 <= sample_rate <= 1.0:
        raise ValueError(f"spanlake.instrument: sample_rate must be within 0..1, got {sample_rate}")
    with _lock:
        if _provider is not None:
            logger.warning("spanlake.instrument was already called; keeping the first set-up")
            return _provider
        if bootstrap_servers is not None:
            from spanlake.exporter import KafkaSpanExporter

            # Short blocking bounds: an outage fills the buffer instead of stalling the export thread.
            _exporter = KafkaSpanExporter(bootstrap_servers, topic, send_timeout=10, max_block_ms=5000,
                                          max_buffered_spans=max_buffered_spans)  # fmt: skip
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            assert endpoint is not None
            url = endpoint.rstrip("/")
            _exporter = OTLPSpanExporter(endpoint=url if url.endswith("/v1/traces") else url + "/v1/traces")
        processor = BatchSpanProcessor(_exporter)
        current = otel_trace.get_tracer_provider()
        if isinstance(current, TracerProvider):  # the app (or another library) set one: add to it
            current.add_span_processor(processor)
            logger.info("spanlake.instrument: added spanlake's exporter to the app's TracerProvider")
            _provider = current
        else:
            attributes = {"service.name": service_name, **(resource_attributes or {})}
            if environment:
                attributes["deployment.environment.name"] = environment
            _provider = TracerProvider(resource=Resource.create(attributes),
                                       sampler=ParentBased(TraceIdRatioBased(sample_rate)))  # fmt: skip
            _provider.add_span_processor(processor)
            otel_trace.set_tracer_provider(_provider)
        _propagate_to_threads()
    for library in autolog:
        _autolog(library)
    return _provider


def dropped_spans() -> int:
    """Spans the exporter gave up on since instrument() (the buffer was full during an outage)."""
    return int(getattr(_exporter, "dropped_spans", 0))


def flush(timeout_millis: int = 30_000) -> bool:
    """Export every finished span now (before a short-lived script exits, say)."""
    return _provider.force_flush(timeout_millis) if _provider is not None else True


def _propagate_to_threads() -> None:
    """Threads and thread pools started after this run with the starter's OTel context, so a
    span opened in a worker nests under the span that started it (what asyncio does already)."""
    if getattr(threading.Thread.start, "_spanlake", False):
        return
    start, submit = threading.Thread.start, ThreadPoolExecutor.submit

    def thread_start(self: threading.Thread) -> None:
        parent, run = otel_context.get_current(), self.run

        def run_in_parent() -> None:
            token = otel_context.attach(parent)
            try:
                run()
            finally:
                otel_context.detach(token)

        self.run = run_in_parent  # type: ignore[method-assign]
        start(self)

    def pool_submit(self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        parent = otel_context.get_current()

        def in_parent(*a: Any, **k: Any) -> Any:
            token = otel_context.attach(parent)
            try:
                return fn(*a, **k)
            finally:
                otel_context.detach(token)

        return submit(self, in_parent, *args, **kwargs)

    thread_start._spanlake = True  # type: ignore[attr-defined]
    threading.Thread.start = thread_start  # type: ignore[method-assign]
    ThreadPoolExecutor.submit = pool_submit  # type: ignore[method-assign,assignment]


# --- autolog -----------------------------------------------------------------------------------

# library -> (module, instrumentor class, the package that provides it), preferred first: the
# OpenTelemetry GenAI instrumentations, then OpenInference, then OpenLLMetry.
AUTOLOG: dict[str, tuple[tuple[str, str, str], ...]] = {
    "openai": (
        ("opentelemetry.instrumentation.openai_v2", "OpenAIInstrumentor", "opentelemetry-instrumentation-openai-v2"),
        ("openinference.instrumentation.openai", "OpenAIInstrumentor", "openinference-instrumentation-openai"),
        ("opentelemetry.instrumentation.openai", "OpenAIInstrumentor", "opentelemetry-instrumentation-openai"),
    ),
    "anthropic": (
        ("openinference.instrumentation.anthropic", "AnthropicInstrumentor", "openinference-instrumentation-anthropic"),
        ("opentelemetry.instrumentation.anthropic", "AnthropicInstrumentor", "opentelemetry-instrumentation-anthropic"),
    ),
    "langchain": (
        ("openinference.instrumentation.langchain", "LangChainInstrumentor", "openinference-instrumentation-langchain"),
        ("opentelemetry.instrumentation.langchain", "LangchainInstrumentor", "opentelemetry-instrumentation-langchain"),
    ),
    "llama_index": (
        ("openinference.instrumentation.llama_index", "LlamaIndexInstrumentor",
         "openinference-instrumentation-llama-index"),
        ("opentelemetry.instrumentation.llamaindex", "LlamaIndexInstrumentor",
         "opentelemetry-instrumentation-llamaindex"),
    ),
    "google_genai": (
        ("opentelemetry.instrumentation.google_genai", "GoogleGenAiSdkInstrumentor",
         "opentelemetry-instrumentation-google-genai"),
        ("openinference.instrumentation.google_genai", "GoogleGenAIInstrumentor",
         "openinference-instrumentation-google-genai"),
    ),
    "bedrock": (
        ("openinference.instrumentation.bedrock", "BedrockInstrumentor", "openinference-instrumentation-bedrock"),
        ("opentelemetry.instrumentation.bedrock", "BedrockInstrumentor", "opentelemetry-instrumentation-bedrock"),
    ),
    "mistralai": (
        ("openinference.instrumentation.mistralai", "MistralAIInstrumentor", "openinference-instrumentation-mistralai"),
        ("opentelemetry.instrumentation.mistralai", "MistralAiInstrumentor", "opentelemetry-instrumentation-mistralai"),
    ),
    "litellm": (("openinference.instrumentation.litellm", "LiteLLMInstrumentor", "openinference-instrumentation-litellm"),),
    "dspy": (("openinference.instrumentation.dspy", "DSPyInstrumentor", "openinference-instrumentation-dspy"),),
    "crewai": (("openinference.instrumentation.crewai", "CrewAIInstrumentor", "openinference-instrumentation-crewai"),),
}  # fmt: skip
_autologged: dict[str, str] = {}  # library -> the package that instruments it


def autolog(library: str) -> str | None:
    """Turn on the OpenTelemetry instrumentation of `library` ("openai", "anthropic", ...): the
    first installed package of AUTOLOG[library]. Returns that package's name (and logs it), or
    None with a warning naming the package to install. A library is instrumented once, whichever
    package did it first (a second instrumentor would record every call twice)."""
    key = library.lower().replace("-", "_")
    if key not in AUTOLOG:
        raise ValueError(f"spanlake.autolog: unknown library {library!r}; known: {', '.join(sorted(AUTOLOG))}")
    if key in _autologged:
        return _autologged[key]
    for module_name, class_name, package in AUTOLOG[key]:
        try:
            instrumentor = getattr(importlib.import_module(module_name), class_name)()
        except ImportError:
            continue
        except Exception as exc:  # an instrumentation broken against this library's version
            logger.warning("spanlake.autolog(%r): %s could not load (%s); trying the next", library, package, exc)
            continue
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=_provider or otel_trace.get_tracer_provider())
        _autologged[key] = package
        logger.info("spanlake.autolog(%r): instrumented with %s", library, package)
        return package
    logger.warning("spanlake.autolog(%r): no instrumentation installed; pip install %s", library, AUTOLOG[key][0][2])
    return None


_autolog = autolog  # instrument() takes a parameter of the same name


# --- spans -------------------------------------------------------------------------------------


def to_json(value: Any) -> str:
    """A value as JSON for a span attribute: pydantic models, dataclasses and objects with
    to_dict/model_dump become objects; anything else unknown becomes its repr."""
    return json.dumps(value, default=_plain, ensure_ascii=False)


def _plain(value: Any) -> Any:
    for method in ("model_dump", "to_dict", "dict"):
        if callable(getattr(value, method, None)):
            try:
                return getattr(value, method)()
            except Exception:
                break
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return repr(value)


class LiveSpan:
    """An open span, as `start_span` yields it: record inputs, outputs and attributes."""

    def __init__(self, span: Span) -> None:
        self.span = span

    @property
    def trace_id(self) -> str:
        return f"{self.span.get_span_context().trace_id:032x}"

    @property
    def span_id(self) -> str:
        return f"{self.span.get_span_context().span_id:016x}"

    def set_inputs(self, inputs: Any) -> None:
        self.span.set_attribute(SPAN_INPUTS, to_json(inputs))

    def set_outputs(self, outputs: Any) -> None:
        self.span.set_attribute(SPAN_OUTPUTS, to_json(outputs))

    def set_attribute(self, key: str, value: Any) -> None:
        ok = isinstance(value, str | bool | int | float) or (
            isinstance(value, list | tuple) and all(isinstance(v, str | bool | int | float) for v in value)
        )
        self.span.set_attribute(key, value if ok else to_json(value))

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def record_exception(self, exc: BaseException) -> None:
        self.span.record_exception(exc)
        self.span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def _tracer() -> otel_trace.Tracer:
    return otel_trace.get_tracer(TRACER_NAME)


def _open(name: str, span_type: str | None, attributes: dict[str, Any] | None) -> Span:
    span = _tracer().start_span(name)
    if span_type:
        span.set_attribute(SPAN_TYPE, json.dumps(span_type.upper()))
    if attributes:
        LiveSpan(span).set_attributes(attributes)
    return span


@contextlib.contextmanager
def start_span(
    name: str, *, span_type: str | None = None, inputs: Any = None, attributes: dict[str, Any] | None = None
) -> Iterator[LiveSpan]:
    """A span around a block, current inside it (spans opened inside nest under it). An
    exception leaving the block is recorded on the span and re-raised."""
    span = _open(name, span_type, attributes)
    live = LiveSpan(span)
    if inputs is not None:
        live.set_inputs(inputs)
    with otel_trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
        try:
            yield live
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):
                live.record_exception(exc)
            raise


def trace(
    func: F | None = None, *, name: str | None = None, span_type: str | None = None,
    attributes: dict[str, Any] | None = None,
) -> Any:  # fmt: skip
    """Record each call of the function as a span: its arguments as inputs, its return value as
    outputs, an exception as an error. Works on functions, coroutines, generators and async
    generators (a generator's span lasts until it is exhausted or closed; its outputs are the
    items it yielded). `@spanlake.trace` and `@spanlake.trace(span_type="TOOL")` both work."""
    if func is None:
        return functools.partial(trace, name=name, span_type=span_type, attributes=attributes)
    span_name = name or func.__qualname__
    signature = inspect.signature(func)

    def inputs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            return {"args": list(args), **kwargs}
        bound.apply_defaults()
        return {k: v for k, v in bound.arguments.items() if k not in ("self", "cls")}

    if inspect.isasyncgenfunction(func):

        @functools.wraps(func)
        async def async_gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            span, items = _open(span_name, span_type, attributes), list[Any]()
            live = LiveSpan(span)
            live.set_inputs(inputs(args, kwargs))
            agen = func(*args, **kwargs)
            try:
                while True:
                    token = otel_context.attach(otel_trace.set_span_in_context(span))
                    try:
                        item = await agen.__anext__()
                    except StopAsyncIteration:
                        break
                    finally:
                        otel_context.detach(token)
                    if len(items) < MAX_GENERATOR_ITEMS:
                        items.append(item)
                    yield item
            except BaseException as exc:
                if not isinstance(exc, GeneratorExit):
                    live.record_exception(exc)
                raise
            finally:
                live.set_outputs(items)
                span.end()

        return async_gen_wrapper

    if inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            span, items = _open(span_name, span_type, attributes), list[Any]()
            live = LiveSpan(span)
            live.set_inputs(inputs(args, kwargs))
            gen = func(*args, **kwargs)
            try:
                while True:
                    token = otel_context.attach(otel_trace.set_span_in_context(span))
                    try:
                        item = next(gen)
                    except StopIteration as stop:
                        if stop.value is not None:
                            items.append(stop.value)
                        break
                    finally:
                        otel_context.detach(token)
                    if len(items) < MAX_GENERATOR_ITEMS:
                        items.append(item)
                    yield item
            except BaseException as exc:
                if not isinstance(exc, GeneratorExit):
                    live.record_exception(exc)
                raise
            finally:
                live.set_outputs(items)
                span.end()

        return gen_wrapper

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            with start_span(span_name, span_type=span_type, inputs=inputs(args, kwargs), attributes=attributes) as s:
                result = await func(*args, **kwargs)
                s.set_outputs(result)
                return result

        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with start_span(span_name, span_type=span_type, inputs=inputs(args, kwargs), attributes=attributes) as s:
            result = func(*args, **kwargs)
            s.set_outputs(result)
            return result

    return wrapper
