"""C-Eval, medical subjects: the release's CSVs, or ceval/ceval-exam on the hub (same columns)."""

from __future__ import annotations

from pathlib import Path

from .loaders import load_hub_splits, load_subject_csvs
from .schema import DATA_DIR_ENV, BenchmarkData, Row, abcd_columns, make_doc

CEVAL_SUBJECTS = ("clinical_medicine", "basic_medicine", "physician", "veterinary_medicine")
CEVAL_HOW = (
    "Get the official C-Eval release ceval-exam.zip (https://huggingface.co/datasets/ceval/ceval-exam) and copy "
    "val/<subject>_val.csv and dev/<subject>_dev.csv to <data_dir>/ceval/val/ and <data_dir>/ceval/dev/, "
    f"or leave {DATA_DIR_ENV} unset (and data_dir=None) to load ceval/ceval-exam from the Hugging Face hub."
)


def norm_ceval(row: Row, subject: str) -> dict:
    """C-Eval CSV / ceval/ceval-exam: id, question, A-D, answer, explanation (dev only)."""
    return make_doc(
        row,
        id=row.text("id", required=False),  # evaluated before the columns: errors keep their order
        **abcd_columns(row),
        multi=False,
        subject=subject,
        explanation=row.text("explanation", required=False),
        language="zh",
    )


def load_local(root: Path, subject: str) -> BenchmarkData:
    return load_subject_csvs(root, "ceval", subject, "val", "dev", CEVAL_HOW, norm_ceval)


def load_hub(subject: str) -> BenchmarkData:
    return load_hub_splits(
        "ceval/ceval-exam", subject, "val", "dev", lambda rows: [norm_ceval(r, subject) for r in rows]
    )
