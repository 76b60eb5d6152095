"""The stock `lm_eval` executable sees finemed's tasks and model with no flags and no wrapper."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.file_seconds(150)  # under -n 2 on 2 cores (CI): starts before shorter files

ROOT = Path(__file__).parents[1]
LM_EVAL = shutil.which("lm_eval")
TASK_NAMES = sorted(p.stem for p in (ROOT / "tasks").rglob("finemed_*.yaml")) + sorted(
    p.stem.lstrip("_") for p in (ROOT / "tasks").rglob("_finemed_*.yaml")
)


def _run(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def listed_tasks() -> str:
    assert LM_EVAL, "the lm_eval console script is not on PATH"
    done = _run(LM_EVAL, "ls", "tasks")
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_stock_lm_eval_lists_every_finemed_task(listed_tasks):
    assert len(TASK_NAMES) == 42  # 34 tasks, 4 benchmark groups, 4 paper-table groups
    missing = [name for name in TASK_NAMES if f"|{name} " not in listed_tasks]
    assert not missing
    assert "|mmlu_pro_health " in listed_tasks  # lm-eval's own tasks are still there


def test_stock_lm_eval_runs_finemed_ttt(shared_data, tmp_path):
    done = _run(
        LM_EVAL, "run", "--model", "finemed_ttt", "--tasks", "finemed_demo",
        "--limit", "2", "--num_fewshot", "0", "--batch_size", "4", "--output_path", str(tmp_path),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    row = next(line for line in done.stdout.splitlines() if line.startswith("|finemed_demo"))
    assert "|acc " in row.replace("|acc   |", "|acc |")
    assert list(tmp_path.rglob("results_*.json"))


def test_processes_that_never_touch_lm_eval_only_get_the_hook():
    code = "import sys; print('finemed_eval._autoload' in sys.modules, 'lm_eval' in sys.modules, 'torch' in sys.modules)"
    done = _run(sys.executable, "-c", code)
    assert done.stdout.split() == ["True", "False", "False"]
    off = _run(sys.executable, "-c", code, env={"FINEMED_EVAL_NO_AUTOLOAD": "1"})
    assert off.stdout.split() == ["True", "False", "False"]  # imported, but installs nothing
    hooked = _run(sys.executable, "-c", "import sys, finemed_eval._autoload as a; print(any(isinstance(f, a._LmEvalFinder) for f in sys.meta_path))",
                  env={"FINEMED_EVAL_NO_AUTOLOAD": "1"})
    assert hooked.stdout.strip() == "False"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT))
    assert done.returncode == 0, done.stderr[-2000:]
    return next(out.glob("finemed_eval-*.whl"))


def test_wheel_carries_the_pth_hook_and_task_files(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "finemed_eval_lm_eval_plugin.pth" in names
    assert "finemed_eval/tasks/medqa/finemed_medqa.yaml" in names
    assert "finemed_eval/tasks/_templates/mc_yaml" in names
    assert "finemed_eval/tasks/_templates/utils.py" in names
    assert "finemed_eval/demo/demo_test.jsonl" in names
    assert not any(name.startswith(("tasks/", "tests/", "training/", "synth/")) for name in names)
    record = next(n for n in names if n.endswith("RECORD"))
    assert "finemed_eval_lm_eval_plugin.pth,sha256=" in zipfile.ZipFile(wheel).read(record).decode()


def test_the_hook_of_a_deleted_install_stays_silent(wheel, tmp_path):
    """A stale install (its source folder gone, e.g. an editable install of a deleted clone) keeps the
    .pth: interpreter start-up must not print a traceback for it, it just does nothing."""
    (tmp_path / "finemed_eval_lm_eval_plugin.pth").write_bytes(zipfile.ZipFile(wheel).read("finemed_eval_lm_eval_plugin.pth"))
    code = f"import site, sys; site.addsitedir({str(tmp_path)!r}); print('finemed_eval' in sys.modules)"
    done = _run(sys.executable, "-I", "-S", "-c", code)  # -S: no site-packages, so no finemed_eval
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "False", "")


def _venv_over_this_environment(venv: Path) -> Path:
    """A fresh venv that sees this environment's packages (lm-eval, torch, ...) but installs its own.

    `python -m venv --system-site-packages` from sys.executable would only see the *base* interpreter's
    packages when this test itself runs inside a venv. So the venv is made from the base interpreter,
    and a .pth adds this environment's site-packages after the venv's own (addsitedir also runs their
    .pth files, as --system-site-packages would): the venv's install wins, everything else is found.
    """
    import site
    import sysconfig

    # --without-pip: pip, like lm-eval, comes from this environment (and ensurepip is slow or absent)
    made = _run(getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv))
    assert made.returncode == 0, made.stderr[-2000:]
    python = venv / "bin" / "python"
    purelib = _run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    ours = list(dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"]]))
    lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in ours)
    (Path(purelib) / "_parent_environment.pth").write_text(lines)
    return python


def test_regular_install_in_a_fresh_venv_is_seen_by_lm_eval(wheel, tmp_path):
    """Non-editable install: lm-eval finds the tasks inside site-packages, not in this checkout.
    (Without lm-eval's own 14k-task index, ~15-45 s here: the plugin's hook adds our folder the same
    way to either index; the stock executable's default index is test_stock_lm_eval_lists_every_finemed_task's.)"""
    venv = tmp_path / "venv"
    python = _venv_over_this_environment(venv)
    done = _run(str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel))
    assert done.returncode == 0, done.stderr[-2000:]
    code = (
        "from lm_eval.tasks import TaskManager; from lm_eval.api.registry import get_model;"
        "tm = TaskManager(include_defaults=False); print(tm.task_index['finemed_medqa'].yaml_path); print(get_model('finemed_ttt').__module__)"
    )
    shown = _run(str(python), "-c", code)
    assert shown.returncode == 0, shown.stderr[-2000:]
    yaml_path, module = shown.stdout.split()
    assert str(venv) in yaml_path and "site-packages/finemed_eval/tasks/medqa" in yaml_path
    assert module == "finemed_eval.ttt.lm"
