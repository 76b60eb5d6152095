"""`finemed leaderboard publish DIR --to PATH | hf://datasets/ORG/NAME [--dry-run]`: a finished run
folder as a Hub-ready dataset.

What the destination holds (all built in memory first, checked, then written in one move or pushed
in one commit, so nothing is ever half-written):

  <model>__seed<s>/results_<date>.json          lm-eval's own layout, one folder per (model, seed) run
  <model>__seed<s>/samples_<task>_<date>.jsonl  (what `lm_eval --output_path/--hf_hub_log_args` writes)
  leaderboard.json, latest.json                 our aggregate (mean ± std over seeds, per-seed values, pairs)
  results.jsonl, pairs.jsonl                    the board's entries and paired statistics as rows
  snapshots/<YYYY-MM-DD>/{leaderboard.json,results.jsonl}   dated snapshots (earlier ones are kept)
  history.json, history.html                    each model's score across the snapshots
  leaderboard.html, leaderboard.md, plots/      the static page
  README.md                                     dataset card whose `configs:` make `load_dataset(DEST,
                                                "results" | "pairs" | "samples_<task>")` work

Every text file is checked for local paths (home, caches, data folder, working directory) before
anything is written: a board that would leak one is refused, naming the file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from finemed_eval.leaderboard.board import validate_board
from finemed_eval.leaderboard.cells import CorruptCell, cell_path, read_cell
from finemed_eval.leaderboard.config import LeaderboardError
from finemed_eval.leaderboard.evaluate import GLOBAL_SEEDS, samples_dir
from finemed_eval.leaderboard.fingerprint import canonical_json, machine_roots
from finemed_eval.leaderboard.history import history, history_html

HF_PREFIX = "hf://datasets/"
TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
TEXT_SUFFIXES = (".json", ".jsonl", ".md", ".html", ".yaml")


class PublishError(LeaderboardError):
    """Bad input to publish; printed without a traceback, exit 2."""


@dataclass(frozen=True)
class Operation:
    path: str  # inside the destination
    size: int


# --------------------------------------------------------------------------- entry point


def publish(run_dir: str | Path, to: str, *, dry_run: bool = False, say: Callable[[str], None] = print) -> list[Operation]:
    """Publish the finished run folder `run_dir` to a local folder or `hf://datasets/ORG/NAME`."""
    run_dir = Path(run_dir)
    board = load_board(run_dir)
    snapshot = board["generated_at"][:10]
    if to.startswith(HF_PREFIX):
        repo_id = to[len(HF_PREFIX) :].strip("/")
        if repo_id.count("/") != 1:
            raise PublishError(f"--to {to}: expected hf://datasets/ORG/NAME")
        token = None if dry_run else hub_token()
        existing, names = remote_snapshots(repo_id, token, dry_run=dry_run, say=say)
        # the repository's other files are only listed (for the card's configs), never downloaded
        files = build_files(run_dir, board, existing, existing_files=dict.fromkeys(names, b""))
        operations = _operations(files)
        if dry_run:
            say(f"dry run: would create_repo {repo_id} (dataset, exist_ok) and push one commit of {len(operations)} files:")
            _print_operations(operations, say)
            return operations
        push(repo_id, files, token, f"Leaderboard snapshot {snapshot}")
        say(f"pushed {len(operations)} files to https://huggingface.co/datasets/{repo_id}")
        return operations
    dest = Path(to)
    existing_files = _read_tree(dest) if dest.is_dir() else {}
    existing = {
        p.split("/")[1]: json.loads(data) for p, data in existing_files.items() if re.fullmatch(r"snapshots/[^/]+/leaderboard\.json", p)
    }
    files = build_files(run_dir, board, existing, existing_files=existing_files)
    operations = _operations(files)
    if dry_run:
        say(f"dry run: would write {len(operations)} files to {dest}:")
        _print_operations(operations, say)
        return operations
    write_tree(dest, {**existing_files, **files})
    say(f"published {len(operations)} files to {dest}")
    return operations


# --------------------------------------------------------------------------- inputs


def load_board(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "leaderboard.json"
    if not path.is_file():
        raise PublishError(f"{path}: no leaderboard.json; run `finemed leaderboard run` (or aggregate) first")
    try:
        board = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PublishError(f"{path}: unreadable ({e})") from None
    try:
        validate_board(board)
    except Exception as e:  # jsonschema.ValidationError: name the field
        where = "/".join(str(p) for p in getattr(e, "absolute_path", [])) or "(top level)"
        raise PublishError(f"{path}: does not match the leaderboard schema at {where}: {getattr(e, 'message', e)}") from None
    return board


def hub_token() -> str:
    """The Hub token, from the environment only (never from a config or the login cache)."""
    for name in TOKEN_VARIABLES:
        if os.environ.get(name):
            return os.environ[name]
    raise PublishError(f"publishing to the Hub needs a write token in the environment ({' or '.join(TOKEN_VARIABLES)})")


def read_runs(run_dir: Path, board: dict[str, Any]) -> dict[tuple[str, int], list[tuple[dict[str, Any], dict[str, bytes]]]]:
    """(model, seed) -> [(cell, {task: samples bytes})], every cell and sample file checked against its hash."""
    import hashlib

    cells_dir = run_dir / "cells"
    out: dict[tuple[str, int], list[tuple[dict[str, Any], dict[str, bytes]]]] = {}
    problems: list[str] = []
    for run in board["runs"]:
        where = f"({run['model']}, {run['task']}, seed {run['seed']})"
        path = cell_path(cells_dir, run["cell"])
        if not path.is_file():
            problems.append(f"{path}: missing cell {where}")
            continue
        try:
            cell = read_cell(path, run["cell"])
        except CorruptCell as e:
            problems.append(f"{path}: corrupted cell {where}: {e}")
            continue
        samples: dict[str, bytes] = {}
        for task, meta in (cell.get("samples") or {}).items():
            file = samples_dir(cells_dir, run["cell"]) / f"{task}.jsonl"
            try:
                data = file.read_bytes()
            except OSError:
                problems.append(f"{file}: missing samples of {task} {where}")
                continue
            if hashlib.sha256(data).hexdigest() != meta["sha256"]:
                problems.append(f"{file}: samples of {task} {where} do not match the hash their cell recorded")
                continue
            samples[task] = data
        out.setdefault((run["model"], run["seed"]), []).append((cell, samples))
    if problems:
        raise PublishError(
            f"{run_dir}: {len(problems)} problem(s) with the cells behind leaderboard.json "
            "(rerun `finemed leaderboard run` with the same config to recompute them):\n"
            + "\n".join(f"  - {p}" for p in problems)
        )
    return out


# --------------------------------------------------------------------------- what is written


def build_files(
    run_dir: Path, board: dict[str, Any], existing: dict[str, dict[str, Any]], *, existing_files: dict[str, bytes]
) -> dict[str, bytes]:
    """Every file this publication adds or replaces, by path in the destination."""
    snapshot = board["generated_at"][:10]
    previous = existing.get(snapshot)
    if previous is not None and _comparable(previous) != _comparable(board):
        raise PublishError(
            f"the destination already holds a different board under snapshot {snapshot} "
            f"(generated {previous.get('generated_at')}); publish to another destination, or remove that snapshot"
        )
    board_bytes = _json(board)
    files: dict[str, bytes] = {
        "leaderboard.json": board_bytes,
        "latest.json": board_bytes,
        f"snapshots/{snapshot}/leaderboard.json": board_bytes,
        "results.jsonl": _jsonl(result_rows(board)),
        f"snapshots/{snapshot}/results.jsonl": _jsonl(result_rows(board)),
        "pairs.jsonl": _jsonl(pair_rows(board)),
    }
    for (model, seed), cells in read_runs(run_dir, board).items():
        files.update(lm_eval_run_files(board, model, seed, cells))
    snapshots = {**existing, snapshot: board}
    doc = history(snapshots)
    files["history.json"] = _json(doc)
    files["history.html"] = history_html(doc).encode("utf-8")
    files.update(_page(board))
    files["README.md"] = dataset_card(board, {**existing_files, **files}).encode("utf-8")
    check_portable(files)
    return files


def _comparable(board: dict[str, Any]) -> str:
    """A board's content without when it was written: re-aggregating the same cells is the same board."""
    return canonical_json({k: v for k, v in board.items() if k != "generated_at"})


