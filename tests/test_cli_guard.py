"""The one guard around every command (pachhook.cli.guard): bugs, Ctrl-C and closed pipes.

docs/cli.md promises: a bug is one line `pachhook COMMAND: internal error: ...` and exit 3,
Ctrl-C is exit 130, and a command whose reader went away exits 141 without a traceback.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from gitutil import VENV_BIN, make_repo

from pachhook import cli


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_a_bug_in_any_command_is_one_line_and_exit_3(name: str, monkeypatch, capsys):
    def broken(argv):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(cli.load_command(name), "main", broken)
    assert cli.main([name]) == 3
    captured = capsys.readouterr()
    assert captured.err == f"pachhook {name}: internal error: RuntimeError: boom second line (please report it)\n"


def test_an_internal_error_line_carries_no_terminal_control_sequence(monkeypatch, capsys):
    def broken(argv):
        raise ValueError("bad \x1b[2J\x1b]0;owned\x07value\r\nmore")

    monkeypatch.setattr(cli.load_command("status"), "main", broken)
    assert cli.main(["status"]) == 3
    assert capsys.readouterr().err == "pachhook status: internal error: ValueError: bad value more (please report it)\n"


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_ctrl_c_in_any_command_is_exit_130(name: str, monkeypatch, capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.load_command(name), "main", interrupted)
    assert cli.main([name]) == 130
    assert capsys.readouterr().err == f"pachhook {name}: interrupted\n"


def run_into_closed_pipe(args: list, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """The console script with its stdout a pipe whose reader has already left (`| true`)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [str(VENV_BIN / "pachhook"), *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "args",
    [
        ["render", "edges/pipeline.json"],
        ["validate", "edges/pipeline.json", "--format", "json"],
        ["status", "--all"],
        ["logs", "1"],
    ],
    ids=lambda args: args[0],
)
def test_a_reader_that_left_ends_the_command_quietly_with_141(tmp_path: Path, args: list):
    repo = make_repo(tmp_path)
    repo.pachhook("queue", check=True)
    result = run_into_closed_pipe(args, repo.path, repo.env)
    assert (result.returncode, result.stderr) == (141, "")
