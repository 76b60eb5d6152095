"""Leaderboard runner: evaluate every (model, task, seed) cell with lm-eval, resumably, and aggregate.

Flow: validate everything (config, model and task names, pairs, output folder) -> for each model,
load it once; for each of its tasks, evaluate the seeds whose cells are missing in ONE lm-eval pass
(evaluate.evaluate_seeds) -> each finished cell is written atomically to DIR/cells/<key>.json ->
aggregate all cells (mean and sample std over seeds; paired statistics per pair) -> add the paper's
reported rows -> validate against schema.json -> write DIR/leaderboard.json and the Open
Medical-LLM files -> render.

With a Shard, only that shard's (model, task) passes are computed and no board is written; a run
without a shard (or `aggregate`, which computes nothing) builds the board from all cells.

The pieces live beside this file: cells.py (keys, cell files), fingerprint.py (what goes into a
key), evaluate.py (lm-eval), aggregate.py (entries), pairs.py + compare.py + stats.py (paired
statistics), shard.py, board.py (the JSON document).
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finemed_eval.leaderboard.aggregate import MeasuredCell, load_paper
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
from finemed_eval.leaderboard.compare import compare_pairs
from finemed_eval.leaderboard.config import (
    LeaderboardError,
    ModelSpec,
    RunConfig,
    check_names,
    check_output_dir,
    check_seeded_exemplars,
)
from finemed_eval.leaderboard.evaluate import (
    evaluate_seeds,
    import_plugin,
    lm_class,
    make_task_manager,
    remove_partial_samples,
    slim_results,
    write_samples,
)
from finemed_eval.leaderboard.fingerprint import (
    code_hash,
    corpus_hash,
    finemed_eval_version,
    git_revision,
    lm_eval_version,
    model_pin,
    portable_args,
    scrub,
    task_config_hash,
    task_data_hash,
)
from finemed_eval.leaderboard.pairs import check_same_documents, differing_args, find_pairs, ttt_only_keys
from finemed_eval.leaderboard.shard import Shard
from finemed_eval.zoo import resolve_pretrained

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    out_dir: Path
    leaderboard: Path | None  # None for a shard: shards write cells only
    computed: list[str] = field(default_factory=list)  # keys evaluated in this run
    skipped: list[str] = field(default_factory=list)  # keys reused from earlier runs
    corrupted: list[str] = field(default_factory=list)  # keys whose file was bad and got recomputed
    passes: list[tuple[str, str, list[int]]] = field(default_factory=list)  # (model, task, seeds) per lm-eval pass
    rendered: dict[str, Path] = field(default_factory=dict)


def run(
    config: RunConfig,
    out_dir: str | Path,
    *,
    task_manager: Any = None,
    after_cell: Callable[[Cell], None] | None = None,
    render_outputs: bool = True,
    progress: bool = True,
    shard: Shard | None = None,
    compute: bool = True,
    lm_eval_runs: list[Path] | None = None,
) -> RunSummary:
    """Evaluate the missing cells of `config` (or of one shard) into out_dir, then write and render the board.

    compute=False is `aggregate`: build the board from existing cells, fail if any is missing.
    lm_eval_runs: folders of stock `lm_eval --output_path DIR --log_samples` runs (one per few-shot
    seed) whose results fill the cells they match (see import_lm_eval_runs).
    after_cell is called after each cell is saved (tests use it to simulate a kill mid-run).
    """
    out = Path(out_dir).expanduser().resolve()
    check_output_dir(out)
    cells_dir = out / "cells"
    cells_dir.mkdir(exist_ok=True)
    with _exclusive(out, shard):
        if shard is None:
            remove_stale_temp_files(cells_dir)  # left by a killed run; shards may be writing beside us
            remove_partial_samples(cells_dir)
        import_plugin()
        tm = task_manager if task_manager is not None else make_task_manager(config)
        canonical = check_names(config, tm.all_tasks)
        check_seeded_exemplars(config, tm)
        pairs = find_pairs(config, canonical, ttt_only_keys())
        model_class = lm_class(config) if compute else None  # before any slow step: a bad lm_eval_model fails fast
        versions = {"lm_eval": lm_eval_version(), "finemed_eval": finemed_eval_version()}
        task_hashes = {t: task_config_hash(tm, t) for t in config.tasks}
        data_dir = os.environ.get("FINEMED_DATA_DIR") or None
        plan = plan_cells(
            config,
            canonical,
            task_hashes,
            {t: task_data_hash(tm, t, data_dir) for t in config.tasks},
            {m.name: corpus_hash(m.args) for m in config.models},
            **versions,
            finemed_code=code_hash(),
        )
        check_same_documents(pairs, plan)
        pretrained = _resolve_all(config)
        summary = RunSummary(out, None if shard is not None else out / "leaderboard.json")
        if lm_eval_runs:
            from finemed_eval.leaderboard.stock_runs import import_lm_eval_runs

            import_lm_eval_runs(config, plan, canonical, lm_eval_runs, cells_dir)
        done = _load_done(plan, cells_dir, summary)
        mine = plan if shard is None else _shard_cells(plan, shard)
        if compute:
            _evaluate_pending(config, mine, done, cells_dir, tm, model_class, pretrained, summary, after_cell, progress)
        if shard is not None:
            return summary
        missing = [c for c in plan if c.key not in done]
        if missing:
            example = ", ".join(f"({c.model.name}, {c.task}, seed {c.seed})" for c in missing[:3])
            raise LeaderboardError(
                f"{len(missing)} of {len(plan)} cells are missing in {cells_dir}, e.g. {example}: "
                "finish the shards, or run `finemed leaderboard run` without --shard to compute them"
            )
        git_rev = git_revision()
        config_dir = config_folder(config)
        pins = {
            m.name: model_pin(m.model, pretrained[m.name], m.model_args(pretrained[m.name]), config_dir)
            for m in config.models
        }
        portable = {
            m.name: portable_args(m.model_args(pretrained[m.name]), pins[m.name], config_dir) for m in config.models
        }
        measured = [
            MeasuredCell(
                c.model.name,
                portable[c.model.name],
                c.seed,
                done[c.key]["date"],
                done[c.key]["results"],
                task_hashes[c.task],
                c.task,
            )
            for c in plan
        ]
        paired = compare_pairs(
            pairs,
            {  # the differing arguments as published: paths relative to the config
                p: {k: [portable[p.baseline].get(k), portable[p.treatment].get(k)] for k in differing_args(config, p)}
                for p in pairs
            },
            measured,
            config.tasks,
            load_paper()["benchmarks"],
        )
        board = build_board(config, pins, portable, measured, tm, git_rev, versions, paired, runs=_runs(plan, done))
        try:
            validate_board(board)
        except Exception as e:  # a bug here, not bad input: keep cells, refuse to write a bad board
            raise RuntimeError(f"internal error: the leaderboard does not match schema.json: {e}") from e
        write_open_medical_llm(out, board["open_medical_llm"])
        write_json_atomic(out / "leaderboard.json", board, indent=2)
    if render_outputs:
        from finemed_eval.leaderboard.render import render

        summary.rendered = render(out / "leaderboard.json")
    return summary


def config_folder(config: RunConfig) -> Path:
    """The folder config paths are relative to (the working directory for a config given as data)."""
    source = Path(config.source)
    return source.parent if source.is_file() else Path.cwd()


def _runs(plan: list[Cell], done: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Which cell each (model, task, seed) of the board came from: what `publish` reads back."""
    return [
        {
            "model": c.model.name,
            "task": c.task,
            "seed": c.seed,
            "cell": c.key,
            "date": done[c.key]["date"],
            "samples": sorted(done[c.key].get("samples") or {}),
        }
        for c in plan
    ]


