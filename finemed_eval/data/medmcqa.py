"""MedMCQA: the validation split as jsonl / json (Google-Drive or MultiMedQA copies), or
openlifescienceai/medmcqa on the hub."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .loaders import find_file, load_hub_splits, missing, same_split, sources
from .readers import read_any
from .schema import DATA_DIR_ENV, BenchmarkData, Row, index_field, make_doc

MEDMCQA_HOW = (
    "Get the MedMCQA validation split (https://github.com/medmcqa/medmcqa, or a MultiMedQA medmcqa_val.json) "
    "as <data_dir>/medmcqa/validation.jsonl or medmcqa_val.json (train.jsonl / train.json optional: the few-shot "
    "pool), "
    f"or leave {DATA_DIR_ENV} unset (and data_dir=None) to load openlifescienceai/medmcqa from the Hugging Face hub."
)


def norm_medmcqa(row: Row, cop_base: int = 0) -> dict:
    """MedMCQA: question, opa-opd, cop (index; 0-based on the hub and in this copy, 1-based in the
    original Google-Drive json), exp. Values may be the string "nan" after a pandas round trip.
    choice_type "multi" still has exactly one correct option, so multi=False."""
    fields = ["opa", "opb", "opc", "opd"]
    options = [row.text(f, required=False, nan_is_empty=True) for f in fields]
    answer, raw = index_field(row, "cop", cop_base, len(fields))
    return make_doc(
        row,
        id=row.text("id", required=False),
        question=row.text("question"),
        options=options,
        options_field="opa-opd",
        answer=answer,
        answer_field="cop",
        answer_raw=raw,
        multi=False,
        subject=row.text("subject_name", required=False, nan_is_empty=True),
        explanation=row.text("exp", required=False, nan_is_empty=True),
        language="en",
    )


def _cop_base(rows: Sequence[Row]) -> int:
    """The original Google-Drive files number `cop` 1-4, the hub and MultiMedQA copies 0-3: a file
    that never uses 0 but does use 4 is 1-based."""
    values = {str(row.data.get("cop")).strip() for row in rows}
    return 1 if "4" in values and "0" not in values else 0


def _read_file(path: Path) -> list[dict]:
    rows = read_any(path)
    base = _cop_base(rows)
    return [norm_medmcqa(row, base) for row in rows]


def load_local(root: Path, subset: None) -> BenchmarkData:
    base = root / "medmcqa"
    eval_names = ("validation.jsonl", "medmcqa_val.json", "dev.json")
    validation = find_file(base, *eval_names)
    if validation is None:
        raise missing("medmcqa", [base / name for name in eval_names], MEDMCQA_HOW)
    eval_docs = _read_file(validation)
    train = find_file(base, "train.jsonl", "train.json")
    if train is None:
        return same_split(eval_docs, "validation", sources(validation))
    return BenchmarkData(eval_docs, _read_file(train), "validation", "train", sources(validation, train))


def load_hub(subset: None) -> BenchmarkData:
    return load_hub_splits(
        "openlifescienceai/medmcqa", None, "validation", "train", lambda rows: [norm_medmcqa(r) for r in rows]
    )
