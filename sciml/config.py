"""Frozen dataclass configs <-> YAML, with strict validation.

One source of truth: the dataclass *is* the schema. ``from_dict`` rejects unknown keys, missing required keys
and wrong types, naming the full key path (``train.stages[1].lr``) so the user can find the line to fix.
Only ``yaml.safe_load`` is used: a config file can never construct arbitrary Python objects.

Supported field types: ``bool``, ``int``, ``float``, ``str``, ``Path``, ``Literal[...]``, ``X | None``,
``tuple[X, ...]``, ``tuple[X, Y]``, ``list[X]``, ``dict[str, X]`` and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union, cast, get_args, get_origin, get_type_hints

import yaml

from sciml.errors import UsageError, explain
from sciml.io import atomic_write_text

# PyYAML reads YAML 1.1, where a float needs a dot: `lr: 1e-3` and `--set lr=5e-05` arrive as strings. Scientific
# notation without one is still unmistakably a number, so float fields accept it (other strings stay errors).
_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")

T = TypeVar("T")


class ConfigError(UsageError):
    """A config value, key or file is invalid; the message names the key path."""


def _fmt(path: str) -> str:
    return path or "<root>"


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against type ``tp`` and convert where lossless (int -> float, list -> tuple)."""
    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{_fmt(path)}: {value!r} matches none of {tp}")
    if origin is typing.Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{_fmt(path)}: {value!r} is not one of {list(choices)}")
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{_fmt(path)}: expected a mapping for {tp.__name__}, got {type(value).__name__}")
        return _from_mapping(tp, value, path)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{_fmt(path)}: expected a list, got {type(value).__name__} {value!r}")
        args = get_args(tp)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                raise ConfigError(f"{_fmt(path)}: expected {len(args)} items, got {len(value)}")
            items = [_coerce(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))]
        else:
            item_tp = args[0] if args else Any
            items = [_coerce(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{_fmt(path)}: expected a mapping, got {type(value).__name__}")
        kt, vt = get_args(tp) or (Any, Any)
        return {_coerce(k, kt, f"{path}.<key>"): _coerce(v, vt, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{_fmt(path)}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{_fmt(path)}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{_fmt(path)}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str) and value.strip().lower() in (
            "inf",
            "+inf",
            "-inf",
            "nan",
            ".inf",
            "-.inf",
        ):
            return float(value.strip().lower().replace(".inf", "inf"))
        if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
            return float(value)
        raise ConfigError(f"{_fmt(path)}: expected a number, got {value!r}")
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{_fmt(path)}: expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{_fmt(path)}: expected a path string, got {value!r}")
        return Path(value)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{_fmt(path)}: unsupported type {tp} for value {value!r}")


def _from_mapping(cls: type[T], data: dict[str, Any], path: str) -> T:
    fields = {f.name: f for f in dataclasses.fields(cast(Any, cls)) if f.init}  # cls is a dataclass (checked)
    hints = get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(
            f"unknown key {', '.join(where + str(k) for k in unknown)} in {cls.__name__} "
            f"(valid keys: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, f in fields.items():
        sub = f"{path}.{name}" if path else name
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key {sub} in {cls.__name__}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # __post_init__ validation
        raise ConfigError(f"{_fmt(path)}: {exc}") from None


def from_dict(cls: type[T], data: dict[str, Any] | None) -> T:
    """Build dataclass ``cls`` from a plain mapping, rejecting unknown keys and wrong types."""
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"{cls!r} is not a dataclass type")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping at the top level of {cls.__name__}, got {type(data).__name__}")
    return _from_mapping(cls, data, "")


def to_dict(obj: Any) -> Any:
    """Convert a (nested) dataclass to plain YAML-safe Python values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return obj  # yaml writes .inf / .nan, which safe_load reads back as floats
    return obj


def load_yaml(path: str | os.PathLike[str]) -> Any:
    """Read a YAML file with ``safe_load``; a missing or malformed file is a :class:`ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:  # one line: FILE:LINE:COLUMN: what
        raise ConfigError(str(explain(exc, path))) from None


def from_yaml(cls: type[T], path: str | os.PathLike[str]) -> T:
    """Load dataclass ``cls`` from a YAML file (see :func:`from_dict` for the validation rules)."""
    data = load_yaml(path)  # its errors name the file already
    try:
        return from_dict(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def dump_yaml(obj: Any) -> str:
    """Serialise a dataclass (or plain data) to YAML text, keys in declaration order."""
    return yaml.safe_dump(to_dict(obj), sort_keys=False, default_flow_style=None)


def save_yaml(obj: Any, path: str | Path) -> Path:
    """Write :func:`dump_yaml` of ``obj`` to ``path`` atomically."""
    return atomic_write_text(path, dump_yaml(obj))


def replace(obj: T, **changes: Any) -> T:
    """``dataclasses.replace`` that validates the new values like :func:`from_dict`."""
    data = to_dict(obj)
    data.update({k: to_dict(v) for k, v in changes.items()})
    return from_dict(type(obj), data)
