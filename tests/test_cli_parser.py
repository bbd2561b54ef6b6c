"""The `dataflow` command's parser and entry point (dataflow.cli.parser): help, version, exit
codes; and the helpers the other test_cli_* files run the command with."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dataflow import cli

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.run(
        [sys.executable, "-m", "dataflow", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.mark.timeout(60)
def test_help_and_bad_arguments_give_exit_codes():
    result = run_cli("--help")
    assert result.returncode == 0 and "demo" in result.stdout
    result = run_cli("demo", "--help")
    assert result.returncode == 0 and "--batch-size" in result.stdout
    result = run_cli("demo", "--batch-size", "0")
    assert result.returncode == 2 and "positive integer" in result.stderr
    result = run_cli("no-such-command")
    assert result.returncode == 2
    result = run_cli()
    assert result.returncode == 2 and "demo" in result.stdout


@pytest.mark.timeout(60)
def test_version_matches_package():
    import dataflow

    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == dataflow.__version__


# -- helpers for the subcommands ------------------------------------------------------------------


def run_in(cwd: Path, *args: str, timeout: float = 60, env: dict | None = None):
    """The CLI as a subprocess, in folder ``cwd``."""
    full_env = dict(env if env is not None else os.environ)
    full_env["PYTHONPATH"] = str(ROOT / "src")
    return subprocess.run(
        [sys.executable, "-m", "dataflow", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd,
    )


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """The CLI in this process (for the cheap checks); argparse's exits become exit codes."""
    try:
        code = cli.main(list(args))
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


# -- help -----------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_every_subcommand_has_help(capsys):
    result = run_cli("convert", "--help")
    assert result.returncode == 0
    assert "--on-error" in result.stdout and "--resize" in result.stdout
    for command, option in (
        ("bench", "--warmup"),
        ("inspect", "--allow-pickle"),
        ("download", "--list"),
        ("demo", "--crop"),
    ):
        code, out, _ = run_main(capsys, command, "--help")
        assert code == 0 and option in out, command
        assert "exit codes" in out
    code, out, _ = run_main(capsys, "--help")
    for command in ("demo", "bench", "convert", "inspect", "download"):
        assert command in out
