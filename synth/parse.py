"""Parsers of model outputs. Pure; they never raise: every input gives a `Parsed` (value or reason).

Reasons are short stable codes (`no_json`, `missing_key:quality`, `out_of_range:difficulty`, ...);
when the output was cut by the token limit (`finish_reason == "length"`) and does not parse, the
reason is `truncated`, so reports tell the two apart.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .departments import allowed_labels

TRUNCATED = "truncated"

# --- structured output: what a server that constrains decoding (vLLM, SGLang, OpenAI) is asked for ----
# The JSON stages send these schemas (`structured_output: true`); the parsers below still check every
# answer, since most servers only approximate a schema. A question must open with a question word (or an
# imperative like "Explain"): without that, SmolLM2 filled the schema with the prompt's own placeholder
# ("Generated first question") for most texts; with it, with real questions.
_QUESTION = {
    "type": "string",
    "maxLength": 300,
    "pattern": r"^(What|How|Why|Which|When|Who|Where|Is|Are|Can|Could|Does|Do|Should|Explain|Describe|Compare) [A-Za-z0-9][^\n]+$",
}
_ANSWER = {"type": "string", "minLength": 20}
QUESTIONS_SCHEMA = {
    "type": "object",
    "properties": {"question1": _QUESTION, "question2": _QUESTION},
    "required": ["question1", "question2"],
    "additionalProperties": False,
}
SCORE_SCHEMA = {  # the paper's keys (A.2); the parser also accepts the released code's
    "type": "object",
    "properties": {
        "quality": {"type": "integer", "minimum": 1, "maximum": 10},
        "difficulty": {"type": "integer", "minimum": 1, "maximum": 10},
        "Relevance2Medicine": {"type": "integer", "minimum": 1, "maximum": 6},
        "MentionSpecificDetails": {"type": "string", "enum": ["True", "False"]},
    },
    "required": ["quality", "difficulty", "Relevance2Medicine", "MentionSpecificDetails"],
    "additionalProperties": False,
}
ANSWERS_SCHEMA = {
    "type": "object",
    "properties": {"answer1": _ANSWER, "answer2": _ANSWER},
    "required": ["answer1", "answer2"],
    "additionalProperties": False,
}
# The QwQ prompt (A.3) names two sections but no format; this is the shape `parse_longform` accepts.
LONGFORM_REGEX = r"\*\*Thought\*\*\n[^*]{50,1500}\n\*\*Summarization\*\*\n[^*]{20,800}"

# The prompt's own placeholders (A.1 and A.3 output formats), per JSON key, copied back by weak models:
# never an instruction or an answer. A copy is the reject reason `placeholder:<key>`; the re-ask then bans
# the placeholder's first token (ask.py, backends.placeholder_ban).
PLACEHOLDER_TEXT = {
    "question1": "Generated first question",
    "question2": "Generated second question",
    "answer1": "Generated first answer content",
    "answer2": "Generated second answer content",
}
PLACEHOLDERS = frozenset(text.lower() for text in PLACEHOLDER_TEXT.values())


def is_placeholder(value: str) -> bool:
    """The value is, or contains, one of the prompt's placeholders. Containing counts: with the copy's first
    token banned, SmolLM2 wrote "The answer is: Generated second answer content" (measured)."""
    lowered = " ".join(value.lower().split())
    return any(placeholder in lowered for placeholder in PLACEHOLDERS)


def copied_placeholder(reason: str) -> str | None:
    """The placeholder text a `placeholder:<key>` reason says the model copied, else None."""
    kind, _, key = reason.partition(":")
    return PLACEHOLDER_TEXT.get(key) if kind == "placeholder" else None


@dataclass(frozen=True)
class Parsed:
    value: Any = None
    reason: str = ""  # empty when ok

    @property
    def ok(self) -> bool:
        return not self.reason


def _fail(reason: str, finish_reason: str | None) -> Parsed:
    return Parsed(reason=TRUNCATED if finish_reason == "length" else reason)


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)


def json_object(text: Any) -> dict | None:
    """The first JSON object in `text`: bare, fenced (```json ... ```) or surrounded by prose."""
    if not isinstance(text, str):
        return None
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        for start in (i for i, ch in enumerate(candidate) if ch == "{"):
            try:
                value, _ = decoder.raw_decode(candidate, start)
            except (ValueError, RecursionError):
                continue
            if isinstance(value, dict):
                return value
    return None


def _text_field(obj: dict, key: str) -> str | None:
    value = obj.get(key)
    return value.strip() if isinstance(value, str) and value.strip() else None


def parse_questions(text: Any, finish_reason: str | None = None) -> Parsed:
    """A.1 output -> {"question1": str, "question2": str}."""
    obj = json_object(text)
    if obj is None:
        return _fail("no_json", finish_reason)
    questions = {}
    for key in ("question1", "question2"):
        value = _text_field(obj, key)
        if value is None:
            return _fail(f"missing_key:{key}" if key not in obj else f"not_text:{key}", finish_reason)
        if is_placeholder(value):
            return Parsed(reason=f"placeholder:{key}")
        questions[key] = value
    if questions["question1"] == questions["question2"]:
        return Parsed(reason="identical_questions")
    return Parsed(questions)


# A.2 keys as the paper writes them and as the released code writes them.
SCORE_KEYS = {
    "paper": {"relevance": "Relevance2Medicine", "mentions": "MentionSpecificDetails"},
    "released": {"relevance": "relevance_to_medicine", "mentions": "mention_specific_details"},
}
_RANGES = {"quality": (1, 10), "difficulty": (1, 10), "relevance": (1, 6)}


def _score_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*\d{1,2}\s*", value):
        return int(value)
    return None


def _mentions(value: Any, rule: str) -> bool | None:
    """Paper: a boolean or "True"/"False" (any case); anything else is invalid (None).
    Released code: only the exact string "True" counts as mentioning details; anything else is False."""
    if rule == "released":
        return value == "True"
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def parse_score(text: Any, finish_reason: str | None = None, mention_rule: str = "paper") -> Parsed:
    """A.2 output -> {"quality", "difficulty", "relevance", "mentions_details", "mentions_raw", "keys"}.
    Accepts the paper's and the released code's key names and records which ("keys")."""
    obj = json_object(text)
    if obj is None:
        return _fail("no_json", finish_reason)
    keys = next((name for name, k in SCORE_KEYS.items() if k["relevance"] in obj or k["mentions"] in obj), "paper")
    names = {"quality": "quality", "difficulty": "difficulty", **SCORE_KEYS[keys]}
    score: dict[str, Any] = {"keys": keys}
    for field, (low, high) in _RANGES.items():
        key = names[field]
        if key not in obj:
            return _fail(f"missing_key:{key}", finish_reason)
        number = _score_number(obj[key])
        if number is None:
            return Parsed(reason=f"not_a_number:{key}")
        if not low <= number <= high:
            return Parsed(reason=f"out_of_range:{key}")
        score[field] = number
    key = names["mentions"]
    if key not in obj:
        return _fail(f"missing_key:{key}", finish_reason)
    mentions = _mentions(obj[key], mention_rule)
    if mentions is None:
        return Parsed(reason=f"not_true_false:{key}")
    score["mentions_details"] = mentions
    score["mentions_raw"] = obj[key] if isinstance(obj[key], (str, bool, int, float)) else repr(obj[key])
    return Parsed(score)


def parse_answers(text: Any, finish_reason: str | None = None) -> Parsed:
    """A.3 (Qwen) output -> {"answer1": str, "answer2": str}."""
    obj = json_object(text)
    if obj is None:
        return _fail("no_json", finish_reason)
    answers = {}
    for key in ("answer1", "answer2"):
        value = _text_field(obj, key)
        if value is None:
            return _fail(f"missing_key:{key}" if key not in obj else f"not_text:{key}", finish_reason)
        if is_placeholder(value):
            return Parsed(reason=f"placeholder:{key}")
        answers[key] = value
    if answers["answer1"] == answers["answer2"]:  # the prompt asks for two different styles
        return Parsed(reason="identical_answers")
    return Parsed(answers)


_SECTION = r"(?:^|\n)[ \t#>*]*{name}[ \t*]*:?[ \t*]*(?:\n|$)"


def parse_longform(text: Any, finish_reason: str | None = None) -> Parsed:
    """A.3 (QwQ) output: must contain a Thought section followed by a Summarization section (as a
    heading line such as "**Thought**", "## Thought", "Thought:"). Returns {"response", "thought",
    "summarization"}; the response is the whole output, kept as the model wrote it."""
    if not isinstance(text, str) or not text.strip():
        return _fail("empty", finish_reason)
    thought = re.search(_SECTION.format(name="Thought"), text, re.I)
    summary = re.search(_SECTION.format(name="Summar(?:ization|isation|y)"), text, re.I)
    if thought is None:
        return _fail("missing_section:Thought", finish_reason)
    if summary is None or summary.start() < thought.end():
        return _fail("missing_section:Summarization", finish_reason)
    summarization = text[summary.end():].strip()
    if not summarization:
        return _fail("empty_section:Summarization", finish_reason)
    return Parsed(
        {"response": text.strip(), "thought": text[thought.end():summary.start()].strip(), "summarization": summarization}
    )


def parse_department(text: Any, parent: str | None, finish_reason: str | None = None) -> Parsed:
    """A department name from the exact label set of the level (Appendix D). Whitespace, surrounding
    quotes or asterisks, a trailing period and a leading "Output:" are removed; nothing else is
    forgiven: an output outside the set is `not_a_label`."""
    if not isinstance(text, str):
        return Parsed(reason="not_a_label")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return _fail("empty", finish_reason)
    label = re.sub(r"^\s*output\s*:\s*", "", lines[0], flags=re.I)
    label = label.strip().strip("*\"'`‘’“” ").rstrip(".").strip().strip("*\"'`‘’“” ")
    if label in allowed_labels(parent):
        return Parsed(label)
    return _fail("not_a_label", finish_reason)


def parse_top_logprobs(text: Any, finish_reason: str | None = None) -> Parsed:
    """A next-token answer (judge.method: logprobs; backends.logprob_text) -> {token: probability}."""
    import math

    try:
        obj = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        obj = None
    entries = obj.get("top_logprobs") if isinstance(obj, dict) else None
    if not isinstance(entries, list) or not entries:
        return Parsed(reason="no_logprobs")
    probs: dict[str, float] = {}
    for entry in entries:
        token, logprob = (entry.get("token"), entry.get("logprob")) if isinstance(entry, dict) else (None, None)
        if not isinstance(token, str) or isinstance(logprob, bool) or not isinstance(logprob, (int, float)):
            return Parsed(reason="bad_logprobs")
        if not math.isfinite(logprob) and logprob != -math.inf:
            return Parsed(reason="bad_logprobs")
        probs[token] = probs.get(token, 0.0) + math.exp(min(float(logprob), 0.0))
    return Parsed(probs)
