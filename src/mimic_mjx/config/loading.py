"""Build an ``ExperimentConfig`` from YAML/JSON files, mappings and command-line overrides.

``from_dict`` rejects unknown keys (with a suggestion, or the new name of a
renamed key) and wrong types, so a typo in a YAML file fails before anything
is compiled.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any

from mimic_mjx.config.schema import RENAMED_KEYS, ExperimentConfig
from mimic_mjx.errors import ConfigError


def _coerce(value: Any, tp: Any, where: str, default: Any = None) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping of keys, got {type(value).__name__}")
        return _build(tp, value, where + ".", default)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        (item_tp, _ellipsis) = typing.get_args(tp)
        return tuple(_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if not (isinstance(value, float) and value.is_integer()):
                raise ConfigError(f"{where} must be an integer, got {value!r}")
            value = int(value)
        if abs(value) > _INT_LIMIT:
            raise ConfigError(f"{where} = {value} is out of range (at most {_INT_LIMIT})")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        return value
    return value


def _build(cls, values: dict, prefix: str = "", base: Any = None):
    """Build ``cls`` from ``values``; keys not given keep ``base``'s values (or the class defaults).

    Starting from the field's own default instance matters for sections whose
    class is shared (a reward term given only a weight keeps its own scale).
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(_unknown_key_message(prefix, key, fields))
        f = fields[key]
        default = (
            getattr(base, key) if base is not None else (f.default if f.default is not dataclasses.MISSING else None)
        )
        kwargs[key] = _coerce(value, hints[key], prefix + key, default)
    return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)


def _unknown_key_message(prefix: str, key: str, fields) -> str:
    dotted = f"{prefix}{key}"
    if dotted in RENAMED_KEYS:
        return f"config key '{dotted}' was renamed: use '{RENAMED_KEYS[dotted]}' (see docs/tracking-task.md)"
    close = difflib.get_close_matches(key, fields, n=1)
    hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
    what = "reward term" if prefix == "reward." else "config key"
    return f"unknown {what} '{dotted}'{hint}; known: {', '.join(sorted(fields))}"


_MAX_CONFIG_BYTES = 1 << 20
_INT_LIMIT = 2**31 - 1  # counts are int32 on the device; larger ones would overflow there


def from_dict(values: dict) -> ExperimentConfig:
    """Build and validate a config from a (possibly partial) nested mapping."""
    if not isinstance(values, dict):
        raise ConfigError(f"a config must be a mapping of keys, got {type(values).__name__}")
    return _build(ExperimentConfig, values).validate()


def load(path: str | Path) -> ExperimentConfig:
    """Load a YAML or JSON experiment config file."""
    import yaml

    from mimic_mjx.files import read_bytes, require_regular_file

    path = require_regular_file(path, ConfigError, "config file")
    raw = read_bytes(path, ConfigError, "config file", _MAX_CONFIG_BYTES, "an experiment config")
    try:
        if b"\x00" in raw:  # YAML would read some binary files as one long string
            raise UnicodeDecodeError("utf-8", raw, raw.index(b"\x00"), raw.index(b"\x00") + 1, "NUL byte")
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text file (not UTF-8); pass a YAML or JSON experiment config") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML/JSON: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ConfigError(f"{path} is nested too deeply to be an experiment config") from None
    if values is None:  # empty, or comments only: the defaults, as documented for an empty config
        values = {}
    try:
        return from_dict(values)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def apply_overrides(config: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """Apply ``section.key=value`` overrides (values parsed as YAML)."""
    import yaml

    values = config.to_dict()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like section.key=value, e.g. ppo.num_envs=256")
        dotted, raw = item.split("=", 1)
        keys = dotted.strip().split(".")
        node = values
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                raise ConfigError(f"unknown config section '{k}' in override '{item}'")
            node = node[k]
        node[keys[-1]] = yaml.safe_load(raw)
    return from_dict(values)
