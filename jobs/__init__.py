"""spanlake.jobs: batch Polars jobs over the tables: scorers, LLM judges, evaluation over stored
traces, production scoring, token prices (`prices`: span costs from genai-prices and an override
file) and cost tables (`costs`: span_costs, trace_costs, cost_rollups). Reads through
`spanlake.query` and `spanlake.tables`; writes `assessments`, `job_runs` and the cost tables.
Names load on first use.

    from spanlake.jobs import evaluate, scorer
    from spanlake.jobs.builtins import LatencyOverThreshold, PIIDetection
"""

from __future__ import annotations

import importlib
from typing import Any

# Bound now, not on first use: importing the submodules spanlake.jobs.evaluate and .scorer binds
# those names to the modules, which would shadow the function for every later `from spanlake.jobs import`.
from spanlake.jobs.evaluate import evaluate as evaluate
from spanlake.jobs.scorer import scorer as scorer

_EXPORTS = {
    "Scorer": "spanlake.jobs.scorer",
    "Feedback": "spanlake.jobs.feedback",
    "Expectation": "spanlake.jobs.feedback",
    "AssessmentSource": "spanlake.jobs.feedback",
    "AssessmentError": "spanlake.jobs.feedback",
    "CategoricalRating": "spanlake.jobs.feedback",
    "log_feedback": "spanlake.jobs.assessments",
    "log_expectation": "spanlake.jobs.assessments",
    "override_feedback": "spanlake.jobs.assessments",
    "write_assessments": "spanlake.jobs.assessments",
    "score_traces": "spanlake.jobs.runner",
    "EvaluationResult": "spanlake.jobs.evaluate",
    **{
        name: "spanlake.jobs.judges"
        for name in ("Guidelines", "ExpectationsGuidelines", "Correctness", "RelevanceToQuery", "Safety",
                     "RetrievalGroundedness", "make_judge")
    },  # fmt: skip
}

__all__ = sorted([*_EXPORTS, "evaluate", "scorer"])


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
