"""The stages. Model stages are datatrove rollouts that always return a record (status "ok", or
"reject" with the reason, the raw output and the attempt count): datatrove deletes a document whose
rollout returns None and kills the task when one raises. Pure stages (filter, sft) are functions.

A record is {"id", "text", "status", "stage", ...stage fields, "attempts", "failures", "tokens"}.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from . import departments, judge, prompts
from .ask import Answer, Generate, OutputFormat, ask
from .config import SynthConfig
from .filter import Item, select
from .parse import (
    ANSWERS_SCHEMA,
    LONGFORM_REGEX,
    QUESTIONS_SCHEMA,
    SCORE_SCHEMA,
    parse_answers,
    parse_department,
    parse_longform,
    parse_questions,
    parse_score,
    parse_top_logprobs,
)

# Each model stage's answer shape, sent as structured output when the role asks for it.
QUESTIONS = OutputFormat("questions", json_schema=QUESTIONS_SCHEMA)
SCORES = OutputFormat("scores", json_schema=SCORE_SCHEMA)
ANSWERS = OutputFormat("answers", json_schema=ANSWERS_SCHEMA)
LONGFORM = OutputFormat("longform", regex=LONGFORM_REGEX)


def department_format(parent: str | None) -> OutputFormat:
    return OutputFormat("department", choice=departments.allowed_labels(parent))

MODEL_STAGES = {
    "instruction": "instruction", "scoring": "scoring", "answer": "answer", "longform": "longform", "classify": "classifier",
    "judge": "scoring",  # `finemed synth analyze`: the scoring prompt as LLM-as-judge over any dataset
}


def _record(doc, stage: str, answers: list[Answer], fields: dict, failed: Answer | None, prefix: str = "") -> dict:
    record = {
        **doc.metadata,
        "id": str(doc.id),
        "text": doc.text,
        "stage": stage,
        "status": "ok" if failed is None else "reject",
        "attempts": sum(a.attempts for a in answers),
        "failures": [f for a in answers for f in a.failures],
        "tokens": {"prompt": sum(a.prompt_tokens for a in answers), "completion": sum(a.completion_tokens for a in answers)},
        **fields,
    }
    if failed is not None:
        record.update(reason=f"{prefix}{failed.reason}", raw=failed.raw)
    return record


async def _ask(
    generate: Generate, prompt: str, parser, config: SynthConfig, role: str, doc, slot: str, output_format: OutputFormat
) -> Answer:
    return await ask(
        generate,
        prompts.chat(prompt),
        parser,
        role=config.role(role),
        retry=config.retry,
        seed_parts=(config.seed, role, doc.id, slot),
        output_format=output_format,
    )


async def instruction_rollout(doc, generate: Generate, config: SynthConfig) -> dict:
    answer = await _ask(generate, prompts.instruction_prompt(doc.text), parse_questions, config, "instruction", doc, "q", QUESTIONS)
    return _record(doc, "instruction", [answer], dict(answer.value or {}), None if answer.ok else answer)


# judge.calibration content_free: the content-free answers, per pre-fill, shared by the documents of a task
_PRIOR_MEMO: dict[tuple, dict[str, float]] = {}
_PRIOR_INFLIGHT: dict[tuple, asyncio.Future] = {}


class _JudgeFailed(Exception):
    def __init__(self, answer: Answer):
        super().__init__(answer.reason)
        self.answer = answer


async def _judge_logprobs(generate: Generate, query: str, config: SynthConfig, doc, slot: str) -> tuple[list[Answer], Answer]:
    """judge.method logprobs: the A.2 fields from the judge's next-token probabilities (judge.py), one
    next-token request per value position (and content-free query, with calibration). -> (the requests'
    answers, one Answer holding the score or the first failure)."""
    settings = config.judge
    fmt = OutputFormat("next_token", top_logprobs=settings.top_logprobs)
    answers: list[Answer] = []

    async def ask_top(text: str, head: str, seed_parts: tuple) -> dict[str, float]:
        messages = prompts.chat(prompts.scoring_prompt(text)) + [{"role": "assistant", "content": head}]
        answer = await ask(
            generate, messages, parse_top_logprobs, role=config.scoring, retry=config.retry, seed_parts=seed_parts,
            output_format=fmt,
        )
        answers.append(answer)
        if not answer.ok:
            raise _JudgeFailed(answer)
        return answer.value

    async def top(text: str, head: str) -> dict[str, float]:
        if text == query or text not in settings.content_free:
            return await ask_top(text, head, (config.seed, "scoring", doc.id, slot, text, head))
        # a content-free query depends only on the pre-fill: asked once per task, shared by its documents
        key = (config.scoring.model, config.scoring.endpoint_url, settings.top_logprobs, text, head)
        if key in _PRIOR_MEMO:
            return _PRIOR_MEMO[key]
        loop_key = (id(asyncio.get_running_loop()), key)
        if loop_key not in _PRIOR_INFLIGHT:
            _PRIOR_INFLIGHT[loop_key] = asyncio.ensure_future(ask_top(text, head, (config.seed, "scoring", "content_free", text, head)))
        try:
            value = await asyncio.shield(_PRIOR_INFLIGHT[loop_key])
        finally:
            if _PRIOR_INFLIGHT.get(loop_key) is not None and _PRIOR_INFLIGHT[loop_key].done():
                del _PRIOR_INFLIGHT[loop_key]  # a failure is asked again by the next document
        _PRIOR_MEMO[key] = value
        return value

    try:
        fields = await judge.judge(
            top, query, calibration=settings.calibration == "content_free", content_free=settings.content_free
        )
    except _JudgeFailed as failure:
        return answers, Answer(reason=failure.answer.reason, raw=failure.answer.raw)
    except judge.NoMass as failure:
        return answers, Answer(reason=str(failure), raw="")
    score = {name: fields[key].value for key, name, _ in judge.FIELDS} | {
        "keys": "paper",
        "method": "logprobs",
        "calibration": settings.calibration,
        "expected": {name: round(fields[key].expected, 4) for key, name, _ in judge.FIELDS if fields[key].expected is not None},
        "p_true": fields["MentionSpecificDetails"].dist["True"],  # unrounded: mentions_details = p_true > 0.5
        "dist": {name: {v: round(p, 4) for v, p in fields[key].dist.items()} for key, name, _ in judge.FIELDS},
        "raw_dist": {name: {v: round(p, 4) for v, p in fields[key].raw.items()} for key, name, _ in judge.FIELDS},
        "coverage": {name: round(fields[key].coverage, 4) for key, name, _ in judge.FIELDS},
    }
    return answers, Answer(value=score)


async def _score(generate: Generate, query: str, config: SynthConfig, doc, slot: str) -> tuple[list[Answer], Answer]:
    """One A.2 judgement, as the config's judge.method reads it."""
    if config.judge.method == "logprobs":
        return await _judge_logprobs(generate, query, config, doc, slot)
    rule = config.switches.mention_details
    answer = await _ask(
        generate, prompts.scoring_prompt(query), lambda t, f: parse_score(t, f, mention_rule=rule), config, "scoring", doc, slot, SCORES
    )
    return [answer], answer


