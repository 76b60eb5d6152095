"""Leaderboard runner: evaluate every (model, task, seed) cell with lm-eval, resumably, and aggregate.

Flow: validate everything (config types, model and task names, output folder) -> for each model,
load it once and evaluate its pending cells -> each finished cell is written atomically to
DIR/cells/<key>.json -> aggregate all cells (mean and sample std over seeds) -> add the paper's
reported rows -> validate against schema.json -> write DIR/leaderboard.json and the Open
Medical-LLM files -> render.

The pieces live beside this file: cells.py (keys, cell files), fingerprint.py (what goes into a
key), evaluate.py (lm-eval), aggregate.py (entries), board.py (the JSON document).
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import importlib.util
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finemed_eval.leaderboard.aggregate import MeasuredCell
from finemed_eval.leaderboard.board import build_board, utc_now, validate_board, write_open_medical_llm
from finemed_eval.leaderboard.cells import (
    Cell,
    CorruptCell,
    cell_path,
    plan_cells,
    read_cell,
    remove_stale_temp_files,
    write_cell,
    write_json_atomic,
)
from finemed_eval.leaderboard.config import LeaderboardError, RunConfig, check_names, check_output_dir
from finemed_eval.leaderboard.evaluate import evaluate_cell, import_plugin, lm_class, make_task_manager, slim_results
from finemed_eval.leaderboard.fingerprint import (
    code_hash,
    finemed_eval_version,
    git_revision,
    lm_eval_version,
    task_config_hash,
)
from finemed_eval.zoo import resolve_pretrained

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    out_dir: Path
    leaderboard: Path
    computed: list[str] = field(default_factory=list)  # keys evaluated in this run
    skipped: list[str] = field(default_factory=list)  # keys reused from earlier runs
    corrupted: list[str] = field(default_factory=list)  # keys whose file was bad and got recomputed
    rendered: dict[str, Path] = field(default_factory=dict)


def run(
    config: RunConfig,
    out_dir: str | Path,
    *,
    task_manager: Any = None,
    after_cell: Callable[[Cell], None] | None = None,
    render_outputs: bool = True,
    progress: bool = True,
) -> RunSummary:
    """Evaluate all cells of `config` into out_dir (resuming), then write and render the leaderboard.

    after_cell is called after each cell is saved (tests use it to simulate a kill mid-run).
    """
    out = Path(out_dir).expanduser().resolve()
    check_output_dir(out)
    cells_dir = out / "cells"
    cells_dir.mkdir(exist_ok=True)
    with _exclusive(out):
        remove_stale_temp_files(cells_dir)  # left by a killed run
        import_plugin()
        tm = task_manager if task_manager is not None else make_task_manager(config)
        canonical = check_names(config, tm.all_tasks)
        model_class = lm_class(config)  # before any slow step, so a bad lm_eval_model fails fast
        versions = {"lm_eval": lm_eval_version(), "finemed_eval": finemed_eval_version()}
        task_hashes = {t: task_config_hash(tm, t) for t in config.tasks}
        plan = plan_cells(config, canonical, task_hashes, **versions, finemed_code=code_hash())
        pretrained = _resolve_all(config)
        summary = RunSummary(out, out / "leaderboard.json")
        done = _load_done(plan, cells_dir, summary)
        _evaluate_pending(config, plan, done, cells_dir, tm, model_class, pretrained, summary, after_cell, progress)

        git_rev = git_revision()
        measured = [
            MeasuredCell(
                c.model.name,
                c.model.model_args(pretrained[c.model.name]),
                c.seed,
                done[c.key]["date"],
                done[c.key]["results"],
                task_hashes[c.task],
            )
            for c in plan
        ]
        board = build_board(config, canonical, pretrained, measured, tm, git_rev, versions)
        try:
            validate_board(board)
        except Exception as e:  # a bug here, not bad input: keep cells, refuse to write a bad board
            raise RuntimeError(f"internal error: the leaderboard does not match schema.json: {e}") from e
        write_open_medical_llm(out, board["open_medical_llm"])
        write_json_atomic(summary.leaderboard, board, indent=2)
    if render_outputs:
        summary.rendered = _render(summary.leaderboard)
    return summary


def _load_done(plan: list[Cell], cells_dir: Path, summary: RunSummary) -> dict[str, dict[str, Any]]:
    """Finished cells by key; a corrupted file is logged and left out, so its cell is recomputed."""
    done: dict[str, dict[str, Any]] = {}
    for cell in plan:
        path = cell_path(cells_dir, cell.key)
        if not path.exists():
            continue
        try:
            done[cell.key] = read_cell(path, cell.key)
            summary.skipped.append(cell.key)
        except CorruptCell as e:
            log.warning(
                "corrupted cell file %s (%s, %s, seed %s): %s; recomputing it",
                path,
                cell.model.name,
                cell.task,
                cell.seed,
                e,
            )
            summary.corrupted.append(cell.key)
    return done


def _evaluate_pending(
    config: RunConfig,
    plan: list[Cell],
    done: dict[str, dict[str, Any]],
    cells_dir: Path,
    tm: Any,
    model_class: Any,
    pretrained: dict[str, str],
    summary: RunSummary,
    after_cell: Callable[[Cell], None] | None,
    progress: bool,
) -> None:
    """Evaluate the cells not in `done`, one model load per model, saving (and adding to done) each."""
    from tqdm.auto import tqdm

    pending = [c for c in plan if c.key not in done]
    bar = tqdm(
        total=len(pending),
        unit="cell",
        desc=f"leaderboard ({len(done)} cached)",
        disable=not progress or not pending,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    try:
        for spec in config.models:
            mine = [c for c in pending if c.model is spec]
            if not mine:
                continue  # every cell of this model is cached: never load it
            bar.set_postfix_str(f"loading {spec.name}")
            model_args = spec.model_args(pretrained[spec.name])
            try:
                lm = model_class.create_from_arg_obj(
                    model_args, {"batch_size": config.batch_size, "device": config.device}
                )
            except Exception as e:  # keep the cause chained, but say which entry failed
                raise RuntimeError(f"loading model {spec.name!r} with {model_args} failed: {e}") from e
            for cell in mine:
                bar.set_postfix_str(f"{spec.name} | {cell.task} | seed {cell.seed}")
                started = time.monotonic()
                results = evaluate_cell(lm, config, cell, tm)
                payload = {
                    "material": cell.material,
                    "model": spec.name,
                    "model_args": model_args,
                    "task": cell.task,
                    "seed": cell.seed,
                    "date": utc_now(),
                    "duration_s": round(time.monotonic() - started, 3),
                    "results": slim_results(results),
                }
                # read back what was written, so aggregation sees exactly what a resumed run would
                done[cell.key] = read_cell(write_cell(cells_dir, cell.key, payload), cell.key)
                summary.computed.append(cell.key)
                bar.update(1)
                if after_cell is not None:
                    after_cell(cell)
            del lm  # free the weights before the next model loads
            gc.collect()
    finally:
        bar.close()


def _resolve_all(config: RunConfig) -> dict[str, str]:
    """Display name -> the `pretrained` path or hub id; converts the embedded model on first use."""
    out = {}
    for i, spec in enumerate(config.models):
        try:
            out[spec.name] = resolve_pretrained(spec.model)
        except (RuntimeError, OSError) as e:  # e.g. the embedded model's wheel is missing
            raise LeaderboardError(
                f"{config.source}: field 'models[{i}].model': cannot resolve {spec.model!r}: {e}"
            ) from None
    return out


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One runner per output folder: two would evaluate the same cells and race on the board."""
    with open(out / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LeaderboardError(f"another leaderboard run is using {out}") from None
        yield


def _render(board_path: Path) -> dict[str, Path]:
    if importlib.util.find_spec("finemed_eval.leaderboard.render") is None:
        return {}
    from finemed_eval.leaderboard.render import render

    return render(board_path)
