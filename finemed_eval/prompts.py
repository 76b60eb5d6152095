"""Prompt rendering for the finemed tasks: pure functions of a normalised document.

A document (see finemed_eval.data) has `question`, `options` (texts), `answer` (sorted letters),
`multi`, `explanation`, `language` ("en" | "zh").
"""

from __future__ import annotations

from itertools import combinations

from finemed_eval.answers import letters

COT_TRIGGER = {"en": "Answer: Let's think step by step.", "zh": "答案：让我们一步一步地思考。"}
ANSWER_CUE = {"en": "Answer:", "zh": "答案："}
# Generation stops when the model starts inventing the next exam item.
COT_STOP = ["Question:", "题目：", "<|im_end|>", "</s>", "<|eot_id|>"]


def _options_block(doc: dict) -> str:
    return "\n".join(f"{letter}. {text}" for letter, text in zip(letters(len(doc["options"])), doc["options"]))


def _question_block(doc: dict) -> str:
    if doc["language"] == "zh":
        kind = "（多选题）" if doc["multi"] else ""
        return f"题目：{kind}{doc['question']}\n选项：\n{_options_block(doc)}"
    kind = " (select all correct options)" if doc["multi"] else ""
    return f"Question:{kind} {doc['question']}\nOptions:\n{_options_block(doc)}"


def mc_text(doc: dict) -> str:
    """Context of the log-likelihood variant; the continuation is the option letter(s)."""
    return f"{_question_block(doc)}\n{ANSWER_CUE[doc['language']]}"


def mc_choices(doc: dict) -> list[str]:
    """Single-answer: one letter per option. Multi-answer: every non-empty letter set, so exact
    set match can be scored by log-likelihood (2^n - 1 continuations, n <= 5 in CMB/CMExam)."""
    option_letters = letters(len(doc["options"]))
    if not doc["multi"]:
        return option_letters
    return ["".join(c) for size in range(1, len(option_letters) + 1) for c in combinations(option_letters, size)]


def mc_target(doc: dict) -> int:
    return mc_choices(doc).index(doc["answer"])


def cot_text(doc: dict) -> str:
    return f"{_question_block(doc)}\n{COT_TRIGGER[doc['language']]}"


def cot_fewshot_target(doc: dict) -> str:
    """Worked exemplar: the release's own explanation when it has one, then the answer sentence."""
    explanation = _strip_cot_prefix(doc.get("explanation") or "")
    if doc["language"] == "zh":
        closing = f"所以答案是{doc['answer']}。"
    else:
        closing = f"The answer is ({doc['answer']})."
    if not explanation:
        return closing
    if closing.lower().rstrip(".。") in explanation.lower():
        return explanation
    return f"{explanation} {closing}"


def _strip_cot_prefix(explanation: str) -> str:
    """MMLU-Pro's cot_content starts with "A: Let's think step by step."; our trigger says it already."""
    text = explanation.strip()
    for prefix in ("A: Let's think step by step.", "A: Let's think step by step", "A:"):
        if text.startswith(prefix):
            return text[len(prefix):].strip()
    return text
