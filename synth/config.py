"""The run configuration: one validated dataclass tree loaded from YAML.

Unknown keys, wrong types and bad values raise `ConfigError` naming the file and the field (with a
did-you-mean for misspelt keys) before anything else happens. Paper-vs-released switches live in
`Switches`; their defaults are the paper's.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import yaml

ROLES = ("instruction", "scoring", "answer", "longform", "classifier")
EMBEDDED = "embedded"  # model name: the embedded SmolLM2-135M-Instruct (offline)


class ConfigError(ValueError):
    """A bad config: the message names the file and the field."""


@dataclass
class InputConfig:
    path: str | None = None  # local .jsonl / .json / .parquet file (or a folder of them)
    hub: str | None = None  # a hub dataset id, e.g. m-a-p/FineFineWeb
    hub_config: str | None = None
    hub_data_dir: str | None = None  # e.g. the medical subset's folder of FineFineWeb
    split: str = "train"
    text_field: str = "text"
    id_field: str | None = None  # default: "<file>:<row>"
    limit: int | None = None


@dataclass
class RoleConfig:
    backend: Literal["local", "vllm", "endpoint"] = "local"
    model: str = EMBEDDED
    endpoint_url: str | None = None  # endpoint: base URL of an OpenAI-compatible server
    api_key_env: str | None = None  # endpoint: NAME of the environment variable holding the key
    max_tokens: int = 1024
    temperature: float = 0.0
    top_p: float = 1.0
    retry_temperature: float = 0.7  # re-asks sample (seeded) so they can differ from a greedy failure
    max_concurrent: int = 32
    # send each stage's answer shape: JSON schema (response_format) for the JSON stages; on `vllm` also
    # the long-form sections (regex) and the department labels (choice)
    structured_output: bool = False
    request_timeout_s: float = 300.0
    server_start_timeout_s: float = 600.0
    # local: start `transformers serve --continuous-batching`. Any backend: false means the server answers
    # one request at a time, so one request is in flight and request_timeout_s never counts the queue.
    continuous_batching: bool = True
    tp: int = 1  # vllm
    dp: int = 1
    pp: int = 1
    model_max_context: int = 8192
    trust_remote_code: bool = False  # vllm: run code from the model repository (only when asked by name)
    # vllm: more `vllm serve` flags, e.g. {gpu-memory-utilization: 0.9, enforce-eager: true}; on a machine
    # without CUDA `optimization-level: 0` is the default (see backends.py)
    vllm_args: dict[str, Any] = field(default_factory=dict)


@dataclass
class RetryConfig:
    attempts: int = 3  # model calls per request, parse failures and transport errors together
    backoff_s: float = 1.0  # doubled after each failed transport attempt
    max_backoff_s: float = 30.0


@dataclass
class RewardConfig:
    model: str = "sfairXC/FsfairX-LLaMA3-RM-v0.1"
    # True only for tests/offline: a causal LM with a randomly initialised, seeded score head.
    # It exercises the plumbing; its preferences mean nothing.
    seeded_head: bool = False
    batch_size: int = 8
    max_length: int = 4096
    device: str = "auto"


@dataclass
class Switches:
    """Paper (default) vs the authors' released code (hongzhouyu/FineMed)."""

    complex_threshold: int = 8
    complex_op: Literal[">=", ">"] = ">="  # paper: "a threshold set at 8"; released notebook: > 8
    missing_score: Literal["reject", "keep_other"] = "reject"  # released: keep the other question
    mention_details: Literal["paper", "released"] = "paper"  # released: only the string "True" counts
    classify_input: Literal["dialogue", "raw_text"] = "dialogue"  # released: the raw text
    dpo_step_by_step: bool = False  # released FineMed-DPO appends " Please think step by step."


@dataclass
class JudgeConfig:
    """How the scoring stage (and `analyze`'s judge) reads the A.2 judge. The paper (default) decodes the
    JSON the judge writes. `logprobs` reads each field from the judge's next-token probabilities at the
    value's position instead (G-Eval, Liu et al. 2023: numbers = the probability-weighted expected score,
    rounded; True/False = the more probable), filling the JSON in the prompt's order, each field
    conditioned on the values chosen before it; `calibration: content_free` divides each field's
    distribution by the judge's prior measured with content-free queries in the same prompt (Zhao et al.
    2021). For weak judges; see synth/judge.py and the README."""

    method: Literal["generate", "logprobs"] = "generate"
    calibration: Literal["none", "content_free"] = "none"
    content_free: list[str] = field(default_factory=lambda: ["N/A", "", "[MASK]"])  # Zhao et al.'s inputs
    top_logprobs: int = 20  # next-token alternatives asked for (vLLM's default maximum is 20)


@dataclass
class ExecutorConfig:
    type: Literal["local", "slurm", "ray"] = "local"
    tasks: int = 1  # input shards; one datatrove task each
    workers: int = 1  # local: tasks run at once
    records_per_chunk: int = 100  # datatrove checkpoint granularity
    slurm: dict[str, Any] = field(default_factory=dict)  # passed to datatrove's SlurmPipelineExecutor
    ray: dict[str, Any] = field(default_factory=dict)  # passed to datatrove's RayPipelineExecutor


