"""Backends per role, as datatrove inference servers.

- `local`: a managed `transformers serve [--continuous-batching]` process on 127.0.0.1, started and
  stopped by datatrove's server lifecycle (`TransformersServeServer`, below). The child asks the kernel
  to kill it when its parent dies (PR_SET_PDEATHSIG), so a kill -9 of the run leaves no server behind.
- `vllm`: datatrove's own `VLLMServer` (tensor/data/pipeline parallel via tp/dp/pp). GPU only.
- `endpoint`: datatrove's `EndpointServer`: any OpenAI-compatible URL; the API key is read from the
  environment variable named by `api_key_env` (keys never live in configs).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from pathlib import Path

from datatrove.pipeline.inference.checkpointing import RequestCache
from datatrove.pipeline.inference.run_inference import InferenceConfig, InferenceRunner
from datatrove.pipeline.inference.servers import InferenceServer
from loguru import logger

from .config import EMBEDDED, ConfigError, RoleConfig

_PR_SET_PDEATHSIG = 1


def model_path(model: str) -> str:
    if model == EMBEDDED:
        from finemed_eval.embedded import embedded_model_dir

        return str(embedded_model_dir())
    return model


def inference_config(role: RoleConfig, log_folder: str | None) -> InferenceConfig:
    api_key = None
    if role.backend == "endpoint" and role.api_key_env:
        api_key = os.environ.get(role.api_key_env)
        if api_key is None:
            raise ConfigError(f"the API key variable {role.api_key_env!r} (api_key_env) is not set")
    return InferenceConfig(
        server_type={"local": "custom", "vllm": "vllm", "endpoint": "endpoint"}[role.backend],
        model_name_or_path=model_path(role.model),
        model_max_context=role.model_max_context,
        use_chat=True,
        endpoint_url=role.endpoint_url,
        api_key=api_key,
        tp=role.tp,
        dp=role.dp,
        pp=role.pp,
        max_concurrent_generations=role.max_concurrent,
        request_timeout=role.request_timeout_s,
        metric_interval=3600,
        server_log_folder=log_folder,
        server_start_timeout_sec=60.0,
        server_ready_max_attempts=max(1, int(role.server_start_timeout_s / 0.5)),
        server_ready_delay_sec=0.5,
        server_start_max_retries=1,
        model_kwargs={"continuous_batching": role.continuous_batching} if role.backend == "local" else None,
    )


# Runs in the child before it becomes the server: set PR_SET_PDEATHSIG, then exec. (Not a preexec_fn:
# Python code between fork and exec in a threaded parent can deadlock, and did here on ctypes' dlopen.)
_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "try:\n"
    f"    ctypes.CDLL(None, use_errno=True).prctl({_PR_SET_PDEATHSIG}, signal.SIGKILL)\n"
    "except (OSError, AttributeError):\n"
    "    pass  # not Linux: datatrove still stops the server on every orderly exit\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


def transformers_executable() -> str:
    beside = Path(sys.executable).parent / "transformers"
    found = str(beside) if beside.is_file() else shutil.which("transformers")
    if not found:
        raise ConfigError("backend 'local' needs the `transformers` command: pip install 'transformers[serving]'")
    return found


class TransformersServeServer(InferenceServer):
    """`transformers serve` on 127.0.0.1, one per datatrove task, started/stopped by datatrove."""

    def get_base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    async def start_server(self) -> asyncio.subprocess.Process:
        cmd = [
            transformers_executable(), "serve", self.config.model_name_or_path,
            "--host", "127.0.0.1", "--port", str(self._port), "--log-level", "info", "--device", "auto",
        ]
        if (self.config.model_kwargs or {}).get("continuous_batching", True):
            cmd.append("--continuous-batching")
        logger.info(f"starting: {' '.join(cmd)}")
        return await asyncio.create_subprocess_exec(
            sys.executable, "-c", _LAUNCHER, *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )

    async def monitor_health(self) -> None:
        process = self._server_process
        if process is None:
            return
        while True:  # drain the log (a full pipe would block the server) until the process exits
            line = await process.stdout.readline()
            if not line:
                break
            server_log = self.server_logger()
            if server_log:
                server_log.info(line.decode("utf-8", "replace").rstrip())
        await process.wait()
        raise RuntimeError(f"transformers serve exited with code {process.returncode}")


class WalRequestCache(RequestCache):
    """datatrove's request cache commits (and so fsyncs) its sqlite file once per request; in WAL mode
    with synchronous=NORMAL a commit does not fsync, yet survives a killed process (the OS keeps the
    pages). It was the pipeline's main per-record overhead here (see the benchmark)."""

    async def initialize(self, rank: int) -> None:
        await super().initialize(rank)
        if self._conn is not None:
            await self._conn.execute("PRAGMA journal_mode=WAL")
            await self._conn.execute("PRAGMA synchronous=NORMAL")


class SynthInferenceRunner(InferenceRunner):
    """datatrove's InferenceRunner with the `local` backend as a managed `transformers serve` and the
    request cache in WAL mode."""

    def __init__(self, *args, backend: str, checkpoints_local_dir: str | None = None, **kwargs):
        super().__init__(*args, checkpoints_local_dir=checkpoints_local_dir, **kwargs)
        self.backend = backend
        self.request_cache = WalRequestCache(checkpoints_local_dir)
        self.checkpoint_manager.request_cache = self.request_cache

    def _init_server(self, rank: int) -> InferenceServer:
        if self.backend == "local":
            return TransformersServeServer(self.config, rank)
        return super()._init_server(rank)
