"""A synthetic, production-like LLM workload, produced through the real OpenTelemetry SDK and
KafkaSpanExporter: RAG pipelines, tool-calling agents, chat and embedding jobs across several
services, environments, users, sessions, models and providers, with long-tailed latencies,
realistic token counts and a few percent of errors. `seed` makes a run reproducible (ids,
shapes, values; timestamps are anchored at `start`).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

SERVICES = {  # service -> the trace shapes it serves
    "support-bot": ("agent", "chat"),
    "docs-rag": ("rag",),
    "search-api": ("rag", "embed"),
    "agent-runner": ("agent",),
}
ENVIRONMENTS = (("production", 0.8), ("staging", 0.15), ("dev", 0.05))
# Real models, named as their providers name them (all priced by genai-prices): (provider, requested
# model, the model the response reports). OpenAI answers an alias with a dated version; Anthropic is
# asked for the dated id; Gemini reports the name it was asked for.
CHAT_MODELS = (
    ("openai", "gpt-4o", "gpt-4o-2024-08-06"), ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
    ("openai", "o3-mini", "o3-mini-2025-01-31"),
    ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5-20250929"),
    ("anthropic", "claude-3-5-haiku-20241022", "claude-3-5-haiku-20241022"),
    ("gcp.gemini", "gemini-2.5-flash", "gemini-2.5-flash"),
)  # fmt: skip
# Models that spend output tokens on reasoning (reported inside output_tokens).
REASONING_MODELS = {"o3-mini-2025-01-31", "gemini-2.5-flash"}
LONG_CONTEXT_RATE = 0.003  # calls whose prompt passes Claude's 200k-token long-context tier
EMBED_MODELS = (("openai", "text-embedding-3-small"), ("cohere", "embed-v4.0"))
TOOLS = ("search_orders", "get_weather", "lookup_customer", "create_ticket", "run_sql", "fetch_url")
QUESTIONS = (
    "How do I reset my password?", "Where is my order {n}?", "Summarise the refund policy.",
    "What changed in release {n}?", "Compare plan A and plan B pricing.", "Why was I charged twice?",
    "Translate this paragraph to German.", "Which regions support SSO?",
)  # fmt: skip


class SeededIdGenerator(IdGenerator):
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def generate_span_id(self) -> int:
        return self.rng.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self.rng.getrandbits(128) or 1


@dataclass
class Clock:
    """Explicit span times: the workload runs at produce speed, not at the app's speed."""

    now_ns: int

    def advance(self, ms: float) -> int:
        self.now_ns += int(ms * 1e6)
        return self.now_ns


