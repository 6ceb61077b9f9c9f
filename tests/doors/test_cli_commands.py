"""The command line's doors: one module under ``audiobench/cli/`` per subcommand, each with its parser and handler."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

import audiobench.cli as cli
from audiobench.cli import COMMANDS, main, parser

CLI_DIR = Path(cli.__file__).resolve().parent
NOT_COMMANDS = {"__init__", "__main__", "common"}


def subcommands() -> dict[str, argparse.ArgumentParser]:
    """Every subcommand the assembled parser knows, with its parser."""
    action = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_subcommand_has_its_own_module_with_parser_and_handler() -> None:
    names = list(subcommands())
    assert names == ["run", "status", "score", "validate", "train", "list", "table", "report", "listen"]
    modules = {m.NAME: m for m in COMMANDS}
    assert sorted(modules) == sorted(names) and len(COMMANDS) == len(names)  # one module per command
    for name in names:
        module = modules[name]
        assert Path(module.__file__).resolve().parent == CLI_DIR, name
        assert module.__name__.startswith("audiobench.cli.") and module.__name__ not in ("audiobench.cli.common",)
        assert callable(module.add_parser) and callable(module.run), name
        assert module.add_parser.__doc__ and module.run.__doc__, name
        # its add_parser builds exactly the parser main assembles
        sub = argparse.ArgumentParser(prog="audiobench").add_subparsers()
        own = module.add_parser(sub)
        assert own.format_help() == subcommands()[name].format_help(), name


def test_every_command_module_is_registered() -> None:
    files = {p.stem for p in CLI_DIR.glob("*.py")} - NOT_COMMANDS
    assert files == {Path(m.__file__).stem for m in COMMANDS}


@pytest.mark.parametrize("name", list(subcommands()))
def test_help_of_each_command(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: audiobench {name} ") and subcommands()[name].description.split()[0] in out


@pytest.mark.parametrize("name", list(subcommands()))
def test_main_hands_each_command_to_its_module(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``main`` parses, then calls the command module's ``run`` with the parsed arguments (its exit status)."""
    module = cli.command(name)
    seen: list[argparse.Namespace] = []
    monkeypatch.setattr(module, "run", lambda args: seen.append(args) or 42)
    positional = [a for a in subcommands()[name]._actions if not a.option_strings and a.dest != "help"]
    argv = [name, *(str(next(iter(a.choices))) if a.choices else "x" for a in positional)]
    assert main(argv) == 42
    assert seen[0].command == name


def test_errors_are_one_line_and_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("audiobench: error: ") and err.count("\n") == 1


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert capsys.readouterr().out.startswith("usage: audiobench [-h] COMMAND ...")


def test_help_imports_no_heavy_module() -> None:
    """The command line starts fast: its modules import only argparse and the kernel's errors; handlers
    import the rest when they run."""
    code = ("import sys\nfrom audiobench.cli import main\n"
            "for c in ['run', 'status', 'score', 'validate', 'train', 'list', 'table', 'report', 'listen']:\n"
            "    try:\n        main([c, '--help'])\n    except SystemExit:\n        pass\n"
            "heavy = sorted(m for m in ('torch', 'numpy', 'pandas', 'pydantic', 'yaml', 'audiobench.suite',"
            " 'audiobench.harness', 'audiobench.tables') if m in sys.modules)\n"
            "assert not heavy, heavy\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_python_m_audiobench_cli_runs_main() -> None:
    out = subprocess.run([sys.executable, "-m", "audiobench.cli", "list", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("usage: audiobench list ")


def test_score_on_a_missing_run_directory_is_an_error_that_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "nothing_here"
    assert main(["score", str(missing)]) == 1
    assert capsys.readouterr().err.strip() == f"{missing}: not a run directory (no manifest.json): run a suite into it first"
    assert not missing.exists()  # status still says "not a run directory"
