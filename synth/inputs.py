"""Raw medical texts in, in a deterministic order, checked before any model call; the input manifest.

Local files are streamed row by row (so `limit` stops reading: a huge file, or a FIFO, is not read to
its end), with the project's row type and JSON-line parser (`finemed_eval.data`), so every error names
the file, the row and the field. Hub datasets go through `datasets.load_dataset` (streamed with `limit`).

datatrove resumes an interrupted task by skipping as many input documents as it already finished, so
the input must not change between a run and its resumption: the manifest records a hash of every
(id, text) and of the settings that shape outputs; `check_manifest` refuses to resume otherwise.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from finemed_eval.data.readers import _json_object as json_object
from finemed_eval.data.readers import read_json
from finemed_eval.data.schema import DataError, Row

from . import departments, prompts
from .config import ROLES, SynthConfig

SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


class InputError(DataError):
    """Bad input texts or a changed input on resume; names file, row and field."""


def _rows(config: SynthConfig) -> Iterator[Row]:
    """The input's rows, streamed: `limit` stops reading (a huge file or a FIFO is not read to its end)."""
    spec = config.input
    if spec.hub:
        yield from _hub_rows(config)
        return
    path = Path(spec.path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES)
        if not files:
            raise InputError(f"{path}: no {'/'.join(SUFFIXES)} files in this folder")
    elif path.exists():  # a file, or a FIFO / device that streams one
        if path.suffix not in SUFFIXES:
            raise InputError(f"{path}: unsupported file type (use {', '.join(SUFFIXES)})")
        files = [path]
    else:
        raise InputError(f"{path}: no such file or folder (input.path)")
    for file in files:
        yield from _file_rows(file)


def _file_rows(path: Path) -> Iterator[Row]:
    """JSON lines, CSV and parquet row by row; a JSON array (one value) is parsed whole."""
    if path.suffix == ".parquet":
        yield from _parquet_rows(path)
        return
    try:
        with open(path, encoding="utf-8-sig", newline="" if path.suffix == ".csv" else "\n") as handle:
            if path.suffix == ".csv":
                yield from _csv_rows(path, handle)
                return
            head = [handle.readline()]
            while head[-1] and not head[-1].strip():  # blank lines, then the first row
                head.append(handle.readline())
            if path.suffix == ".json" and head[-1].lstrip().startswith("["):
                yield from read_json(path)  # a JSON array; JSON lines under a .json name stream below
                return
            # split on "\n" only (newline="\n"): U+2028 etc. may occur inside JSON strings
            lines = itertools.chain(head, handle)
            for n, line in enumerate(lines, start=1):
                if line.strip():
                    yield Row(str(path), n, json_object(path, n, line), path.name)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc})") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc})") from exc


def _csv_rows(path: Path, handle) -> Iterator[Row]:
    csv.field_size_limit(2**31 - 1)  # long texts (the default is 128 KiB)
    reader = csv.DictReader(handle)
    try:
        for n, record in enumerate(reader, start=1):
            yield Row(str(path), n, record, path.name)
    except csv.Error as exc:
        raise InputError(f"{path} line {reader.line_num}: not valid CSV ({exc})") from exc


def _parquet_rows(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=1024)
        n = 0
        for batch in batches:
            for record in batch.to_pylist():
                n += 1
                yield Row(str(path), n, record, path.name)
    except OSError as exc:  # pyarrow's errors for damaged files are OSErrors (ArrowInvalid among them)
        raise InputError(f"{path}: cannot read parquet ({exc})") from exc


def _hub_rows(config: SynthConfig) -> Iterator[Row]:
    """A hub split, streamed when `limit` is set (no full download for a sample)."""
    from datasets import load_dataset

    spec = config.input
    label = f"{spec.hub} ({', '.join(p for p in (spec.hub_config, spec.hub_data_dir, spec.split) if p)})"
    try:
        dataset = load_dataset(
            spec.hub, spec.hub_config, data_dir=spec.hub_data_dir, split=spec.split, streaming=spec.limit is not None
        )
        records = iter(dataset)
    except Exception as exc:  # offline, renamed, gated: one clear line
        raise InputError(f"{label}: cannot load from the Hugging Face hub ({type(exc).__name__}: {exc})") from exc
    for n, record in enumerate(records, start=1):
        yield Row(label, n, record, spec.hub)


