"""One registry mechanism for everything `lift` has several kinds of (methods, vision towers, losses,
poolings, caption sources, evaluators, export formats, store codecs), in the style of timm's
`register_model` / `create_model`:

    LOSSES = Registry("loss", flag="--loss")

    @LOSSES.register("infonce", help="symmetric CLIP loss")
    class InfoNCELoss(nn.Module): ...

    LOSSES.get("infonce")       # the registered object; a one-line LiftError names the known ones
    LOSSES.names()              # what CLI `choices` and `--help` list

Built-ins whose modules are heavy to import are declared by name -> module (or (module, help)), so
listing the names and their help (for `--help`) imports nothing and the module is imported when its
entry is first used. A registry over a plugin package (`package="lift.methods"`) imports every module
of it when first asked, so a new kind there is one new file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from lift.errors import LiftError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    help: str = ""


class Registry(Generic[T]):
    """Named kinds of one thing. `kind` names it in errors; `flag` is the CLI flag that chooses one."""

    def __init__(
        self, kind: str, *, flag: str | None = None, lazy: dict[str, str | tuple[str, str]] | None = None,
        package: str | None = None,
    ) -> None:  # fmt: skip
        self.kind, self.flag = kind, flag
        # every module of `package` registers its entries when first needed: a new kind is one new file
        self._package: str | None = package
        self._entries: dict[str, Entry[T]] = {}
        # name -> the module that registers it when imported (and its help, so `--help` imports nothing)
        self._lazy = {n: (m if isinstance(m, str) else m[0]) for n, m in (lazy or {}).items()}
        self._lazy_help = {n: m[1] for n, m in (lazy or {}).items() if not isinstance(m, str)}

    def register(self, name: str, *, help: str = "") -> Callable[[T], T]:
        """Decorator: register the decorated class or function under `name`."""

        def add(obj: T) -> T:
            self.add(name, obj, help=help)
            return obj

        return add

    def add(self, name: str, obj: T, *, help: str = "") -> None:
        if name in self._entries and self._entries[name].obj is not obj:
            raise LiftError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = Entry(name, obj, help or self._lazy_help.get(name, ""))

    def _load(self, name: str | None = None) -> None:
        if self._package is not None:
            package, self._package = self._package, None
            module = importlib.import_module(package)
            for info in pkgutil.iter_modules(module.__path__):
                importlib.import_module(f"{package}.{info.name}")
        if name is not None and name not in self._entries and name in self._lazy:
            importlib.import_module(self._lazy[name])

    def entry(self, name: str) -> Entry[T]:
        self._load(name)
        if name not in self._entries:
            where = f"{self.flag} must be one of" if self.flag else f"unknown {self.kind} {name!r}; known:"
            got = f", got {name!r}" if self.flag else ""
            raise LiftError(f"{where} {', '.join(self.names())}{got}")
        return self._entries[name]

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def names(self) -> list[str]:
        """Every registered name (lazy ones too, without importing them), sorted."""
        self._load()
        return sorted(set(self._entries) | set(self._lazy))

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        """(name, object) of every entry, importing lazy ones."""
        return [(name, self.get(name)) for name in self.names()]

    def help(self, name: str) -> str:
        if name not in self._entries and name in self._lazy_help:
            return self._lazy_help[name]
        return self.entry(name).help

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"


def describe(registry: Registry[Any]) -> str:
    """`name: help` lines for a `--help` text."""
    return "\n".join(f"  {name}: {registry.help(name)}" for name in registry.names())
