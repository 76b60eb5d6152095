"""The `finemed` console script: subcommands wired, bad input is one line and exit code 2."""

from __future__ import annotations

import os
import subprocess

from conftest import finemed_command


def _finemed(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(finemed_command(*args), capture_output=True, text=True, timeout=300, env=env)


def test_runs_without_the_environments_bin_on_path():
    """`venv/bin/python -m pytest` without activating the venv: no `finemed` on PATH."""
    done = _finemed("protocol", "o1", env={**os.environ, "PATH": "/nonexistent"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("--apply_chat_template --system_instruction")


def test_zoo_lists_the_embedded_model_and_the_papers_models():
    done = _finemed("zoo")
    assert done.returncode == 0
    for name in ("smollm2-135m-instruct", "finemedlm", "finemedlm-o1"):
        assert name in done.stdout


def test_bad_model_argument_is_one_clear_error():
    done = _finemed("eval", "finemed_demo", "--model-args", "ttt=sometimes", "--limit", "1")
    assert done.returncode == 2
    assert "ttt='sometimes'" in done.stderr and "Traceback" not in done.stderr


def test_unknown_subcommand_shows_usage():
    done = _finemed("fly")
    assert done.returncode == 2 and "usage: finemed" in done.stderr  # named `finemed` under python -m too
