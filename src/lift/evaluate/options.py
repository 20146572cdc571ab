"""Evaluator config fields that describe themselves, so one declaration makes the `lift eval NAME`
flag, the suite file's key, and the checks that run before any model is loaded.

An evaluator's config is a dataclass; `option(...)` declares a field with its help, choices, range
(a `lift.config.Bounds`, as `lift.config.bounded` makes), whether it names a file or folder that must
exist, and a converter for a string given for it:

    @dataclass
    class MyConfig:
        annotations: str = option("", help="the benchmark's JSON", path="file", required=True)
        subsets: list[str] = option(default_factory=lambda: list(SUBSETS), choices=SUBSETS, help="...")
        templates: list[str] = option(default_factory=..., convert=read_templates, path="file", help="...")
        max_tokens: int | None = option(None, ge=2, help="...")

Plain fields work too (their flag says only its type and default). `--name-with-dashes` is the flag of
field `name_with_dashes`; a list is several values (`--subsets a b`); a bool is `--x` / `--no-x`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any

from lift.config import Bounds, config_from_dict, flag_name
from lift.errors import LiftError

PATH_KINDS = ("file", "dir", "any")
SCALARS = (str, int, float, bool)


def option(
    default: Any = MISSING,
    *,
    default_factory: Callable[[], Any] | Any = MISSING,
    help: str = "",
    choices: Sequence[Any] | None = None,
    path: str | None = None,
    required: bool = False,
    convert: Callable[[str], Any] | None = None,
    metavar: str | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A dataclass field that knows its flag: help, choices, value range, path kind and converter.

    path: "file", "dir" or "any": a non-empty value must exist ("not found" before any model runs);
        in a suite file a relative one is taken from the suite file's folder. With `convert`, the
        path is the string converted (the converter reports a missing file).
    convert: applied to a string given for the field (a flag's value, a suite file's string), e.g.
        `--templates FILE` read into the config's list of templates.
    """
    if path is not None and path not in PATH_KINDS:
        raise ValueError(f"option(path=...) must be one of {PATH_KINDS}, got {path!r}")
    meta: dict[str, Any] = {"help": help, "required": required}
    if choices is not None:
        meta["choices"] = tuple(choices)
    if path is not None:
        meta["path"] = path
    if convert is not None:
        meta["convert"] = convert
    if metavar is not None:
        meta["metavar"] = metavar
    if (ge, gt, le, lt) != (None, None, None, None):
        meta["bounds"] = Bounds(ge=ge, gt=gt, le=le, lt=lt)  # the key `lift.config.check_bounds` reads
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta)


@dataclass(frozen=True)
class FieldSpec:
    """What one config field needs to become a flag and a checked suite key."""

    name: str
    kind: type  # str, int, float, bool; object: any YAML value
    optional: bool  # None allowed
    many: bool  # a list of `kind`
    default: Any  # MISSING: none
    help: str = ""
    choices: tuple[Any, ...] | None = None
    path: str | None = None
    required: bool = False
    convert: Callable[[str], Any] | None = None
    metavar: str | None = None
    bounds: Bounds | None = None

    @property
    def flag(self) -> str:
        return flag_name(self.name)

    def describe_default(self) -> str:
        if self.default is MISSING or self.default in ("", None, []):
            return ""
        if self.many and isinstance(self.default, (list, tuple)):
            return " ".join(str(v) for v in self.default)
        return str(self.default)


def _type_info(tp: Any) -> tuple[type, bool, bool]:
    """(scalar kind or object, optional?, list?) of an annotation."""
    optional = False
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        if len(args) != 1:
            return object, optional, False
        tp = args[0]
    if typing.get_origin(tp) in (list, tuple, Sequence) or tp in (list, tuple):
        args = typing.get_args(tp)
        item = args[0] if args else object
        return (item if item in SCALARS else object), optional, True
    return (tp if tp in SCALARS else object), optional, False


