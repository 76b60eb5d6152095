"""CMB-Exam: the release's JSON files (test questions, separate test answers, val), the XMedBench
sample as fallback, or the same JSON files on the hub plus the answer file from GitHub."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Mapping, Sequence

from . import xmedbench
from .loaders import find_file, same_split, sources
from .readers import read_hub, read_json
from .schema import DATA_DIR_ENV, BenchmarkData, Row, make_doc, option_dict

log = logging.getLogger(__package__)  # "finemed_eval.data", one logger for the package

CMB_HOW = (
    "Get CMB-Exam from https://github.com/FreedomIntelligence/CMB (data/CMB.zip -> CMB-Exam/CMB-test/"
    "CMB-test-choice-question-merge.json and CMB-Exam/CMB-val/CMB-val-merge.json; the test answers are in "
    "data/CMB-test-choice-answer.json) "
    "or https://huggingface.co/datasets/FreedomIntelligence/CMB, and put the files in <data_dir>/cmb/ "
    f"(flat or in their CMB-Exam/ folders), or leave {DATA_DIR_ENV} unset (and data_dir=None) to load them from the "
    "Hugging Face hub."
)
CMB_QUESTIONS = "CMB-test-choice-question-merge.json"
CMB_ANSWERS = "CMB-test-choice-answer.json"
CMB_VAL = "CMB-val-merge.json"
CMB_HUB = "FreedomIntelligence/CMB"
CMB_HUB_FILES = {
    "test": f"hf://datasets/{CMB_HUB}/CMB-Exam/CMB-test/{CMB_QUESTIONS}",
    "val": f"hf://datasets/{CMB_HUB}/CMB-Exam/CMB-val/{CMB_VAL}",
}
# The test answers were published in the GitHub repository only (data/CMB-test-choice-answer.json).
CMB_ANSWERS_URL = f"https://raw.githubusercontent.com/FreedomIntelligence/CMB/main/data/{CMB_ANSWERS}"
CMB_MULTI_TYPE = "多项选择题"


def norm_cmb(row: Row, answers: Mapping[str, Row] | None = None, answers_hint: str = "") -> dict:
    """CMB-Exam json (question-merge / val-merge): exam_type, exam_class, exam_subject, question_type
    (单项选择题 / 多项选择题), question, option {"A": ..} (unused slots empty or null), answer, explanation.
    Test answers live in CMB-test-choice-answer.json, joined on `id` (`answers`)."""
    options = option_dict(row, "option")
    rid = row.text("id", required=False)
    answer, answer_from, qtype = row.text("answer", required=False), "", row.text("question_type", required=False)
    if answers is not None:
        if not rid:
            raise row.error("id", f"is missing, so the answer cannot be looked up in {answers_hint}")
        joined = answers.get(rid)
        if joined is not None:
            answer = joined.text("answer", required=False)
            answer_from = f" (from {joined.where} row {joined.n})"
            qtype = qtype or joined.text("question_type", required=False)
        elif not answer:
            raise row.error("answer", f"is empty and id {rid} is not in {answers_hint}")
    elif not answer and answers_hint:
        raise row.error("answer", f"is empty: CMB keeps test answers in a separate file, expected at {answers_hint}")
    letters = re.sub(r"\s+", "", answer).upper()
    return make_doc(
        row,
        id=rid or None,
        question=row.text("question"),
        options=list(options.values()),
        options_field="option",
        answer=letters,
        answer_field="answer",
        answer_raw=answer,
        answer_from=answer_from,
        multi=(qtype == CMB_MULTI_TYPE) if qtype else len(set(letters)) > 1,
        subject="/".join(p for p in (row.text(f, required=False) for f in ("exam_type", "exam_class")) if p),
        explanation=row.text("explanation", required=False),
        language="zh",
    )


def _candidates(name: str, folder: str) -> tuple[str, ...]:
    """A CMB file flat in cmb/, or where the official zip / repository puts it."""
    return name, f"CMB-Exam/{folder}/{name}", f"CMB/CMB-Exam/{folder}/{name}", f"data/{name}"


def _answers_by_id(rows: Sequence[Row]) -> dict[str, Row]:
    return {row.text("id"): row for row in rows}


def load_local(root: Path, subset: None) -> BenchmarkData:
    base = root / "cmb"
    question_names = _candidates(CMB_QUESTIONS, "CMB-test")
    questions = find_file(base, *question_names)
    if questions is None:
        return xmedbench.load_fallback(
            "cmb", base, "cmb-single.jsonl", official=[base / n for n in question_names], how=CMB_HOW,
            missing_what=f"test questions ({CMB_QUESTIONS})", contents="2,000 single-answer questions",
        )

    answer_names = _candidates(CMB_ANSWERS, "CMB-test")
    answers_path = find_file(base, *answer_names)
    answers = _answers_by_id(read_json(answers_path)) if answers_path else None
    hint = str(answers_path) if answers_path else " or ".join(str(base / n) for n in answer_names)
    eval_docs = [norm_cmb(row, answers, hint) for row in read_json(questions)]
    used = [questions] + ([answers_path] if answers_path else [])

    val = find_file(base, *_candidates(CMB_VAL, "CMB-val"))
    if val is None:
        log.warning("cmb: %s is missing; the few-shot pool is the test split itself", CMB_VAL)
        return same_split(eval_docs, "test", sources(*used))
    return BenchmarkData(eval_docs, [norm_cmb(row) for row in read_json(val)], "test", "val", sources(*used, val))


def load_hub(subset: None) -> BenchmarkData:
    answers = _answers_by_id(read_hub("json", None, "train", data_files=CMB_ANSWERS_URL))
    test = read_hub("json", None, "test", data_files=CMB_HUB_FILES["test"])
    val = read_hub("json", None, "val", data_files=CMB_HUB_FILES["val"])
    eval_docs = [norm_cmb(row, answers, CMB_ANSWERS_URL) for row in test]
    return BenchmarkData(eval_docs, [norm_cmb(row) for row in val], "test", "val", CMB_HUB)
