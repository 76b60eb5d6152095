"""Readers: the raw records of one file or hub split as `Row`s, numbered from 1.

Row numbers are the line number for JSON lines, the record number for JSON arrays, parquet files and
hub splits, and the data-record number (header not counted) for CSV files.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Sequence

from .schema import DATA_DIR_ENV, DataError, Row


def read_text(path: Path) -> str:
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            return handle.read()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc


def read_jsonl(path: Path) -> list[Row]:
    rows = []
    # split on "\n" only: str.splitlines() would also split on U+2028 etc. inside JSON strings
    for n, line in enumerate(read_text(path).split("\n"), start=1):
        if line.strip():
            rows.append(Row(str(path), n, _json_object(path, n, line), path.name))
    return rows


def read_json(path: Path) -> list[Row]:
    """A JSON array of records, or JSON lines under a .json name (MedMCQA's original train.json).
    MultiMedQA-style wrappers {"id": .., "data": {..}} are unwrapped (the inner record is the release's)."""
    text = read_text(path)
    if not text.lstrip().startswith("["):
        return read_jsonl(path)
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


def read_csv(path: Path, fieldnames: Sequence[str] | None = None) -> list[Row]:
    """CSV with a header row (or headerless with `fieldnames`); cells stay strings (no "NA" -> NaN)."""
    _raise_csv_field_limit()
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""), fieldnames=fieldnames)
    try:
        return [Row(str(path), n, record, path.name) for n, record in enumerate(reader, start=1)]
    except csv.Error as exc:
        raise DataError(f"{path} line {reader.line_num}: not valid CSV ({exc})") from exc


def read_parquet(path: Path) -> list[Row]:
    import pyarrow.parquet as pq

    try:
        records = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise DataError(f"{path}: cannot read parquet ({exc})") from exc
    return [Row(str(path), n, record, path.name) for n, record in enumerate(records, start=1)]


# What a benchmark user can do when the hub is out of reach (lm-eval tasks read FINEMED_DATA_DIR).
BENCHMARK_REMEDY = (
    f"Point {DATA_DIR_ENV} at a local copy of the release instead "
    "(or pass data_dir= to finemed_eval.data.load_benchmark in Python)."
)


def read_any(path: Path) -> list[Row]:
    """The reader for the file's suffix (.jsonl, .json, .csv, .parquet)."""
    readers = {".jsonl": read_jsonl, ".json": read_json, ".csv": read_csv, ".parquet": read_parquet}
    return readers[path.suffix](path)


def read_hub(
    path: str, config: str | None, split: str, data_files: str | None = None, *, remedy: str = BENCHMARK_REMEDY
) -> list[Row]:
    """Rows of one split from the Hugging Face hub via datasets.load_dataset. With `data_files` (a
    hf:// or https:// URL of one JSON file) the packaged "json" builder reads that file as `split`.
    `remedy` ends the error when the hub cannot be reached: what the caller's user can do instead."""
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
            f"{label}: cannot load from the Hugging Face hub ({type(exc).__name__}: {exc}). {remedy}"
        ) from exc
    return [Row(label, n, record, prefix) for n, record in enumerate(dataset, start=1)]


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
