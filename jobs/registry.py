"""Registered scorers: the jobs config file production scoring reads (SPANLAKE_SCORERS_FILE; its
`[[monitors]]` are jobs.monitor_rules').

    # spanlake-scorers.toml
    [[scorers]]
    builtin = "latency_over"          # a built-in (spanlake.jobs.builtins) ...
    params = { threshold_ms = 5000 }
    sample_rate = 1.0

    [[scorers]]
    use = "my_scorers:mentions_refund" # ... or your own code, `module:attribute`
    name = "refund"                    # optional: the scorer's own name otherwise
    sample_rate = 0.1                  # 0..1 of the completed traces, chosen by trace id
    filter = "service_name = 'support-bot'"

`use` imports the user's own module in the job's process (the config file's folder is on the
import path), so custom code scorers run where the job runs. The attribute is a Scorer, or a
class or factory that `params` are passed to. YAML (`scorers:` holding the same entries) is
read when the file ends in .yaml or .yml and pyyaml is installed.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spanlake.errors import ConfigError, NothingConfigured
from spanlake.jobs.scorer import PARAMS, Scorer

KEYS = {"builtin", "use", "name", "params", "sample_rate", "filter"}


@dataclass(frozen=True)
class RegisteredScorer:
    """A scorer with its sampling: `version` changes when its code, name or params change
    (not with sample_rate or filter: those choose traces, they do not change verdicts)."""

    scorer: Scorer
    sample_rate: float
    filter: str | None

    @property
    def name(self) -> str:
        return self.scorer.name

    @property
    def version(self) -> str:
        return self.scorer.version


def load_registry(path: Path) -> list[RegisteredScorer]:
    """The scorers registered in `path`; a ConfigError naming the file and entry for anything wrong."""
    entries = _entries(path)
    registered = [_entry(path, i, entry) for i, entry in enumerate(entries, 1)]
    names = [r.name for r in registered]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{path}: scorer name {twice[0]!r} is registered twice; give one of them `name = ...`")
    return registered


def read_config(path: Path) -> dict[str, Any]:
    """The jobs config file (`[[scorers]]`, `[[monitors]]`) as a dict: TOML, or YAML when it ends in
    .yaml/.yml; a ConfigError naming the file when it is missing or does not parse."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise NothingConfigured(
            f"no jobs config file at {path} (scorers and monitors); write one (see examples/scorers.toml) "
            "or set SPANLAKE_SCORERS_FILE / --config"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read jobs config file {path}: {exc.strerror}") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"{path} is YAML, which needs pyyaml (pip install pyyaml); or write it as TOML") from None
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    else:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return doc if isinstance(doc, dict) else {}


def _entries(path: Path) -> list[Any]:
    scorers = read_config(path).get("scorers")
    if not isinstance(scorers, list) or not scorers:
        raise NothingConfigured(f"{path} registers no scorers: it needs a `scorers` list ([[scorers]] tables in TOML)")
    return scorers


def _entry(path: Path, index: int, entry: Any) -> RegisteredScorer:
    where = f"{path}, scorer {index}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: an entry is a table of keys ({', '.join(sorted(KEYS))}), got {entry!r}")
    unknown = sorted(set(entry) - KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; keys are {', '.join(sorted(KEYS))}")
    if ("builtin" in entry) == ("use" in entry):
        raise ConfigError(f'{where}: give exactly one of `builtin = "<name>"` or `use = "module:attribute"`')
    where = f"{where} ({entry.get('name') or entry.get('builtin') or entry.get('use')})"
    params = entry.get("params", {})
    if not isinstance(params, dict):
        raise ConfigError(f"{where}: `params` is a table of keyword arguments, got {params!r}")
    rate = entry.get("sample_rate", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise ConfigError(f"{where}: sample_rate must be a number from 0 to 1, got {rate!r}")
    filter_string = entry.get("filter")
    if filter_string is not None:
        if not isinstance(filter_string, str):
            raise ConfigError(f"{where}: filter must be a search filter string, got {filter_string!r}")
        from spanlake.query import compile_filter

        try:
            compile_filter(filter_string)
        except Exception as exc:  # FilterError: say where it was
            raise ConfigError(f"{where}: bad filter: {exc}") from None
    target = _resolve(where, path, entry)
    scorer = _instantiate(where, target, params)
    if entry.get("name") is not None:
        if not isinstance(entry["name"], str) or not entry["name"]:
            raise ConfigError(f"{where}: name must be a non-empty string, got {entry['name']!r}")
        scorer.name = entry["name"]
    # The version the results carry: the scorer's own (its code or prompt) with its name and params.
    identity = json.dumps([scorer.version, scorer.name, params], sort_keys=True, default=str)
    scorer.version = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return RegisteredScorer(scorer, float(rate), filter_string)


def _resolve(where: str, path: Path, entry: dict[str, Any]) -> Any:
    if "builtin" in entry:
        known = _builtins()
        target = known.get(str(entry["builtin"]))
        if target is None:
            names = sorted({n for n, c in known.items() if n == getattr(c, "default_name", None)})
            raise ConfigError(f"{where}: no built-in scorer {entry['builtin']!r}; built-ins are {', '.join(names)}")
        return target
    spec = entry["use"]
    module_name, _, attribute = str(spec).partition(":")
    if not module_name or not attribute:
        raise ConfigError(f'{where}: use = {spec!r} must be `module:attribute`, e.g. "my_scorers:is_concise"')
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # the user's scorer modules sit beside their config
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(f"{where}: cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigError(f"{where}: module {module_name!r} has no attribute {attribute!r}") from None


def _builtins() -> dict[str, type[Scorer]]:
    """The built-in scorer classes (spanlake.jobs.builtins) by their default name and class name."""
    module = importlib.import_module("spanlake.jobs.builtins")
    out: dict[str, type[Scorer]] = {}
    for attribute in getattr(module, "__all__", dir(module)):
        value = getattr(module, attribute)
        if (
            isinstance(value, type)
            and issubclass(value, Scorer)
            and isinstance(getattr(value, "default_name", None), str)
        ):
            out[value.default_name] = out[value.__name__] = value  # type: ignore[attr-defined]
    return out


def _instantiate(where: str, target: Any, params: dict[str, Any]) -> Scorer:
    if isinstance(target, Scorer):
        if params:
            raise ConfigError(f"{where}: {target.name!r} is a scorer already and takes no params")
        return _copy(target)
    if not callable(target) or (
        inspect.isfunction(target) and set(inspect.signature(target).parameters) <= set(PARAMS)
    ):
        raise ConfigError(f"{where}: {getattr(target, '__name__', target)!r} is not a scorer; decorate it with @scorer")
    try:
        made = target(**params)
    except Exception as exc:
        raise ConfigError(
            f"{where}: cannot make the scorer with params {params}: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(made, Scorer):
        raise ConfigError(
            f"{where}: it is not a scorer and did not make one (got {type(made).__name__}); decorate it with @scorer"
        )
    return made


def _copy(scorer: Scorer) -> Scorer:
    # Two entries may register one module-level scorer under two names: each gets its own object.
    import copy

    return copy.copy(scorer)
