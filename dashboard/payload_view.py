"""A span's inputs or outputs drawn for people: a conversation as chat messages with roles, tool
calls and results; retrieved documents one by one; other JSON pretty-printed; long text folded."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import streamlit as st

from spanlake.dashboard.messages import Message, Part, conversation
from spanlake.query.entities import parse_payload

FOLD_CHARS = 800  # text longer than this (or than FOLD_LINES lines) opens folded
FOLD_LINES = 12
_AVATARS = {"system": ":material/settings:", "developer": ":material/settings:", "tool": ":material/build:",
            "function": ":material/build:"}  # fmt: skip


def show(stored: str | None, *, what: str) -> None:
    """Draw a stored payload (span_data.inputs/outputs text); `what` names it ("Inputs")."""
    if stored is None or stored == "":
        st.caption(f"{what}: none recorded.")
        return
    value = parse_payload(stored)
    messages = conversation(value)
    if messages is not None:
        for message in messages:
            show_message(message)
    elif _documents(value):
        for i, doc in enumerate(value):
            score = f" · score {doc['score']:.3g}" if isinstance(doc.get("score"), int | float) else ""
            with st.expander(f"Document {doc.get('id', i + 1)}{score}", expanded=i < 3):
                text(str(doc.get("content", "")))
                rest = {k: v for k, v in doc.items() if k not in ("id", "score", "content")}
                if rest:
                    st.json(rest, expanded=1)
    elif isinstance(value, (dict, list)):
        st.json(value, expanded=2)
    else:
        text(str(value))


def show_message(message: Message) -> None:
    with st.chat_message(message.role, avatar=_AVATARS.get(message.role)):
        if message.role not in ("user", "assistant", "ai", "human"):
            st.caption(message.role)
        for part in message.parts:
            _part(part)


def _part(part: Part) -> None:
    if part.kind == "text":
        text(part.text or "")
    elif part.kind == "reasoning":
        with st.expander("Reasoning", icon=":material/psychology:"):
            st.markdown(part.text or "")
    elif part.kind == "tool_call":
        st.markdown(f":material/build: **Tool call** `{part.name or '?'}`" + (f" · id `{part.id}`" if part.id else ""))
        if part.data not in (None, "", {}):
            _value(part.data)
    elif part.kind == "tool_result":
        label = part.name or part.id
        st.markdown(":material/output: **Tool result**" + (f" `{label}`" if label else ""))
        if part.text:
            text(part.text)
        elif part.data is not None:
            _value(part.data)
    else:
        _value(part.data)


def _value(value: Any) -> None:
    if isinstance(value, (dict, list)):
        st.json(value, expanded=2)
    else:
        text(str(value))


def text(body: str) -> None:
    """Text as it was written; long text shows its start, the whole of it folded below."""
    if len(body) <= FOLD_CHARS and body.count("\n") < FOLD_LINES:
        if _looks_preformatted(body):
            st.text(body)
        else:
            st.markdown(body)
        return
    head = body[:FOLD_CHARS].rsplit(" ", 1)[0]
    st.markdown(head + " …")
    with st.expander(f"Full text ({len(body):,} characters)"):
        st.text(body)


def _looks_preformatted(body: str) -> bool:
    # Tracebacks, tables, code: markdown would reflow them.
    return "\n  " in body or "\t" in body


def _documents(value: Any) -> bool:
    """Retrieved documents, as OpenInference's retrieval.documents.N.document.* reassemble."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(d, Mapping) and "content" in d and ("id" in d or "score" in d) and "role" not in d for d in value)
    )


def pretty(value: Any) -> str:
    """A compact one-line form of a value for tables and captions."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
