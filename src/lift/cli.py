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
import warnings
from types import ModuleType

from lift import __version__
from lift.commands import discover_modules
from lift.errors import OUTPUT_ERRNOS, LiftError, LiftWarning, os_error_message

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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `lift` parser; only `command`'s own arguments are built (None: just the command list).

    Building one command's arguments may import heavy libraries (torch, transformers), so
    `lift --help` and every other command stay fast by not building the rest.
    """
    parser = argparse.ArgumentParser(
        prog="lift",
        description="Train language-aligned vision encoders against a frozen text encoder (LIFT).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lift {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for module in discover_commands():
        p = sub.add_parser(
            module.NAME,
            help=module.HELP,
            description=module.__doc__ or module.HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if command == module.NAME:
            module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _command_in(argv: list[str]) -> str | None:
    """The subcommand named in argv: the first word that is not an option (top-level options take no value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def _one_line_warnings(command: str) -> None:
    """lift's own warnings read like its errors: one line, no file and line number."""
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, LiftWarning):
            print(f"lift {command}: warning: {message}", file=file or sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command_in(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    _one_line_warnings(args.command)
    try:
        return int(args._run(args) or 0)
    except LiftError as e:
        print(f"lift {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in OUTPUT_ERRNOS:
            raise
        print(f"lift {args.command}: error: {os_error_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lift {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
