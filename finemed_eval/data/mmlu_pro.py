"""MMLU-Pro (biology, health): parquet / jsonl files or TIGER-Lab/MMLU-Pro on the hub; also the
project's demo benchmark, which uses the same schema."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from .loaders import find_file, load_hub_splits, missing, sources
from .readers import read_any, read_jsonl
from .schema import DATA_DIR_ENV, BenchmarkData, DataError, Row, letters_field, make_doc

log = logging.getLogger(__package__)  # "finemed_eval.data", one logger for the package

MMLU_PRO_CATEGORIES = ("biology", "health")
MMLU_PRO_HOW = (
    "Get TIGER-Lab/MMLU-Pro's data files (https://huggingface.co/datasets/TIGER-Lab/MMLU-Pro, "
    "data/test-00000-of-00001.parquet and data/validation-00000-of-00001.parquet) into <data_dir>/mmlu_pro/, "
    f"or leave {DATA_DIR_ENV} unset (and data_dir=None) to load TIGER-Lab/MMLU-Pro from the Hugging Face hub."
)


def norm_mmlu_pro(row: Row, language: str = "en") -> dict:
    """MMLU-Pro (parquet, jsonl or TIGER-Lab/MMLU-Pro; also the demo files): question_id, question,
    options (3-10, validation padded with trailing "N/A"), answer letter, cot_content, category."""
    options = row.raw("options")
    if not isinstance(options, (list, tuple)):
        raise row.error("options", f"should be a list but is {type(options).__name__}")
    texts = [str(o).strip() if o is not None else "" for o in options]
    while texts and texts[-1] in ("N/A", ""):
        texts.pop()
    return make_doc(
        row,
        id=row.text("question_id", required=False),
        question=row.text("question"),
        options=texts,
        options_field="options",
        answer=letters_field(row, "answer"),
        answer_field="answer",
        multi=False,
        subject=row.text("category", required=False),
        explanation=row.text("cot_content", required=False),
        language=language,
    )


def _docs(rows: Sequence[Row], category: str | None) -> list[dict]:
    """The rows of `category` (all if None), normalised."""
    if category is not None:
        rows = [row for row in rows if row.text("category") == category]
    return [norm_mmlu_pro(row) for row in rows]


def load_local(root: Path, category: str | None) -> BenchmarkData:
    base = root / "mmlu_pro"
    test_names = ("test-00000-of-00001.parquet", "test.jsonl", "test_biology_health.jsonl")
    val_names = ("validation-00000-of-00001.parquet", "validation.jsonl")
    test, val = find_file(base, *test_names), find_file(base, *val_names)
    if test is None or val is None:
        raise missing("mmlu_pro", [base / n for n in (test_names if test is None else val_names)], MMLU_PRO_HOW)
    if category is None and test.name == "test_biology_health.jsonl":
        log.warning("%s holds only the biology and health categories of MMLU-Pro's test split", test)
    eval_docs = _docs(read_any(test), category)
    if not eval_docs:
        raise DataError(f"{test}: no rows with field 'category' == {category!r}")
    return BenchmarkData(eval_docs, _docs(read_any(val), category), "test", "validation", sources(test, val))


def load_hub(category: str | None) -> BenchmarkData:
    return load_hub_splits("TIGER-Lab/MMLU-Pro", None, "test", "validation", lambda rows: _docs(rows, category))


def load_demo(demo_dir: Path) -> BenchmarkData:
    """The demo benchmark shipped in `demo_dir` (demo_test.jsonl, demo_validation.jsonl)."""
    test, val = demo_dir / "demo_test.jsonl", demo_dir / "demo_validation.jsonl"
    missing_files = [p for p in (test, val) if not p.is_file()]
    if missing_files:
        raise missing("demo", missing_files, "The demo files ship with finemed-eval; reinstall the package.")
    eval_docs, pool_docs = ([norm_mmlu_pro(row) for row in read_jsonl(path)] for path in (test, val))
    return BenchmarkData(eval_docs, pool_docs, "test", "validation", sources(demo_dir))
