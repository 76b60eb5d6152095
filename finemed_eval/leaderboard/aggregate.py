"""Board entries: measured ones from per-seed cell results, reported ones from the paper. Pure."""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finemed_eval.leaderboard.fingerprint import sha256_text
from finemed_eval.leaderboard.task_tree import leaves, parent

log = logging.getLogger(__name__)

PAPER_PATH = Path(__file__).parent / "paper_reported.json"
# The task's primary metrics; lm-eval keys are "<metric>,<filter>".
PRIMARY_METRICS = ("acc", "acc_norm", "exact_match", "acc_single", "acc_multi")


@dataclass
class MeasuredCell:
    """One finished cell as aggregation sees it: the current display name and its stored results."""

    model: str
    model_args: dict[str, Any]
    seed: int
    date: str
    slim: dict[str, Any]
    task_config_hash: str | None = None
    task: str | None = None  # the configured task (or group) the cell ran


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
    for leaf in leaves(row, slim.get("group_subtasks") or {}):
        c = counts.get(leaf)
        if not isinstance(c, dict) or not isinstance(c.get("effective"), int):
            return None
        total += c["effective"]
    return total


def benchmark_name(row: str, slim: dict[str, Any], benchmarks: dict[str, str]) -> str:
    if row in benchmarks:
        return benchmarks[row]
    alias = (slim.get("results", {}).get(row) or {}).get("alias")
    return alias.strip().lstrip("- ").strip() if isinstance(alias, str) and alias.strip(" -") else row


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
    by_row: dict[tuple[str, str, str], dict[int, tuple[MeasuredCell, float]]] = {}
    for cell in cells:
        for row, metric, value in _fractions(cell):
            by_row.setdefault((cell.model, row, metric), {}).setdefault(cell.seed, (cell, value))

    entries = []
    for (model, row, metric), by_seed in by_row.items():
        items = [by_seed[seed] for seed in sorted(by_seed)]
        mean, std = mean_std([v for _, v in items])
        first = items[0][0]
        hashes = [c.slim.get("task_hashes", {}).get(row) for c, _ in items]
        entries.append(
            {
                "model": model,
                "model_args": first.model_args,
                "task": row,
                # lets a renderer show a group's subtasks as its details instead of averaging them with it
                "parent": parent(row, first.slim.get("group_subtasks") or {}),
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
                "task_version": _scalar(first.slim.get("versions", {}).get(row)),
                "task_hash": _combined_hash(hashes),
                "task_config_hash": first.task_config_hash,
                "date": max(c.date for c, _ in items),
                "lm_eval_version": lm_eval,
                "git_revision": git_rev,
            }
        )
    return entries


def _fractions(cell: MeasuredCell) -> Iterator[tuple[str, str, float]]:
    """(row, metric, value) for each primary metric of the cell; values outside [0, 1] are logged and skipped."""
    for row, metrics in (cell.slim.get("results") or {}).items():
        for key, value in metrics.items():
            metric = metric_name(key)
            if metric is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value) or not 0.0 <= value <= 1.0:
                log.warning(
                    "skipping %s %s %s seed %s: value %r is not a fraction", cell.model, row, metric, cell.seed, value
                )
                continue
            yield row, metric, float(value)


def _scalar(v: Any) -> str | int | float | None:
    return v if isinstance(v, (str, int, float)) and not isinstance(v, bool) else None


def _combined_hash(hashes: list[str | None]) -> str | None:
    if not hashes or any(h is None for h in hashes):
        return None
    return hashes[0] if len(hashes) == 1 else sha256_text("".join(hashes))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the paper's numbers


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
