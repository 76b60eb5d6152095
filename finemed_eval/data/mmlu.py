"""MMLU, medical subjects: the release's headerless CSVs, or cais/mmlu on the hub."""

from __future__ import annotations

import re
from pathlib import Path

from .loaders import load_hub_splits, load_subject_csvs
from .schema import DATA_DIR_ENV, BenchmarkData, Row, abcd_columns, index_field, make_doc

MMLU_SUBJECTS = (
    "anatomy",
    "clinical_knowledge",
    "college_biology",
    "college_medicine",
    "medical_genetics",
    "professional_medicine",
)
MMLU_HOW = (
    "Get the official MMLU release (https://people.eecs.berkeley.edu/~hendrycks/data.tar) and copy "
    "data/test/<subject>_test.csv and data/dev/<subject>_dev.csv to <data_dir>/mmlu/test/ and <data_dir>/mmlu/dev/, "
    f"or leave {DATA_DIR_ENV} unset (and data_dir=None) to load cais/mmlu from the Hugging Face hub."
)
CSV_COLUMNS = ("question", "A", "B", "C", "D", "answer")  # the release CSVs have no header


def norm_mmlu_csv(row: Row, subject: str) -> dict:
    """MMLU release CSV (no header): question, A, B, C, D, answer letter."""
    if None in row.data:  # csv.DictReader puts surplus columns under the key None
        raise row.error("answer", f"should be column 6 but the row has {6 + len(row.data[None])} columns")
    return make_doc(row, **abcd_columns(row), multi=False, subject=subject, language="en")


def norm_mmlu_hub(row: Row, subject: str) -> dict:
    """cais/mmlu: question, choices (list), answer (int index 0-3, a ClassLabel)."""
    choices = row.raw("choices")
    if not isinstance(choices, (list, tuple)):
        raise row.error("choices", f"should be a list but is {type(choices).__name__}")
    options = [str(c).strip() if c is not None else "" for c in choices]
    value = row.raw("answer")
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z]", value.strip()):
        answer, raw = value.strip().upper(), value
    else:
        answer, raw = index_field(row, "answer", 0, len(options))
    return make_doc(
        row,
        question=row.text("question"),
        options=options,
        options_field="choices",
        option_fields=[f"choices[{i}]" for i in range(len(options))],
        answer=answer,
        answer_field="answer",
        answer_raw=raw,
        multi=False,
        subject=subject,
        language="en",
    )


def load_local(root: Path, subject: str) -> BenchmarkData:
    return load_subject_csvs(root, "mmlu", subject, "test", "dev", MMLU_HOW, norm_mmlu_csv, fieldnames=CSV_COLUMNS)


def load_hub(subject: str) -> BenchmarkData:
    return load_hub_splits("cais/mmlu", subject, "test", "dev", lambda rows: [norm_mmlu_hub(r, subject) for r in rows])
