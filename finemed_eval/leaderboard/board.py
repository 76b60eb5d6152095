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
from finemed_eval.leaderboard.sweep import sweep_tables
from finemed_eval.leaderboard.fingerprint import pin_sha, pinned_name, relative_or_name
from finemed_eval.leaderboard.task_tree import expand_task_names

SCHEMA_PATH = Path(__file__).parent / "schema.json"
SCHEMA_VERSION = "2.1"  # 2.1: portable model names and pins, runs, lm-eval keys in open_medical_llm


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def build_board(
    config: RunConfig,
    pins: dict[str, dict[str, Any]],
    portable: dict[str, dict[str, Any]],
    measured: list[MeasuredCell],
    task_manager: Any,
    git_rev: str,
    versions: dict[str, str],
    pairs: list[dict[str, Any]] | None = None,
    runs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The whole document; `pairs` is compare.compare_pairs' output (paired statistics).

    pins: display name -> fingerprint.model_pin (what names and pins the weights); portable: display
    name -> model_args as published (no machine paths). `runs` names the cell behind each
    (model, task, seed), for `publish`.
    """
    paper = load_paper()
    sweeps = {m.name: m.sweep for m in config.models if m.sweep}
    pairs = [{**p, "sweep": sweeps[p["treatment"]]} if p["treatment"] in sweeps else p for p in pairs or []]
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
        "config": resolved_config(config, pins, portable),
        "entries": entries,
        "pairs": pairs,
        **({"sweeps": sweep_tables(pairs)} if sweeps else {}),
        "runs": runs or [],
        "open_medical_llm": open_medical_llm(entries, pins, config),
    }


def resolved_config(config: RunConfig, pins: dict[str, dict[str, Any]], portable: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The run's config as published: models by pinned name, paths relative to the config or hashed."""
    source = Path(config.source)
    base = source.parent if source.is_file() else Path.cwd()
    return {
        "source": relative_or_name(source, Path.cwd()) if source.is_file() else config.source,
        "models": [
            {
                "name": m.name,
                "model": pinned_name(pins[m.name]),
                "pin": pins[m.name],
                "model_args": portable[m.name],
                "protocol": m.protocol,
                **({"baseline": m.baseline} if m.baseline is not None else {}),
                **({"sweep": m.sweep} if m.sweep else {}),
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
        "include_path": [relative_or_name(Path(p), base) for p in config.include_path],
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


# Our task -> the lm-eval task the Open Medical-LLM Leaderboard reads (its MedQA is the 4-option
# USMLE set, its MMLU the six medical subsets). Benchmarks it does not have are left out.
OPEN_MEDICAL_LLM_TASKS = {
    "finemed_medqa": "medqa_4options",
    "finemed_medmcqa": "medmcqa",
    **{
        f"finemed_mmlu_{s}": f"mmlu_{s}"
        for s in (
            "anatomy",
            "clinical_knowledge",
            "college_biology",
            "college_medicine",
            "medical_genetics",
            "professional_medicine",
        )
    },
}


def open_medical_llm(
    entries: list[dict[str, Any]], pins: dict[str, dict[str, Any]], config: RunConfig
) -> list[dict[str, Any]]:
    """Per measured model with at least one of their benchmarks: lm-eval's results layout
    ({"config": {model_name, model_sha, model_dtype, ...}, "results": {lm-eval task: {"acc,none": mean}}}).

    Their protocol is 0-shot, one run; ours (few-shot, mean over seeds) is recorded in `config`.
    """
    by_model: dict[str, dict[str, Any]] = {}
    for e in entries:
        theirs = OPEN_MEDICAL_LLM_TASKS.get(e["task"])
        if e["status"] != "measured" or theirs is None or e["metric"] != "acc":
            continue
        pin = pins[e["model"]]
        obj = by_model.setdefault(
            e["model"],
            {
                "config": {
                    "model_name": pinned_name(pin),
                    "model_sha": pin_sha(pin) or "",
                    "model_dtype": torch_dtype_name(pin.get("dtype")),
                    "model_args": e["model_args"],
                    "finemed_name": e["model"],
                    "num_fewshot": config.num_fewshot,
                    "seeds": list(config.seeds),
                    "protocol": f"{config.num_fewshot}-shot, mean over seeds {', '.join(map(str, config.seeds))}"
                    + (f", first {config.limit} documents" if config.limit is not None else ""),
                },
                "results": {},
            },
        )
        obj["results"][theirs] = {"acc,none": e["mean"]}
    return list(by_model.values())


def torch_dtype_name(dtype: str | None) -> str:
    """"float16" -> "torch.float16", as lm-eval's HF model reports it; unknown stays ""."""
    if not dtype:
        return ""
    return dtype if dtype.startswith("torch.") else f"torch.{dtype}"


def write_open_medical_llm(out: Path, objs: list[dict[str, Any]]) -> None:
    """One DIR/open_medical_llm/<slug>.json per model, the file layout that leaderboard reads."""
    folder = out / "open_medical_llm"
    folder.mkdir(exist_ok=True)
    for stale in folder.glob("*.json"):  # a model dropped from the config, or the old export
        stale.unlink()
    taken: set[str] = set()
    for obj in objs:
        write_json_atomic(folder / f"{slugify(obj['config']['finemed_name'], taken)}.json", obj, indent=2)


def slugify(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "model"
    slug, i = base, 2
    while slug in taken:
        slug, i = f"{base}-{i}", i + 1
    taken.add(slug)
    return slug