def fields_of(cls: type) -> list[FieldSpec]:
    """The FieldSpec of every field of config dataclass `cls`, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        kind, optional, many = _type_info(hints[f.name])
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else MISSING
        )  # fmt: skip
        m = f.metadata
        out.append(FieldSpec(
            name=f.name, kind=kind, optional=optional, many=many, default=default, help=m.get("help", ""),
            choices=m.get("choices"), path=m.get("path"), required=m.get("required", False),
            convert=m.get("convert"), metavar=m.get("metavar"), bounds=m.get("bounds"),
        ))  # fmt: skip
    return out


def _label(spec: FieldSpec, naming: str) -> str:
    return spec.flag if naming == "flag" else spec.name


def _empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, (list, tuple)) and not value)


def _path_problem(value: str, kind: str) -> str | None:
    p = Path(value)
    if kind == "file" and not p.is_file():
        return "is a folder; give a file" if p.is_dir() else "file not found"
    if kind == "dir" and not p.is_dir():
        return "is a file; give a folder" if p.exists() else "folder not found"
    if kind == "any" and not p.exists():
        return "not found"
    return None


def _item_problem(value: Any, kind: type) -> str | None:
    if kind is object:
        return None
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return None if ok else f"must be {kind.__name__}, got {value!r}"


def validate_config(cfg: Any, *, where: str = "", naming: str = "key") -> None:
    """One-line LiftError for the first field that is missing, of the wrong type, not among its
    choices, out of its range, or a path that does not exist. `naming`: "flag" names `--flags`
    (the command line), "key" the config's keys (the library, suite files)."""
    prefix = f"{where}: " if where else ""
    for spec in fields_of(type(cfg)):
        value = getattr(cfg, spec.name)
        label = _label(spec, naming)
        if _empty(value):
            if spec.required:
                raise LiftError(f"{prefix}{label} is required" + (f" ({spec.help})" if spec.help else ""))
            continue
        values = value if spec.many else [value]
        if spec.many and not isinstance(value, (list, tuple)):
            raise LiftError(f"{prefix}{label} must be a list, got {value!r}")
        for v in values:
            problem = _item_problem(v, spec.kind)
            if problem:
                raise LiftError(f"{prefix}{label} {problem}")
            if spec.choices is not None and v not in spec.choices:
                known = ", ".join(str(c) for c in spec.choices)
                raise LiftError(f"{prefix}{label} must be one of {known}, got {v!r}")
            if spec.bounds is not None and isinstance(v, (int, float)) and not spec.bounds.holds(v):
                raise LiftError(f"{prefix}{label} must be {spec.bounds.describe()}, got {v!r}")
            if spec.path is not None and spec.convert is None and isinstance(v, str) and v:
                problem = _path_problem(v, spec.path)
                if problem:
                    raise LiftError(f"{prefix}{label} {v}: {problem}")


def build_config(
    cls: type, data: dict[str, Any], *, where: str, base: str | Path | None = None, naming: str = "key"
) -> Any:
    """Config `cls` from `data` (flags given, a suite entry, a library dict): converters run on strings,
    relative paths are taken from `base` (a suite file's folder), then every field is validated."""
    specs = {s.name: s for s in fields_of(cls)}
    data = dict(data)
    for key, value in data.items():
        spec = specs.get(key)
        if spec is None or not isinstance(value, str):
            continue  # unknown keys: config_from_dict names them
        if spec.path is not None and base is not None and value and not Path(value).is_absolute():
            value = str(Path(base) / value)
        if spec.convert is not None:
            try:
                value = spec.convert(value)
            except LiftError as e:  # name the key (or flag) the string came from
                raise LiftError(
                    f"{where + ': ' if naming == 'key' else ''}{_label(spec, naming)}: {e}"
                ) from None
        data[key] = value
    cfg = config_from_dict(cls, data, where=where)
    validate_config(cfg, where=where if naming == "key" else "", naming=naming)
    return cfg
