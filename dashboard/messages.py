"""Span inputs and outputs read as a conversation: the chat shapes instrumentations store
(spanlake.query.entities.parse_payload decodes the text first) turned into `Message`s of
`Part`s, so a page draws them the same way whatever wrote them.

Shapes understood (docs/CONVENTIONS.md says which attribute each comes from):
- OTel GenAI `gen_ai.input.messages` / `output.messages`: [{role, parts: [{type: text | tool_call
  | tool_call_response | reasoning, ...}]}]
- OpenAI chat (MLflow, OpenLLMetry, OpenInference's `input.value`): {messages: [...]} requests,
  {choices: [{message}]} responses, messages with `tool_calls` and role `tool` results; the
  Responses API's {input | output: [message | function_call | function_call_output items]}
- Anthropic content blocks (text, thinking, tool_use, tool_result); Vercel AI parts (text,
  tool-call, tool-result); OpenInference's flattened `llm.input_messages.N.message.*` as ingest
  reassembles them; LangChain's {messages: [[...]]} batches.
Anything else is not a conversation (`conversation` returns None) and is shown as JSON or text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from spanlake.query.entities import parse_payload

__all__ = ["Message", "Part", "conversation"]

PartKind = Literal["text", "reasoning", "tool_call", "tool_result", "data"]
_TEXT_TYPES = {"text", "input_text", "output_text", "message"}
_REASONING_TYPES = {"reasoning", "thinking"}
_CALL_TYPES = {"tool_call", "tool_use", "tool-call", "function_call"}
_RESULT_TYPES = {"tool_call_response", "tool_result", "tool-result", "function_call_output"}
# LangChain's message classes and types, by the role they stand for.
_LANGCHAIN_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "tool"}


@dataclass(frozen=True)
class Part:
    """One piece of a message: text, reasoning, a tool call (name, id, arguments in `data`), a
    tool result (id, name when known, the result in `data` or `text`) or other data (images...)."""

    kind: PartKind
    text: str | None = None
    name: str | None = None
    id: str | None = None
    data: Any = None


@dataclass(frozen=True)
class Message:
    role: str
    parts: tuple[Part, ...]


def conversation(value: Any) -> list[Message] | None:
    """The messages `value` (a parsed payload) holds, or None when it is not a conversation."""
    items = _message_list(value)
    if items is None:
        return None
    messages = [m for m in (_message(item) for item in items) if m is not None]
    return messages if messages and len(messages) == len(items) else None


def _message_list(value: Any) -> list[Any] | None:
    if isinstance(value, list):
        if value and all(isinstance(v, list) for v in value):  # LangChain batches: [[messages]]
            value = [m for batch in value for m in batch]
        return value if value and all(_looks_like_message(v) for v in value) else None
    if not isinstance(value, Mapping):
        return None
    for key in ("messages", "input", "output"):  # a request, or the Responses API's items
        inner = value.get(key)
        if isinstance(inner, list):
            found = _message_list(inner)
            if found is not None:
                return found
    choices = value.get("choices")
    if isinstance(choices, list) and choices and all(isinstance(c, Mapping) for c in choices):
        out = [c.get("message") or c.get("delta") or {"role": "assistant", "content": c.get("text")} for c in choices]
        return out if all(_looks_like_message(m) for m in out) else None
    return [value] if _looks_like_message(value) and "role" in value else None


def _looks_like_message(value: Any) -> bool:
    if not isinstance(value, Mapping):
        return False
    if "role" in value:
        return any(k in value for k in ("content", "parts", "tool_calls", "function_call"))
    if value.get("type") in _CALL_TYPES | _RESULT_TYPES:  # Responses API items
        return True
    return _langchain_role(value) is not None


def _langchain_role(value: Mapping[str, Any]) -> str | None:
    kind = value.get("type")
    if isinstance(kind, str) and kind in _LANGCHAIN_ROLES and "content" in value:
        return _LANGCHAIN_ROLES[kind]
    ids = value.get("id")
    if value.get("lc") and isinstance(ids, list) and ids and isinstance(value.get("kwargs"), Mapping):
        cls = str(ids[-1]).removesuffix("MessageChunk").removesuffix("Message").lower()
        return _LANGCHAIN_ROLES.get(cls)
    return None


def _message(item: Mapping[str, Any]) -> Message | None:
    kind = item.get("type")
    if "role" not in item and kind in _CALL_TYPES | _RESULT_TYPES:  # a Responses API item
        part = _block(item)
        return Message("assistant" if kind in _CALL_TYPES else "tool", (part,)) if part else None
    role = item.get("role")
    if role is None:
        role = _langchain_role(item)
        if item.get("lc"):
            item = item["kwargs"]
    if role is None:
        return None
    parts = list(_content(item.get("parts", item.get("content"))))
    for call in item.get("tool_calls") or ():
        parts.append(_openai_call(call))
    if isinstance(item.get("function_call"), Mapping):
        parts.append(_openai_call({"function": item["function_call"]}))
    if role in ("tool", "function") and parts and all(p.kind == "text" for p in parts):
        # An OpenAI tool message: its content is the result of the call it names.
        parts = [Part("tool_result", text=_joined(parts), id=item.get("tool_call_id"), name=item.get("name"))]
    return Message(str(role), tuple(parts))


def _joined(parts: list[Part]) -> str:
    return "\n\n".join(p.text or "" for p in parts)


def _content(content: Any) -> Iterable[Part]:
    if content is None or content == "":
        return
    if isinstance(content, str):
        yield Part("text", text=content)
    elif isinstance(content, list):
        for block in content:
            if isinstance(block, str):
                yield Part("text", text=block)
            elif isinstance(block, Mapping):
                yield _block(block) or Part("data", data=dict(block))
            else:
                yield Part("data", data=block)
    else:
        yield Part("data", data=content)


def _block(block: Mapping[str, Any]) -> Part | None:
    kind = block.get("type")
    text = block.get("text", block.get("content"))
    if kind in _TEXT_TYPES and isinstance(text, str):
        return Part("text", text=text)
    if kind in _REASONING_TYPES:
        return Part("reasoning", text=str(block.get("thinking") or block.get("content") or block.get("text") or ""))
    if kind in _CALL_TYPES:
        arguments = next((block[k] for k in ("arguments", "input", "args") if k in block), None)
        return Part("tool_call", name=_name(block), id=_call_id(block), data=_decoded(arguments))
    if kind in _RESULT_TYPES:
        result = next((block[k] for k in ("response", "result", "output", "content") if k in block), None)
        result = _decoded(result)
        if isinstance(result, list) and all(isinstance(b, Mapping) and b.get("type") == "text" for b in result):
            result = "\n\n".join(str(b.get("text", "")) for b in result)  # Anthropic's text blocks
        return Part("tool_result", name=_name(block), id=_call_id(block),
                    text=result if isinstance(result, str) else None, data=None if isinstance(result, str) else result)  # fmt: skip
    if kind is None and isinstance(text, str) and set(block) <= {"text", "content"}:
        return Part("text", text=text)
    return None


def _openai_call(call: Any) -> Part:
    if not isinstance(call, Mapping):
        return Part("tool_call", data=call)
    function: Mapping[str, Any] = call["function"] if isinstance(call.get("function"), Mapping) else call
    return Part("tool_call", name=_name(function), id=_call_id(call), data=_decoded(function.get("arguments")))


def _name(block: Mapping[str, Any]) -> str | None:
    name = block.get("name", block.get("toolName"))
    return None if name is None else str(name)


def _call_id(block: Mapping[str, Any]) -> str | None:
    for key in ("id", "call_id", "tool_call_id", "tool_use_id", "toolCallId"):
        if block.get(key) is not None:
            return str(block[key])
    return None


def _decoded(value: Any) -> Any:
    """Tool arguments and results are often JSON text: decode them so they print as JSON."""
    return parse_payload(value) if isinstance(value, str) else value
