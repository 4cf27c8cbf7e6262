"""What a scorer returns and a reviewer logs, in MLflow 3's shapes: `Feedback`, `Expectation`,
`AssessmentSource`, `AssessmentError`. A scorer written for MLflow builds these with the same
field names; `spanlake.jobs.assessments` turns them into `assessments` rows.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any, Literal

SourceType = Literal["CODE", "LLM_JUDGE", "HUMAN"]
SOURCE_TYPES: tuple[SourceType, ...] = ("CODE", "LLM_JUDGE", "HUMAN")

# Error codes an assessment can carry (assessments.error_code).
SCORER_ERROR = "SCORER_ERROR"  # the scorer raised, or returned something no assessment can hold
SCORER_TIMEOUT = "SCORER_TIMEOUT"  # it ran past its timeout (MLflow records a timeout as SCORER_ERROR too)
BUDGET_EXCEEDED = "BUDGET_EXCEEDED"  # an LLM judge stopped calling: the run's token or USD budget is spent
JUDGE_ERROR = "JUDGE_ERROR"  # the judge endpoint failed after its retries, or its verdict did not parse


class CategoricalRating:
    """The values MLflow's built-in judges return."""

    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class AssessmentSource:
    source_type: SourceType = "CODE"
    source_id: str = "default"

    def __post_init__(self) -> None:
        kind = "LLM_JUDGE" if self.source_type == "AI_JUDGE" else str(self.source_type).upper()  # MLflow's legacy name
        if kind not in SOURCE_TYPES:
            raise ValueError(f"source_type must be one of {', '.join(SOURCE_TYPES)}, got {self.source_type!r}")
        object.__setattr__(self, "source_type", kind)


@dataclass(frozen=True)
class AssessmentError:
    error_code: str
    error_message: str | None = None
    stack_trace: str | None = None

    @classmethod
    def of(cls, error: Exception | AssessmentError | str, code: str = SCORER_ERROR) -> AssessmentError:
        if isinstance(error, AssessmentError):
            return error
        if isinstance(error, BaseException):
            stack = "".join(traceback.format_exception(error))[-1000:]  # MLflow keeps the last 1,000 characters
            return cls(code, f"{type(error).__name__}: {error}", stack)
        return cls(code, str(error))


@dataclass
class Feedback:
    """A verdict about a trace (or one of its spans). `name=None` takes the scorer's name."""

    name: str | None = None
    value: Any = None
    rationale: str | None = None
    metadata: dict[str, str] | None = None
    error: Exception | AssessmentError | str | None = None
    span_id: str | None = None
    source: AssessmentSource | None = None
    trace_id: str | None = None
    overrides: str | None = None
    # Set by LLM judges: what the verdict cost.
    judge_input_tokens: int | None = None
    judge_output_tokens: int | None = None
    judge_model: str | None = None

    @property
    def error_code(self) -> str | None:
        return None if self.error is None else AssessmentError.of(self.error).error_code

    @property
    def error_message(self) -> str | None:
        return None if self.error is None else AssessmentError.of(self.error).error_message


@dataclass
class Expectation:
    """Ground truth for a trace: what the right answer, facts or guidelines are."""

    name: str
    value: Any
    source: AssessmentSource = field(default_factory=lambda: AssessmentSource("HUMAN"))
    metadata: dict[str, str] | None = None
    span_id: str | None = None
    trace_id: str | None = None

    def __post_init__(self) -> None:
        if self.value is None:
            raise ValueError(f"expectation {self.name!r} needs a value (None is not one)")
