"""Leaderboard runner: evaluate every (model, task, seed) cell with lm-eval, resumably, and aggregate.

Flow: validate everything (config types, model and task names, output folder) -> for each model,
load it once and evaluate its pending cells -> each finished cell is written atomically to
DIR/cells/<key>.json -> aggregate all cells (mean and sample std over seeds) -> add the paper's
reported rows -> validate against schema.json -> write DIR/leaderboard.json and the Open
Medical-LLM files -> render.

A cell's key hashes everything that determines its result, so a rerun skips finished cells and a
changed config, task or library version recomputes only what it changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from finemed_eval.leaderboard.config import LeaderboardError, ModelSpec, RunConfig, check_names, check_output_dir
from finemed_eval.zoo import resolve_pretrained

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SCHEMA_PATH = HERE / "schema.json"
PAPER_PATH = HERE / "paper_reported.json"
SCHEMA_VERSION = "1.0"
CELL_FORMAT = 1  # bump when the cell payload changes shape; part of every key
# The task's primary metrics; lm-eval keys are "<metric>,<filter>".
PRIMARY_METRICS = ("acc", "acc_norm", "exact_match", "acc_single", "acc_multi")
# Environment that changes what a task reads without changing its YAML.
KEY_ENV = ("FINEMED_DATA_DIR",)


# --------------------------------------------------------------------------- provenance


def lm_eval_version() -> str:
    return importlib.metadata.version("lm_eval")


def finemed_eval_version() -> str:
    try:
        return importlib.metadata.version("finemed-eval")
    except importlib.metadata.PackageNotFoundError:  # running from a bare checkout
        import finemed_eval

        return str(getattr(finemed_eval, "__version__", "0+unknown"))


def git_revision() -> str:
    """Commit of the finemed-eval checkout (with -dirty), else 'finemed-eval <version>' for an install."""
    root = Path(__file__).resolve().parents[2]
    try:
        top = _git(root, "rev-parse", "--show-toplevel")
        if Path(top).resolve() == root:  # not some unrelated repository around site-packages
            rev = _git(root, "rev-parse", "HEAD")
            dirty = _git(root, "status", "--porcelain")  # untracked, unignored files count: they may be code
            return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        pass
    return f"finemed-eval {finemed_eval_version()}"


def _git(root: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=10)
    return out.stdout.strip()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    model: ModelSpec
    task: str
    seed: int
    material: dict[str, Any]  # everything that determines the result
    key: str


class CorruptCell(Exception):
    """A cell file that cannot be trusted (truncated, edited, or for another key)."""


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cell_key(material: dict[str, Any]) -> str:
    return sha256_text(canonical_json(material))


def cell_material(
    config: RunConfig,
    spec: ModelSpec,
    canonical_model: str,
    task: str,
    task_config_hash: str,
    seed: int,
    *,
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
        "task": task,
        "task_config_hash": task_config_hash,
        "seed": seed,
        "num_fewshot": config.num_fewshot,
        "limit": config.limit,
        "lm_eval_version": lm_eval,
        "finemed_eval_version": finemed_eval,
        "finemed_eval_code": finemed_code,
        "env": {k: os.environ.get(k) for k in KEY_ENV},
    }


def content_hash(payload: dict[str, Any]) -> str:
    return "sha256:" + sha256_text(canonical_json({k: v for k, v in payload.items() if k != "content_hash"}))


def cell_path(cells_dir: Path, key: str) -> Path:
    return cells_dir / f"{key}.json"


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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=indent, ensure_ascii=False, allow_nan=False, default=_jsonable)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


_UMASK = os.umask(0)
os.umask(_UMASK)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    return str(obj)


# --------------------------------------------------------------------------- tasks


def task_config_hash(task_manager: Any, name: str) -> str:
    """Hash a task's (or group's / tag's) parsed YAML and the Python helpers it uses, recursively.

    `!function` references are absolute paths once parsed; they are replaced by file name + function
    and the file's bytes are hashed instead, so the same task installed elsewhere hashes the same.
    """
    index = task_manager.task_index
    h = hashlib.sha256()
    seen: set[str] = set()

    def visit(n: str) -> None:
        if n in seen:
            return
        seen.add(n)
        entry = index.get(n)
        if entry is None:
            h.update(f"<unindexed {n}>".encode())
            return
        cfg = entry.cfg or {}
        folder = Path(entry.yaml_path).parent if entry.yaml_path is not None else None
        files: set[Path] = set(folder.glob("*.py")) if folder is not None else set()
        normalised = _normalise_paths(json.loads(json.dumps(cfg, default=str)), folder, files)
        h.update(f"{n}:{entry.kind.name}:{canonical_json(normalised)}".encode())
        for py in sorted(files):
            h.update(py.name.encode() + b"\0" + py.read_bytes())
        if entry.kind.name == "GROUP":
            for child in _children(cfg):
                visit(child)
        elif entry.kind.name == "TAG":
            for member in sorted(k for k, e in index.items() if n in (e.tags or ())):
                visit(member)

    visit(name)
    return "sha256:" + h.hexdigest()


def _normalise_paths(value: Any, folder: Path | None, files: set[Path]) -> Any:
    if isinstance(value, dict):
        return {k: _normalise_paths(v, folder, files) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise_paths(v, folder, files) for v in value]
    if isinstance(value, str) and value.startswith(os.sep) and "." in Path(value).name:
        module, func = value.rsplit(".", 1)
        py = Path(module + ".py")
        if py.is_file():  # a resolved `!function module.func`
            files.add(py)
            return f"<function {py.name}:{func}>"
    if isinstance(value, str) and folder is not None:
        return value.replace(str(folder), "<taskdir>")
    return value


def _children(cfg: dict[str, Any]) -> list[str]:
    children = cfg.get("task") or []
    names = []
    for c in children if isinstance(children, list) else [children]:
        name = c if isinstance(c, str) else c.get("task") if isinstance(c, dict) else None
        if isinstance(name, str):
            names.append(name)
    return names


def code_hash() -> str:
    """Hash of the finemed-eval code a cell runs (model, tasks, data, prompts), so edits invalidate cells.

    The leaderboard, CLI, synthesis and training code cannot change a measured number and is left out.
    """
    import finemed_eval

    root = Path(finemed_eval.__file__).parent
    skip = {"leaderboard", "synth", "training"}
    h = hashlib.sha256()
    for py in sorted(root.rglob("*.py")):
        rel = py.relative_to(root)
        if rel.parts[0] in skip or rel.as_posix() in ("cli.py", "zoo.py"):
            continue
        h.update(rel.as_posix().encode() + b"\0" + py.read_bytes())
    return "sha256:" + h.hexdigest()


def expand_task_names(task_manager: Any, names: tuple[str, ...] | list[str]) -> set[str]:
    """The names themselves plus every subtask of the groups and tags among them."""
    index = task_manager.task_index
    out: set[str] = set()
    stack = list(names)
    while stack:
        n = stack.pop()
        if n in out:
            continue
        out.add(n)
        entry = index.get(n)
        if entry is None:
            continue
        if entry.kind.name == "GROUP":
            stack.extend(_children(entry.cfg or {}))
        elif entry.kind.name == "TAG":
            stack.extend(k for k, e in index.items() if n in (e.tags or ()))
    return out


def slim_results(results: dict[str, Any]) -> dict[str, Any]:
    """Keep what aggregation and provenance need; drop samples and non-JSON task configs."""
    samples = results.get("samples") or {}
    leaf_hashes = {
        task: sha256_text("".join(s["doc_hash"] + s["prompt_hash"] + s["target_hash"] for s in rows))
        for task, rows in samples.items()
    }
    groups = results.get("group_subtasks") or {}
    task_hashes = dict(leaf_hashes)
    for group in groups:  # a group's hash covers its leaves, like lm-eval's per-task hash covers its samples
        leaves = sorted(_leaves(group, groups))
        if leaves and all(t in leaf_hashes for t in leaves):
            task_hashes[group] = sha256_text("".join(leaf_hashes[t] for t in leaves))
    return {
        "results": results.get("results", {}),
        "versions": results.get("versions", {}),
        "n-shot": results.get("n-shot", {}),
        "n-samples": results.get("n-samples", {}),
        "group_subtasks": groups,
        "task_hashes": task_hashes,
    }


def _leaves(name: str, groups: dict[str, list[str]]) -> set[str]:
    if name not in groups:
        return {name}
    out: set[str] = set()
    for child in groups[name]:
        out |= _leaves(child, groups)
    return out


# --------------------------------------------------------------------------- aggregation (pure)


def metric_name(key: str) -> str | None:
    """'acc,none' -> 'acc'; 'exact_match,strict-match' -> 'exact_match,strict-match'; others -> None."""
    name, _, filt = key.partition(",")
    if name.endswith("_stderr") or name not in PRIMARY_METRICS:
        return None
    return name if filt in ("", "none") else f"{name},{filt}"


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1); std is None for a single value."""
    if not values:
        raise ValueError("no values")
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def row_n(row: str, slim: dict[str, Any]) -> int | None:
    """Documents per seed: lm-eval's effective sample count, summed over a group's leaves."""
    counts = slim.get("n-samples") or {}
    total = 0
    for leaf in _leaves(row, slim.get("group_subtasks") or {}):
        c = counts.get(leaf)
        if not isinstance(c, dict) or not isinstance(c.get("effective"), int):
            return None
        total += c["effective"]
    return total


