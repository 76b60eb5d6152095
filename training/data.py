"""Row selection from the released FineMed layouts, before any trainer is built.

FineMed-SFT: `Medicine (all)`, one folder per department and sub-department (overlapping), and the
long-form subset `SFTo1Data`, rows with
`text, instruction, complexity, quality, language, response, instruction_type`. FineMed-DPO: rows with
`text, complexity, quality, language, prompt, chosen, rejected`, the last three chat message lists.
`synth export` writes the same layouts. Selection: folder (`data_dir` / `department`) -> department
column -> long-form check -> seeded sample -> seeded train/holdout split; the row count after each step
and how each filter was applied are kept for provenance. A filter that cannot be applied to the data
given is an error naming the recipe key and the data, never silently skipped. The trainer gets TRL's
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
LONG_FORM = ("require", "select", "any")  # values of the recipe key `long_form`
_CLEAR = "-- --{key} ''"  # how a recipe's filter is dropped from the command line


class DataError(ValueError):
    """Missing file or field, an empty department, too few rows: names the file and field."""


@dataclass
class Selection:
    train: Any  # datasets.Dataset
    holdout: Any | None
    source: str  # a hub id, or the resolved local file or folder
    files: dict[str, str]  # local files read, relative to `source` (its name for a file) -> sha256
    sha256: str  # over the files' bytes (local) or the dataset fingerprint (hub)
    counts: dict[str, int] = field(default_factory=dict)
    filters: dict[str, str] = field(default_factory=dict)  # recipe key -> how it was applied


def select(
    stage: str,
    data: str,
    *,
    data_dir: str | None = None,
    department: str | None = None,
    long_form: str | None = None,
    sample_size: int | None = None,
    holdout_fraction: float = 0.0,
    seed: int = 42,
    system_prompt: str | None = None,
) -> Selection:
    """Load, filter, sample and split; return trainer-ready rows and the counts at each step."""
    chosen = choose(
        stage,
        data,
        data_dir=data_dir,
        department=department,
        long_form=long_form,
        sample_size=sample_size,
        holdout_fraction=holdout_fraction,
        seed=seed,
    )
    chosen.train = _trainer_rows(stage, chosen.train, system_prompt)
    if chosen.holdout is not None:
        chosen.holdout = _trainer_rows(stage, chosen.holdout, system_prompt)
    return chosen


def choose(
    stage: str,
    data: str,
    *,
    data_dir: str | None = None,
    department: str | None = None,
    long_form: str | None = None,
    sample_size: int | None = None,
    holdout_fraction: float = 0.0,
    seed: int = 42,
) -> Selection:
    """The rows a stage trains on, in the released layout, with every filter applied or an error.
    What the launcher runs before anything starts, and what the stage runs again."""
    if long_form not in (None, "", *LONG_FORM):
        raise DataError(f"long_form must be one of {', '.join(LONG_FORM)}, got {long_form!r}")
    if long_form and stage != "sft":
        raise DataError(f"long_form {long_form!r}: the long-form check applies to SFT responses, not to {stage} rows")
    dataset, files, digest, source, filters = _load(stage, data, data_dir or None, department or None)
    counts = {"loaded": dataset.num_rows}
    if department and "department" in dataset.column_names:  # a single file with a department column
        wanted = _norm(department)
        dataset = dataset.filter(lambda row: _norm(str(row["department"])) == wanted)
        if dataset.num_rows == 0:
            raise DataError(f"{source}: no rows with department {department!r} (field 'department')")
        counts["department"] = dataset.num_rows
        filters["department"] = f"rows whose 'department' column is {department!r}"
    if long_form in ("require", "select"):
        dataset = _long_form(dataset, long_form, source, counts, filters)
    if sample_size is not None:
        if sample_size > dataset.num_rows:
            after = "after the filters" if len(counts) > 1 else "in the data"
            raise DataError(
                f"{source}: recipe key 'sample_size' is {sample_size} but there are only {dataset.num_rows} rows {after}"
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
    return Selection(dataset, holdout, source, files, digest, counts, filters)


def _long_form(dataset: Any, mode: str, source: str, counts: dict, filters: dict) -> Any:
    """o1-SFT trains on long-form answers: a Thought section followed by a Summarization section."""
    from finemed_eval.synth.parse import parse_longform  # the rule synthesis accepts QwQ's answers by

    responses = dataset["response"]
    bad = [i for i, text in enumerate(responses) if not parse_longform(text).ok]
    if mode == "require" and bad:
        where = dataset["_file"][bad[0]] if "_file" in dataset.column_names else source
        row = dataset["_row"][bad[0]] if "_row" in dataset.column_names else bad[0] + 1
        raise DataError(
            f"{where} row {row}: field 'response' has no Thought and Summarization sections, but recipe key "
            f"'long_form' is 'require' (o1-SFT trains on long-form reasoning); {len(bad)} of {len(responses)} rows "
            f"lack them. Point 'data'/'data_dir' at the long-form subset (SFTo1Data), keep only the long-form rows "
            f"with -- --long_form select, or train on every row with -- --long_form any"
        )
    if mode == "select":
        keep = sorted(set(range(len(responses))) - set(bad))
        if not keep:
            raise DataError(
                f"{source}: recipe key 'long_form' is 'select' but no row's 'response' has Thought and Summarization sections"
            )
        dataset = dataset.select(keep)
        counts["long_form"] = dataset.num_rows
    filters["long_form"] = f"{mode}: responses with Thought and Summarization sections"
    return dataset


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


def _local_files(root: Path, data_dir: str | None, department: str | None) -> tuple[list[Path], dict[str, str]]:
    """The files of `root` the recipe names, and how its folder filters were applied."""
    if root.is_file():
        if root.suffix not in _SUFFIXES:
            raise DataError(f"{root}: expected a .jsonl, .json or .parquet file")
        return [root], _file_filters(root, data_dir, department)
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if data_dir:
        folder = root / data_dir
        if not folder.is_dir():
            names = ", ".join(p.name for p in folders) or "none"
            raise DataError(f"{folder}: no such folder (recipe key 'data_dir' {data_dir!r}); folders: {names}")
        filters = {"data_dir": f"folder {data_dir!r} of the data"}
    elif department:
        chosen = [p for p in folders if _norm(p.name) == _norm(department)]
        if not chosen:
            names = ", ".join(p.name for p in folders) or "none"
            raise DataError(f"{root}: no department folder {department!r} (recipe key 'department'); department folders: {names}")
        folder = chosen[0]
        filters = {"department": f"department folder {folder.name!r} of the data"}
    else:
        # Department folders overlap (a row is in `Medicine (all)`, its department and its
        # sub-department), so a FineMed-SFT root is never read whole: name one folder.
        files = sorted(p for p in root.iterdir() if p.suffix in _SUFFIXES and p.is_file())
        if not files:
            names = ", ".join(p.name for p in folders) or "none"
            raise DataError(f"{root}: no data files directly here; choose a folder with department or data_dir: {names}")
        return files, {}
    files = sorted(p for p in folder.iterdir() if p.suffix in _SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{folder}: no .jsonl/.json/.parquet files" + (f" for department {department!r}" if department else ""))
    return files, filters


def _file_filters(path: Path, data_dir: str | None, department: str | None) -> dict[str, str]:
    """Folder filters on a single file: met when the file lies in the folder they name; a department
    may instead be a column of the file (filtered after loading). Anything else cannot be applied."""
    filters = {}
    if data_dir:
        if _norm(path.parent.name) != _norm(data_dir):
            raise DataError(
                f"{path}: recipe key 'data_dir' is {data_dir!r}, a folder of a FineMed release, but 'data' is a single "
                f"file in folder {path.parent.name!r}, so the filter cannot be applied. Point 'data' at the release "
                f"folder, or train on the whole file with {_CLEAR.format(key='data_dir')}"
            )
        filters["data_dir"] = f"the file lies in folder {path.parent.name!r}"
    if department:
        if _norm(path.parent.name) == _norm(department):
            filters["department"] = f"the file lies in department folder {path.parent.name!r}"
        elif "department" not in _first_record_fields(path):
            raise DataError(
                f"{path}: recipe key 'department' is {department!r}, but 'data' is a single file with no "
                f"'department' field, outside any {department!r} folder, so the filter cannot be applied. Point "
                f"'data' at the release folder, or train on the whole file with {_CLEAR.format(key='department')}"
            )
    return filters


def _load(stage: str, data: str, data_dir: str | None, department: str | None):
    import datasets

    root = Path(data).expanduser()
    if not root.exists() and _HUB_ID.match(data):
        if data_dir and department:
            raise DataError(f"{data}: set data_dir or department (both name a folder), not both")
        folder = data_dir or department  # on the hub, too, departments are folders
        try:
            dataset = datasets.load_dataset(data, data_dir=folder, split="train")
        except (OSError, ValueError) as error:  # offline and not cached, no such dataset or folder
            where = f" (recipe key {'data_dir' if data_dir else 'department'} {folder!r})" if folder else ""
            raise DataError(f"{data}: cannot load this hub dataset{where}: {error}") from None
        _check_fields(dataset.column_names, stage, data)
        key = "data_dir" if data_dir else "department"
        filters = {key: f"folder {folder!r} of the hub dataset"} if folder else {}
        return dataset, {}, dataset._fingerprint, data, filters
    if not root.exists():
        raise DataError(f"{data}: no such file or folder, and not a hub id (org/name)")
    if data_dir and department and not root.is_file():
        raise DataError(f"{data}: set data_dir or department (both name a folder), not both")
    paths, filters = _local_files(root, data_dir, department)
    parts, files, digest = [], {}, hashlib.sha256()
    for path in paths:
        content = path.read_bytes()
        digest.update(content)
        name = path.name if root.is_file() else path.relative_to(root).as_posix()
        files[name] = hashlib.sha256(content).hexdigest()
        part = datasets.load_dataset(_SUFFIXES[path.suffix], data_files=str(path), split="train")
        _check_fields(part.column_names, stage, str(path))
        if part.num_rows == 0:
            raise DataError(f"{path}: no rows")
        part = part.select_columns([c for c in part.column_names if c in (*NEEDED[stage], "department")])
        # where each row came from, for errors that name the file and row
        part = part.add_column("_file", [str(path)] * part.num_rows).add_column("_row", list(range(1, part.num_rows + 1)))
        parts.append(part)
    dataset = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    return dataset, files, digest.hexdigest(), str(root.resolve()), filters


def _check_fields(columns: list[str], stage: str, where: str) -> None:
    missing = [name for name in NEEDED[stage] if name not in columns]
    if missing:
        layout = "FineMed-SFT" if stage == "sft" else "FineMed-DPO"
        raise DataError(
            f"{where}: missing field(s) {', '.join(map(repr, missing))} of the {layout} layout "
            f"(found: {', '.join(columns) or 'none'})"
        )
