"""Building blocks of the per-benchmark loaders: finding local files, reporting missing ones, and
the two shapes several benchmarks share (a CSV pair per subject, a hub split pair)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from .readers import read_csv, read_hub
from .schema import BenchmarkData, DataError, Row


def find_file(base: Path, *names: str) -> Path | None:
    """The first of `names` (relative to `base`) that exists."""
    return next((base / name for name in names if (base / name).is_file()), None)


def missing(name: str, paths: Sequence[Path], how: str) -> DataError:
    listed = "\n  ".join(str(p) for p in paths)
    return DataError(f"{name}: no data file found; expected one of:\n  {listed}\n{how}")


def sources(*paths: Path) -> str:
    return ", ".join(str(p) for p in paths)


def same_split(docs: list[dict], split: str, source: str) -> BenchmarkData:
    """The evaluation split doubles as the few-shot pool."""
    return BenchmarkData(docs, list(docs), split, split, source)


def load_subject_csvs(
    root: Path,
    name: str,
    subject: str,
    eval_split: str,
    pool_split: str,
    how: str,
    normalise: Callable[[Row, str], dict],
    fieldnames: Sequence[str] | None = None,
) -> BenchmarkData:
    """<root>/<name>/<split>/<subject>_<split>.csv for the evaluation and the few-shot split (MMLU, C-Eval)."""
    paths = [root / name / split / f"{subject}_{split}.csv" for split in (eval_split, pool_split)]
    for path in paths:
        if not path.is_file():
            raise missing(name, [path], how)
    eval_docs, pool_docs = ([normalise(row, subject) for row in read_csv(path, fieldnames)] for path in paths)
    return BenchmarkData(eval_docs, pool_docs, eval_split, pool_split, sources(*paths))


def load_hub_splits(
    hub_id: str,
    config: str | None,
    eval_split: str,
    pool_split: str,
    to_docs: Callable[[list[Row]], list[dict]],
) -> BenchmarkData:
    """The evaluation and the few-shot split of one hub dataset (in that order)."""
    eval_docs, pool_docs = (to_docs(read_hub(hub_id, config, split)) for split in (eval_split, pool_split))
    return BenchmarkData(eval_docs, pool_docs, eval_split, pool_split, hub_id)
