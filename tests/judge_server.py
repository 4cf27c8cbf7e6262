"""A real local HTTP server speaking OpenAI's chat-completions API: the stand-in for a paid judge
endpoint. Scriptable per test: replies queued in order (verdicts, 429s with Retry-After, 500s,
malformed verdicts, slow answers, usage counts), then a default reply or a function of the
request; it logs every request and counts how many were in flight at once.

    with JudgeServer() as server:
        server.script(Reply(status=429, headers={"Retry-After": "1"}), verdict("yes", "polite"))
        client = JudgeClient(base_url=server.url, model="judge-1")

`python tests/judge_server.py --port 8765` serves instant "yes" verdicts (for the benchmark).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    content: Any = None  # the message content: a str as is, anything else as JSON
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering: a slow model
    prompt_tokens: int = 100
    completion_tokens: int = 20
    body: bytes | None = None  # the raw response body, instead of a chat completion


def verdict(result: Any, rationale: str = "because", **options: Any) -> Reply:
    return Reply(content={"rationale": rationale, "result": result}, **options)


@dataclass
class Request:
    at: float  # time.monotonic() when it arrived
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def prompt(self) -> str:
        return "\n".join(str(m.get("content")) for m in self.body.get("messages", []))


class JudgeServer:
    def __init__(self, port: int = 0) -> None:
        self.default: Reply = verdict("yes")
        self.respond: Callable[[Request], Reply] | None = None  # when set, answers what the script does not
        self.reject_response_format = False  # answer 400 to requests that carry response_format
        self.requests: list[Request] = []
        self.in_flight = self.max_in_flight = 0
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}/v1"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    def start(self) -> JudgeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def __enter__(self) -> JudgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _reply(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            scripted = self._queue.popleft() if self._queue else None
        if self.reject_response_format and "response_format" in request.body:
            return Reply(status=400, body=b'{"error": {"message": "response_format is not supported"}}')
        if scripted is not None:
            return scripted
        return self.respond(request) if self.respond else self.default

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1


def _handler(server: JudgeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real endpoints do

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._send(Reply(status=404, body=b'{"error": {"message": "not found"}}'))
            request = Request(time.monotonic(), dict(self.headers), json.loads(raw))
            reply = server._reply(request)
            try:
                time.sleep(reply.delay)
                self._send(reply, request.body.get("model"))
            finally:
                server._done()

        def _send(self, reply: Reply, model: str | None = None) -> None:
            body = reply.body
            if body is None and reply.status == 200:
                content = reply.content if isinstance(reply.content, str) else json.dumps(reply.content)
                body = json.dumps({
                    "id": "chatcmpl-local", "object": "chat.completion", "created": int(time.time()), "model": model,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                              "total_tokens": reply.prompt_tokens + reply.completion_tokens},
                }).encode()  # fmt: skip
            body = body if body is not None else json.dumps({"error": {"message": f"status {reply.status}"}}).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read the request log instead
            pass

    return Handler


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    port = parser.parse_args().port
    with JudgeServer(port) as s:
        print(s.url, flush=True)
        threading.Event().wait()
