"""MedQA (USMLE, 4 options): the release's jsonl files, or GBaker/MedQA-USMLE-4-options on the hub."""

from __future__ import annotations

from pathlib import Path

from .loaders import load_hub_splits, missing, sources
from .readers import read_jsonl
from .schema import DATA_DIR_ENV, BenchmarkData, Row, letters_field, make_doc, option_dict

MEDQA_HOW = (
    "Get the official MedQA release (https://github.com/jind11/MedQA, Google-Drive data_clean/questions/US/4_options/) "
    "and copy phrases_no_exclude_test.jsonl plus phrases_no_exclude_train.jsonl (or _dev.jsonl) to <data_dir>/medqa/, "
    f"or leave {DATA_DIR_ENV} unset (and data_dir=None) to load GBaker/MedQA-USMLE-4-options from the Hugging Face hub."
)


def norm_medqa(row: Row) -> dict:
    """MedQA jsonl / GBaker/MedQA-USMLE-4-options: question, options {"A": ..}, answer_idx."""
    options = option_dict(row, "options", keep_empty=True)
    return make_doc(
        row,
        question=row.text("question"),
        options=list(options.values()),
        options_field="options",
        option_fields=[f"options[{k!r}]" for k in options],
        answer=letters_field(row, "answer_idx"),
        answer_field="answer_idx",
        multi=False,
        language="en",
    )


def load_local(root: Path, subset: None) -> BenchmarkData:
    base = root / "medqa"
    test = base / "phrases_no_exclude_test.jsonl"
    if not test.is_file():
        raise missing("medqa", [test], MEDQA_HOW)
    pool_names = {"train": "phrases_no_exclude_train.jsonl", "dev": "phrases_no_exclude_dev.jsonl"}
    pool_split = next((split for split, name in pool_names.items() if (base / name).is_file()), None)
    if pool_split is None:
        raise missing("medqa (few-shot pool)", [base / name for name in pool_names.values()], MEDQA_HOW)
    pool = base / pool_names[pool_split]
    eval_docs, pool_docs = ([norm_medqa(row) for row in read_jsonl(path)] for path in (test, pool))
    return BenchmarkData(eval_docs, pool_docs, "test", pool_split, sources(test, pool))


def load_hub(subset: None) -> BenchmarkData:
    return load_hub_splits(
        "GBaker/MedQA-USMLE-4-options", None, "test", "train", lambda rows: [norm_medqa(r) for r in rows]
    )
