"""The OTLP/HTTP gateway (`spanlake gateway`): `POST /v1/traces` -> the Kafka topic, keyed by
trace id, so any OTel SDK (MLflow, OpenInference, OpenLLMetry, Logfire) can send spans without a
Collector.

It follows the OTLP/HTTP specification where the peers do not (see docs/DESIGN.md):
- 200 only after Kafka acknowledged every record (acks=all): a 200 never covers a span that was
  not handed over. A timeout may still have delivered a record; the client's retry then sends it
  twice, and ingest's (trace_id, span_id) de-duplication keeps one.
- Spans that fail the validation ingest applies (spanlake.ingest.otlp.decode) are left out and
  reported as partial success (`rejected_spans` and a message), still a 200.
- A body that does not parse: 400 with a `google.rpc.Status`. Over the limit, counted after
  decompression while streaming: 413. Unknown content type or encoding: 415. Kafka unavailable:
  503 with a short Retry-After (OTel clients give up past their 10 s timeout). Error bodies use the
  request's encoding (protobuf or JSON).
- `GET /health`: 200 when Kafka answers for the topic, else 503.

Each trace's spans become one record holding an ExportTraceServiceRequest in the request's own
encoding, with the resource and scope they came with: the topic holds OTLP exactly as the
Collector's Kafka exporter (partitioned by trace id) would write it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from google.rpc.status_pb2 import Status
from kafka import KafkaProducer
from kafka.errors import KafkaError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from spanlake.encoding import CONTENT_TYPE, CONTENT_TYPES, Encoding
from spanlake.errors import DecodeError
from spanlake.ingest.otlp import decode

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 20 * 1024 * 1024  # the spec's recommended limit, after decompression
# google.rpc.Code values
INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAVAILABLE, UNIMPLEMENTED = 3, 8, 14, 12
ENCODINGS = {"", "identity", "gzip", "x-gzip", "deflate"}


class KafkaUnavailable(Exception):
    """The records could not be handed to Kafka (the client should retry after Retry-After)."""


class _TooLarge(Exception):
    pass


@dataclass
class GatewayConfig:
    bootstrap_servers: str
    topic: str
    max_body_bytes: int = MAX_BODY_BYTES
    send_timeout_seconds: float = 5.0  # per request, within the OTel clients' 10 s
    retry_after_seconds: int = 2


class KafkaHandOver:
    """The one producer of the gateway, created on first use and again after Kafka was down.
    While it is known to be down (for Retry-After seconds after a failure), requests are refused
    at once instead of each waiting out the timeout."""

    def __init__(self, config: GatewayConfig, make_producer: Callable[..., KafkaProducer] = KafkaProducer) -> None:
        self.config = config
        self._make = make_producer
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()
        self._down_until = 0.0

    def _get(self) -> KafkaProducer:
        with self._lock:
            if time.monotonic() < self._down_until:
                raise KafkaUnavailable("Kafka was unreachable a moment ago")
            if self._producer is None:
                ms = int(self.config.send_timeout_seconds * 1000)
                try:
                    self._producer = self._make(
                        bootstrap_servers=self.config.bootstrap_servers.split(","),
                        acks="all", linger_ms=5, max_request_size=self.config.max_body_bytes + (1 << 20),
                        max_block_ms=ms, request_timeout_ms=max(ms - 500, 1000), delivery_timeout_ms=ms + 500,
                        bootstrap_timeout_ms=ms,
                    )  # fmt: skip
                except KafkaError as exc:
                    self._failed()
                    raise KafkaUnavailable(f"cannot reach Kafka at {self.config.bootstrap_servers}: {exc}") from exc
            return self._producer

    def _failed(self) -> None:
        self._down_until = time.monotonic() + self.config.retry_after_seconds

    def send(self, records: list[tuple[bytes, bytes]], encoding: Encoding) -> None:
        """Send (key, value) records and wait until Kafka acknowledged all of them."""
        producer = self._get()
        headers = [("content-type", CONTENT_TYPE[encoding])]
        try:
            futures = [producer.send(self.config.topic, key=k, value=v, headers=headers) for k, v in records]
            deadline = time.monotonic() + self.config.send_timeout_seconds + 1
            for future in futures:
                future.get(timeout=max(deadline - time.monotonic(), 0.1))
        except KafkaError as exc:
            with self._lock:
                self._failed()
            raise KafkaUnavailable(f"Kafka did not acknowledge the spans: {exc}") from exc

    def reachable(self) -> bool:
        try:
            return bool(self._get().partitions_for(self.config.topic))
        except (KafkaUnavailable, KafkaError):
            with self._lock:
                self._failed()
            return False

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=self.config.send_timeout_seconds)
                self._producer = None


# --- the request body ----------------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytes:
    """The body, decompressed, refusing it as soon as it passes `limit` bytes (before or after
    decompression): a small gzip bomb never grows past the limit in memory."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _TooLarge(f"body of {int(declared):,} bytes is over the {limit:,}-byte limit")
    coding = request.headers.get("content-encoding", "").strip().lower()
    inflate = None
    if coding in ("gzip", "x-gzip"):
        inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    elif coding == "deflate":
        inflate = zlib.decompressobj()
    out = bytearray()
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _TooLarge(f"body is over the {limit:,}-byte limit")
        if inflate is None:
            out += chunk
            continue
        try:
            out += inflate.decompress(chunk, limit + 1 - len(out))
        except zlib.error as exc:
            raise DecodeError(f"body is not valid {coding} data: {exc}") from None
        if len(out) > limit or inflate.unconsumed_tail:
            raise _TooLarge(f"body is over the {limit:,}-byte limit once decompressed")
    if inflate is not None:
        if not inflate.eof and received:
            raise DecodeError(f"body is truncated {coding} data")
        out += inflate.flush()
        if len(out) > limit:
            raise _TooLarge(f"body is over the {limit:,}-byte limit once decompressed")
    return bytes(out)