@dataclass
class MeasuredCell:
    """One finished cell as aggregation sees it: the current display name and its stored results."""

    model: str
    model_args: dict[str, Any]
    seed: int
    date: str
    slim: dict[str, Any]
    task_config_hash: str | None = None


def aggregate(
    cells: list[MeasuredCell],
    *,
    benchmarks: dict[str, str],
    num_fewshot: int,
    limit: int | float | None,
    lm_eval: str,
    git_rev: str,
) -> list[dict[str, Any]]:
    """Group per (model, task row, metric) over seeds into measured entries."""
    # (model, row, metric) -> seed -> value. A row can come from two cells of one seed (a group and
    # one of its subtasks both configured); both ran with the same seed, so the first one is kept.
    groups: dict[tuple[str, str, str], dict[int, tuple[MeasuredCell, float]]] = {}
    for cell in cells:
        for row, metrics in (cell.slim.get("results") or {}).items():
            for key, value in metrics.items():
                metric = metric_name(key)
                if metric is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                if not math.isfinite(value) or not 0.0 <= value <= 1.0:
                    log.warning(
                        "skipping %s %s %s seed %s: value %r is not a fraction",
                        cell.model,
                        row,
                        metric,
                        cell.seed,
                        value,
                    )
                    continue
                groups.setdefault((cell.model, row, metric), {}).setdefault(cell.seed, (cell, float(value)))

    entries = []
    for (model, row, metric), by_seed in groups.items():
        items = [by_seed[seed] for seed in sorted(by_seed)]
        values = [v for _, v in items]
        mean, std = mean_std(values)
        first = items[0][0]
        hashes = [c.slim.get("task_hashes", {}).get(row) for c, _ in items]
        entries.append(
            {
                "model": model,
                "model_args": first.model_args,
                "task": row,
                "parent": _parent(row, first.slim.get("group_subtasks") or {}),
                "benchmark": benchmark_name(row, first.slim, benchmarks),
                "metric": metric,
                "status": "measured",
                "seeds": [
                    {"seed": c.seed, "value": v, "task_hash": h} for (c, v), h in zip(items, hashes, strict=True)
                ],
                "mean": mean,
                "std": std,
                "n": row_n(row, first.slim),
                "num_fewshot": num_fewshot,
                "limit": limit,
                "task_version": _version(first.slim.get("versions", {}).get(row)),
                "task_hash": _combined_hash(hashes),
                "task_config_hash": first.task_config_hash,
                "date": max(c.date for c, _ in items),
                "lm_eval_version": lm_eval,
                "git_revision": git_rev,
            }
        )
    return entries


