"""Row selection from the released FineMed layouts, before any trainer is built.

FineMed-SFT: `Medicine (all)`, one folder per department and sub-department (overlapping), and the
long-form subset `SFTo1Data`, rows with
`text, instruction, complexity, quality, language, response, instruction_type`. FineMed-DPO: rows with
`text, complexity, quality, language, prompt, chosen, rejected`, the last three chat message lists.
`synth export` writes the same layouts. Selection: department filter -> seeded sample -> seeded
train/holdout split; the row count after each step is kept for provenance. The trainer gets TRL's
conversational prompt/completion (SFT) or prompt/chosen/rejected (DPO) rows, so the loss covers the
response and its end-of-turn token only.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SFT_FIELDS = ("text", "instruction", "complexity", "quality", "language", "response", "instruction_type")
DPO_FIELDS = ("text", "complexity", "quality", "language", "prompt", "chosen", "rejected")
NEEDED = {"sft": ("instruction", "response"), "dpo": ("prompt", "chosen", "rejected")}
_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


class DataError(ValueError):
    """Missing file or field, an empty department, too few rows: names the file and field."""


@dataclass
class Selection:
    train: Any  # datasets.Dataset
    holdout: Any | None
    source: str
    files: list[str]
    sha256: str  # over the files' bytes (local) or the dataset fingerprint (hub)
    counts: dict[str, int] = field(default_factory=dict)


def select(
    stage: str,
    data: str,
    *,
    data_dir: str | None = None,
    department: str | None = None,
    sample_size: int | None = None,
    holdout_fraction: float = 0.0,
    seed: int = 42,
    system_prompt: str | None = None,
) -> Selection:
    """Load, filter, sample and split; return trainer-ready rows and the counts at each step."""
    if data_dir and department and not Path(data).expanduser().is_file():
        raise DataError(f"{data}: set data_dir or department (both name a folder), not both")
    dataset, files, digest, source = _load(stage, data, data_dir, department)
    counts = {"loaded": dataset.num_rows}
    if department and "department" in dataset.column_names:  # a single file with a department column
        wanted = _norm(department)
        dataset = dataset.filter(lambda row: _norm(str(row["department"])) == wanted)
        if dataset.num_rows == 0:
            raise DataError(f"{source}: no rows with department {department!r} (field 'department')")
    counts["department"] = dataset.num_rows
    if sample_size is not None:
        if sample_size > dataset.num_rows:
            raise DataError(
                f"{source}: sample_size {sample_size} but only {dataset.num_rows} rows after the department filter"
            )
        dataset = dataset.shuffle(seed=seed).select(range(sample_size))
    counts["sampled"] = dataset.num_rows
    holdout = None
    if holdout_fraction > 0:
        parts = dataset.train_test_split(test_size=holdout_fraction, seed=seed)
        dataset, holdout = parts["train"], parts["test"]
        if holdout.num_rows == 0 or dataset.num_rows == 0:
            raise DataError(f"{source}: holdout_fraction {holdout_fraction} leaves an empty split")
        counts["holdout"] = holdout.num_rows
    counts["train"] = dataset.num_rows
    train_rows = _trainer_rows(stage, dataset, system_prompt)
    holdout_rows = _trainer_rows(stage, holdout, system_prompt) if holdout is not None else None
    return Selection(train_rows, holdout_rows, source, files, digest, counts)


def check_source(stage: str, data: str, *, data_dir: str | None = None, department: str | None = None) -> list[Path]:
    """The files a selection will read, each with the layout's fields, checked from its first record
    only (cheap enough for the launcher). Hub ids are checked when the stage loads them."""
    root = Path(data).expanduser()
    if not root.exists():
        if _HUB_ID.match(data):
            return []
        raise DataError(f"{data}: no such file or folder, and not a hub id (org/name)")
    if data_dir and department and not root.is_file():
        raise DataError(f"{data}: set data_dir or department (both name a folder), not both")
    files = _local_files(root, data_dir, department)
    for path in files:
        _check_fields(_first_record_fields(path), stage, str(path))
    return files


def _first_record_fields(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as handle:
            line = next((line for line in handle if line.strip()), "")
        if not line:
            raise DataError(f"{path}: no rows")
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: first row is not JSON ({error})") from error
    else:
        record = json.loads(path.read_text(encoding="utf-8"))
        record = record[0] if isinstance(record, list) and record else record
    if not isinstance(record, dict):
        raise DataError(f"{path}: rows must be JSON objects")
    return list(record)


def _trainer_rows(stage: str, dataset: Any, system_prompt: str | None) -> Any:
    """FineMed rows -> TRL's conversational prompt/completion (SFT) or prompt/chosen/rejected (DPO)."""
    to_row = _sft_row if stage == "sft" else _dpo_row
    return dataset.map(to_row, fn_kwargs={"system_prompt": system_prompt}, remove_columns=dataset.column_names)


