"""Benchmark data for finemed-eval: read the official releases and normalise every row.

Where the data comes from (``load_benchmark(name, subset, data_dir)``):

* ``data_dir`` given, or else the environment variable ``FINEMED_DATA_DIR``: a local directory with one
  sub-directory per benchmark, laid out like the official releases (see ``_SOURCES`` below and the
  PROVENANCE.md files of the shared data directory);
* neither: the Hugging Face hub (``datasets.load_dataset``);
* ``demo`` always reads the project's own files in ``finemed_eval/demo/``.

Every document is normalised to one schema::

    id           str        the release's own id, else "<file name>:<row>"
    question     str
    options      list[str]  option texts without "A." prefixes, in letter order
    answer       str        sorted upper-case letters: "B" or "ACD"
    multi        bool       the question is a multi-answer type
    subject      str        may be ""
    explanation  str        "" if the release has none
    language     "en" | "zh"

Option lists: trailing padding (MMLU-Pro "N/A", empty CMB option slots, MedMCQA "nan") is dropped; an
empty option *between* real ones (one MedMCQA row has an empty option C) is kept as "" so the letters
stay those of the release. An answer never points at an empty option.

Rows are numbered from 1: the line number for JSON lines, the record number for JSON arrays, parquet
files and hub splits, and the data-record number (header not counted) for CSV files. Every problem is
reported as a ``DataError`` naming the file, the row and the field.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import string
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

log = logging.getLogger(__name__)

DATA_DIR_ENV = "FINEMED_DATA_DIR"
DEMO_DIR = Path(__file__).resolve().parent / "demo"
LETTERS = string.ascii_uppercase


class DataError(ValueError):
    """Missing or malformed benchmark data; the message names the file, the row and the field."""


@dataclass(frozen=True)
class BenchmarkData:
    eval_docs: list[dict]  # the documents scored
    fewshot_docs: list[dict]  # pool exemplars are drawn from
    eval_split: str  # official split name of eval_docs
    fewshot_split: str  # official split of the pool; equal to eval_split when the pool is the eval split itself
    source: str  # hub dataset id, or the local file(s) used


BENCHMARKS: tuple[str, ...] = ("mmlu", "ceval", "cmb", "cmexam", "medqa", "medmcqa", "mmlu_pro", "demo")

MMLU_SUBJECTS = (
    "anatomy",
    "clinical_knowledge",
    "college_biology",
    "college_medicine",
    "medical_genetics",
    "professional_medicine",
)
CEVAL_SUBJECTS = ("clinical_medicine", "basic_medicine", "physician", "veterinary_medicine")
MMLU_PRO_CATEGORIES = ("biology", "health")

# benchmark -> (valid subsets, subset required?)
SUBSETS: dict[str, tuple[tuple[str, ...], bool]] = {
    "mmlu": (MMLU_SUBJECTS, True),
    "ceval": (CEVAL_SUBJECTS, True),
    "mmlu_pro": (MMLU_PRO_CATEGORIES, False),
}

XMEDBENCH_SPLIT = "xmedbench_sample"


# --------------------------------------------------------------------------------------------------
# Rows and the common document builder
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One raw record plus where it came from, so that every error can name file, row and field."""

    where: str  # file path, or a hub label like "cais/mmlu (anatomy, test)"
    n: int  # 1-based line / record number
    data: Mapping[str, Any]
    id_prefix: str  # fallback ids are "<id_prefix>:<n>"

    def error(self, field: str, problem: str) -> DataError:
        return DataError(f"{self.where} row {self.n}: field {field!r} {problem}")

    @property
    def fallback_id(self) -> str:
        return f"{self.id_prefix}:{self.n}"

    def raw(self, field: str) -> Any:
        value = self.data.get(field)
        if value is None:
            raise self.error(field, "is missing")
        return value

    def text(self, field: str, *, required: bool = True, nan_is_empty: bool = False) -> str:
        """A stripped string field; `required` fields must be present and non-empty."""
        value = self.data.get(field)
        if value is None:
            if required:
                raise self.error(field, "is missing")
            return ""
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise self.error(field, f"should be text but is {type(value).__name__} {value!r}")
        text = str(value).replace("\r\n", "\n").strip()
        if nan_is_empty and text.lower() == "nan":
            text = ""
        if required and not text:
            raise self.error(field, "is empty")
        return text


