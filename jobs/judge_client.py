"""A small client of any OpenAI-compatible chat-completions endpoint, for the LLM judges.

POST {base}/chat/completions with temperature 0 and a JSON-schema `response_format` (dropped
for good once the server rejects it). At most `concurrency` requests are in flight, over every
thread and judge sharing the client. A 429, a 5xx or a connection error is retried with
exponential backoff and jitter, waiting what `Retry-After` (seconds or an HTTP date) or
`retry-after-ms` asks. A run's budget stops further calls once spent, and the kept answers
(spanlake.jobs.judge_cache) make a re-run free. A USD budget prices each call as the cost job
prices judge spend (spanlake.jobs.prices: genai-prices and the prices file, at the call's time),
unless two flat per-million-token prices are set to override that.

HTTP is urllib3's: every install has it already (requests, under streamlit, stands on it), its
PoolManager is thread-safe and keeps connections alive, which the judges' throughput needs.
The API key goes into the Authorization header and nowhere else: not into reprs, logs, errors
or the cache.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import urllib3
from pydantic import SecretStr

from spanlake.errors import ConfigError, SpanlakeError
from spanlake.jobs.judge_cache import Kept, VerdictCache, cache_key
from spanlake.jobs.prices import PriceList
from spanlake.settings import Settings

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))
MAX_WAIT_SECONDS = 120.0  # the longest single wait between attempts, Retry-After included


class JudgeCallError(SpanlakeError):
    """The judge endpoint refused the request or kept failing through every retry."""


class BudgetExceeded(SpanlakeError):
    """This run's judge budget is spent: no further calls."""


@dataclass(frozen=True)
class Completion:
    content: str
    model: str
    input_tokens: int  # 0 when the answer came from the cache: this run paid nothing for it
    output_tokens: int
    cached: bool
    key: str


class Budget:
    """What a run may spend on judges, in tokens and/or USD; thread-safe.

    USD are counted from `prices` (default: genai-prices alone), or from the two flat prices per
    million tokens when both are given (an explicit override, for a model no price list knows)."""

    def __init__(
        self, *, tokens: int | None = None, usd: float | None = None,
        input_usd_per_mtok: float | None = None, output_usd_per_mtok: float | None = None,
        prices: PriceList | None = None,
    ) -> None:  # fmt: skip
        if (input_usd_per_mtok is None) != (output_usd_per_mtok is None):
            raise ConfigError(
                "set both judge_input_usd_per_mtok and judge_output_usd_per_mtok, or neither "
                "(the judge model is then priced by genai-prices and SPANLAKE_PRICES_FILE)"
            )
        self.tokens, self.usd = tokens, usd
        self._flat = None if input_usd_per_mtok is None else (input_usd_per_mtok, output_usd_per_mtok or 0.0)
        self._prices = (prices or PriceList()) if usd is not None and self._flat is None else None
        self._priced: set[str] = set()  # models check_model found a price for
        self._lock = threading.Lock()
        self.reset()

    def check_model(self, model: str) -> None:
        """Refuse, before any call, a USD budget that could not count `model`'s calls (never a silent zero)."""
        if self._prices is None or model in self._priced:
            return
        _, reason = self._prices.call_cost(model, 1, 1, dt.datetime.now(dt.timezone.utc))
        if reason is not None:
            raise _no_price(model, reason)
        self._priced.add(model)

    def _usd(self, input_tokens: int, output_tokens: int, models: tuple[str, ...]) -> float:
        if self._flat is not None:
            return (input_tokens * self._flat[0] + output_tokens * self._flat[1]) / 1e6
        if self._prices is None:
            return 0.0  # no USD budget: nothing to count
        at = dt.datetime.now(dt.timezone.utc)
        reason: str | None = "no model named"
        for model in models:  # the answer's model (a dated version, say) first, then the one asked for
            usd, reason = self._prices.call_cost(model, input_tokens, output_tokens, at)
            if usd is not None:
                return usd
        raise _no_price(models[-1] if models else None, reason)  # only for a model check_model never saw

    def reset(self) -> None:
        """A new run starts: nothing spent."""
        with self._lock:
            self.spent_tokens, self.spent_usd, self._said = 0, 0.0, False

    def spend(self, input_tokens: int, output_tokens: int, *models: str) -> None:
        """Count one call; `models` name what to price it by, first priced wins."""
        usd = self._usd(input_tokens, output_tokens, models)  # outside the lock: pricing reads Polars
        with self._lock:
            self.spent_tokens += input_tokens + output_tokens
            self.spent_usd += usd

    def check(self) -> None:
        """Raise BudgetExceeded once the run has spent its budget (said once in the log, every time in the error)."""
        with self._lock:
            if self.tokens is not None and self.spent_tokens >= self.tokens:
                why = f"judge budget of {self.tokens:,} tokens per run is spent ({self.spent_tokens:,} used)"
            elif self.usd is not None and self.spent_usd >= self.usd:
                why = f"judge budget of ${self.usd:,.4f} per run is spent (${self.spent_usd:,.4f} used)"
            else:
                return
            say, self._said = not self._said, True
        if say:
            log.warning("%s; no further judge calls this run", why)
        raise BudgetExceeded(f"{why}; no further judge calls this run")