@dataclass
class SynthConfig:
    output: str = "synth_out"
    seed: int = 0
    input: InputConfig = field(default_factory=InputConfig)
    instruction: RoleConfig = field(default_factory=RoleConfig)
    scoring: RoleConfig = field(default_factory=RoleConfig)
    answer: RoleConfig = field(default_factory=RoleConfig)
    longform: RoleConfig = field(default_factory=RoleConfig)
    classifier: RoleConfig = field(default_factory=RoleConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    switches: Switches = field(default_factory=Switches)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)

    def role(self, name: str) -> RoleConfig:
        return getattr(self, name)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> SynthConfig:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level should be a mapping")
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    config = from_dict(SynthConfig, data, where=str(path))
    _check(config, str(path))
    if config.input.path and not Path(config.input.path).is_absolute():
        config.input.path = str((path.parent / config.input.path).resolve())
    return config


def from_dict(cls: type, data: Any, *, where: str, prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: field {prefix or '(top level)'!r} should be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            guess = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {prefix + guess[0]!r}?" if guess else f"; known keys: {', '.join(names)}"
            raise ConfigError(f"{where}: unknown key {dotted!r}{hint}")
        kwargs[key] = _convert(hints[key], value, where=where, dotted=dotted)
    return cls(**kwargs)


def _convert(hint: Any, value: Any, *, where: str, dotted: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where=where, prefix=f"{dotted}.")
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, where=where, dotted=dotted)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: field {dotted!r} has the wrong type: {value!r}")
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{where}: field {dotted!r} is {value!r}; allowed: {', '.join(map(repr, allowed))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: field {dotted!r} should be a list, got {type(value).__name__}")
        (item,) = typing.get_args(hint)
        return [_convert(item, v, where=where, dotted=f"{dotted}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: field {dotted!r} should be a mapping, got {type(value).__name__}")
        return dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ConfigError(
                f"{where}: field {dotted!r} should be {hint.__name__}, got {type(value).__name__} {value!r}"
            )
        return value
    if hint is Any:
        return value
    raise ConfigError(f"{where}: field {dotted!r}: unsupported type {hint}")


def _plain_http_to_remote(url: str) -> bool:
    parsed = urlparse(url)
    if parsed.scheme != "http":
        return False
    host = parsed.hostname or ""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a host name other than localhost


def _loopback(url: str) -> bool:
    return urlparse(url).hostname in ("localhost", "127.0.0.1", "::1")


def _check(config: SynthConfig, where: str) -> None:
    def bad(dotted: str, problem: str) -> ConfigError:
        return ConfigError(f"{where}: field {dotted!r} {problem}")

    if bool(config.input.path) == bool(config.input.hub):
        raise bad("input", "needs exactly one of 'path' (local file) or 'hub' (dataset id)")
    if config.input.limit is not None and config.input.limit < 1:
        raise bad("input.limit", "should be at least 1")
    for name in ROLES:
        role = config.role(name)
        if role.backend == "endpoint" and not role.endpoint_url:
            raise bad(f"{name}.endpoint_url", "is required when backend is 'endpoint'")
        if role.backend != "endpoint" and role.endpoint_url:
            raise bad(f"{name}.endpoint_url", f"is only used with backend 'endpoint' (backend is {role.backend!r})")
        if role.max_tokens < 1 or role.max_concurrent < 1:
            raise bad(f"{name}.max_tokens", "and max_concurrent should be at least 1")
        for flag in ("host", "port", "trust-remote-code", "model"):
            if flag in role.vllm_args:
                why = "use trust_remote_code" if flag == "trust-remote-code" else "the backend sets it (127.0.0.1, a free port, model)"
                raise bad(f"{name}.vllm_args.{flag}", f"cannot be set here: {why}")
        if role.backend == "endpoint" and role.endpoint_url and _plain_http_to_remote(role.endpoint_url):
            warnings.warn(
                f"{where}: {name}.endpoint_url {role.endpoint_url!r} is plain http:// to a host that is not local: "
                "prompts, outputs and any API key travel unencrypted",
                UserWarning,
                stacklevel=2,
            )
    if config.retry.attempts < 1:
        raise bad("retry.attempts", "should be at least 1")
    if not 1 <= config.switches.complex_threshold <= 10:
        raise bad("switches.complex_threshold", "should be 1-10 (the difficulty scale)")
    judge, scoring = config.judge, config.scoring
    if judge.calibration != "none" and judge.method != "logprobs":
        raise bad("judge.calibration", "needs judge.method 'logprobs' (it calibrates the judge's token probabilities)")
    if judge.method == "logprobs":
        if scoring.backend == "local":
            raise bad(
                "judge.method",
                "is 'logprobs', which needs the judge's next-token log-probabilities after a pre-filled answer "
                "(`logprobs`/`top_logprobs` with `continue_final_message`); scoring.backend 'local' (transformers serve) "
                "offers neither: use scoring.backend 'vllm', or 'endpoint' at a vLLM server",
            )
        if scoring.backend == "endpoint" and scoring.endpoint_url and not _loopback(scoring.endpoint_url):
            raise bad(
                "judge.method",
                "is 'logprobs': over the openai client (endpoints that are not on this machine) datatrove keeps only "
                "the answer text, not its log-probabilities; use a vLLM server on 127.0.0.1 or scoring.backend 'vllm'",
            )
        if not 2 <= judge.top_logprobs <= 20:
            raise bad("judge.top_logprobs", "should be 2-20 (the OpenAI API's and vLLM's default limit)")
        if judge.calibration == "content_free" and not judge.content_free:
            raise bad("judge.content_free", "needs at least one content-free query (e.g. 'N/A')")
    if config.executor.tasks < 1 or config.executor.workers < 1:
        raise bad("executor.tasks", "and executor.workers should be at least 1")