# --- one record per trace ------------------------------------------------------------------


def split_proto(body: bytes, keep: set[tuple[str, str]]) -> dict[str, bytes]:
    """trace id (hex) -> an ExportTraceServiceRequest with that trace's kept spans, each under a
    copy of the resource and scope it came with."""
    request = ExportTraceServiceRequest.FromString(body)
    out: dict[str, ExportTraceServiceRequest] = {}
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            homes: dict[str, Any] = {}  # trace id -> its ScopeSpans copy for this ss
            for span in ss.spans:
                trace_id = span.trace_id.hex()
                if (trace_id, span.span_id.hex()) not in keep:
                    continue
                home = homes.get(trace_id)
                if home is None:
                    target = out.setdefault(trace_id, ExportTraceServiceRequest())
                    new_rs = target.resource_spans.add(schema_url=rs.schema_url)
                    new_rs.resource.CopyFrom(rs.resource)
                    home = homes[trace_id] = new_rs.scope_spans.add(schema_url=ss.schema_url)
                    home.scope.CopyFrom(ss.scope)
                home.spans.add().CopyFrom(span)
    return {trace_id: r.SerializeToString() for trace_id, r in out.items()}


def split_json(body: bytes, keep: set[tuple[str, str]]) -> dict[str, bytes]:
    """split_proto for OTLP JSON (ids are hex strings there)."""
    doc = orjson.loads(body)
    out: dict[str, dict[str, Any]] = {}
    for rs in doc.get("resourceSpans") or ():
        for ss in rs.get("scopeSpans") or ():
            homes: dict[str, list[Any]] = {}
            for span in ss.get("spans") or ():
                trace_id = str(span.get("traceId", "")).lower()
                if (trace_id, str(span.get("spanId", "")).lower()) not in keep:
                    continue
                if trace_id not in homes:
                    target = out.setdefault(trace_id, {"resourceSpans": []})
                    scope = {k: v for k, v in ss.items() if k != "spans"}
                    scope["spans"] = homes[trace_id] = []
                    target["resourceSpans"].append({**{k: v for k, v in rs.items() if k != "scopeSpans"},
                                                    "scopeSpans": [scope]})  # fmt: skip
                homes[trace_id].append(span)
    return {trace_id: orjson.dumps(r) for trace_id, r in out.items()}


