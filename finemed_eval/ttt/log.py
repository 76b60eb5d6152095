"""The model's own per-document TTT log: records kept by `finemed_ttt`, written as JSONL.

One record per (task, document, request type): the neighbours and their similarity, the adaptation
that served it (trained tokens, fraction of weight elements changed, cache hit, milliseconds, how
many documents shared it) and, for generations, whether the token budget was hit. Written to
`ttt_log=PATH` as records arrive, and beside lm-eval's results when `--output_path` is given
(finemed_eval.plugin hooks lm-eval's EvaluationTracker for that).
"""

from __future__ import annotations

import json
import weakref
from collections import Counter
from pathlib import Path
from typing import Any

_LIVE: weakref.WeakSet[TTTLog] = weakref.WeakSet()


class TTTLog:
    def __init__(self, path: str | None = None) -> None:
        self.records: list[dict[str, Any]] = []
        self.flushed = 0  # records already written beside an lm-eval results file
        self.path = Path(path) if path else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("", encoding="utf-8")  # one log per model instance
        _LIVE.add(self)

    def add(self, records: list[dict[str, Any]]) -> None:
        self.records += records
        if self.path is not None and records:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)

    def token_limit_hits(self) -> dict[str, tuple[int, int]]:
        """Per task: (generations that hit the token budget, generations)."""
        hits: Counter[str] = Counter()
        total: Counter[str] = Counter()
        for record in self.records:
            if "hit_token_limit" in record:
                total[record["task"]] += 1
                hits[record["task"]] += bool(record["hit_token_limit"])
        return {task: (hits[task], total[task]) for task in total}


def write_beside_results(folder: Path, date_id: str, tasks: set[str]) -> list[Path]:
    """The log of each live model that answered these results' tasks, as `finemed_ttt_<date_id>.jsonl`
    in lm-eval's results folder (other models alive in the process keep theirs for their own results)."""
    logs = [log for log in list(_LIVE) if any(r.get("task") in tasks for r in log.records[log.flushed:])]
    written = []
    for n, log in enumerate(logs):
        suffix = "" if len(logs) == 1 else f"_{n}"
        path = folder / f"finemed_ttt_{date_id}{suffix}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        new = log.records[log.flushed:]
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in new), encoding="utf-8")
        log.flushed = len(log.records)
        written.append(path)
    return written