def _sft_row(row: dict, system_prompt: str | None) -> dict:
    prompt = [{"role": "user", "content": row["instruction"]}]
    if system_prompt:
        prompt.insert(0, {"role": "system", "content": system_prompt})
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": row["response"]}]}


def _dpo_row(row: dict, system_prompt: str | None) -> dict:
    prompt = [dict(m) for m in row["prompt"]]
    if system_prompt and prompt[0]["role"] != "system":
        prompt.insert(0, {"role": "system", "content": system_prompt})
    return {"prompt": prompt, "chosen": row["chosen"], "rejected": row["rejected"]}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _local_files(root: Path, data_dir: str | None, department: str | None) -> list[Path]:
    if root.is_file():
        if root.suffix not in _SUFFIXES:
            raise DataError(f"{root}: expected a .jsonl, .json or .parquet file")
        return [root]
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if data_dir:
        folder = root / data_dir
        if not folder.is_dir():
            names = ", ".join(p.name for p in folders) or "none"
            raise DataError(f"{folder}: no such folder (data_dir {data_dir!r}); folders: {names}")
    elif department:
        chosen = [p for p in folders if _norm(p.name) == _norm(department)]
        if not chosen:
            names = ", ".join(p.name for p in folders) or "none"
            raise DataError(f"{root}: no department folder {department!r}; department folders: {names}")
        folder = chosen[0]
    else:
        # Department folders overlap (a row is in `Medicine (all)`, its department and its
        # sub-department), so a FineMed-SFT root is never read whole: name one folder.
        files = sorted(p for p in root.iterdir() if p.suffix in _SUFFIXES and p.is_file())
        if not files:
            names = ", ".join(p.name for p in folders) or "none"
            raise DataError(f"{root}: no data files directly here; choose a folder with department or data_dir: {names}")
        return files
    files = sorted(p for p in folder.iterdir() if p.suffix in _SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{folder}: no .jsonl/.json/.parquet files" + (f" for department {department!r}" if department else ""))
    return files


def _load(stage: str, data: str, data_dir: str | None, department: str | None):
    import datasets

    root = Path(data).expanduser()
    if not root.exists() and _HUB_ID.match(data):
        folder = data_dir or department  # on the hub, too, departments are folders
        dataset = datasets.load_dataset(data, data_dir=folder, split="train")
        _check_fields(dataset.column_names, stage, data)
        return dataset, [], dataset._fingerprint, data
    if not root.exists():
        raise DataError(f"{data}: no such file or folder, and not a hub id (org/name)")
    files = _local_files(root, data_dir, department)
    parts, digest = [], hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
        part = datasets.load_dataset(_SUFFIXES[path.suffix], data_files=str(path), split="train")
        _check_fields(part.column_names, stage, str(path))
        if part.num_rows == 0:
            raise DataError(f"{path}: no rows")
        parts.append(part.select_columns([c for c in part.column_names if c in (*NEEDED[stage], "department")]))
    dataset = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    return dataset, [str(p.resolve()) for p in files], digest.hexdigest(), str(root.resolve())


def _check_fields(columns: list[str], stage: str, where: str) -> None:
    missing = [name for name in NEEDED[stage] if name not in columns]
    if missing:
        layout = "FineMed-SFT" if stage == "sft" else "FineMed-DPO"
        raise DataError(
            f"{where}: missing field(s) {', '.join(map(repr, missing))} of the {layout} layout "
            f"(found: {', '.join(columns) or 'none'})"
        )
