"""The normalised document, the errors, and one raw row as readers hand it to the normalisers."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

DATA_DIR_ENV = "FINEMED_DATA_DIR"  # local release directory; unset = the Hugging Face hub
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


# --- Field parsers shared by the normalisers ----------------------------------------------------


def letters_field(row: Row, field: str) -> str:
    """Letters of an answer given as letters ("B", "acd", "EB"); returned unvalidated but upper-cased."""
    value = row.raw(field)
    if not isinstance(value, str):
        raise row.error(field, f"is {value!r}, not option letters")
    return re.sub(r"\s+", "", value).upper()


def index_field(row: Row, field: str, base: int, n_options: int) -> tuple[str, str]:
    """Letter of an answer given as an option index (MMLU hub `answer`, MedMCQA `cop`); also the raw text."""
    value = row.raw(field)
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"\d+", text) or int(text) < base:
        raise row.error(field, f"is {value!r}, not an option index {base}-{base + n_options - 1}")
    index = int(text) - base
    if index >= len(LETTERS):
        raise row.error(field, f"is {value!r} but the question has {n_options} options ({_span(n_options)})")
    return LETTERS[index], text


def abcd_columns(row: Row) -> dict[str, Any]:
    """`make_doc` arguments for the columns question, A, B, C, D and answer (letters): MMLU and C-Eval."""
    fields = ["A", "B", "C", "D"]
    return dict(
        question=row.text("question"),
        options=[row.text(f) for f in fields],
        options_field="A-D",
        option_fields=fields,
        answer=letters_field(row, "answer"),
        answer_field="answer",
    )


def option_dict(row: Row, field: str, keep_empty: bool = False) -> dict[str, str]:
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


def _span(n: int) -> str:
    return f"A-{LETTERS[n - 1]}" if n else "none"


# --- The document ---------------------------------------------------------------------------------


def make_doc(
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
