"""`@scorer` and the `Scorer` base class, MLflow 3's shape: a scorer declares any of `inputs`,
`outputs`, `expectations`, `trace` and `session` by parameter name and gets only those.

    from spanlake import scorer

    @scorer
    def is_concise(outputs) -> bool:
        return len(str(outputs)) < 500

    @scorer(name="mentions_refund", aggregations=["mean", "p90"], timeout=10)
    def refund(inputs, outputs):
        return "refund" in str(outputs).lower()

LLM judges (spanlake.jobs.judges) are Scorers too; the runner treats both alike.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any, overload

from spanlake.jobs.feedback import SourceType

PARAMS = ("inputs", "outputs", "expectations", "trace", "session")
AGGREGATIONS = ("min", "max", "mean", "median", "variance", "p90")
DEFAULT_TIMEOUT_SECONDS = 300.0  # as MLflow: None means 300 s, 0 disables the timeout

Aggregation = str | Callable[[list[float]], float]


class Scorer:
    """Something that scores one trace (or, `vectorized`, a DataFrame of traces)."""

    source_type: SourceType = "CODE"
    # How many calls may run at once: 1 for code (CPU-bound), more for I/O-bound judges.
    concurrency: int = 1

    def __init__(
        self,
        name: str,
        *,
        aggregations: list[Aggregation] | None = None,
        timeout: float | None = None,
        vectorized: bool = False,
        params: tuple[str, ...] = (),
        version: str | None = None,
    ) -> None:
        if not name or not isinstance(name, str):
            raise ValueError(f"a scorer needs a name (a non-empty string), got {name!r}")
        for agg in aggregations or ():
            if not callable(agg) and agg not in AGGREGATIONS:
                raise ValueError(
                    f"scorer {name!r}: unknown aggregation {agg!r}; use {', '.join(AGGREGATIONS)} or a callable"
                )
        if "session" in params and set(params) & {"inputs", "outputs", "trace"}:
            raise ValueError(f"scorer {name!r}: a session-level scorer takes `session` (and `expectations`) only")
        self.name = name
        self.aggregations = list(aggregations) if aggregations else ["mean"]
        self.timeout = DEFAULT_TIMEOUT_SECONDS if timeout is None else float(timeout)
        self.vectorized = vectorized
        self.params = params
        self.version = version or _digest(name)

    @property
    def session_level(self) -> bool:
        return "session" in self.params

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # (*args: Any, **kwargs: Any): subclasses name their own
        raise NotImplementedError

    def start_run(self) -> None:
        """Called by the runner once before each run (an LLM judge starts its per-run budget afresh)."""

    def run(self, **available: Any) -> Any:
        """Call with only the parameters this scorer declares (MLflow's injection by name)."""
        return self(**{k: v for k, v in available.items() if k in self.params})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class FunctionScorer(Scorer):
    """A scorer made by `@scorer` from a function."""

    def __init__(self, func: Callable[..., Any], **options: Any) -> None:
        signature = inspect.signature(func)
        params = tuple(signature.parameters)
        if not options.get("vectorized"):
            unknown = [p for p in params if p not in PARAMS]
            if unknown:
                raise TypeError(
                    f"scorer {func.__name__!r} takes {', '.join(unknown)}; a scorer's parameters are "
                    f"named {', '.join(PARAMS)} (any subset)"
                )
        try:
            source = inspect.getsource(func)
        except (OSError, TypeError):  # defined in a REPL or exec(): the name and signature stand in
            source = f"{func.__qualname__}{signature}"
        name = options.pop("name", None) or func.__name__
        super().__init__(name, params=params, version=_digest(source), **options)
        self.func = func
        self.__doc__ = func.__doc__
        self.__wrapped__ = func

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)


@overload
def scorer(func: Callable[..., Any], /) -> FunctionScorer: ...
@overload
def scorer(
    func: None = None, /, *, name: str | None = None, aggregations: list[Aggregation] | None = None,
    timeout: float | None = None, vectorized: bool = False,
) -> Callable[[Callable[..., Any]], FunctionScorer]: ...  # fmt: skip
def scorer(
    func: Callable[..., Any] | None = None, /, *, name: str | None = None,
    aggregations: list[Aggregation] | None = None, timeout: float | None = None, vectorized: bool = False,
) -> FunctionScorer | Callable[[Callable[..., Any]], FunctionScorer]:  # fmt: skip
    """Make a scorer of a function, bare (`@scorer`) or with options (`@scorer(name=...)`)."""

    def make(f: Callable[..., Any]) -> FunctionScorer:
        return FunctionScorer(f, name=name, aggregations=aggregations, timeout=timeout, vectorized=vectorized)

    return make(func) if func is not None else make


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
