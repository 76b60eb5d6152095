"""Raw medical texts in, in a deterministic order, checked before any model call; the input manifest.

Local files are read with the project's data readers (`finemed_eval.data.readers`), so every error
names the file, the row and the field. Hub datasets go through `datasets.load_dataset`.

datatrove resumes an interrupted task by skipping as many input documents as it already finished, so
the input must not change between a run and its resumption: the manifest records a hash of every
(id, text) and of the settings that shape outputs; `check_manifest` refuses to resume otherwise.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from finemed_eval.data.readers import read_any, read_hub
from finemed_eval.data.schema import DataError, Row

from . import departments, prompts
from .config import ROLES, SynthConfig

SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


class InputError(DataError):
    """Bad input texts or a changed input on resume; names file, row and field."""


def _rows(config: SynthConfig) -> list[Row]:
    spec = config.input
    if spec.hub:
        return read_hub(spec.hub, spec.hub_config, spec.split, None) if not spec.hub_data_dir else _hub_dir(config)
    path = Path(spec.path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES)
        if not files:
            raise InputError(f"{path}: no {'/'.join(SUFFIXES)} files in this folder")
    elif path.is_file():
        if path.suffix not in SUFFIXES:
            raise InputError(f"{path}: unsupported file type (use {', '.join(SUFFIXES)})")
        files = [path]
    else:
        raise InputError(f"{path}: no such file or folder (input.path)")
    return [row for file in files for row in read_any(file)]


def _hub_dir(config: SynthConfig) -> list[Row]:
    from datasets import load_dataset

    spec = config.input
    label = f"{spec.hub} ({spec.hub_data_dir}, {spec.split})"
    try:
        dataset = load_dataset(spec.hub, spec.hub_config, data_dir=spec.hub_data_dir, split=spec.split)
    except Exception as exc:  # offline, renamed, gated: one clear line
        raise InputError(f"{label}: cannot load from the Hugging Face hub ({type(exc).__name__}: {exc})") from exc
    return [Row(label, n, record, spec.hub) for n, record in enumerate(dataset, start=1)]


def load_texts(config: SynthConfig) -> list[dict]:
    """[{"id", "text"}] in input order; raises InputError (file, row, field) on any bad row."""
    rows = _rows(config)
    if config.input.limit is not None:
        rows = rows[: config.input.limit]
    where = config.input.path or config.input.hub
    if not rows:
        raise InputError(f"{where}: the input has no rows")
    texts, seen = [], {}
    for row in rows:
        text = row.text(config.input.text_field)
        key = row.text(config.input.id_field) if config.input.id_field else f"{Path(row.where).name}:{row.n}"
        if key in seen:
            raise InputError(f"{row.where} row {row.n}: field {config.input.id_field or '(id)'!r} repeats id {key!r} (row {seen[key]})")
        seen[key] = row.n
        texts.append({"id": key, "text": text})
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
    return {
        "seed": config.seed,
        "roles": roles,
        "retry_attempts": config.retry.attempts,
        "reward": {k: v for k, v in asdict(config.reward).items() if k in ("model", "seeded_head", "max_length")},
        "switches": asdict(config.switches),
        "parts": config.executor.tasks,
        "prompts_sha256": hashlib.sha256(prompt_text.encode()).hexdigest(),
    }


def manifest(config: SynthConfig, texts: list[dict]) -> dict:
    digest = hashlib.sha256()
    for record in texts:
        digest.update(json.dumps([record["id"], record["text"]], ensure_ascii=False).encode() + b"\n")
    return {
        "input": config.input.path or config.input.hub,
        "records": len(texts),
        "input_sha256": digest.hexdigest(),
        "settings": output_settings(config),
    }


def check_manifest(path: Path, current: dict) -> None:
    """First run: nothing to check. Resume: the stored manifest must equal the current one."""
    if not path.is_file():
        return
    stored = json.loads(path.read_text(encoding="utf-8"))
    if stored == current:
        return
    changed = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
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
