"""XMedBench (FreedomIntelligence/Apollo) random samples: the fallback for CMB and CMExam when their
official files are missing."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Sequence

from .loaders import missing, same_split, sources
from .readers import read_jsonl
from .schema import LETTERS, BenchmarkData, Row, make_doc

log = logging.getLogger(__package__)  # "finemed_eval.data", one logger for the package

XMEDBENCH_SPLIT = "xmedbench_sample"


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
    return make_doc(
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


def load_fallback(
    name: str, base: Path, file_name: str, *, official: Sequence[Path], how: str, missing_what: str, contents: str
) -> BenchmarkData:
    """<base>/xmedbench_subset/<file_name> as both evaluation set and few-shot pool, with a warning,
    in place of the `official` files; if it is missing too, a DataError listing all of them."""
    sample = base / "xmedbench_subset" / file_name
    if not sample.is_file():
        raise missing(name, [*official, sample], how)
    log.warning(
        "%s: the official %s are missing; using the XMedBench random sample %s "
        "(%s, source split not stated) as both evaluation set and few-shot pool",
        name, missing_what, sample, contents,
    )
    return same_split([norm_xmedbench(row) for row in read_jsonl(sample)], XMEDBENCH_SPLIT, sources(sample))