def run_folder(model: str, seed: int) -> str:
    """lm-eval's per-model folder, one per (model, seed) run: a file-safe name."""
    return re.sub(r"[^\w.-]+", "_", model).strip("_") + f"__seed{seed}"


def date_id(timestamp: str) -> str:
    """Our UTC timestamp as lm-eval names result files: 2026-12-02T17-24-20.000000."""
    when = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).replace(tzinfo=None)
    return when.isoformat(timespec="microseconds").replace(":", "-")


def lm_eval_run_files(
    board: dict[str, Any], model: str, seed: int, cells: list[tuple[dict[str, Any], dict[str, bytes]]]
) -> dict[str, bytes]:
    """results_<date>.json (shaped as lm-eval's EvaluationTracker writes it) and samples_<task>_<date>.jsonl."""
    folder = run_folder(model, seed)
    date = max(c["date"] for c, _ in cells)
    stamp = date_id(date)
    spec = next(m for m in board["config"]["models"] if m["name"] == model)
    merged: dict[str, dict[str, Any]] = {
        k: {} for k in ("results", "groups", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples")
    }
    task_hashes: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for cell, samples in cells:
        slim = cell["results"]
        for key in merged:
            merged[key].update(slim.get(key) or {})
        task_hashes.update(slim.get("task_hashes") or {})
        for task, data in samples.items():
            files[f"{folder}/samples_{task}_{stamp}.jsonl"] = data
    config = board["config"]
    results = {
        **{k: v for k, v in merged.items() if v or k in ("results", "configs", "versions")},
        "config": {
            "model": config.get("lm_eval_model", "finemed_ttt"),
            "model_args": spec["model_args"],
            "batch_size": config["batch_size"],
            "device": config.get("device"),
            "limit": config["limit"],
            "bootstrap_iters": 0,
            "gen_kwargs": None,
            "random_seed": GLOBAL_SEEDS["random"],
            "numpy_seed": GLOBAL_SEEDS["numpy"],
            "torch_seed": GLOBAL_SEEDS["torch"],
            "fewshot_seed": seed,
        },
        "git_hash": board["git_revision"],
        "date": datetime.fromisoformat(date.replace("Z", "+00:00")).timestamp(),
        "task_hashes": task_hashes,
        "model_source": config.get("lm_eval_model", "finemed_ttt"),
        "model_name": spec["model"],
        "model_name_sanitized": folder,
        "system_instruction": None,
        "system_instruction_sha": None,
        "fewshot_as_multiturn": False,
        "chat_template": None,
        "chat_template_sha": None,
        "lm_eval_version": board["lm_eval_version"],
        "finemed_eval": {
            "version": board["finemed_eval_version"],
            "model": model,
            "pin": spec["pin"],
            "protocol": spec.get("protocol", "default"),
            "seed": seed,
            "cells": [c["key"] for c, _ in cells],
        },
    }
    files[f"{folder}/results_{stamp}.json"] = json.dumps(results, indent=2, ensure_ascii=False).encode("utf-8")
    return files


def result_rows(board: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per board entry; nested values with varying keys are JSON strings (one Arrow schema)."""
    return [
        {
            "model": e["model"],
            "status": e["status"],
            "benchmark": e["benchmark"],
            "task": e["task"],
            "parent": e.get("parent"),
            "metric": e["metric"],
            "mean": float(e["mean"]),
            "std": None if e["std"] is None else float(e["std"]),
            "n": e["n"],
            "num_fewshot": e["num_fewshot"],
            "seeds": [s["seed"] for s in e["seeds"]],
            "values": [float(s["value"]) for s in e["seeds"]],
            "model_args": json.dumps(e["model_args"], sort_keys=True),
            "source": e.get("source"),
            "date": e["date"],
            "snapshot": board["generated_at"][:10],
        }
        for e in board["entries"]
    ]


def pair_rows(board: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per pair, task and seed, plus a pooled row (seed null) over documents x seeds."""
    rows = []
    for p in board["pairs"]:
        for c in p["comparisons"]:
            for stats, seed in [*((s, s["seed"]) for s in c["seeds"]), (c["pooled"], None)]:
                rows.append(
                    {
                        "baseline": p["baseline"],
                        "treatment": p["treatment"],
                        "pair_source": p["source"],
                        "differs_in": json.dumps(p["differs_in"], sort_keys=True),
                        "task": c["task"],
                        "benchmark": c["benchmark"],
                        "seed": seed,
                        **{k: stats[k] for k in STAT_FIELDS},
                    }
                )
    return [{**r, **{k: float(r[k]) for k in FLOAT_FIELDS if r[k] is not None}} for r in rows]


STAT_FIELDS = (
    "n", "baseline_acc", "treatment_acc", "acc_diff", "ci_low", "ci_high",
    "wrong_to_right", "right_to_wrong", "mcnemar_p", "gold_ll_change",
)  # fmt: skip
FLOAT_FIELDS = ("baseline_acc", "treatment_acc", "acc_diff", "ci_low", "ci_high", "mcnemar_p", "gold_ll_change")


def _page(board: dict[str, Any]) -> dict[str, bytes]:
    """The static page (leaderboard.html/.md, plots/) as the renderer writes it, read back as files."""
    from finemed_eval.leaderboard.render import render

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "leaderboard.json").write_bytes(_json(board))
        render(Path(tmp) / "leaderboard.json", Path(tmp) / "page")
        return _read_tree(Path(tmp) / "page")


# --------------------------------------------------------------------------- the dataset card


def card_configs(files: dict[str, bytes]) -> list[dict[str, Any]]:
    """`configs:` entries: results (split latest + one per snapshot), pairs, samples_<task> (one split per
    (model, seed) run), and lm-eval's own `<run>__results` (split per run date + latest)."""
    snapshots = sorted({p.split("/")[1] for p in files if re.fullmatch(r"snapshots/[^/]+/results\.jsonl", p)})
    configs: list[dict[str, Any]] = [
        {
            "config_name": "results",
            "data_files": [{"split": "latest", "path": "results.jsonl"}]
            + [{"split": "s" + re.sub(r"\W", "_", s), "path": f"snapshots/{s}/results.jsonl"} for s in snapshots],
            "default": True,
        },
        {"config_name": "pairs", "data_files": [{"split": "latest", "path": "pairs.jsonl"}]},
    ]
    samples: dict[str, dict[str, str]] = {}  # task -> run folder -> newest file
    results: dict[str, list[str]] = {}  # run folder -> result files
    for path in sorted(files):
        parts = path.split("/")
        if len(parts) != 2:
            continue
        folder, name = parts
        if name.startswith("samples_") and name.endswith(".jsonl"):
            task = name[len("samples_") : name.rfind("_")]
            samples.setdefault(task, {})[folder] = path  # sorted: the newest date wins
        elif name.startswith("results_") and name.endswith(".json"):
            results.setdefault(folder, []).append(path)
    for task, runs in sorted(samples.items()):
        configs.append(
            {
                "config_name": f"samples_{task}",
                "data_files": [{"split": re.sub(r"\W", "_", folder), "path": path} for folder, path in sorted(runs.items())],
            }
        )
    for folder, paths in sorted(results.items()):
        splits = [{"split": re.sub(r"\W", "_", p[p.rfind("_") + 1 : -len(".json")]), "path": p} for p in paths]
        configs.append({"config_name": f"{folder}__results", "data_files": [*splits, {"split": "latest", "path": paths[-1]}]})
    return configs


def dataset_card(board: dict[str, Any], files: dict[str, bytes]) -> str:
    from huggingface_hub import DatasetCard, DatasetCardData

    configs = card_configs(files)
    data = DatasetCardData(
        pretty_name="finemed-eval leaderboard",
        tags=["leaderboard", "evaluation", "medical", "lm-eval-harness"],
        configs=configs,
    )
    models = ", ".join(f"`{m['name']}` ({m['model']})" for m in board["config"]["models"])
    table = files.get("leaderboard.md", b"").decode("utf-8")
    sample_configs = [c["config_name"] for c in configs if c["config_name"].startswith("samples_")]
    body = f"""
# finemed-eval leaderboard

Published by `finemed leaderboard publish` (finemed-eval {board['finemed_eval_version']}, lm-eval
{board['lm_eval_version']}, git {board['git_revision']}), snapshot {board['generated_at'][:10]}.
Models: {models}. Protocol: {board['config']['num_fewshot']}-shot, seeds {', '.join(map(str, board['config']['seeds']))}
(mean ± sample std over seeds), limit {board['config']['limit']}.

```python
from datasets import load_dataset
results = load_dataset(REPO, "results", split="latest")   # one row per (model, benchmark, metric)
pairs = load_dataset(REPO, "pairs", split="latest")       # paired statistics per pair, task, seed (+ pooled)
{f'samples = load_dataset(REPO, "{sample_configs[0]}")' if sample_configs else ''}  # lm-eval's logged samples, one split per (model, seed) run
```

Files: `leaderboard.json` / `latest.json` (the board, schema {board['schema_version']}),
`snapshots/<date>/` (every published snapshot), `history.json` / `history.html` (scores across
snapshots), `leaderboard.html` (the static page), and one lm-eval folder per (model, seed) run
with `results_<date>.json` and `samples_<task>_<date>.jsonl`, as `lm_eval --output_path` writes them.

{table}
"""
    card = DatasetCard(f"---\n{data.to_yaml()}\n---\n{body}")
    return str(card)


# --------------------------------------------------------------------------- checks and writes


def check_portable(files: dict[str, bytes]) -> None:
    """Refuse to publish text that names a local folder (home, caches, data folder, working directory)."""
    roots = [r for r in machine_roots() if len(r) > 1]
    leaks: list[str] = []
    for path, data in sorted(files.items()):
        if not path.endswith(TEXT_SUFFIXES):
            continue
        text = data.decode("utf-8", errors="replace")
        found = [root for root in roots if re.search(re.escape(root) + r"(?=[/\"'\s,;)\]]|$)", text)]
        if found:
            leaks.append(f"{path} ({found[0]})")
    if leaks:
        raise PublishError(
            f"would publish local paths: {', '.join(leaks)}; regenerate the board with this finemed-eval "
            "(boards name models by zoo name or hub id, paths relative to the config)"
        )


def write_tree(dest: Path, files: dict[str, bytes]) -> None:
    """Write every file into a temporary sibling folder, then swap it in: readers see old or new, never half."""
    dest = dest.resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.publish-", dir=dest.parent))
    old = dest.parent / f".{dest.name}.old-{staging.name.rsplit('-', 1)[-1]}"
    try:
        for path, data in files.items():
            target = staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        mode = 0o777 & ~_umask()
        for p in [staging, *staging.rglob("*")]:
            p.chmod(mode if p.is_dir() else mode & 0o666)
        if dest.exists():
            dest.rename(old)
        staging.rename(dest)
    except BaseException:
        if old.exists() and not dest.exists():
            old.rename(dest)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _read_tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- the Hub


def remote_snapshots(
    repo_id: str, token: str | None, *, dry_run: bool, say: Callable[[str], None]
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The snapshots the Hub repository already holds (date -> board) and its file names; none if it
    does not exist yet."""
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.utils import RepositoryNotFoundError

    try:
        names = HfApi(token=token).list_repo_files(repo_id, repo_type="dataset")
    except RepositoryNotFoundError:
        return {}, []
    except Exception as e:  # offline, or no access
        if dry_run:
            say(f"note: cannot read {repo_id} ({type(e).__name__}); the history below ignores its snapshots")
            return {}, []
        raise PublishError(f"cannot read hf://datasets/{repo_id} to keep its snapshots: {e}") from None
    out = {}
    for name in names:
        if re.fullmatch(r"snapshots/[^/]+/leaderboard\.json", name):
            path = hf_hub_download(repo_id, name, repo_type="dataset", token=token)
            out[name.split("/")[1]] = json.loads(Path(path).read_text(encoding="utf-8"))
    return out, names


def hub_operations(files: dict[str, bytes]) -> list[Any]:
    from huggingface_hub import CommitOperationAdd

    return [CommitOperationAdd(path_in_repo=path, path_or_fileobj=data) for path, data in sorted(files.items())]


def push(repo_id: str, files: dict[str, bytes], token: str | None, message: str) -> None:
    """create_repo + ONE create_commit: the Hub sees the whole publication or none of it. Not run offline."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", exist_ok=True)
    api.create_commit(repo_id, operations=hub_operations(files), commit_message=message, repo_type="dataset")


def _operations(files: dict[str, bytes]) -> list[Operation]:
    return [Operation(path, len(data)) for path, data in sorted(files.items())]


def _print_operations(operations: list[Operation], say: Callable[[str], None]) -> None:
    for op in operations:
        say(f"  add {op.path} ({op.size:,} bytes)")
    say(f"  total {sum(op.size for op in operations):,} bytes; nothing was written")


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
