"""Cells: one (model, task, seed) evaluation, its key, and its file under DIR/cells/<key>.json.

A cell's key hashes everything that determines its result, by content: the model and its args, the
task's parsed YAML and helper code, the content of the data files it reads (FINEMED_DATA_DIR or the
demo files), the content of a TTT corpus, the seed and protocol, library versions and the package
code. A rerun skips finished cells; an edit recomputes exactly the cells it can change. A cell file carries a
hash of its own content, so a truncated or edited file is detected and recomputed, never trusted.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finemed_eval.leaderboard.config import ModelSpec, RunConfig
from finemed_eval.leaderboard.evaluate import GLOBAL_SEEDS
from finemed_eval.leaderboard.fingerprint import canonical_json, sha256_text

CELL_FORMAT = 2  # bump when the cell payload changes shape; part of every key (2: per-document records)


@dataclass(frozen=True)
class Cell:
    model: ModelSpec
    task: str
    seed: int
    material: dict[str, Any]  # everything that determines the result
    key: str


class CorruptCell(Exception):
    """A cell file that cannot be trusted (truncated, edited, or for another key)."""


# --------------------------------------------------------------------------- keys


def cell_material(
    config: RunConfig,
    spec: ModelSpec,
    canonical_model: str,
    task: str,
    task_config_hash: str,
    seed: int,
    *,
    task_data_hash: dict[str, str | None],
    corpus_hash: str | None,
    lm_eval: str,
    finemed_eval: str,
    finemed_code: str,
) -> dict[str, Any]:
    """The inputs of one cell. Display name, batch size and device are left out: they do not change results."""
    return {
        "cell_format": CELL_FORMAT,
        "lm_eval_model": config.lm_eval_model,
        "model": canonical_model,
        "model_args": dict(sorted(spec.args.items())),
        "apply_chat_template": config.apply_chat_template,
        "protocol": spec.protocol,
        "task": task,
        "task_config_hash": task_config_hash,
        "task_data": task_data_hash,  # benchmark -> content hash of its files (None: read from the hub)
        "corpus": corpus_hash,  # content hash of the TTT corpus (None: TTT off or a hub dataset)
        "seed": seed,
        "global_seeds": GLOBAL_SEEDS,
        "num_fewshot": config.num_fewshot,
        "limit": config.limit,
        "lm_eval_version": lm_eval,
        "finemed_eval_version": finemed_eval,
        "finemed_eval_code": finemed_code,
    }


def cell_key(material: dict[str, Any]) -> str:
    return sha256_text(canonical_json(material))


def plan_cells(
    config: RunConfig,
    canonical: dict[str, str],
    task_config_hashes: dict[str, str],
    task_data_hashes: dict[str, dict[str, str | None]],
    corpus_hashes: dict[str, str | None],
    *,
    lm_eval: str,
    finemed_eval: str,
    finemed_code: str,
) -> list[Cell]:
    """Every cell of the config, model-major (so each model is loaded once), then task, then seed."""
    plan = []
    for spec in config.models:
        for task in config.tasks:
            for seed in config.seeds:
                material = cell_material(
                    config,
                    spec,
                    canonical[spec.name],
                    task,
                    task_config_hashes[task],
                    seed,
                    task_data_hash=task_data_hashes[task],
                    corpus_hash=corpus_hashes[spec.name],
                    lm_eval=lm_eval,
                    finemed_eval=finemed_eval,
                    finemed_code=finemed_code,
                )
                plan.append(Cell(spec, task, seed, material, cell_key(material)))
    return plan


# --------------------------------------------------------------------------- files


def cell_path(cells_dir: Path, key: str) -> Path:
    return cells_dir / f"{key}.json"


def content_hash(payload: dict[str, Any]) -> str:
    return "sha256:" + sha256_text(canonical_json({k: v for k, v in payload.items() if k != "content_hash"}))


def write_cell(cells_dir: Path, key: str, payload: dict[str, Any]) -> Path:
    # Round-trip through JSON first so the stored hash is over exactly what a reader will see.
    body = json.loads(json.dumps({**payload, "key": key}, default=_jsonable))
    body["content_hash"] = content_hash(body)
    path = cell_path(cells_dir, key)
    write_json_atomic(path, body)
    return path


def read_cell(path: Path, key: str) -> dict[str, Any]:
    """Return a cell's payload, or raise CorruptCell if it is not exactly what write_cell wrote for key."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptCell(f"{path.name}: unreadable ({e})") from None
    if not isinstance(body, dict) or body.get("content_hash") != content_hash(body):
        raise CorruptCell(f"{path.name}: content hash mismatch")
    if body.get("key") != key:
        raise CorruptCell(f"{path.name}: belongs to key {body.get('key')!r}")
    return body


def write_json_atomic(path: Path, obj: Any, *, indent: int | None = None) -> None:
    """Write JSON so that a reader (or a crash) sees either the old file or the complete new one."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False, default=_jsonable) + "\n"
    write_atomic(path, text.encode("utf-8"))


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a temp file beside `path`, then rename it into place: a reader (or a crash)
    sees the old file or the whole new one. The temp file is created with mode 0666, so the kernel
    applies the umask (and a folder's default ACL) exactly as for a plain open() - shared results
    stay shareable, a private umask stays private, and the umask is never read or changed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_stale_temp_files(folder: Path) -> None:
    """Drop temp files a killed writer left behind; only safe while holding the folder's run lock."""
    for stale in folder.glob(".*.tmp"):
        stale.unlink(missing_ok=True)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    return str(obj)