def benchmark_name(row: str, slim: dict[str, Any], benchmarks: dict[str, str]) -> str:
    if row in benchmarks:
        return benchmarks[row]
    alias = (slim.get("results", {}).get(row) or {}).get("alias")
    return alias.strip().lstrip("- ").strip() if isinstance(alias, str) and alias.strip(" -") else row


def _parent(row: str, groups: dict[str, list[str]]) -> str | None:
    # Lets a renderer avoid averaging a group together with its own subtasks.
    return next((g for g, children in groups.items() if row in children), None)


def _version(v: Any) -> str | int | float | None:
    return v if isinstance(v, (str, int, float)) and not isinstance(v, bool) else None


def _combined_hash(hashes: list[str | None]) -> str | None:
    if not hashes or any(h is None for h in hashes):
        return None
    return hashes[0] if len(hashes) == 1 else sha256_text("".join(hashes))  # type: ignore[arg-type]


def load_paper() -> dict[str, Any]:
    return json.loads(PAPER_PATH.read_text(encoding="utf-8"))


def reported_entries(paper: dict[str, Any], tasks: set[str] | None) -> list[dict[str, Any]]:
    """The paper's numbers as status='reported' entries; tasks=None means every task."""
    entries = []
    for table in paper["tables"]:
        for row in table["rows"]:
            for task, value in row["values"].items():
                if tasks is not None and task not in tasks:
                    continue
                entries.append(
                    {
                        "model": row["model"],
                        "model_args": {},
                        "task": task,
                        "benchmark": paper["benchmarks"].get(task, task),
                        "metric": "acc",
                        "status": "reported",
                        "seeds": [],
                        "mean": value,
                        "std": None,
                        "n": None,
                        "num_fewshot": table.get("num_fewshot"),
                        "limit": None,
                        "task_version": None,
                        "task_hash": None,
                        "date": None,
                        "lm_eval_version": None,
                        "git_revision": None,
                        "source": table["source"],
                    }
                )
    return entries


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