def records_of(body: bytes, encoding: Encoding) -> tuple[list[tuple[bytes, bytes]], int, str]:
    """(key, value) records of the valid spans, the number rejected, and why (first reasons)."""
    spans, rejects = decode(body, encoding)
    keep = {(s.trace_id, s.span_id) for s in spans}
    split = split_json if encoding == "otlp_json" else split_proto
    records = [(trace_id.encode(), value) for trace_id, value in split(body, keep).items()]
    # decode rejects a span without keeping it; a span kept twice (a duplicate) is sent as given.
    why = "; ".join(r.error for r in rejects[:3]) + (f"; and {len(rejects) - 3} more" if len(rejects) > 3 else "")
    return records, len(rejects), why


# --- responses -----------------------------------------------------------------------------


def _status(code: int, message: str, encoding: Encoding | None, http: int, **headers: str) -> Response:
    if encoding == "otlp_json":
        return JSONResponse({"code": code, "message": message}, status_code=http, headers=headers)
    body = Status(code=code, message=message).SerializeToString()
    return Response(body, status_code=http, media_type=CONTENT_TYPE["otlp_proto"].decode(), headers=headers)


def _success(encoding: Encoding, rejected: int, message: str) -> Response:
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    if encoding == "otlp_json":
        doc = {"partialSuccess": {"rejectedSpans": rejected, "errorMessage": message}} if rejected else {}
        return JSONResponse(doc)
    return Response(response.SerializeToString(), media_type=CONTENT_TYPE["otlp_proto"].decode())


def create_app(config: GatewayConfig, kafka: KafkaHandOver | None = None) -> Starlette:
    """The Starlette app; `kafka` hands records over (one KafkaHandOver per process by default)."""
    hand_over = kafka or KafkaHandOver(config)

    async def traces(request: Request) -> Response:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        encoding = CONTENT_TYPES.get(media)
        if encoding is None:
            return _status(INVALID_ARGUMENT, f"unsupported content type {media or '(none)'!r}: send "
                           "application/x-protobuf or application/json", None, 415)  # fmt: skip
        coding = request.headers.get("content-encoding", "").strip().lower()
        if coding not in ENCODINGS:
            return _status(UNIMPLEMENTED, f"unsupported content encoding {coding!r}: send gzip, deflate or none",
                           encoding, 415)  # fmt: skip
        try:
            body = await read_body(request, config.max_body_bytes)
            if not body.strip():
                return _success(encoding, 0, "")  # an empty request is a success (the spec)
            records, rejected, why = await run_in_threadpool(records_of, body, encoding)
        except _TooLarge as exc:
            return _status(RESOURCE_EXHAUSTED, str(exc), encoding, 413)
        except DecodeError as exc:
            return _status(INVALID_ARGUMENT, str(exc), encoding, 400)
        except ClientDisconnect:
            return Response(status_code=400)
        if records:
            try:
                await run_in_threadpool(hand_over.send, records, encoding)
            except KafkaUnavailable as exc:
                logger.warning("spanlake gateway: %s", exc)
                return _status(UNAVAILABLE, f"{exc}; retry later", encoding, 503,
                               **{"Retry-After": str(config.retry_after_seconds)})  # fmt: skip
        message = f"{rejected} spans rejected: {why}" if rejected else ""
        return _success(encoding, rejected, message)

    async def health(request: Request) -> Response:
        up = await run_in_threadpool(hand_over.reachable)
        doc = {"status": "ok" if up else "unavailable", "kafka": config.bootstrap_servers, "topic": config.topic,
               "kafka_reachable": up}  # fmt: skip
        return JSONResponse(doc, status_code=200 if up else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(hand_over.close)

    return Starlette(routes=[Route("/v1/traces", traces, methods=["POST"]), Route("/health", health)],
                     lifespan=lifespan)  # fmt: skip
