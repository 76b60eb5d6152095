"""How a retrieved (question, response) neighbour becomes training tokens.

Train in the format you answer in: `chat` renders the neighbour with the model's chat template and
the same system message lm-eval put in front of the document (none: the template's own default),
`plain` as bare text the way lm-eval's plain few-shot requests are tokenised. Both label the response
and its end-of-turn/eos tokens only. `reference` reproduces the released TTT/TTT.py: the whole
conversation (o1 system prompt, question, response) rendered by the chat template, tokenised with
the tokenizer's special tokens, every token labelled except those equal to the pad id (pad = eos
there, so the real end-of-turn tokens are masked too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from finemed_eval.protocols import O1_SYSTEM_PROMPT

IGNORE_INDEX = -100  # the label value Hugging Face's causal-LM loss skips


class RenderError(ValueError):
    """The tokenizer cannot render a neighbour the requested way."""


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]
    truncated: bool


@dataclass(frozen=True)
class Format:
    """One way of rendering neighbours; hashable, so it is part of every adaptation key."""

    kind: str  # chat | plain | reference
    system: str | None = None  # chat: the system message lm-eval used for the document
    add_bos: bool = False  # plain: whether the model's requests start with BOS


def build_example(prompt_ids: Sequence[int], response_ids: Sequence[int], max_length: int) -> Example:
    """Concatenate prompt and response, label only the response, cut at ``max_length``.

    Truncation keeps the start (the prompt) and drops the end of the response.
    """
    ids = [*prompt_ids, *response_ids]
    labels = [IGNORE_INDEX] * len(prompt_ids) + list(response_ids)
    if labels:
        labels[0] = IGNORE_INDEX  # nothing precedes the first token, so it cannot be predicted
    truncated = len(ids) > max_length
    return Example(ids[:max_length], labels[:max_length], truncated)


def split_text(tokenizer: Any, question: str, response: str, fmt: Format) -> tuple[str, str]:
    """(prompt text, response text) whose concatenation is the rendered neighbour."""
    if fmt.kind == "plain" or not getattr(tokenizer, "chat_template", None):
        bos = tokenizer.bos_token if fmt.add_bos and tokenizer.bos_token else ""
        return bos + question + "\n", response + (tokenizer.eos_token or "")
    system = [{"role": "system", "content": fmt.system}] if fmt.system is not None else []
    user = {"role": "user", "content": question}
    prompt = tokenizer.apply_chat_template([*system, user], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template([*system, user, {"role": "assistant", "content": response}], tokenize=False)
    if not full.startswith(prompt):
        raise RenderError("the chat template does not render the prompt as a prefix of the conversation")
    return prompt, full[len(prompt):]


def reference_text(tokenizer: Any, question: str, response: str) -> str:
    """The released TTT text: o1 system prompt + question + response through the chat template."""
    messages = [
        {"role": "system", "content": O1_SYSTEM_PROMPT},
        {"role": "user", "content": question},
        {"role": "assistant", "content": response},
    ]
    # ttt_prepare.ipynb strips each text when it reads tttdata.jsonl back (ChatML loses its final "\n").
    return tokenizer.apply_chat_template(messages, tokenize=False).strip()


def encode(tokenizer: Any, question: str, response: str, max_length: int, fmt: Format = Format("chat")) -> Example:
    if fmt.kind == "reference":
        return _encode_reference(tokenizer, question, response, max_length)
    prompt, reply = split_text(tokenizer, question, response, fmt)
    # Tokenised apart, as at answer time: the model continues the prompt's own tokens.
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    reply_ids = tokenizer(reply, add_special_tokens=False)["input_ids"]
    return build_example(prompt_ids, reply_ids, max_length)


def _encode_reference(tokenizer: Any, question: str, response: str, max_length: int) -> Example:
    ids = tokenizer(reference_text(tokenizer, question, response))["input_ids"]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    labels = [IGNORE_INDEX if token == pad else token for token in ids]
    # No padding to max_length: padded positions are masked out of attention and loss in their
    # code too, so only the compute differs.
    return Example(ids[:max_length], labels[:max_length], len(ids) > max_length)