def slugify(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "model"
    slug, i = base, 2
    while slug in taken:
        slug, i = f"{base}-{i}", i + 1
    taken.add(slug)
    return slug


def validate_board(board: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError if the board does not match schema.json."""
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    error = jsonschema.exceptions.best_match(validator.iter_errors(board))
    if error is not None:
        raise error


# --------------------------------------------------------------------------- the run


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
        _import_plugin()
        tm = task_manager if task_manager is not None else _task_manager(config)
        canonical = check_names(config, tm.all_tasks)
        lm_cls = _lm_class(config)
        versions = {"lm_eval": lm_eval_version(), "finemed_eval": finemed_eval_version()}
        code = code_hash()
        tch = {t: task_config_hash(tm, t) for t in config.tasks}
        plan = [
            Cell(spec, task, seed, m, cell_key(m))
            for spec in config.models
            for task in config.tasks
            for seed in config.seeds
            for m in [
                cell_material(config, spec, canonical[spec.name], task, tch[task], seed, **versions, finemed_code=code)
            ]
        ]
        pretrained = _resolve_all(config)
        summary = RunSummary(out, out / "leaderboard.json")
        done = _load_done(plan, cells_dir, summary)
        _evaluate_pending(config, plan, done, cells_dir, tm, lm_cls, pretrained, summary, after_cell, progress)

        git_rev = git_revision()
        measured = [
            MeasuredCell(
                c.model.name,
                {"pretrained": pretrained[c.model.name], **c.model.args},
                c.seed,
                done[c.key]["date"],
                done[c.key]["results"],
                tch[c.task],
            )
            for c in plan
        ]
        board = build_board(config, canonical, pretrained, measured, tm, git_rev, versions)
        try:
            validate_board(board)
        except Exception as e:  # a bug here, not bad input: keep cells, refuse to write a bad board
            raise RuntimeError(f"internal error: the leaderboard does not match schema.json: {e}") from e
        _write_open_medical_llm(out, board["open_medical_llm"])
        write_json_atomic(summary.leaderboard, board, indent=2)
    if render_outputs:
        summary.rendered = _render(summary.leaderboard)
    return summary


def build_board(
    config: RunConfig,
    canonical: dict[str, str],
    pretrained: dict[str, str],
    measured: list[MeasuredCell],
    task_manager: Any,
    git_rev: str,
    versions: dict[str, str],
) -> dict[str, Any]:
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
        "generated_at": _now(),
        "git_revision": git_rev,
        "lm_eval_version": versions["lm_eval"],
        "finemed_eval_version": versions["finemed_eval"],
        "config": resolved_config(config, canonical, pretrained),
        "entries": entries,
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
                "model_args": {"pretrained": pretrained[m.name], **m.args},
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


def _load_done(plan: list[Cell], cells_dir: Path, summary: RunSummary) -> dict[str, dict[str, Any]]:
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
    lm_cls: Any,
    pretrained: dict[str, str],
    summary: RunSummary,
    after_cell: Callable[[Cell], None] | None,
    progress: bool,
) -> None:
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
            model_args = {"pretrained": pretrained[spec.name], **spec.args}
            try:
                lm = lm_cls.create_from_arg_obj(model_args, {"batch_size": config.batch_size, "device": config.device})
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
                    "date": _now(),
                    "duration_s": round(time.monotonic() - started, 3),
                    "results": slim_results(results),
                }
                write_cell(cells_dir, cell.key, payload)
                done[cell.key] = read_cell(cell_path(cells_dir, cell.key), cell.key)
                summary.computed.append(cell.key)
                bar.update(1)
                if after_cell is not None:
                    after_cell(cell)
            del lm  # free the weights before the next model loads
            gc.collect()
    finally:
        bar.close()


def evaluate_cell(lm: Any, config: RunConfig, cell: Cell, task_manager: Any) -> dict[str, Any]:
    """One lm-eval run: one task (or group), one seed for every RNG including few-shot sampling."""
    from lm_eval import evaluator

    results = evaluator.simple_evaluate(
        model=lm,
        tasks=[cell.task],
        num_fewshot=config.num_fewshot,
        batch_size=config.batch_size,
        limit=config.limit,
        task_manager=task_manager,
        apply_chat_template=config.apply_chat_template,
        log_samples=True,  # only to compute lm-eval's task hash; samples are not stored
        bootstrap_iters=0,  # per-seed stderr is not reported; the spread over seeds is
        random_seed=cell.seed,
        numpy_random_seed=cell.seed,
        torch_random_seed=cell.seed,
        fewshot_random_seed=cell.seed,
    )
    if results is None:
        raise RuntimeError("lm-eval returned no results (non-zero rank?)")
    return results


def _resolve_all(config: RunConfig) -> dict[str, str]:
    out = {}
    for i, spec in enumerate(config.models):
        try:
            out[spec.name] = resolve_pretrained(spec.model)
        except (RuntimeError, OSError) as e:  # e.g. the embedded model's wheel is missing
            raise LeaderboardError(
                f"{config.source}: field 'models[{i}].model': cannot resolve {spec.model!r}: {e}"
            ) from None
    return out


def _task_manager(config: RunConfig) -> Any:
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(config.include_path) or None)


def _lm_class(config: RunConfig) -> Any:
    from lm_eval.api.registry import get_model

    try:
        return get_model(config.lm_eval_model)
    except (ValueError, KeyError) as e:
        hint = (
            " (install finemed-eval so its lm-eval plugin registers it)"
            if config.lm_eval_model == "finemed_ttt"
            else ""
        )
        raise LeaderboardError(
            f"{config.source}: field 'lm_eval_model': {config.lm_eval_model!r} is not an lm-eval model{hint}: {e}"
        ) from None


def _import_plugin() -> None:
    # The .pth autoload normally did this already; both calls are idempotent, and they make the run
    # work with FINEMED_EVAL_NO_AUTOLOAD=1 or a bare checkout on sys.path too.
    if importlib.util.find_spec("finemed_eval.plugin") is None:
        return
    plugin = importlib.import_module("finemed_eval.plugin")
    for hook in ("register_model", "add_task_folder"):
        if hasattr(plugin, hook):
            getattr(plugin, hook)()


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One runner per output folder: two would evaluate the same cells and race on the board."""
    with open(out / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LeaderboardError(f"another leaderboard run is using {out}") from None
        for stale in (out / "cells").glob(".*.tmp"):  # left by a killed run; safe to drop under the lock
            stale.unlink(missing_ok=True)
        yield


def _write_open_medical_llm(out: Path, objs: list[dict[str, Any]]) -> None:
    folder = out / "open_medical_llm"
    folder.mkdir(exist_ok=True)
    taken: set[str] = set()
    for obj in objs:
        write_json_atomic(folder / f"{slugify(obj['config']['model_name'], taken)}.json", obj, indent=2)


def _render(board_path: Path) -> dict[str, Path]:
    if importlib.util.find_spec("finemed_eval.leaderboard.render") is None:
        return {}
    from finemed_eval.leaderboard.render import render

    return render(board_path)
