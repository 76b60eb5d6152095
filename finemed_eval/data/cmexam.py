"""CMExam: the release's CSVs (local only, no hub copy), the XMedBench sample as fallback."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from . import xmedbench
from .loaders import find_file, same_split, sources
from .readers import read_csv
from .schema import DATA_DIR_ENV, LETTERS, BenchmarkData, DataError, Row, letters_field, make_doc

log = logging.getLogger(__package__)  # "finemed_eval.data", one logger for the package

CMEXAM_HOW = (
    "CMExam has no official Hugging Face copy: download data/test_with_annotations.csv and data/train.csv "
    "(or data/val.csv) from https://github.com/williamliujl/CMExam into <data_dir>/cmexam/ and set "
    f"{DATA_DIR_ENV}=<data_dir> (or pass data_dir=)."
)
_OPTION_LINE = re.compile(r"([A-Z])(?:\s*[.．、]\s*|\s+|$)(.*)", re.S)


def norm_cmexam_csv(row: Row) -> dict | None:
    """CMExam CSV (williamliujl/CMExam data/*.csv): Question, Options ("A 选项\\nB 选项..."), Answer
    (letters, several for multi-answer), Explanation, annotation columns (test only).
    Returns None for a row without an answer: the official preprocessing skips those too."""
    if not row.text("Answer", required=False):
        row.raw("Answer")  # a missing column is an error, an empty cell is skipped
        return None
    raw_options = row.text("Options")
    options: list[str] = []
    for line in raw_options.split("\n"):
        line = line.strip()
        match = _OPTION_LINE.fullmatch(line)
        if match and match.group(1) == LETTERS[len(options)]:
            options.append(match.group(2).strip())
        elif options:
            if line:
                options[-1] = f"{options[-1]}\n{line}".strip()
        elif line:
            raise row.error("Options", f"should start with option A (\"A text\") but starts with {line[:30]!r}")
    letters = letters_field(row, "Answer")
    return make_doc(
        row,
        id=row.text("ID", required=False) or row.text("id", required=False) or None,
        question=row.text("Question"),
        options=options,
        options_field="Options",
        answer=letters,
        answer_field="Answer",
        multi=len(set(letters)) > 1,
        subject=row.text("Medical Discipline", required=False),
        explanation=row.text("Explanation", required=False),
        language="zh",
    )


def _read_file(path: Path) -> list[dict]:
    """The documents of one CSV; rows without an answer are skipped with a warning."""
    rows = read_csv(path)
    docs = [norm_cmexam_csv(row) for row in rows]
    kept = [doc for doc in docs if doc is not None]
    if len(kept) < len(docs):
        skipped = [row for row, doc in zip(rows, docs) if doc is None]
        numbers = ", ".join(str(r.n) for r in skipped[:10]) + (" ..." if len(skipped) > 10 else "")
        log.warning(
            "%s: skipped %d row(s) without an answer (rows %s), as the official preprocessing does",
            skipped[0].where, len(skipped), numbers,
        )
    if not kept and rows:
        raise DataError(f"{rows[0].where}: no usable rows")
    return kept


def load_local(root: Path, subset: None) -> BenchmarkData:
    base = root / "cmexam"
    test_names = ("test_with_annotations.csv", "test.csv", "data/test_with_annotations.csv", "data/test.csv")
    test = find_file(base, *test_names)
    if test is None:
        return xmedbench.load_fallback(
            "cmexam", base, "cmexam.jsonl", official=[base / n for n in test_names], how=CMEXAM_HOW,
            missing_what=f"CSVs ({test_names[0]})", contents="2,000 questions",
        )

    eval_docs = _read_file(test)
    for split, names in (("train", ("train.csv", "data/train.csv")), ("val", ("val.csv", "data/val.csv"))):
        pool = find_file(base, *names)
        if pool is not None:
            pool_docs = _read_file(pool)
            return BenchmarkData(eval_docs, pool_docs, "test", split, sources(test, pool))
    log.warning("cmexam: no train.csv or val.csv next to %s; the few-shot pool is the test split itself", test)
    return same_split(eval_docs, "test", sources(test))


def load_hub(subset: None) -> BenchmarkData:
    raise DataError(f"cmexam: cannot be loaded from the Hugging Face hub. {CMEXAM_HOW}")
