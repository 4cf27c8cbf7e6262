"""Reading a judge model's answer: the verdict and its rationale out of whatever came back
(plain JSON, fenced JSON, JSON with raw newlines in strings or prose around it, `Result: yes`
lines, a bare yes/no), typed to what the judge asks for. A judge turns a `VerdictError` into a
JUDGE_ERROR result; nothing here raises anything else.
"""

from __future__ import annotations

import json
import re
import typing
from typing import Any, Literal

YES_NO = Literal["yes", "no"]  # the built-in judges' value type (MLflow's CategoricalRating)

_RESULT_KEYS = ("result", "value", "verdict", "answer", "score", "rating")
_RATIONALE_KEYS = ("rationale", "reasoning", "reason", "explanation", "justification")
_TRUE = {"yes", "y", "true", "pass", "passed", "1"}
_FALSE = {"no", "n", "false", "fail", "failed", "0"}
_DECODER = json.JSONDecoder(strict=False)  # strict=False: models put raw newlines inside strings
_FENCE = re.compile(r"```[a-zA-Z]*[ \t]*\n?(.*?)```", re.S)
_LINE_KEY = r"^[ \t*#_>-]*({})[ \t*_]*[:=][ \t*_]*"
_RESULT_LINE = re.compile(_LINE_KEY.format("|".join(_RESULT_KEYS)) + r"(.+?)\s*$", re.I | re.M)
_RATIONALE_LINE = re.compile(
    _LINE_KEY.format("|".join(_RATIONALE_KEYS)) + r"(.+?)(?=" + _LINE_KEY.format("|".join(_RESULT_KEYS)) + r"|\Z)",
    re.I | re.M | re.S,
)


class VerdictError(ValueError):
    """The judge's answer holds no verdict of the type asked for."""


def parse_verdict(text: str, value_type: Any = YES_NO) -> tuple[Any, str | None]:
    """(value, rationale) from a judge's answer, the value typed as `value_type`."""
    found = _find(text or "")
    if found is None:
        raise VerdictError(f"judge answer holds no verdict: {quote(text)}")
    value, rationale = found
    try:
        return coerce(value, value_type), rationale
    except VerdictError as e:
        raise VerdictError(f"{e}; judge answer: {quote(text)}") from None


def _find(text: str) -> tuple[Any, str | None] | None:
    stripped = text.strip()
    candidates = [stripped, *(m.group(1).strip() for m in _FENCE.finditer(text))]
    for candidate in candidates:
        try:
            found = _from_json(_DECODER.decode(candidate))
        except ValueError:
            continue
        if found is not None:
            return found
    for start in (i for i, ch in enumerate(text) if ch == "{"):  # a JSON object inside prose
        try:
            obj, _ = _DECODER.raw_decode(text, start)
        except ValueError:
            continue
        if (found := _from_json(obj)) is not None:
            return found
    if line := _RESULT_LINE.search(text):  # "Rationale: ...\nResult: yes", MLflow's older judge format
        rationale = _RATIONALE_LINE.search(text)
        return _word(line.group(2)), rationale.group(2).strip() if rationale else None
    word = _word(stripped)
    if word.lower() in _TRUE | _FALSE:
        return word, None
    return None


def _from_json(obj: Any) -> tuple[Any, str | None] | None:
    if isinstance(obj, dict):
        keys = {str(k).lower(): k for k in obj}
        result = next((keys[k] for k in _RESULT_KEYS if k in keys), None)
        if result is None:
            return None
        why = next((obj[keys[k]] for k in _RATIONALE_KEYS if k in keys), None)
        return obj[result], None if why is None else str(why)
    if isinstance(obj, bool | int | float) or (isinstance(obj, str) and obj.strip()):
        return obj, None
    return None


def _word(text: str) -> str:
    return text.strip().strip("*_`\"'.!").strip()


def coerce(value: Any, value_type: Any) -> Any:
    """`value` as `value_type`: a Literal of strings, bool, int, float, str, dict or list."""
    if typing.get_origin(value_type) is Literal:
        options = typing.get_args(value_type)
        if isinstance(value, bool) and set(options) == {"yes", "no"}:
            return "yes" if value else "no"
        text = str(value).strip().lower()
        if set(options) == {"yes", "no"} and text in _TRUE | _FALSE:
            return "yes" if text in _TRUE else "no"
        for option in options:
            if str(option).lower() == text:
                return option
        raise VerdictError(f"verdict {value!r} is not one of {', '.join(map(repr, options))}")
    base = typing.get_origin(value_type) or value_type
    if base is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
    elif base is int and not isinstance(value, bool):
        number = _number(value)
        if number is not None and float(number).is_integer():
            return int(number)
    elif base is float and not isinstance(value, bool):
        number = _number(value)
        if number is not None:
            return float(number)
    elif base is str:
        return value if isinstance(value, str) else json.dumps(value)
    elif base in (dict, list) and isinstance(value, base):
        return value
    raise VerdictError(f"verdict {value!r} is not a {getattr(base, '__name__', base)}")


def _number(value: Any) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def describe(value_type: Any) -> str:
    """How the system prompt asks for the verdict."""
    if typing.get_origin(value_type) is Literal:
        return " or ".join(json.dumps(o) for o in typing.get_args(value_type))
    base = typing.get_origin(value_type) or value_type
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
             dict: "a JSON object", list: "a JSON array"}  # fmt: skip
    if base not in names:
        raise ValueError(
            f"feedback_value_type must be bool, int, float, str, dict, list or a Literal, got {value_type!r}"
        )
    return names[base]


def response_format(value_type: Any) -> dict[str, Any]:
    """The chat-completions `response_format` asking for {"rationale": string, "result": the value type}."""
    if typing.get_origin(value_type) is Literal:
        result: dict[str, Any] = {"type": "string", "enum": list(typing.get_args(value_type))}
    else:
        base = typing.get_origin(value_type) or value_type
        kinds = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "object", list: "array"}
        result = {"type": kinds[base]}
    schema = {
        "type": "object",
        "properties": {"rationale": {"type": "string"}, "result": result},
        "required": ["rationale", "result"],
        "additionalProperties": False,
    }
    # Strict mode wants every nested object's keys spelled out, which a free-form dict or list cannot.
    strict = result["type"] not in ("object", "array")
    return {"type": "json_schema", "json_schema": {"name": "verdict", "strict": strict, "schema": schema}}


def quote(text: str | None, limit: int = 200) -> str:
    """A raw answer shortened to one line for an error message."""
    flat = " ".join((text or "").split())
    return repr(flat if len(flat) <= limit else flat[:limit] + f"... ({len(text or '')} chars)")
