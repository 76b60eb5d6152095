"""One model question with bounded retries, inside a datatrove rollout; never raises for a bad answer.

Designed around datatrove 0.10's InferenceRunner:
- its request cache is keyed by the payload, so every attempt carries a distinct, derived `seed`
  (and re-asks use `retry_temperature`), or a retry would be answered from the cache;
- against 127.0.0.1 a 429 is not retried and a 500 surfaces as `ServerError`, and no request timeout
  applies: we retry both with exponential backoff; each call is bounded by `request_timeout_s` in the
  runner (backends.py), from the moment it holds a concurrency slot, so time queued behind other
  requests never counts;
- `transformers serve` decodes greedily unless the request carries a generation config with
  `do_sample` (a `temperature` alone is ignored): sampled requests to the `local` backend send one;
- a `ServerError` that is not an HTTP 500 means the server is gone: it propagates, the task stops,
  and the run resumes later from its checkpoints (turning it into rejects would lose records);
- a model that copied the prompt's JSON placeholder (`placeholder:<key>`) is re-asked with that
  placeholder's first token banned (`logit_bias`, backends.placeholder_ban), on every later attempt of the
  question; the ban is part of the request, so the request cache and resume stay exact. First asks never
  carry one: they are the paper's request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from datatrove.pipeline.inference.types import InferenceError, ServerError

from .backends import placeholder_ban
from .config import RetryConfig, RoleConfig
from .parse import Parsed, copied_placeholder

Generate = Callable[[dict], Awaitable[Any]]
Parser = Callable[[Any, "str | None"], Parsed]


@dataclass(frozen=True)
class OutputFormat:
    """What a stage's answer must look like, for servers that constrain decoding. `json_schema` goes
    out as the standard `response_format`; `regex` and `choice` are vLLM's `structured_outputs` and are
    sent only to the `vllm` backend (other servers reject unknown fields)."""

    name: str
    json_schema: dict | None = None
    regex: str | None = None
    choice: tuple[str, ...] | None = None
    # a next-token question: the last message is a pre-filled assistant turn that the model continues by
    # one token, and the answer is that position's `top_logprobs` alternatives (judge.method: logprobs)
    top_logprobs: int | None = None


@dataclass
class Answer:
    value: Any = None
    reason: str = ""  # final failure reason; empty when ok
    raw: str = ""  # the last model output (for the rejects file)
    attempts: int = 0
    failures: list[str] = field(default_factory=list)  # one reason per failed attempt
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def ok(self) -> bool:
        return not self.reason


def derive_seed(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()[:4], "big") & 0x7FFFFFFF


def payload(
    messages: list[dict],
    role: RoleConfig,
    *,
    attempt: int,
    seed: int,
    output_format: OutputFormat | None = None,
    logit_bias: dict[str, float] | None = None,
) -> dict:
    temperature = role.temperature if attempt == 0 else role.retry_temperature
    body = {
        "messages": messages,
        "max_tokens": role.max_tokens,
        "temperature": temperature,
        "top_p": role.top_p,
        "seed": seed,
    }
    if output_format is not None and output_format.top_logprobs:
        # vLLM's chat API: continue the pre-filled assistant message, one token, with its alternatives
        # (raw log-probabilities: temperature does not change them)
        return body | {
            "max_tokens": 1, "logprobs": True, "top_logprobs": output_format.top_logprobs,
            "continue_final_message": True, "add_generation_prompt": False,
        }
    if logit_bias:  # a re-ask's ban (backends.placeholder_ban); OpenAI's field, also vLLM's and transformers serve's
        body["logit_bias"] = dict(sorted(logit_bias.items(), key=lambda item: int(item[0])))
    if role.backend == "local" and temperature > 0:
        body["generation_config"] = json.dumps({"do_sample": True})  # else `transformers serve` stays greedy
    if role.structured_output and output_format is not None:
        if output_format.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": output_format.name, "schema": output_format.json_schema},
            }
        elif role.backend == "vllm" and output_format.regex is not None:
            body["structured_outputs"] = {"regex": output_format.regex}
        elif role.backend == "vllm" and output_format.choice is not None:
            body["structured_outputs"] = {"choice": list(output_format.choice)}
    return body


def transport_reason(error: BaseException) -> str:
    text = str(getattr(error, "error", "") or error)
    status = re.search(r"(?:http status|status code|Error code:?)\s*(\d{3})", text, re.I)
    if status:
        return f"http_{status.group(1)}"
    if "BadRequestError" in text:
        return "http_400"
    if "InternalServerError" in text:
        return "http_500"
    return "invalid_response"


async def ask(
    generate: Generate,
    messages: list[dict],
    parse: Parser,
    *,
    role: RoleConfig,
    retry: RetryConfig,
    seed_parts: tuple,
    output_format: OutputFormat | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Answer:
    answer = Answer()
    transport_failures = 0
    copied: set[str] = set()  # placeholders this question's answers copied: banned on the later attempts
    for attempt in range(retry.attempts):
        answer.attempts = attempt + 1
        body = payload(
            messages, role, attempt=attempt, seed=derive_seed(*seed_parts, attempt), output_format=output_format,
            logit_bias=placeholder_ban(role, copied) if copied else None,
        )
        try:
            result = await generate(body)  # bounded by request_timeout_s in the runner (backends.py)
        except asyncio.TimeoutError:
            reason, detail = "timeout", f"no answer within {role.request_timeout_s} s"
        except ServerError as error:
            if "InternalServerError" not in str(error):
                raise  # the server is gone: stop the task, resume later
            reason, detail = "http_500", str(error)
        except InferenceError as error:
            reason, detail = transport_reason(error), str(getattr(error, "error", "") or error)
        except (ConnectionError, OSError, ValueError) as error:
            reason, detail = f"transport:{type(error).__name__}", str(error)
        else:
            usage = getattr(result, "usage", None) or {}
            answer.prompt_tokens += int(usage.get("prompt_tokens", 0) or 0)
            answer.completion_tokens += int(usage.get("completion_tokens", 0) or 0)
            answer.raw = getattr(result, "text", "") or ""
            parsed = parse(answer.raw, getattr(result, "finish_reason", None))
            if parsed.ok:
                answer.value, answer.reason = parsed.value, ""
                return answer
            answer.failures.append(parsed.reason)
            answer.reason = parsed.reason
            if copied_placeholder(parsed.reason):
                copied.add(copied_placeholder(parsed.reason))
            continue
        answer.failures.append(reason)
        answer.reason = reason
        answer.raw = f"<{reason}> {detail[:1000]}"
        if reason == "http_400":
            break  # the request itself is wrong: asking again cannot help
        if attempt + 1 < retry.attempts:
            await sleep(min(retry.backoff_s * 2**transport_failures, retry.max_backoff_s))
        transport_failures += 1
    return answer
