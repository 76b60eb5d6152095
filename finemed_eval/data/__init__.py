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

Rows are numbered from 1 (see ``readers``). Every problem is reported as a ``DataError`` naming the
file, the row and the field.

Modules: ``schema`` (document, errors, rows), ``readers`` (files and hub splits), ``loaders`` (shared
loader shapes), and one module per benchmark family with its normalisers and local / hub loaders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import ceval, cmb, cmexam, medmcqa, medqa, mmlu, mmlu_pro
from .ceval import CEVAL_SUBJECTS
from .cmb import CMB_ANSWERS_URL, CMB_HUB_FILES
from .mmlu import MMLU_SUBJECTS
from .mmlu_pro import MMLU_PRO_CATEGORIES
from .schema import DATA_DIR_ENV, BenchmarkData, DataError

__all__ = [
    "BENCHMARKS",
    "CEVAL_SUBJECTS",
    "CMB_ANSWERS_URL",
    "CMB_HUB_FILES",
    "DATA_DIR_ENV",
    "DEMO_DIR",
    "MMLU_PRO_CATEGORIES",
    "MMLU_SUBJECTS",
    "SUBSETS",
    "BenchmarkData",
    "DataError",
    "load_benchmark",
]

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"

BENCHMARKS: tuple[str, ...] = ("mmlu", "ceval", "cmb", "cmexam", "medqa", "medmcqa", "mmlu_pro", "demo")

# benchmark -> (valid subsets, subset required?)
SUBSETS: dict[str, tuple[tuple[str, ...], bool]] = {
    "mmlu": (MMLU_SUBJECTS, True),
    "ceval": (CEVAL_SUBJECTS, True),
    "mmlu_pro": (MMLU_PRO_CATEGORIES, False),
}


@dataclass(frozen=True)
class _Source:
    local: Callable[[Path, str | None], BenchmarkData]  # (data_dir, subset)
    hub: Callable[[str | None], BenchmarkData]  # (subset)


# demo is not here: it always reads DEMO_DIR
_SOURCES: dict[str, _Source] = {
    "mmlu": _Source(mmlu.load_local, mmlu.load_hub),  # cais/mmlu
    "ceval": _Source(ceval.load_local, ceval.load_hub),  # ceval/ceval-exam
    "cmb": _Source(cmb.load_local, cmb.load_hub),  # FreedomIntelligence/CMB json files + GitHub answer file
    "cmexam": _Source(cmexam.load_local, cmexam.load_hub),  # local files only
    "medqa": _Source(medqa.load_local, medqa.load_hub),  # GBaker/MedQA-USMLE-4-options
    "medmcqa": _Source(medmcqa.load_local, medmcqa.load_hub),  # openlifescienceai/medmcqa
    "mmlu_pro": _Source(mmlu_pro.load_local, mmlu_pro.load_hub),  # TIGER-Lab/MMLU-Pro
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
    """Load one benchmark (and subset) as normalised documents; see the package docstring."""
    if name not in BENCHMARKS:
        raise DataError(f"unknown benchmark {name!r}; valid values: {', '.join(BENCHMARKS)}")
    subset = _check_subset(name, subset)
    if name == "demo":
        return mmlu_pro.load_demo(DEMO_DIR)
    source = _SOURCES[name]
    root = data_dir if data_dir is not None else (os.environ.get(DATA_DIR_ENV) or None)
    if root is None:
        return source.hub(subset)
    return source.local(Path(root).expanduser(), subset)