class Workload:
    def __init__(self, exporter: SpanExporter, *, seed: int = 0, start: dt.datetime | None = None) -> None:
        self.rng = random.Random(seed)
        self.users = [f"user-{i:04d}" for i in range(500)]
        start = start or dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
        self.start_ns = int(start.timestamp() * 1e9)
        self.providers: dict[tuple[str, str], TracerProvider] = {}
        ids = SeededIdGenerator(self.rng)
        for service, (env, _weight) in itertools.product(SERVICES, ENVIRONMENTS):
            provider = TracerProvider(
                resource=Resource.create(
                    {"service.name": service, "deployment.environment.name": env, "service.version": "1.4.2"}
                ),
                id_generator=ids,
            )
            provider.add_span_processor(
                BatchSpanProcessor(exporter, max_queue_size=100_000, max_export_batch_size=2048)
            )
            self.providers[(service, env)] = provider
        self.shapes: dict[str, Callable[[trace.Tracer, Clock, Span], None]] = {
            "rag": self._rag, "agent": self._agent, "chat": self._chat, "embed": self._embed,
        }  # fmt: skip

    # --- helpers ------------------------------------------------------------------------

    def _weighted(self, pairs: tuple[tuple[str, float], ...]) -> str:
        return self.rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]

    def _latency_ms(self, median: float, tail: float = 0.8) -> float:
        return median * math.exp(self.rng.gauss(0, tail))  # lognormal: long tail, p99 ~ 6x median

    def _tokens(self, median: int) -> int:
        return max(1, int(median * math.exp(self.rng.gauss(0, 0.6))))

    def _span(self, tracer: trace.Tracer, name: str, parent: Span | None, start: int, kind: SpanKind, attrs: dict):
        ctx = trace.set_span_in_context(parent) if parent is not None else None
        return tracer.start_span(name, context=ctx, kind=kind, start_time=start, attributes=attrs)

    def _usage(self, provider: str, model: str, turns: int) -> dict[str, int]:
        """Inclusive usage as the provider reports it: a prompt that grows with the conversation, its
        cached prefix (OpenAI and Gemini cache prompts of 1024+ tokens on their own, in 128-token
        steps for OpenAI; Anthropic writes the prefix once and reads it after), reasoning in output."""
        long_context = provider == "anthropic" and self.rng.random() < LONG_CONTEXT_RATE
        input_tokens = self.rng.randint(200_001, 600_000) if long_context else self._tokens(600 + 400 * turns)
        usage = {"gen_ai.usage.input_tokens": input_tokens}
        prefix = int(input_tokens * self.rng.uniform(0.5, 0.95))
        if input_tokens >= 1024 and provider == "anthropic":
            key = "gen_ai.usage.cache_creation.input_tokens" if turns <= 1 else "gen_ai.usage.cache_read.input_tokens"
            if self.rng.random() < 0.8:
                usage[key] = prefix
        elif input_tokens >= 1024 and self.rng.random() < (0.7 if turns > 1 else 0.3):
            usage["gen_ai.usage.cache_read.input_tokens"] = prefix // 128 * 128 if provider == "openai" else prefix
        visible = self._tokens(180)
        reasoning = self._tokens(500) if model in REASONING_MODELS else 0
        usage["gen_ai.usage.output_tokens"] = visible + reasoning
        if reasoning:
            usage["gen_ai.usage.reasoning.output_tokens"] = reasoning
        return usage

    def _llm_call(self, tracer, clock: Clock, parent: Span, messages: list[dict], fail_rate: float = 0.02) -> str:
        provider, model, response_model = self.rng.choice(CHAT_MODELS)
        start = clock.advance(self.rng.uniform(1, 5))
        span = self._span(tracer, f"chat {model}", parent, start, SpanKind.CLIENT, {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider, "gen_ai.request.model": model,
            "gen_ai.request.temperature": 0.2, "gen_ai.input.messages": json.dumps(messages),
        })  # fmt: skip
        end = clock.advance(self._latency_ms(900))
        if self.rng.random() < fail_rate:
            span.set_attribute("error.type", "RateLimitError")
            span.set_status(Status(StatusCode.ERROR, "429 Too Many Requests"))
            span.end(end_time=end)
            raise RuntimeError("rate limited")
        answer = f"Answer ({self._tokens(120)} tokens) based on {len(messages)} messages."
        span.set_attributes({
            "gen_ai.response.model": response_model, **self._usage(provider, response_model, len(messages)),
            "gen_ai.response.finish_reasons": ["stop"],
            "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": answer}]}]),
        })  # fmt: skip
        span.end(end_time=end)
        return answer

    # --- trace shapes -------------------------------------------------------------------

    def _rag(self, tracer, clock: Clock, root: Span) -> None:
        provider, model = self.rng.choice(EMBED_MODELS)
        s = self._span(tracer, f"embeddings {model}", root, clock.advance(2), SpanKind.CLIENT, {
            "gen_ai.operation.name": "embeddings", "gen_ai.provider.name": provider,
            "gen_ai.request.model": model, "gen_ai.usage.input_tokens": self._tokens(14),
        })  # fmt: skip
        s.end(end_time=clock.advance(self._latency_ms(60, 0.5)))
        s = self._span(tracer, "retrieve docs", root, clock.advance(1), SpanKind.CLIENT, {
            "gen_ai.operation.name": "retrieval", "gen_ai.data_source.id": "kb-main", "retrieval.top_k": 20,
        })  # fmt: skip
        s.end(end_time=clock.advance(self._latency_ms(45, 0.7)))
        s = self._span(tracer, "rerank", root, clock.advance(1), SpanKind.INTERNAL, {"openinference.span.kind": "RERANKER"})
        s.end(end_time=clock.advance(self._latency_ms(30, 0.4)))
        self._llm_call(tracer, clock, root, [{"role": "user", "parts": [{"type": "text", "content": "context + question"}]}])

    def _agent(self, tracer, clock: Clock, root: Span) -> None:
        messages = [{"role": "user", "parts": [{"type": "text", "content": "task"}]}]
        for _turn in range(self.rng.randint(1, 4)):
            self._llm_call(tracer, clock, root, messages)
            tool = self.rng.choice(TOOLS)
            s = self._span(tracer, f"execute_tool {tool}", root, clock.advance(2), SpanKind.INTERNAL, {
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool,
                "gen_ai.tool.call.id": f"call_{self.rng.getrandbits(32):08x}",
            })  # fmt: skip
            if self.rng.random() < 0.03:  # a failed tool call: the agent recovers, the root stays OK
                s.set_status(Status(StatusCode.ERROR, f"{tool} timed out"))
                s.add_event("exception", {"exception.type": "TimeoutError", "exception.message": f"{tool} timed out"})
            s.end(end_time=clock.advance(self._latency_ms(150, 1.0)))
            messages.append({"role": "tool", "parts": [{"type": "tool_call_response", "id": tool}]})
        self._llm_call(tracer, clock, root, messages)

    def _chat(self, tracer, clock: Clock, root: Span) -> None:
        self._llm_call(tracer, clock, root, [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}])

    def _embed(self, tracer, clock: Clock, root: Span) -> None:
        provider, model = self.rng.choice(EMBED_MODELS)
        for _ in range(self.rng.randint(1, 3)):
            s = self._span(tracer, f"embeddings {model}", root, clock.advance(1), SpanKind.CLIENT, {
                "gen_ai.operation.name": "embeddings", "gen_ai.provider.name": provider,
                "gen_ai.request.model": model, "gen_ai.usage.input_tokens": self._tokens(2000),
            })  # fmt: skip
            s.end(end_time=clock.advance(self._latency_ms(120, 0.4)))

    # --- driving ------------------------------------------------------------------------

    def emit_trace(self, index: int, spacing_ms: float) -> None:
        service = self.rng.choice(list(SERVICES))
        shape = self.rng.choice(SERVICES[service])
        tracer = self.providers[(service, self._weighted(ENVIRONMENTS))].get_tracer("spanlake.workload", "0.1.0")
        clock = Clock(self.start_ns + int(index * spacing_ms * 1e6))
        # a long tail of users: the busiest has ~5% of the traffic
        user = self.users[min(int((self.rng.paretovariate(1.1) - 1) * 20), len(self.users) - 1)]
        question = self.rng.choice(QUESTIONS).format(n=self.rng.randint(100, 999))
        root = self._span(tracer, f"{shape}.request", None, clock.now_ns, SpanKind.SERVER, {
            "gen_ai.operation.name": "invoke_agent" if shape == "agent" else "invoke_workflow",
            "user.id": user, "session.id": f"{user}-s{self.rng.randint(1, 5)}",
            "input.value": question, "mlflow.traceTag.shape": shape, "app.version": "2025.11.3",
        })  # fmt: skip
        try:
            self.shapes[shape](tracer, clock, root)
            root.set_attribute("output.value", f"Here is what I found about: {question}")
        except RuntimeError as exc:
            root.set_status(Status(StatusCode.ERROR, str(exc)))
            root.record_exception(exc, timestamp=clock.advance(1))
        root.end(end_time=clock.advance(self.rng.uniform(1, 10)))

    def run(self, traces: int, *, rate: float | None = None, on_progress: Callable[[int], None] | None = None) -> None:
        """Emit `traces` traces; with `rate` (traces/s) paced in real time, else as fast as possible."""
        spacing_ms = 1000.0 / rate if rate else 3_600_000.0 / max(traces, 1)  # spread over an hour
        began = time.monotonic()
        for i in range(traces):
            self.emit_trace(i, spacing_ms)
            if rate:
                delay = began + (i + 1) / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            if on_progress and (i + 1) % 100 == 0:
                on_progress(i + 1)
        self.shutdown()

    def shutdown(self) -> None:
        for provider in self.providers.values():
            provider.force_flush()
        for provider in self.providers.values():
            provider.shutdown()