def load_texts(config: SynthConfig) -> list[dict]:
    """[{"id", "text"}] in input order, at most `input.limit`; raises InputError (file, row, field) on any bad row."""
    rows = itertools.islice(_rows(config), config.input.limit)
    texts, seen = [], {}
    for row in rows:
        text = row.text(config.input.text_field)
        key = row.text(config.input.id_field) if config.input.id_field else f"{Path(row.where).name}:{row.n}"
        if key in seen:
            raise InputError(f"{row.where} row {row.n}: field {config.input.id_field or '(id)'!r} repeats id {key!r} (row {seen[key]})")
        seen[key] = row.n
        texts.append({"id": key, "text": text})
    if not texts:
        raise InputError(f"{config.input.path or config.input.hub}: the input has no rows")
    return texts


def output_settings(config: SynthConfig) -> dict:
    """Everything that shapes the outputs (not where or how fast they are computed)."""
    prompt_text = "\n".join(
        [prompts.INSTRUCTION_GENERATION, prompts.INSTRUCTION_SCORING, prompts.ANSWER_GENERATION, prompts.LONGFORM_GENERATION]
        + [departments.classification_template(p) for p in (None, *departments.FIRST_LEVEL)]
    )
    roles = {
        name: {k: getattr(config.role(name), k) for k in ("model", "max_tokens", "temperature", "top_p", "retry_temperature", "structured_output")}
        for name in ROLES
    }
    settings = {
        "seed": config.seed,
        "roles": roles,
        "retry_attempts": config.retry.attempts,
        "reward": {k: v for k, v in asdict(config.reward).items() if k in ("model", "seeded_head", "max_length")},
        "switches": asdict(config.switches),
        "parts": config.executor.tasks,
        "prompts_sha256": hashlib.sha256(prompt_text.encode()).hexdigest(),
    }
    if asdict(config.judge) != asdict(type(config.judge)()):  # absent at the paper's default: older folders resume
        settings["judge"] = asdict(config.judge)
    return settings


def portable_input(config: SynthConfig, run_folder: Path) -> str:
    """The input as a shared run folder may name it: a hub id, or the path relative to the run folder."""
    if config.input.hub:
        return config.input.hub
    return os.path.relpath(Path(config.input.path).resolve(), Path(run_folder).resolve())


def manifest(config: SynthConfig, texts: list[dict], run_folder: Path) -> dict:
    """The input (relative path or hub id; its content is `input_sha256`) and the output-shaping settings."""
    digest = hashlib.sha256()
    for record in texts:
        digest.update(json.dumps([record["id"], record["text"]], ensure_ascii=False).encode() + b"\n")
    return {
        "input": portable_input(config, run_folder),
        "records": len(texts),
        "input_sha256": digest.hexdigest(),
        "settings": output_settings(config),
    }


def check_manifest(path: Path, current: dict) -> None:
    """First run: nothing to check. Resume: the stored manifest must equal the current one, except for
    where the input lives (`input`): moved folders resume; the content hash decides."""
    if not path.is_file():
        return
    stored = json.loads(path.read_text(encoding="utf-8"))
    changed = sorted(k for k in set(stored) | set(current) if k != "input" and stored.get(k) != current.get(k))
    if not changed:
        return
    if "settings" in changed:
        changed.remove("settings")
        changed += sorted(
            f"settings.{k}" for k in set(stored["settings"]) | set(current["settings"])
            if stored["settings"].get(k) != current["settings"].get(k)
        )
    raise InputError(
        f"{path}: this output folder was started with a different input or settings ({', '.join(changed)}); "
        "resuming would mix records. Use a new output folder, or restore the original input and config."
    )