def _letters_field(row: Row, field: str) -> str:
    """Letters of an answer given as letters ("B", "acd", "EB"); returned unvalidated but upper-cased."""
    value = row.raw(field)
    if not isinstance(value, str):
        raise row.error(field, f"is {value!r}, not option letters")
    return re.sub(r"\s+", "", value).upper()


def _index_field(row: Row, field: str, base: int, n_options: int) -> tuple[str, str]:
    """Letter of an answer given as an option index (MMLU hub `answer`, MedMCQA `cop`); also the raw text."""
    value = row.raw(field)
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"\d+", text) or int(text) < base:
        raise row.error(field, f"is {value!r}, not an option index {base}-{base + n_options - 1}")
    index = int(text) - base
    if index >= len(LETTERS):
        raise row.error(field, f"is {value!r} but the question has {n_options} options ({_span(n_options)})")
    return LETTERS[index], text


def _span(n: int) -> str:
    return f"A-{LETTERS[n - 1]}" if n else "none"


def _doc(
    row: Row,
    *,
    question: str,
    options: Sequence[str],
    options_field: str,
    answer: str,
    answer_field: str,
    answer_raw: Any = None,
    answer_from: str = "",
    option_fields: Sequence[str] | None = None,
    multi: bool,
    subject: str = "",
    explanation: str = "",
    language: str,
    id: str | None = None,
) -> dict:
    """Validate one row's parts and return the normalised document.

    `options` are stripped texts in letter order; trailing empty ones are dropped, interior empty ones
    are kept as "". Formats with a fixed set of options pass `option_fields` (one field name per
    option), and then every option must be non-empty. `options_field` names the options as a whole.
    `answer` is the answer as letters; `answer_raw` is what the release says (shown in messages).
    """
    options = list(options)
    if option_fields is not None:
        for text, field in zip(options, option_fields):
            if not text:
                raise row.error(field, "is empty")
    while options and not options[-1]:
        options.pop()
    filled = sum(1 for text in options if text)
    if filled < 2:
        raise row.error(options_field, f"has {filled} non-empty option(s); a question needs at least 2")

    shown = repr(answer if answer_raw is None else answer_raw) + answer_from
    if not answer:
        raise row.error(answer_field, f"is empty{answer_from}")
    if not all(letter in LETTERS for letter in answer):
        raise row.error(answer_field, f"is {shown}, not option letters")
    letters = "".join(sorted(set(answer)))
    for letter in letters:
        index = LETTERS.index(letter)
        if index >= len(options):
            n = len(options)
            raise row.error(answer_field, f"is {shown} but the question has {n} options ({_span(n)})")
        if not options[index]:
            raise row.error(answer_field, f"is {shown} but option {letter} is empty")
    if len(letters) > 1 and not multi:
        raise row.error(answer_field, f"is {shown}: several letters for a single-answer question")

    return {
        "id": str(id) if id not in (None, "") else row.fallback_id,
        "question": question,
        "options": options,
        "answer": letters,
        "multi": bool(multi),
        "subject": subject,
        "explanation": explanation,
        "language": language,
    }


# --------------------------------------------------------------------------------------------------
# Normalisers: one per release format
# --------------------------------------------------------------------------------------------------


