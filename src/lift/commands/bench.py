"""Benchmarks that measure a stage against a reference, side by side in one run.

Each benchmark prints a short human summary and, as its very last line, one JSON object
(the contract other tools rely on). Timings are never asserted in tests: compare the ratios.

Examples:
  lift bench embed --json
  lift bench store --json --dtype int8
"""

from __future__ import annotations

import argparse
import json
import pkgutil
from types import ModuleType

from lift.commands import discover_modules

NAME = "bench"
HELP = "measure a stage against its reference (prints one JSON object last)"
ORDER = 80


def discover_benchmarks() -> list[ModuleType]:
    """Every module in `lift.bench` that defines NAME, HELP, add_arguments and run."""
    import lift.bench as package

    return discover_modules(package)


def available() -> bool:
    """Listed once any benchmark exists; checked without importing them (they import torch)."""
    import lift.bench as package

    return any(pkgutil.iter_modules(package.__path__))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for module in discover_benchmarks():
        p = sub.add_parser(
            module.NAME,
            help=module.HELP,
            description=module.__doc__ or module.HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("--json", action="store_true", help="print only the JSON object (still the last line)")
        module.add_arguments(p)
        p.set_defaults(_bench=module.run)


def run(args: argparse.Namespace) -> int:
    result = args._bench(args)
    if not args.json:
        for key, value in result.items():
            if not isinstance(value, (list, dict)):
                print(f"{key:>24}: {value}")
    print(json.dumps(result), flush=True)
    return 0