def _no_price(model: str | None, reason: str | None) -> ConfigError:
    return ConfigError(
        f"judge model {model!r} has no price ({reason}), so a USD judge budget cannot count its calls: "
        "add it to SPANLAKE_PRICES_FILE, set SPANLAKE_JUDGE_INPUT_USD_PER_MTOK and _OUTPUT_USD_PER_MTOK, "
        "or budget tokens (SPANLAKE_JUDGE_BUDGET_TOKENS)"
    )


class JudgeClient:
    def __init__(
        self, *, base_url: str, model: str, api_key: SecretStr | str | None = None, concurrency: int = 8,
        timeout: float = 60.0, max_retries: int = 6, budget: Budget | None = None,
        cache: VerdictCache | None = None, backoff_seconds: float = 0.5,
    ) -> None:  # fmt: skip
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.concurrency, self.max_retries = model, concurrency, max_retries
        self._key = api_key if isinstance(api_key, SecretStr) or api_key is None else SecretStr(api_key)
        self.budget = budget or Budget()
        self.budget.check_model(model)
        self.cache = cache
        self.backoff_seconds = backoff_seconds
        self._slots = threading.BoundedSemaphore(concurrency)
        self._http = urllib3.PoolManager(maxsize=concurrency, retries=False, timeout=urllib3.Timeout(total=timeout))
        self._structured = True  # send response_format until the server rejects it

    @classmethod
    def from_settings(cls, settings: Settings) -> JudgeClient:
        path = settings.judge_cache_path or settings.cache_dir / "judge_cache.sqlite"
        budget = Budget(
            tokens=settings.judge_budget_tokens, usd=settings.judge_budget_usd,
            input_usd_per_mtok=settings.judge_input_usd_per_mtok, output_usd_per_mtok=settings.judge_output_usd_per_mtok,
            prices=PriceList.from_settings(settings) if settings.judge_budget_usd is not None else None,
        )  # fmt: skip
        return cls(
            base_url=settings.judge_base_url, model=settings.judge_model, api_key=settings.judge_api_key,
            concurrency=settings.judge_concurrency, timeout=settings.judge_timeout_seconds,
            max_retries=settings.judge_max_retries, budget=budget,
            cache=VerdictCache(path) if settings.judge_cache else None,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"JudgeClient(url={self.url!r}, model={self.model!r}, concurrency={self.concurrency})"

    def complete(
        self, judge: str, messages: list[dict[str, Any]], *, model: str | None = None,
        response_format: dict[str, Any] | None = None,
    ) -> Completion:  # fmt: skip
        """The model's answer to `messages`: from the cache when kept, else from the endpoint.

        Raises BudgetExceeded (the run's budget is spent) or JudgeCallError (the endpoint failed).
        """
        model = model or self.model
        key = cache_key(judge, model, messages)
        if self.cache is not None and (kept := self.cache.get(key)) is not None:
            return Completion(kept.content, kept.model, 0, 0, True, key)
        body: dict[str, Any] = {"model": model, "messages": messages, "temperature": 0}
        if response_format is not None and self._structured:
            body["response_format"] = response_format
        answer = self._post(body)
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if not choices or not isinstance(choices[0], dict) or not isinstance(choices[0].get("message"), dict):
            raise JudgeCallError(f"judge endpoint {self.url} answered without choices[0].message: {_short(answer)}")
        message = choices[0]["message"]
        usage = answer.get("usage") or {}
        tokens = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        answered = str(answer.get("model") or model)
        self.budget.spend(*tokens, answered, model)
        content = message.get("content") or message.get("refusal") or ""
        return Completion(str(content), answered, *tokens, False, key)

    def keep(self, judge: str, completion: Completion) -> None:
        """Keep an answer that parsed, so the next run with the same prompt does not pay for it."""
        if self.cache is not None and not completion.cached:
            kept = Kept(completion.content, completion.model, completion.input_tokens, completion.output_tokens)
            self.cache.put(completion.key, judge, kept)

    def _post(self, body: dict[str, Any]) -> Any:
        headers = {"Content-Type": "application/json"}
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key.get_secret_value()}"
        attempt = 0
        while True:
            wait: float | None = None
            with self._slots:
                # Checked holding a slot, so at most concurrency - 1 other calls can carry a run past its budget.
                self.budget.check()
                try:
                    response = self._http.request("POST", self.url, body=json.dumps(body).encode(), headers=headers)
                except urllib3.exceptions.HTTPError as e:
                    failure, status = f"{type(e).__name__}: {self._redact(str(e))}", None
                else:
                    status = response.status
                    if status == 200:
                        try:
                            return json.loads(response.data)
                        except ValueError:
                            raise JudgeCallError(
                                f"judge endpoint {self.url} answered 200 with a body that is not JSON: "
                                f"{_short(response.data.decode(errors='replace'))}"
                            ) from None
                    failure = f"HTTP {status}: {self._redact(_short(response.data.decode(errors='replace')))}"
                    wait = retry_after(response.headers)
            if status == 400 and "response_format" in body:
                log.info("judge endpoint %s rejected response_format; asking without it from now on", self.url)
                self._structured = False
                body = {k: v for k, v in body.items() if k != "response_format"}
                continue
            if status is not None and status not in RETRY_STATUSES:
                raise JudgeCallError(f"judge endpoint {self.url} refused the request: {failure}")
            if attempt >= self.max_retries:
                raise JudgeCallError(f"judge endpoint {self.url} failed {attempt + 1} times, last: {failure}")
            if wait is None:
                wait = min(MAX_WAIT_SECONDS, self.backoff_seconds * 2**attempt) * random.uniform(0.5, 1.0)
            else:  # the server said how long; a little jitter on top spreads the retrying threads
                wait = min(MAX_WAIT_SECONDS, wait * random.uniform(1.0, 1.1))
            log.debug("judge call failed (%s); retry %d in %.2f s", failure, attempt + 1, wait)
            time.sleep(wait)
            attempt += 1

    def _redact(self, text: str) -> str:
        secret = self._key.get_secret_value() if self._key is not None else ""
        return text.replace(secret, "**********") if secret else text


def retry_after(headers: Any) -> float | None:
    """Seconds the server asks to wait: `retry-after-ms` (OpenAI's), else `Retry-After` in seconds or as a date."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


_clients: dict[Hashable, JudgeClient] = {}
_clients_lock = threading.Lock()


def default_client() -> JudgeClient:
    """The process's client for the SPANLAKE_JUDGE_* / OPENAI_* settings: judges built without a
    client share it, and with it the concurrency limit, the budget and the cache.
    """
    settings = Settings()
    judge_fields = tuple(
        (name, getattr(settings, name)) for name in type(settings).model_fields if name.startswith("judge_")
    ) + (("cache_dir", settings.cache_dir), ("prices_file", settings.prices_file))  # a USD budget prices by it
    key = tuple((n, v.get_secret_value() if isinstance(v, SecretStr) else v) for n, v in judge_fields)
    with _clients_lock:
        if key not in _clients:
            _clients[key] = JudgeClient.from_settings(settings)
        return _clients[key]