async def scoring_rollout(doc, generate: Generate, config: SynthConfig) -> dict:
    answers, scores, failed, prefix = [], {}, None, ""
    for key in ("question1", "question2"):
        used, answer = await _score(generate, doc.metadata[key], config, doc, key)
        answers += used
        scores[key] = answer.value
        if not answer.ok and failed is None:
            failed, prefix = answer, f"{key}:"
    usable = sum(score is not None for score in scores.values())
    keep = usable == 2 or (usable == 1 and config.switches.missing_score == "keep_other")
    return _record(doc, "scoring", answers, {"scores": scores}, None if keep else failed, prefix)


def is_complex(difficulty: int, config: SynthConfig) -> bool:
    threshold = config.switches.complex_threshold
    return difficulty > threshold if config.switches.complex_op == ">" else difficulty >= threshold


def filter_record(record: dict, config: SynthConfig) -> dict:
    """Algorithm 1 on one scored pair -> the chosen instruction (ok) or a reject with the rule."""

    def item(key: str) -> Item | None:
        score = record["scores"].get(key)
        if score is None:
            return None
        return Item(key, score["quality"], score["difficulty"], score["relevance"], score["mentions_details"])

    decision = select(
        item("question1"), item("question2"), seed=config.seed, doc_id=record["id"], missing=config.switches.missing_score
    )
    base = {"id": record["id"], "text": record["text"], "stage": "filter", "rule": decision.rule, "scores": record["scores"]}
    if decision.chosen is None:
        return {**base, "status": "reject", "reason": decision.rule}
    chosen = decision.chosen
    return {
        **base,
        "status": "ok",
        "selected": chosen.key,
        "instruction": record[chosen.key],
        "quality": chosen.quality,
        "complexity": chosen.complexity,
        "relevance": chosen.relevance,
        "instruction_type": "complex" if is_complex(chosen.complexity, config) else "common",
    }


_KEEP = ("instruction", "quality", "complexity", "relevance", "instruction_type")


