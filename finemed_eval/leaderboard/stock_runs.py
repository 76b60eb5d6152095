"""Cells from stock lm-eval runs (`finemed leaderboard aggregate CONFIG --out DIR --from-lm-eval RUNS/`).

A user who ran `lm_eval --log_samples --seed 0,1234,1234,S` once per few-shot seed S gets the same
board as `finemed leaderboard run`: every `results_<date>.json` (with its `samples_<task>_<date>.jsonl`)
fills the cells of the config model with the same weights and arguments, few-shot seed and task,
in the runner's own cell format. A run made under another protocol is one error naming its file.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from finemed_eval.leaderboard.cells import Cell, write_cell
from finemed_eval.leaderboard.config import LeaderboardError, ModelSpec, RunConfig
from finemed_eval.leaderboard.evaluate import GLOBAL_SEEDS, slim_results, write_sample_files
from finemed_eval.leaderboard.fingerprint import scrub, scrub_text
from finemed_eval.leaderboard.task_tree import leaves

log = logging.getLogger(__name__)

RESULT_SECTIONS = ("results", "versions", "n-shot", "n-samples", "group_subtasks", "configs", "higher_is_better", "groups")


def import_lm_eval_runs(
    config: RunConfig, plan: list[Cell], canonical: dict[str, str], folders: list[Path], cells_dir: Path
) -> list[str]:
    """Write the cells that stock runs under `folders` cover; return their keys."""
    files = sorted(p for folder in folders for p in Path(folder).rglob("results_*.json"))
    if not files:
        raise LeaderboardError(f"no lm-eval results_*.json under {', '.join(map(str, folders))}")
    written: list[str] = []
    for path in files:
        results = json.loads(path.read_text(encoding="utf-8"))
        weights, args = _model(path, results)
        _check_protocol(path, results, config)
        specs = [
            m for m in config.models
            if canonical[m.name] == weights and _same_args(m.args, args) and _same_prompting(m, config, results)
        ]  # fmt: skip
        mine = [
            cell for cell in plan
            if any(cell.model is m for m in specs)
            and cell.seed == results["config"].get("fewshot_seed")
            and cell.task in (results.get("results") or {})
        ]  # fmt: skip
        if not mine:
            log.warning("%s matches no (model, seed, task) of %s; left out", path, config.source)
        written += [_write(path, results, cell, weights, cells_dir) for cell in mine]
    return written


def _model(path: Path, results: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(canonical weights, other model args) of a results file, resolved as the runner resolves a config."""
    from lm_eval.utils import simple_parse_args_string

    from finemed_eval.zoo import ZooError, canonical_model

    args = (results.get("config") or {}).get("model_args") or {}
    args = dict(simple_parse_args_string(args) if isinstance(args, str) else args)
    try:
        return canonical_model(str(args.pop("pretrained", ""))), args
    except ZooError as e:
        raise LeaderboardError(f"{path}: config.model_args: {e}") from None


def _same_args(configured: dict[str, Any], ran: dict[str, Any]) -> bool:
    # lm-eval parses "lr=1e-05" into a float and "ttt=off" into a string: compare as text
    return {k: str(v).lower() for k, v in configured.items()} == {k: str(v).lower() for k, v in ran.items()}


def _same_prompting(spec: ModelSpec, config: RunConfig, results: dict[str, Any]) -> bool:
    """The entry's protocol (system prompt, chat template) is how the stock run prompted."""
    from finemed_eval.protocols import get_protocol

    protocol = get_protocol(spec.protocol)
    chat = config.apply_chat_template or protocol.apply_chat_template
    return (results.get("system_instruction") or None) == (protocol.system_instruction or None) and bool(
        results.get("chat_template")
    ) == bool(chat)


def _check_protocol(path: Path, results: dict[str, Any], config: RunConfig) -> None:
    cfg = results.get("config") or {}
    expected = {
        "model": config.lm_eval_model,
        "limit": config.limit,
        "random_seed": GLOBAL_SEEDS["random"],
        "numpy_seed": GLOBAL_SEEDS["numpy"],
        "torch_seed": GLOBAL_SEEDS["torch"],
    }
    problems = [f"config.{k} is {cfg.get(k)!r}, expected {v!r}" for k, v in expected.items() if cfg.get(k) != v]
    problems += [
        f"{task} ran {n}-shot, expected {config.num_fewshot}"
        for task, n in (results.get("n-shot") or {}).items()
        if n != config.num_fewshot
    ]
    if problems:
        raise LeaderboardError(
            f"{path}: not run with the protocol of {config.source}: {', '.join(problems)} "
            "(lm_eval --seed 0,1234,1234,SEED --num_fewshot N --limit L)"
        )


def _write(path: Path, results: dict[str, Any], cell: Cell, weights: str, cells_dir: Path) -> str:
    """One cell in the runner's format, its samples copied beside it (local paths scrubbed)."""
    groups = results.get("group_subtasks") or {}
    tasks = leaves(cell.task, groups) | {cell.task}
    stamp = path.name[len("results_") : -len(".json")]
    sample_files = {t: path.with_name(f"samples_{t}_{stamp}.jsonl") for t in tasks if t not in groups}
    missing = [str(f) for f in sample_files.values() if not f.is_file()]
    if missing:
        raise LeaderboardError(f"{path}: run lm_eval with --log_samples; missing {', '.join(missing)}")
    data = {t: scrub_text(f.read_text(encoding="utf-8")) for t, f in sample_files.items()}
    part: dict[str, Any] = {key: {k: v for k, v in (results.get(key) or {}).items() if k in tasks} for key in RESULT_SECTIONS}
    part["samples"] = {t: [json.loads(line) for line in text.splitlines()] for t, text in data.items()}
    date = datetime.fromtimestamp(float(results.get("date") or path.stat().st_mtime), timezone.utc)
    payload = {
        "material": cell.material,
        "model": cell.model.name,
        "model_args": scrub(_model_args(cell.model, weights)),
        "task": cell.task,
        "seed": cell.seed,
        "date": date.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "pass": {"seeds": [cell.seed], "duration_s": results.get("total_evaluation_time_seconds"), "lm_eval_results": path.name},
        "results": slim_results(part),
        "samples": write_sample_files(cells_dir, cell.key, {t: text.encode("utf-8") for t, text in data.items()}),
    }
    write_cell(cells_dir, cell.key, payload)
    return cell.key


def _model_args(spec: ModelSpec, weights: str) -> dict[str, Any]:
    return {"pretrained": weights, **spec.args}
