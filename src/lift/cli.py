"""The `lift` command: a thin adapter that parses arguments and calls one stage function.

Each subcommand lives in its own module under `lift.commands` and is found by discovery, so a
stage appears in `lift --help` exactly when its module exists. A command module defines:

    NAME: str            the subcommand (`embed`)
    available() -> bool  optional: false hides the command (e.g. `bench` before any benchmark exists)
    HELP: str            one line for `lift --help`
    ORDER: int           its place in the listing (pipeline order)
    add_arguments(parser) -> None
    run(args) -> int     the exit code
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from types import ModuleType

from lift import __version__
from lift.commands import discover_modules
from lift.errors import LiftError

EPILOG = textwrap.dedent(
    """\
    The pipeline: captions -> `lift embed` (frozen text encoder, once, offline) -> embedding
    store -> `lift train` (image tower + head) -> checkpoint -> `lift eval`.
    Run `lift COMMAND --help` for each stage's options and examples.
    """
)


def _is_available(module: ModuleType) -> bool:
    """A command with nothing to offer yet (its `available()` is false) is not listed."""
    check = getattr(module, "available", None)
    return bool(check()) if check else True


def discover_commands() -> list[ModuleType]:
    """Every module in `lift.commands`, in pipeline order."""
    import lift.commands as package

    return [m for m in discover_modules(package) if _is_available(m)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lift",
        description="Train language-aligned vision encoders against a frozen text encoder (LIFT).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lift {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for module in discover_commands():
        doc = module.__doc__ or module.HELP
        p = sub.add_parser(
            module.NAME,
            help=module.HELP,
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except LiftError as e:
        print(f"lift {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lift {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