def norm_mmlu_csv(row: Row, subject: str) -> dict:
    """MMLU release CSV (no header): question, A, B, C, D, answer letter."""
    if None in row.data:  # csv.DictReader puts surplus columns under the key None
        raise row.error("answer", f"should be column 6 but the row has {6 + len(row.data[None])} columns")
    fields = ["A", "B", "C", "D"]
    return _doc(
        row,
        question=row.text("question"),
        options=[row.text(f) for f in fields],
        options_field="A-D",
        option_fields=fields,
        answer=_letters_field(row, "answer"),
        answer_field="answer",
        multi=False,
        subject=subject,
        language="en",
    )


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
        answer, raw = _index_field(row, "answer", 0, len(options))
    return _doc(
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


def norm_ceval(row: Row, subject: str) -> dict:
    """C-Eval CSV / ceval/ceval-exam: id, question, A-D, answer, explanation (dev only)."""
    fields = ["A", "B", "C", "D"]
    return _doc(
        row,
        id=row.text("id", required=False),
        question=row.text("question"),
        options=[row.text(f) for f in fields],
        options_field="A-D",
        option_fields=fields,
        answer=_letters_field(row, "answer"),
        answer_field="answer",
        multi=False,
        subject=subject,
        explanation=row.text("explanation", required=False),
        language="zh",
    )


def norm_medqa(row: Row) -> dict:
    """MedQA jsonl / GBaker/MedQA-USMLE-4-options: question, options {"A": ..}, answer_idx."""
    options = _option_dict(row, "options", keep_empty=True)
    return _doc(
        row,
        question=row.text("question"),
        options=list(options.values()),
        options_field="options",
        option_fields=[f"options[{k!r}]" for k in options],
        answer=_letters_field(row, "answer_idx"),
        answer_field="answer_idx",
        multi=False,
        language="en",
    )


def norm_medmcqa(row: Row, cop_base: int = 0) -> dict:
    """MedMCQA: question, opa-opd, cop (index; 0-based on the hub and in this copy, 1-based in the
    original Google-Drive json), exp. Values may be the string "nan" after a pandas round trip.
    choice_type "multi" still has exactly one correct option, so multi=False."""
    fields = ["opa", "opb", "opc", "opd"]
    options = [row.text(f, required=False, nan_is_empty=True) for f in fields]
    answer, raw = _index_field(row, "cop", cop_base, len(fields))
    return _doc(
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


def norm_mmlu_pro(row: Row, language: str = "en") -> dict:
    """MMLU-Pro (parquet, jsonl or TIGER-Lab/MMLU-Pro; also the demo files): question_id, question,
    options (3-10, validation padded with trailing "N/A"), answer letter, cot_content, category."""
    options = row.raw("options")
    if not isinstance(options, (list, tuple)):
        raise row.error("options", f"should be a list but is {type(options).__name__}")
    texts = [str(o).strip() if o is not None else "" for o in options]
    while texts and texts[-1] in ("N/A", ""):
        texts.pop()
    return _doc(
        row,
        id=row.text("question_id", required=False),
        question=row.text("question"),
        options=texts,
        options_field="options",
        answer=_letters_field(row, "answer"),
        answer_field="answer",
        multi=False,
        subject=row.text("category", required=False),
        explanation=row.text("cot_content", required=False),
        language=language,
    )


CMB_MULTI_TYPE = "多项选择题"


def norm_cmb(row: Row, answers: Mapping[str, Row] | None = None, answers_hint: str = "") -> dict:
    """CMB-Exam json (question-merge / val-merge): exam_type, exam_class, exam_subject, question_type
    (单项选择题 / 多项选择题), question, option {"A": ..} (unused slots empty or null), answer, explanation.
    Test answers live in CMB-test-choice-answer.json, joined on `id` (`answers`)."""
    options = _option_dict(row, "option")
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
    return _doc(
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


_CMEXAM_OPTION_LINE = re.compile(r"([A-Z])(?:\s*[.．、]\s*|\s+|$)(.*)", re.S)


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
        match = _CMEXAM_OPTION_LINE.fullmatch(line)
        if match and match.group(1) == LETTERS[len(options)]:
            options.append(match.group(2).strip())
        elif options:
            if line:
                options[-1] = f"{options[-1]}\n{line}".strip()
        elif line:
            raise row.error("Options", f"should start with option A (\"A text\") but starts with {line[:30]!r}")
    letters = _letters_field(row, "Answer")
    return _doc(
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


def norm_xmedbench(row: Row, language: str = "zh") -> dict:
    """XMedBench (FreedomIntelligence/Apollo metadata/test) sample rows: question, option (one string
    "(A) text.\\n(B) text." with a "." appended to every option), anwer (sic) like "(D)" or "(ACE)".
    No id and no type field: multi = several answer letters."""
    parts = re.split(r"(?:^|\n)\(([A-Z])\) ?", row.text("option"))
    if parts[0].strip() or len(parts) < 3:
        raise row.error("option", f"should look like \"(A) text.\\n(B) text.\" but starts with {parts[0][:30]!r}")
    options = []
    for letter, text in zip(parts[1::2], parts[2::2]):
        if letter != LETTERS[len(options)]:
            raise row.error("option", f"has option ({letter}) where ({LETTERS[len(options)]}) was expected")
        text = text.strip()
        options.append(text[:-1].strip() if text.endswith(".") else text)
    field = "anwer" if "anwer" in row.data else "answer"
    raw = row.text(field)
    match = re.fullmatch(r"\(?\s*([A-Za-z]+)\s*\)?", raw)
    if not match:
        raise row.error(field, f"is {raw!r}, expected option letters in parentheses like '(D)'")
    letters = match.group(1).upper()
    return _doc(
        row,
        question=row.text("question"),
        options=options,
        options_field="option",
        answer=letters,
        answer_field=field,
        answer_raw=raw,
        multi=len(set(letters)) > 1,
        language=language,
    )


def _option_dict(row: Row, field: str, keep_empty: bool = False) -> dict[str, str]:
    """Options stored as {"A": text, ...}: letter order, consecutive from A; trailing empty slots
    (CMB's unused E/F, null after the hub's struct conversion) are removed unless `keep_empty`."""
    value = row.raw(field)
    if not isinstance(value, Mapping):
        raise row.error(field, f"should be a mapping like {{'A': ...}} but is {type(value).__name__}")
    texts = {str(k).strip().upper(): ("" if v is None else str(v).strip()) for k, v in value.items()}
    while texts and not keep_empty and not texts[max(texts)]:
        del texts[max(texts)]
    for i, key in enumerate(sorted(texts)):
        if key != LETTERS[i]:
            raise row.error(field, f"has no option {LETTERS[i]!r} (keys: {', '.join(sorted(texts))})")
    return {k: texts[k] for k in sorted(texts)}


def _normalise(rows: Sequence[Row], normaliser: Callable[[Row], dict | None]) -> list[dict]:
    docs = [normaliser(row) for row in rows]
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


# --------------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            return handle.read()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc


def _read_jsonl(path: Path) -> list[Row]:
    rows = []
    # split on "\n" only: str.splitlines() would also split on U+2028 etc. inside JSON strings
    for n, line in enumerate(_read_text(path).split("\n"), start=1):
        if line.strip():
            rows.append(Row(str(path), n, _json_object(path, n, line), path.name))
    return rows


def _read_json(path: Path) -> list[Row]:
    """A JSON array of records, or JSON lines under a .json name (MedMCQA's original train.json).
    MultiMedQA-style wrappers {"id": .., "data": {..}} are unwrapped (the inner record is the release's)."""
    text = _read_text(path)
    if not text.lstrip().startswith("["):
        return _read_jsonl(path)
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
    rows = []
    for n, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise DataError(f"{path} row {n}: field '(record)' should be a JSON object but is {type(record).__name__}")
        if set(record) == {"id", "data"} and isinstance(record["data"], dict):
            record = record["data"]
        rows.append(Row(str(path), n, record, path.name))
    return rows


def _read_csv(path: Path, fieldnames: Sequence[str] | None = None) -> list[Row]:
    """CSV with a header row (or headerless with `fieldnames`); cells stay strings (no "NA" -> NaN)."""
    _raise_csv_field_limit()
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""), fieldnames=fieldnames)
    try:
        return [Row(str(path), n, record, path.name) for n, record in enumerate(reader, start=1)]
    except csv.Error as exc:
        raise DataError(f"{path} line {reader.line_num}: not valid CSV ({exc})") from exc


def _read_parquet(path: Path) -> list[Row]:
    import pyarrow.parquet as pq

    try:
        records = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise DataError(f"{path}: cannot read parquet ({exc})") from exc
    return [Row(str(path), n, record, path.name) for n, record in enumerate(records, start=1)]


def _read_any(path: Path) -> list[Row]:
    readers = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet}
    return readers[path.suffix](path)


def _json_object(path: Path, n: int, line: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} row {n}: field '(line)' is not valid JSON ({exc})") from exc
    if not isinstance(record, dict):
        raise DataError(f"{path} row {n}: field '(line)' should be a JSON object but is {type(record).__name__}")
    return record


def _raise_csv_field_limit() -> None:
    limit = sys.maxsize
    while True:  # CMExam explanations can exceed the default 128 KiB
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 10


def _read_hub(path: str, config: str | None, split: str, data_files: str | None = None) -> list[Row]:
    """Rows of one split from the Hugging Face hub via datasets.load_dataset. With `data_files` (a
    hf:// or https:// URL of one JSON file) the packaged "json" builder reads that file as `split`."""
    from datasets import load_dataset

    if data_files is None:
        label = f"{path} ({', '.join(p for p in (config, split) if p)})"
        prefix = "/".join(p for p in (path, config, split) if p)
        args, kwargs = (path, config), {}
    else:
        label = prefix = data_files
        args, kwargs = ("json",), {"data_files": {split: data_files}}
    try:
        dataset = load_dataset(*args, split=split, **kwargs)
    except Exception as exc:  # network, auth, renamed files: all mean "cannot get the data this way"
        raise DataError(
            f"{label}: cannot load from the Hugging Face hub ({type(exc).__name__}: {exc}). "
            f"Point {DATA_DIR_ENV} (or data_dir=) at a local copy of the release instead."
        ) from exc
    return [Row(label, n, record, prefix) for n, record in enumerate(dataset, start=1)]


# --------------------------------------------------------------------------------------------------
# Sources: one local and one hub loader per benchmark
# --------------------------------------------------------------------------------------------------


def _find(base: Path, *names: str) -> Path | None:
    return next((base / name for name in names if (base / name).is_file()), None)


def _missing(name: str, paths: Sequence[Path], how: str) -> DataError:
    listed = "\n  ".join(str(p) for p in paths)
    return DataError(f"{name}: no data file found; expected one of:\n  {listed}\n{how}")


def _same_split(docs: list[dict], split: str, source: str) -> BenchmarkData:
    return BenchmarkData(docs, list(docs), split, split, source)


def _sources(*paths: Path) -> str:
    return ", ".join(str(p) for p in paths)


# --- MMLU ---------------------------------------------------------------------------------------

MMLU_HOW = (
    "Get the official MMLU release (https://people.eecs.berkeley.edu/~hendrycks/data.tar) and copy "
    "data/test/<subject>_test.csv and data/dev/<subject>_dev.csv to <data_dir>/mmlu/test/ and <data_dir>/mmlu/dev/, "
    f"or leave {DATA_DIR_ENV} unset (and data_dir=None) to load cais/mmlu from the Hugging Face hub."
)


def _mmlu_local(root: Path, subject: str) -> BenchmarkData:
    test, dev = root / "mmlu" / "test" / f"{subject}_test.csv", root / "mmlu" / "dev" / f"{subject}_dev.csv"
    for path in (test, dev):
        if not path.is_file():
            raise _missing("mmlu", [path], MMLU_HOW)
    columns = ["question", "A", "B", "C", "D", "answer"]

    def read(path: Path) -> list[dict]:
        return [norm_mmlu_csv(row, subject) for row in _read_csv(path, fieldnames=columns)]

    return BenchmarkData(read(test), read(dev), "test", "dev", _sources(test, dev))


def _mmlu_hub(subject: str) -> BenchmarkData:
    def read(split: str) -> list[dict]:
        return [norm_mmlu_hub(row, subject) for row in _read_hub("cais/mmlu", subject, split)]

    return BenchmarkData(read("test"), read("dev"), "test", "dev", "cais/mmlu")


# --- C-Eval -------------------------------------------------------------------------------------

CEVAL_HOW = (
    "Get the official C-Eval release ceval-exam.zip (https://huggingface.co/datasets/ceval/ceval-exam) and copy "
    "val/<subject>_val.csv and dev/<subject>_dev.csv to <data_dir>/ceval/val/ and <data_dir>/ceval/dev/, "
    f"or leave {DATA_DIR_ENV} unset (and data_dir=None) to load ceval/ceval-exam from the Hugging Face hub."
)


def _ceval_local(root: Path, subject: str) -> BenchmarkData:
    val, dev = root / "ceval" / "val" / f"{subject}_val.csv", root / "ceval" / "dev" / f"{subject}_dev.csv"
    for path in (val, dev):
        if not path.is_file():
            raise _missing("ceval", [path], CEVAL_HOW)

    def read(path: Path) -> list[dict]:
        return [norm_ceval(row, subject) for row in _read_csv(path)]

    return BenchmarkData(read(val), read(dev), "val", "dev", _sources(val, dev))


def _ceval_hub(subject: str) -> BenchmarkData:
    def read(split: str) -> list[dict]:
        return [norm_ceval(row, subject) for row in _read_hub("ceval/ceval-exam", subject, split)]

    return BenchmarkData(read("val"), read("dev"), "val", "dev", "ceval/ceval-exam")


# --- MedQA --------------------------------------------------------------------------------------

MEDQA_HOW = (
    "Get the official MedQA release (https://github.com/jind11/MedQA, Google-Drive data_clean/questions/US/4_options/) "
    "and copy phrases_no_exclude_test.jsonl plus phrases_no_exclude_train.jsonl (or _dev.jsonl) to <data_dir>/medqa/, "
    f"or leave {DATA_DIR_ENV} unset (and data_dir=None) to load GBaker/MedQA-USMLE-4-options from the Hugging Face hub."
)


def _medqa_local(root: Path, subset: None) -> BenchmarkData:
    base = root / "medqa"
    test = base / "phrases_no_exclude_test.jsonl"
    if not test.is_file():
        raise _missing("medqa", [test], MEDQA_HOW)
    pool_names = {"train": "phrases_no_exclude_train.jsonl", "dev": "phrases_no_exclude_dev.jsonl"}
    pool_split = next((split for split, name in pool_names.items() if (base / name).is_file()), None)
    if pool_split is None:
        raise _missing("medqa (few-shot pool)", [base / name for name in pool_names.values()], MEDQA_HOW)
    pool = base / pool_names[pool_split]
    eval_docs, pool_docs = ([norm_medqa(row) for row in _read_jsonl(path)] for path in (test, pool))
    return BenchmarkData(eval_docs, pool_docs, "test", pool_split, _sources(test, pool))


def _medqa_hub(subset: None) -> BenchmarkData:
    def read(split: str) -> list[dict]:
        return [norm_medqa(row) for row in _read_hub("GBaker/MedQA-USMLE-4-options", None, split)]

    return BenchmarkData(read("test"), read("train"), "test", "train", "GBaker/MedQA-USMLE-4-options")


# --- MedMCQA ------------------------------------------------------------------------------------

MEDMCQA_HOW = (
    "Get the MedMCQA validation split (https://github.com/medmcqa/medmcqa, or a MultiMedQA medmcqa_val.json) "
    "as <data_dir>/medmcqa/validation.jsonl or medmcqa_val.json (train.jsonl / train.json optional: the few-shot "
    "pool), "
    f"or leave {DATA_DIR_ENV} unset (and data_dir=None) to load openlifescienceai/medmcqa from the Hugging Face hub."
)


def _medmcqa_cop_base(rows: Sequence[Row]) -> int:
    """The original Google-Drive files number `cop` 1-4, the hub and MultiMedQA copies 0-3: a file
    that never uses 0 but does use 4 is 1-based."""
    values = {str(row.data.get("cop")).strip() for row in rows}
    return 1 if "4" in values and "0" not in values else 0


def _medmcqa_file(path: Path) -> list[dict]:
    rows = _read_any(path)
    base = _medmcqa_cop_base(rows)
    return [norm_medmcqa(row, base) for row in rows]


def _medmcqa_local(root: Path, subset: None) -> BenchmarkData:
    base = root / "medmcqa"
    eval_names = ("validation.jsonl", "medmcqa_val.json", "dev.json")
    validation = _find(base, *eval_names)
    if validation is None:
        raise _missing("medmcqa", [base / name for name in eval_names], MEDMCQA_HOW)
    eval_docs = _medmcqa_file(validation)
    train = _find(base, "train.jsonl", "train.json")
    if train is None:
        return _same_split(eval_docs, "validation", _sources(validation))
    return BenchmarkData(eval_docs, _medmcqa_file(train), "validation", "train", _sources(validation, train))


def _medmcqa_hub(subset: None) -> BenchmarkData:
    def read(split: str) -> list[dict]:
        return [norm_medmcqa(row) for row in _read_hub("openlifescienceai/medmcqa", None, split)]

    return BenchmarkData(read("validation"), read("train"), "validation", "train", "openlifescienceai/medmcqa")


# --- MMLU-Pro -----------------------------------------------------------------------------------

MMLU_PRO_HOW = (
    "Get TIGER-Lab/MMLU-Pro's data files (https://huggingface.co/datasets/TIGER-Lab/MMLU-Pro, "
    "data/test-00000-of-00001.parquet and data/validation-00000-of-00001.parquet) into <data_dir>/mmlu_pro/, "
    f"or leave {DATA_DIR_ENV} unset (and data_dir=None) to load TIGER-Lab/MMLU-Pro from the Hugging Face hub."
)


def _mmlu_pro_docs(rows: Sequence[Row], category: str | None) -> list[dict]:
    if category is not None:
        rows = [row for row in rows if row.text("category") == category]
    return [norm_mmlu_pro(row) for row in rows]


def _mmlu_pro_local(root: Path, category: str | None) -> BenchmarkData:
    base = root / "mmlu_pro"
    test_names = ("test-00000-of-00001.parquet", "test.jsonl", "test_biology_health.jsonl")
    val_names = ("validation-00000-of-00001.parquet", "validation.jsonl")
    test, val = _find(base, *test_names), _find(base, *val_names)
    if test is None or val is None:
        raise _missing("mmlu_pro", [base / n for n in (test_names if test is None else val_names)], MMLU_PRO_HOW)
    if category is None and test.name == "test_biology_health.jsonl":
        log.warning("%s holds only the biology and health categories of MMLU-Pro's test split", test)
    eval_docs = _mmlu_pro_docs(_read_any(test), category)
    if not eval_docs:
        raise DataError(f"{test}: no rows with field 'category' == {category!r}")
    return BenchmarkData(eval_docs, _mmlu_pro_docs(_read_any(val), category), "test", "validation", _sources(test, val))


def _mmlu_pro_hub(category: str | None) -> BenchmarkData:
    def read(split: str) -> list[dict]:
        return _mmlu_pro_docs(_read_hub("TIGER-Lab/MMLU-Pro", None, split), category)

    return BenchmarkData(read("test"), read("validation"), "test", "validation", "TIGER-Lab/MMLU-Pro")


# --- CMB ----------------------------------------------------------------------------------------

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


def _cmb_candidates(base: Path, name: str, folder: str) -> list[Path]:
    """A CMB file flat in cmb/, or where the official zip / repository puts it."""
    return [base / name, base / "CMB-Exam" / folder / name, base / "CMB" / "CMB-Exam" / folder / name,
            base / "data" / name]


def _cmb_answers(rows: Sequence[Row]) -> dict[str, Row]:
    return {row.text("id"): row for row in rows}


def _cmb_local(root: Path, subset: None) -> BenchmarkData:
    base = root / "cmb"
    question_paths = _cmb_candidates(base, CMB_QUESTIONS, "CMB-test")
    questions = next((p for p in question_paths if p.is_file()), None)
    if questions is None:
        sample = base / "xmedbench_subset" / "cmb-single.jsonl"
        if not sample.is_file():
            raise _missing("cmb", [*question_paths, sample], CMB_HOW)
        log.warning(
            "cmb: the official test questions (%s) are missing; using the XMedBench random sample %s "
            "(2,000 single-answer questions, source split not stated) as both evaluation set and few-shot pool",
            CMB_QUESTIONS, sample,
        )
        return _same_split([norm_xmedbench(row) for row in _read_jsonl(sample)], XMEDBENCH_SPLIT, _sources(sample))

    answer_paths = _cmb_candidates(base, CMB_ANSWERS, "CMB-test")
    answers_path = next((p for p in answer_paths if p.is_file()), None)
    answers = _cmb_answers(_read_json(answers_path)) if answers_path else None
    hint = str(answers_path) if answers_path else " or ".join(str(p) for p in answer_paths)
    eval_docs = [norm_cmb(row, answers, hint) for row in _read_json(questions)]
    used = [questions] + ([answers_path] if answers_path else [])

    val = next((p for p in _cmb_candidates(base, CMB_VAL, "CMB-val") if p.is_file()), None)
    if val is None:
        log.warning("cmb: %s is missing; the few-shot pool is the test split itself", CMB_VAL)
        return _same_split(eval_docs, "test", _sources(*used))
    return BenchmarkData(eval_docs, [norm_cmb(row) for row in _read_json(val)], "test", "val", _sources(*used, val))


def _cmb_hub(subset: None) -> BenchmarkData:
    answers = _cmb_answers(_read_hub("json", None, "train", data_files=CMB_ANSWERS_URL))
    test = _read_hub("json", None, "test", data_files=CMB_HUB_FILES["test"])
    val = _read_hub("json", None, "val", data_files=CMB_HUB_FILES["val"])
    eval_docs = [norm_cmb(row, answers, CMB_ANSWERS_URL) for row in test]
    return BenchmarkData(eval_docs, [norm_cmb(row) for row in val], "test", "val", CMB_HUB)


# --- CMExam -------------------------------------------------------------------------------------

CMEXAM_HOW = (
    "CMExam has no official Hugging Face copy: download data/test_with_annotations.csv and data/train.csv "
    "(or data/val.csv) from https://github.com/williamliujl/CMExam into <data_dir>/cmexam/ and set "
    f"{DATA_DIR_ENV}=<data_dir> (or pass data_dir=)."
)


def _cmexam_local(root: Path, subset: None) -> BenchmarkData:
    base = root / "cmexam"
    test_names = ("test_with_annotations.csv", "test.csv", "data/test_with_annotations.csv", "data/test.csv")
    test = _find(base, *test_names)
    if test is None:
        sample = base / "xmedbench_subset" / "cmexam.jsonl"
        if not sample.is_file():
            raise _missing("cmexam", [*(base / n for n in test_names), sample], CMEXAM_HOW)
        log.warning(
            "cmexam: the official CSVs (%s) are missing; using the XMedBench random sample %s "
            "(2,000 questions, source split not stated) as both evaluation set and few-shot pool",
            test_names[0], sample,
        )
        return _same_split([norm_xmedbench(row) for row in _read_jsonl(sample)], XMEDBENCH_SPLIT, _sources(sample))

    eval_docs = _normalise(_read_csv(test), norm_cmexam_csv)
    for split, names in (("train", ("train.csv", "data/train.csv")), ("val", ("val.csv", "data/val.csv"))):
        pool = _find(base, *names)
        if pool is not None:
            pool_docs = _normalise(_read_csv(pool), norm_cmexam_csv)
            return BenchmarkData(eval_docs, pool_docs, "test", split, _sources(test, pool))
    log.warning("cmexam: no train.csv or val.csv next to %s; the few-shot pool is the test split itself", test)
    return _same_split(eval_docs, "test", _sources(test))


def _cmexam_hub(subset: None) -> BenchmarkData:
    raise DataError(f"cmexam: cannot be loaded from the Hugging Face hub. {CMEXAM_HOW}")


# --- demo ---------------------------------------------------------------------------------------


def _demo() -> BenchmarkData:
    test, val = DEMO_DIR / "demo_test.jsonl", DEMO_DIR / "demo_validation.jsonl"
    missing = [p for p in (test, val) if not p.is_file()]
    if missing:
        raise _missing("demo", missing, "The demo files ship with finemed-eval; reinstall the package.")

    def read(path: Path) -> list[dict]:
        return [norm_mmlu_pro(row) for row in _read_jsonl(path)]

    return BenchmarkData(read(test), read(val), "test", "validation", _sources(DEMO_DIR))


@dataclass(frozen=True)
class _Source:
    local: Callable[[Path, str | None], BenchmarkData]  # (data_dir, subset)
    hub: Callable[[str | None], BenchmarkData]  # (subset)


# demo is not here: it always reads DEMO_DIR
_SOURCES: dict[str, _Source] = {
    "mmlu": _Source(_mmlu_local, _mmlu_hub),  # cais/mmlu
    "ceval": _Source(_ceval_local, _ceval_hub),  # ceval/ceval-exam
    "cmb": _Source(_cmb_local, _cmb_hub),  # FreedomIntelligence/CMB json files + GitHub answer file
    "cmexam": _Source(_cmexam_local, _cmexam_hub),  # local files only
    "medqa": _Source(_medqa_local, _medqa_hub),  # GBaker/MedQA-USMLE-4-options
    "medmcqa": _Source(_medmcqa_local, _medmcqa_hub),  # openlifescienceai/medmcqa
    "mmlu_pro": _Source(_mmlu_pro_local, _mmlu_pro_hub),  # TIGER-Lab/MMLU-Pro
}


def _check_subset(name: str, subset: str | None) -> str | None:
    valid, required = SUBSETS.get(name, ((), False))
    if subset is None:
        if required:
            raise DataError(f"{name} needs a subset; valid values: {', '.join(valid)}")
        return None
    if subset not in valid:
        allowed = ", ".join(valid) + ("" if required else " (or None for all)") if valid else "none (pass subset=None)"
        raise DataError(f"unknown {name} subset {subset!r}; valid values: {allowed}")
    return subset


def load_benchmark(name: str, subset: str | None = None, data_dir: str | os.PathLike | None = None) -> BenchmarkData:
    """Load one benchmark (and subset) as normalised documents; see the module docstring."""
    if name not in BENCHMARKS:
        raise DataError(f"unknown benchmark {name!r}; valid values: {', '.join(BENCHMARKS)}")
    subset = _check_subset(name, subset)
    if name == "demo":
        return _demo()
    source = _SOURCES[name]
    root = data_dir if data_dir is not None else (os.environ.get(DATA_DIR_ENV) or None)
    if root is None:
        return source.hub(subset)
    return source.local(Path(root).expanduser(), subset)
