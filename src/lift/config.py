"""Typed configs: dataclasses built from dicts, YAML or JSON files and `key=value` overrides.

Unknown keys are rejected (a typo in a config must never be silently ignored), and every stage
saves its config beside its output so the output can be reproduced.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from lift.atomic import write_json
from lift.errors import LiftError

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The valid range of a numeric config field (None: unbounded on that side)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def describe(self) -> str:
        low = f"[{self.ge:g}" if self.ge is not None else f"({self.gt:g}" if self.gt is not None else "(-inf"
        high = f"{self.le:g}]" if self.le is not None else f"{self.lt:g})" if self.lt is not None else "inf)"
        if high == "inf)" and low != "(-inf":
            return f">= {self.ge:g}" if self.ge is not None else f"> {self.gt:g}"
        return f"in {low}, {high}"

    def holds(self, value: float) -> bool:
        return (
            math.isfinite(value)
            and (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )


def bounded(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None) -> Any:  # fmt: skip
    """A dataclass field whose value (when not None) must lie in the given range: `check_bounds` refuses
    others, naming the flag and the range, so 0, negative and NaN values never slip through."""
    return dataclasses.field(default=default, metadata={"bounds": Bounds(ge=ge, gt=gt, le=le, lt=lt)})


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def field_bounds(cls: type) -> dict[str, Bounds]:
    return {f.name: f.metadata["bounds"] for f in dataclasses.fields(cls) if "bounds" in f.metadata}


def check_bounds(cfg: Any) -> None:
    """One-line LiftError for the first field outside its `bounded(...)` range."""
    for name, bounds in field_bounds(type(cfg)).items():
        value = getattr(cfg, name)
        if value is not None and not bounds.holds(value):
            raise LiftError(f"{flag_name(name)} must be {bounds.describe()}, got {value!r}")


def _scalar_type(tp: Any) -> tuple[type, bool] | None:
    """(int | float | str | bool, optional?) for plain scalar fields; None for anything else."""
    optional = False
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        if len(args) != 1:
            return None
        tp = args[0]
    return (tp, optional) if tp in (int, float, str, bool) else None


def _type_problem(value: Any, tp: Any) -> str | None:
    scalar = _scalar_type(tp)
    if scalar is None:
        return None
    want, optional = scalar
    if value is None:
        return None if optional else f"must be {want.__name__}, got null"
    ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
    if want is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return None if ok else f"must be {want.__name__}, got {value!r}"


def _as_float(value: Any) -> Any:
    """YAML reads `1e-3` as a string and `1` as an int: both are floats to a float field."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _nested_dataclass(tp: Any) -> type | None:
    """The dataclass a field holds: `Section` or `Section | None` -> Section; anything else -> None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else None
    return tp if dataclasses.is_dataclass(tp) else None


def config_from_dict(cls: type[T], data: dict[str, Any], *, where: str = "config") -> T:
    """Build dataclass `cls` from `data`, recursing into nested (or optional nested) dataclasses;
    unknown keys fail."""
    if not isinstance(data, dict):
        raise LiftError(f"{where}: expected a mapping, got {type(data).__name__}")
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise LiftError(f"{where}: unknown key(s) {unknown} for {cls.__name__}; known: {sorted(types_)}")
    kwargs = {}
    for name, value in data.items():
        tp = _nested_dataclass(types_[name])
        if tp is not None and isinstance(value, dict):
            value = config_from_dict(tp, value, where=f"{where}.{name}")
        else:
            value = _as_float(value) if (_scalar_type(types_[name]) or (None,))[0] is float else value
            if problem := _type_problem(value, types_[name]):
                raise LiftError(f"{where}: {name} {problem}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise LiftError(f"{where}: {e}") from None


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _coerce(text: str, tp: Any) -> Any:
    """Parse an override value using the field's declared type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if text.lower() in ("none", "null"):
            return None
        return _coerce(text, args[0]) if len(args) == 1 else yaml.safe_load(text)
    if tp is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {text!r}")
    if tp in (int, float, str):
        return tp(text)
    return yaml.safe_load(text)


def apply_overrides(cls: type[T], cfg: T, overrides: list[str]) -> T:
    """Return a copy of `cfg` with `a.b=value` overrides applied (values typed by the field)."""
    data = config_to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise LiftError(f"override {item!r} is not key=value")
        key, text = item.split("=", 1)
        node, node_cls = data, cls
        *parents, leaf = key.split(".")
        for part in parents:
            field_types = _field_types(node_cls)
            if part not in field_types or not dataclasses.is_dataclass(field_types[part]):
                raise LiftError(f"override {item!r}: {part!r} is not a section of {node_cls.__name__}")
            node, node_cls = node[part], field_types[part]
        field_types = _field_types(node_cls)
        if leaf not in field_types:
            raise LiftError(f"override {item!r}: unknown key {leaf!r}; known: {sorted(field_types)}")
        try:
            node[leaf] = _coerce(text, field_types[leaf])
        except ValueError as e:
            raise LiftError(f"override {item!r}: {e}") from None
    return config_from_dict(cls, data)


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Defaults, then a YAML/JSON file, then `key=value` overrides."""
    cfg = cls()
    if path is not None:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise LiftError(f"{path}: cannot read config: {e}") from None
        merged = config_to_dict(cfg)
        merged.update(data)
        cfg = config_from_dict(cls, merged, where=str(path))
    return apply_overrides(cls, cfg, overrides or [])


def save_config(cfg: Any, path: str | Path) -> None:
    write_json(path, config_to_dict(cfg))


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise LiftError(f"{path}: file not found") from None
    except (OSError, json.JSONDecodeError) as e:
        raise LiftError(f"{path}: not readable JSON: {e}") from None