def _shard_cells(plan: list[Cell], shard: Shard) -> list[Cell]:
    units = list(dict.fromkeys((c.model.name, c.task) for c in plan))
    chosen = set(shard.select(units))
    return [c for c in plan if (c.model.name, c.task) in chosen]


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
    """Evaluate the cells not in `done`: one model load per model, one lm-eval pass per (model, task)."""
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
            lm, model_args = _load(model_class, config, spec, pretrained)
            for task in dict.fromkeys(c.task for c in mine):
                cells = [c for c in mine if c.task == task]
                seeds = [c.seed for c in cells]
                bar.set_postfix_str(f"{spec.name} | {task} | seeds {', '.join(map(str, seeds))}")
                started = time.monotonic()
                by_seed = evaluate_seeds(lm, config, task, seeds, tm, protocol=spec.protocol)
                summary.passes.append((spec.name, task, seeds))
                duration = round(time.monotonic() - started, 3)
                for cell in cells:
                    samples = write_samples(cells_dir, cell.key, by_seed[cell.seed].get("samples") or {})
                    payload = {
                        "material": cell.material,
                        "model": spec.name,
                        "model_args": scrub(model_args),  # the cache folder, not the user's home
                        "task": cell.task,
                        "seed": cell.seed,
                        "date": utc_now(),
                        "pass": {"seeds": seeds, "duration_s": duration},  # the lm-eval pass this cell came from
                        "results": slim_results(by_seed[cell.seed]),
                        "samples": samples,  # lm-eval's logged samples: cells/<key>.samples/<task>.jsonl
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


def _load(model_class: Any, config: RunConfig, spec: ModelSpec, pretrained: dict[str, str]) -> tuple[Any, dict]:
    model_args = spec.model_args(pretrained[spec.name])
    try:
        lm = model_class.create_from_arg_obj(model_args, {"batch_size": config.batch_size, "device": config.device})
    except Exception as e:  # keep the cause chained, but say which entry failed
        raise RuntimeError(f"loading model {spec.name!r} with {model_args} failed: {e}") from e
    return lm, model_args


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
def _exclusive(out: Path, shard: Shard | None = None) -> Iterator[None]:
    """One runner per output folder and shard: two would evaluate the same cells and race on the board."""
    name = ".lock" if shard is None else f".lock.shard-{shard.index}-of-{shard.count}"
    with open(out / name, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            what = "leaderboard run" if shard is None else f"run of shard {shard}"
            raise LeaderboardError(f"another {what} is using {out}") from None
        yield