async def answer_rollout(doc, generate: Generate, config: SynthConfig) -> dict:
    prompt = prompts.answer_prompt(doc.metadata["instruction"], doc.text)
    answer = await _ask(generate, prompt, parse_answers, config, "answer", doc, "a", ANSWERS)
    fields = {k: doc.metadata[k] for k in _KEEP} | dict(answer.value or {})
    return _record(doc, "answer", [answer], fields, None if answer.ok else answer)


async def longform_rollout(doc, generate: Generate, config: SynthConfig) -> dict:
    prompt = prompts.longform_prompt(doc.metadata["instruction"], doc.text)
    answer = await _ask(generate, prompt, parse_longform, config, "longform", doc, "l", LONGFORM)
    fields = {k: doc.metadata[k] for k in _KEEP} | ({"longform": answer.value["response"]} if answer.ok else {})
    return _record(doc, "longform", [answer], fields, None if answer.ok else answer)


async def classify_rollout(doc, generate: Generate, config: SynthConfig) -> dict:
    raw_text = config.switches.classify_input == "raw_text"
    meta = doc.metadata

    def prompt(parent):
        return departments.classification_prompt(
            parent, instruction=meta["instruction"], response=meta["response"], text=doc.text, raw_text=raw_text
        )

    first = await _ask(
        generate, prompt(None), lambda t, f: parse_department(t, None, f), config, "classifier", doc, "d1",
        department_format(None),
    )
    if not first.ok:
        return _record(doc, "classify", [first], {}, first, "level1:")
    second = await _ask(
        generate, prompt(first.value), lambda t, f: parse_department(t, first.value, f), config, "classifier", doc, "d2",
        department_format(first.value),
    )
    fields = {"department": first.value}
    if not second.ok:
        return _record(doc, "classify", [first, second], fields, second, "level2:")
    sub = None if second.value == departments.NONE_LABEL else second.value
    return _record(doc, "classify", [first, second], fields | {"sub_department": sub}, None)


async def judge_rollout(doc, generate: Generate, config: SynthConfig) -> dict:
    """LLM-as-judge (§2.3): the A.2 scoring prompt on one instruction of any dataset."""
    used, answer = await _score(generate, doc.metadata["instruction"], config, doc, "judge")
    return _record(doc, "judge", used, dict(answer.value or {}), None if answer.ok else answer)


ROLLOUTS = {
    "judge": judge_rollout,
    "instruction": instruction_rollout,
    "scoring": scoring_rollout,
    "answer": answer_rollout,
    "longform": longform_rollout,
    "classify": classify_rollout,
}

_CJK = re.compile(r"[\u3400-\u9fff]")


def language(text: str) -> str:
    """"zh" when CJK characters make up at least a fifth of the letters, else "en"."""
    letters = [c for c in text if c.isalpha()]
    return "zh" if letters and len(_CJK.findall(text)) * 5 >= len(letters) else "en"


def sft_record(filtered: dict, chosen_answer: dict | None, longform: dict | None) -> dict:
    """The SFT row of one instruction: complex ones take the long-form response, common ones the
    answer the reward model preferred. A reject when that response is missing."""
    base = {k: filtered[k] for k in ("id", "text", *_KEEP)} | {"stage": "sft", "language": language(filtered["instruction"])}
    if filtered["instruction_type"] == "complex":
        if longform is None:
            return base | {"status": "reject", "reason": "no_longform_response"}
        return base | {"status": "ok", "response": longform["longform"]}
    if chosen_answer is None:
        return base | {"status": "reject", "reason": "no_answer"}
    return base | {"status": "ok", "response": chosen_answer["response"]}


def dpo_record(filtered: dict, chosen_answer: dict | None, longform: dict | None, step_by_step: bool) -> dict | None:
    """Complex instructions with both responses: chosen = long-form, rejected = the ordinary answer."""
    if filtered["instruction_type"] != "complex" or longform is None or chosen_answer is None:
        return None
    prompt = filtered["instruction"] + (" Please think step by step." if step_by_step else "")
    return {
        "id": filtered["id"],
        "text": filtered["text"],
        "complexity": filtered["complexity"],
        "quality": filtered["quality"],
        "language": language(filtered["instruction"]),
        "prompt": [{"role": "user", "content": prompt}],
        "chosen": [{"role": "assistant", "content": longform["longform"]}],
        "rejected": [{"role": "assistant", "content": chosen_answer["response"]}],
    }


def department_fields(record: dict) -> dict[str, Any]:
    return {"department": record.get("department"), "sub_department": record.get("sub_department")}
