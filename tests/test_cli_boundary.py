"""The command line's one boundary: every failure is one line and a documented exit status;
an unforeseen one also leaves a log file holding its traceback."""

from __future__ import annotations

import argparse
import errno
import subprocess
import sys
from pathlib import Path

import pytest

from likeness import cli
from likeness.errors import EXIT_CODES, CaseError, LikenessError, RunFolderBusyError


def _raising(exc: BaseException):
    def func(args: argparse.Namespace) -> int:
        raise exc

    return func


def _run(capsys, exc: BaseException, **namespace) -> tuple[int, str]:
    args = argparse.Namespace(command="analyze", func=_raising(exc), **namespace)
    code = cli.run_command(args)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return code, lines[0]


def test_a_closed_pipe_ends_quietly_with_its_exit_status(tmp_path):
    # `likeness models --help | head -1`-like: the reader closes the pipe after one line while
    # likeness still writes; no "internal error", no crash log, exit status 141.
    script = (
        "import sys\n"
        "from likeness import cli\n"
        "def func(args):\n"
        "    for _ in range(100000):\n"
        "        print('x' * 100)\n"
        "    return 0\n"
        "import argparse\n"
        "sys.exit(cli.run_command(argparse.Namespace(command='models', func=func)))\n"
    )
    done = subprocess.run(f"'{sys.executable}' -c \"{script}\" | head -1", shell=True,
                          capture_output=True, text=True, cwd=tmp_path,
                          executable="/bin/bash")
    assert done.stdout == "x" * 100 + "\n"
    assert done.stderr == ""
    status = subprocess.run(f"'{sys.executable}' -c \"{script}\" | head -1; "
                            "echo ${PIPESTATUS[0]}", shell=True, capture_output=True, text=True,
                            cwd=tmp_path, executable="/bin/bash")
    assert status.stdout.splitlines()[-1] == str(cli.CLOSED_PIPE_EXIT)
    assert not list(tmp_path.rglob("likeness-error-*.log"))


def test_every_exit_status_is_documented_in_help():
    done = subprocess.run([sys.executable, "-m", "likeness.cli", "--help"], capture_output=True,
                          text=True, check=True)
    assert "exit status:" in done.stdout
    for code, meaning in EXIT_CODES.items():
        assert f"{code:>3}  {meaning}" in done.stdout


def test_each_error_class_has_its_exit_status(capsys):
    assert _run(capsys, CaseError("case.yaml: analysis.seed: out of range")) == (
        2, "likeness: error: case.yaml: analysis.seed: out of range")
    code, line = _run(capsys, RunFolderBusyError("runs/x: busy"))
    assert code == 4 and line == "likeness: error: runs/x: busy"
    code, line = _run(capsys, LikenessError("first line\n  second line"))
    assert code == 2 and line == "likeness: error: first line; second line"


def test_full_disk_anywhere_is_an_output_error(capsys, tmp_path):
    exc = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.parquet"))
    code, line = _run(capsys, exc, out=str(tmp_path))
    assert code == 6
    assert line == (f"likeness: error: {tmp_path / 'x.parquet'}: cannot be written: No space "
                    "left on device; the disk is full; free space or write elsewhere (--out)")


def test_memory_and_interrupt(capsys):
    code, line = _run(capsys, MemoryError())
    assert code == 7 and "out of memory" in line and "detect_batch_size" in line
    code, line = _run(capsys, KeyboardInterrupt())
    assert code == 130 and "interrupted" in line


@pytest.mark.parametrize("where", ["run folder", "cache"])
def test_unforeseen_error_gives_one_line_and_a_log_with_the_traceback(
    capsys, tmp_path, monkeypatch, where
):
    monkeypatch.setenv("LIKENESS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    if where == "run folder":
        out.mkdir()
    code, line = _run(capsys, ZeroDivisionError("division by zero"), out=str(out))
    assert code == 70
    assert line.startswith("likeness: internal error (ZeroDivisionError: division by zero); "
                           "the traceback is in ")
    log = line.split("the traceback is in ")[1].split("; please report")[0]
    folder = out if where == "run folder" else tmp_path / "cache" / "logs"
    assert log.startswith(str(folder) + "/likeness-error-")
    text = Path(log).read_text("utf-8")
    assert "Traceback (most recent call last)" in text and "ZeroDivisionError" in text
