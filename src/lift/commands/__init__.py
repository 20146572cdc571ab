"""One module per `lift` subcommand; see `lift.cli` for the contract each module follows."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def discover_modules(package: ModuleType) -> list[ModuleType]:
    """The modules of `package` that define NAME and run(), sorted by (ORDER, NAME).

    Commands and benchmarks are registered by existing: adding a file adds the entry.
    """
    found = [
        importlib.import_module(f"{package.__name__}.{m.name}")
        for m in pkgutil.iter_modules(package.__path__)
    ]
    found = [m for m in found if hasattr(m, "NAME") and hasattr(m, "run")]
    return sorted(found, key=lambda m: (getattr(m, "ORDER", 100), m.NAME))
