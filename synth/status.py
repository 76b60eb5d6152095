"""`finemed synth status`: per stage ok / rejects / reasons, tokens and records/s, from the DONE files
of sealed stages and the shards of a stage still running."""

from __future__ import annotations

import json
from pathlib import Path

from .pipeline import STAGES, _count_lines, stage_dir
from .records import read_folder


def stage_status(out: Path) -> list[dict]:
    rows = []
    for name in STAGES:
        folder = stage_dir(out, name)
        done = folder / "DONE"
        if done.is_file():
            summary = json.loads(done.read_text(encoding="utf-8"))
            total = summary["ok"] + summary["rejects"]
            seconds = summary.get("seconds") or 0
            rows.append(
                {"stage": name, "state": "done", **summary, "records_per_s": round(total / seconds, 2) if seconds else None}
            )
        elif folder.exists():
            expected = len(read_folder(folder / "input", "part-*.jsonl")) if (folder / "input").is_dir() else None
            rows.append({"stage": name, "state": "running", "written": _count_lines(folder / "shards"), "expected": expected})
        else:
            rows.append({"stage": name, "state": "pending"})
    return rows


def format_status(rows: list[dict]) -> str:
    lines = [f"{'stage':12} {'state':8} {'ok':>6} {'rejects':>8} {'tokens in/out':>16} {'rec/s':>7}  reject reasons"]
    for row in rows:
        if row["state"] == "done":
            tokens = f"{row['tokens']['prompt']}/{row['tokens']['completion']}"
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(row["reasons"].items())) or "-"
            rate = "" if row["records_per_s"] is None else f"{row['records_per_s']:.2f}"
            lines.append(f"{row['stage']:12} {'done':8} {row['ok']:>6} {row['rejects']:>8} {tokens:>16} {rate:>7}  {reasons}")
        elif row["state"] == "running":
            lines.append(f"{row['stage']:12} {'running':8} {row['written']:>6} of {row.get('expected')} written")
        else:
            lines.append(f"{row['stage']:12} pending")
    return "\n".join(lines)
