"""Human feedback from the dashboard: the names to label with (the registered scorers of
SPANLAKE_SCORERS_FILE), the value kinds people give (yes/no, a number, text), and the write,
through the jobs layer's human API (spanlake.jobs.assessments: log_feedback, override_feedback),
as source HUMAN with the reviewer as source_id.

A label whose name already has a verdict on the same trace (and span) overrides it: the old row
stays for the record and every reader (quality figures, `feedback.` filters) counts the person's.
yes/no is stored as a bool, as the built-in scorers store their verdicts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import polars as pl
import streamlit as st

from spanlake.dashboard import data
from spanlake.errors import SpanlakeError
from spanlake.jobs.assessments import log_feedback, override_feedback
from spanlake.jobs.feedback import AssessmentSource
from spanlake.jobs.registry import load_registry
from spanlake.query import Assessment, Trace
from spanlake.settings import Settings

Kind = Literal["yes/no", "number", "text"]
KINDS: tuple[Kind, ...] = ("yes/no", "number", "text")
_KIND_OF_TYPE: dict[str, Kind] = {"bool": "yes/no", "number": "number", "string": "text"}
FLASH = "feedback_flash"  # session key: the last write's message, toasted on the next run


@st.cache_data(ttl=30, show_spinner=False)
def _registered(path: str, mtime: float) -> tuple[list[str], str | None]:
    try:
        return [r.name for r in load_registry(Path(path))], None
    except SpanlakeError as exc:
        return [], str(exc)


def scorer_names() -> tuple[list[str], str | None]:
    """The registered scorers' names, and why there are none (no scorers file, a bad entry)."""
    path = Settings().scorers_file
    try:
        mtime = path.stat().st_mtime
    except OSError:
        mtime = -1.0
    return _registered(str(path), mtime)


@data.loader("assessments")
def value_kinds(assessments: pl.LazyFrame) -> dict[str, Kind]:
    """Each feedback name's usual value kind (what its scorer writes), for the form's default."""
    rows = (
        assessments.filter(pl.col("kind") == "feedback", pl.col("value_type").is_in(list(_KIND_OF_TYPE)))
        .group_by("name")
        .agg(pl.col("value_type").mode().first())
        .collect()
    )
    return {name: _KIND_OF_TYPE[kind] for name, kind in rows.iter_rows()}


def current_verdict(trace: Trace, name: str, span_id: str | None) -> Assessment | None:
    """The valid feedback of this name on the trace (or span) that a new label replaces."""
    found = [a for a in trace.search_assessments(name, type="feedback") if a["span_id"] == span_id]
    return found[-1] if found else None


def record(trace: Trace, *, name: str, value: Any, reviewer: str, rationale: str | None = None,
           span_id: str | None = None) -> str:  # fmt: skip
    """Write one HUMAN feedback row (an override when the name has a verdict already); returns
    a sentence saying what was written. Raises SpanlakeError with a clear message."""
    name, reviewer = name.strip(), reviewer.strip()
    if not reviewer:
        raise SpanlakeError("Enter your name or e-mail as the reviewer: it is stored as the label's source.")
    if not name:
        raise SpanlakeError("Choose a name for the feedback (a registered scorer, or type a new one).")
    if value is None or value == "":
        raise SpanlakeError(f"Give {name!r} a value.")
    warehouse, options = data.location()
    source = AssessmentSource("HUMAN", reviewer)
    old = current_verdict(trace, name, span_id)
    if old is None:
        log_feedback(trace_id=trace.trace_id, name=name, value=value, rationale=rationale or None, source=source,
                     span_id=span_id, warehouse=warehouse, storage_options=options)  # fmt: skip
        said = f"Saved {name} = {shown(value)}"
    else:
        override_feedback(trace_id=trace.trace_id, assessment_id=old["assessment_id"], value=value,
                          rationale=rationale or None, source=source, warehouse=warehouse, storage_options=options)  # fmt: skip
        said = f"Saved {name} = {shown(value)}, replacing {shown(old['value'])} by {_source(old)}"
    data.refresh_versions()
    return said


def shown(value: Any) -> str:
    """A value as the form offers it: bools as yes/no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "–" if value is None else str(value)


def _source(a: Assessment) -> str:
    return f"{a['source_type']} {a['source_id'] or ''}".strip()


def value_input(kind: Kind, *, key: str, label: str = "Value", optional: bool = False) -> Any:
    """The input for a value of this kind; None while nothing is given. `optional` offers no
    default (the Review queue leaves names unlabelled unless the reviewer picks a value)."""
    if kind == "yes/no":
        picked = st.radio(label, ["yes", "no"], key=key, index=None if optional else 0, horizontal=True)
        return None if picked is None else picked == "yes"
    if kind == "number":
        return st.number_input(label, value=None if optional else 0.0, key=key, placeholder="a number")
    return (st.text_input(label, key=key, placeholder="a short verdict") or "").strip() or None


def reviewer_input() -> str:
    """The reviewer's name, kept for the session across pages (it becomes the label's source_id)."""
    return (st.text_input("Reviewer", key="reviewer", persist_state="session", placeholder="your name or e-mail",
                          help="Stored as the label's source_id (source HUMAN).") or "").strip()  # fmt: skip


def saved(message: str) -> None:
    """After a write: keep its message for the next run's toast, and rerun so the page shows it."""
    st.session_state[FLASH] = message
    st.rerun()


def flash() -> None:
    """Toast the last write's message (the write reran the page)."""
    said = st.session_state.pop(FLASH, None)
    if said:
        st.toast(said, icon=":material/check_circle:")
