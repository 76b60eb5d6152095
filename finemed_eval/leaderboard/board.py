"""The leaderboard.json document: assembly, schema validation, and the Open Medical-LLM export."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from finemed_eval.leaderboard.aggregate import MeasuredCell, aggregate, load_paper, reported_entries
from finemed_eval.leaderboard.cells import write_json_atomic
from finemed_eval.leaderboard.config import RunConfig
from finemed_eval.leaderboard.task_tree import expand_task_names

SCHEMA_PATH = Path(__file__).parent / "schema.json"
SCHEMA_VERSION = "2.0"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def build_board(
    config: RunConfig,
    canonical: dict[str, str],
    pretrained: dict[str, str],
    measured: list[MeasuredCell],
    task_manager: Any,
    git_rev: str,
    versions: dict[str, str],
    pairs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The whole document; `pairs` is compare.compare_pairs' output (paired statistics)."""
    paper = load_paper()
    entries = aggregate(
        measured,
        benchmarks=paper["benchmarks"],
        num_fewshot=config.num_fewshot,
        limit=config.limit,
        lm_eval=versions["lm_eval"],
        git_rev=git_rev,
    )
    if config.include_reported:
        wanted = (
            None
            if config.include_reported == "all"
            else (expand_task_names(task_manager, config.tasks) | {e["task"] for e in entries})
        )
        entries += reported_entries(paper, wanted)
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": utc_now(),
        "git_revision": git_rev,
        "lm_eval_version": versions["lm_eval"],
        "finemed_eval_version": versions["finemed_eval"],
        "config": resolved_config(config, canonical, pretrained),
        "entries": entries,
        "pairs": pairs or [],
        "open_medical_llm": open_medical_llm(entries),
    }


def resolved_config(config: RunConfig, canonical: dict[str, str], pretrained: dict[str, str]) -> dict[str, Any]:
    return {
        "source": config.source,
        "models": [
            {
                "name": m.name,
                "model": m.model,
                "canonical": canonical[m.name],
                "model_args": m.model_args(pretrained[m.name]),
                **({"baseline": m.baseline} if m.baseline is not None else {}),
            }
            for m in config.models
        ],
        "tasks": list(config.tasks),
        "seeds": list(config.seeds),
        "num_fewshot": config.num_fewshot,
        "limit": config.limit,
        "batch_size": config.batch_size,
        "include_reported": config.include_reported,
        "lm_eval_model": config.lm_eval_model,
        "include_path": list(config.include_path),
        "device": config.device,
        "apply_chat_template": config.apply_chat_template,
    }


def validate_board(board: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError if the board does not match schema.json."""
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    error = jsonschema.exceptions.best_match(validator.iter_errors(board))
    if error is not None:
        raise error


# --------------------------------------------------------------------------- Open Medical-LLM


def open_medical_llm(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per measured model: {"config": {model_name, model_args}, "results": {task: {metric: mean}}}."""
    by_model: dict[str, dict[str, Any]] = {}
    for e in entries:
        if e["status"] != "measured":
            continue
        obj = by_model.setdefault(
            e["model"], {"config": {"model_name": e["model"], "model_args": e["model_args"]}, "results": {}}
        )
        obj["results"].setdefault(e["task"], {})[e["metric"]] = e["mean"]
    return list(by_model.values())


def write_open_medical_llm(out: Path, objs: list[dict[str, Any]]) -> None:
    """One DIR/open_medical_llm/<slug>.json per model, the file layout that leaderboard reads."""
    folder = out / "open_medical_llm"
    folder.mkdir(exist_ok=True)
    taken: set[str] = set()
    for obj in objs:
        write_json_atomic(folder / f"{slugify(obj['config']['model_name'], taken)}.json", obj, indent=2)


def slugify(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "model"
    slug, i = base, 2
    while slug in taken:
        slug, i = f"{base}-{i}", i + 1
    taken.add(slug)
    return slug
