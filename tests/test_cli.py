"""The `lift` command itself: it installs, lists only real stages, and both entry points agree."""

import subprocess
import sys
from pathlib import Path

import pytest

from lift.cli import build_parser, discover_commands, main


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def test_console_script_and_module_print_the_same_help():
    # The console script pip installed beside this interpreter (the venv need not be activated).
    script = _run(str(Path(sys.executable).parent / "lift"), "--help")
    module = _run(sys.executable, "-m", "lift", "--help")
    assert script.returncode == 0, script.stderr
    assert module.returncode == 0, module.stderr
    assert script.stdout == module.stdout
    assert "frozen text encoder" in script.stdout


def test_every_listed_command_is_a_real_module_with_its_own_help(capsys):
    help_text = build_parser().format_help()
    for module in discover_commands():
        assert module.NAME in help_text
        assert callable(module.run) and callable(module.add_arguments)
        with pytest.raises(SystemExit) as exit_info:
            main([module.NAME, "--help"])
        assert exit_info.value.code == 0
        assert capsys.readouterr().out.startswith("usage: lift " + module.NAME)


def test_unknown_command_fails():
    result = _run(sys.executable, "-m", "lift", "no-such-stage")
    assert result.returncode != 0
    assert "invalid choice" in result.stderr


def test_lift_error_is_one_line_and_exit_code_2(monkeypatch, capsys):
    import argparse

    from lift.errors import LiftError

    def boom(args: argparse.Namespace) -> int:
        raise LiftError("captions.parquet: row 3: empty caption")

    parser = argparse.ArgumentParser()
    parser.set_defaults(_run=boom, command="embed")
    monkeypatch.setattr("lift.cli.build_parser", lambda command=None: parser)
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err == "lift embed: error: captions.parquet: row 3: empty caption\n"


def test_lift_warnings_are_one_line(monkeypatch, capsys):
    import argparse
    import warnings

    from lift.errors import LiftWarning

    def warn(args: argparse.Namespace) -> int:
        warnings.warn("the encoder folder was renamed", LiftWarning, stacklevel=1)
        return 0

    parser = argparse.ArgumentParser()
    parser.set_defaults(_run=warn, command="eval")
    monkeypatch.setattr("lift.cli.build_parser", lambda command=None: parser)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main([]) == 0
    assert capsys.readouterr().err == "lift eval: warning: the encoder folder was renamed\n"
