"""`finemed synth status`: whether a run is working on the folder (its run lock), and per stage ok /
rejects / reasons, tokens and the record rate, from the DONE files of sealed stages and the shards of a
stage still (or last) running."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .pipeline import STAGES, _count_lines, holder_alive, read_lock, stage_dir
from .records import read_folder


def run_state(out: Path) -> dict:
    """{"state": running | stopped | finished | not running, "holder": the lock's pid/host/started}.
    A lock whose pid is gone is a killed run (a run that ends removes its lock)."""
    holder = read_lock(out)
    if holder:
        alive = holder_alive(holder)
        if alive is None:
            return {"state": f"running on {holder.get('host')} (not checkable from here)", "holder": holder}
        return {"state": "running" if alive else "stopped (killed?)", "holder": holder}
    finished = all((stage_dir(out, name) / "DONE").is_file() for name in STAGES)
    return {"state": "finished" if finished else "not running", "holder": None}


def _rate(records: int, seconds: float | None) -> float | None:
    return float(f"{records / seconds:.4g}") if seconds and records > 0 else None


def stage_status(out: Path, running: bool = False) -> list[dict]:
    """One row per stage. An unsealed stage is "running" while a live run holds the lock, else
    "stopped"; its rate is the records written over the time since its input was written (to now
    while running, to its last write once stopped)."""
    rows = []
    for name in STAGES:
        folder = stage_dir(out, name)
        done = folder / "DONE"
        if done.is_file():
            summary = json.loads(done.read_text(encoding="utf-8"))
            timed = summary.get("timed_records", summary["ok"] + summary["rejects"])  # see pipeline._with_time
            rows.append({"stage": name, "state": "done", **summary, "records_per_s": _rate(timed, summary.get("seconds"))})
        elif folder.exists():
            inputs = folder / "input"
            expected = len(read_folder(inputs, "part-*.jsonl")) if inputs.is_dir() else None
            written = _count_lines(folder / "shards")
            shards = [p.stat().st_mtime for p in (folder / "shards").glob("*.jsonl")]
            started = (inputs / "DONE").stat().st_mtime if (inputs / "DONE").is_file() else None
            until = time.time() if running else max(shards, default=started)
            seconds = (until - started) if started is not None and until is not None else None
            rows.append({
                "stage": name, "state": "running" if running else "stopped", "written": written, "expected": expected,
                "seconds": round(seconds, 3) if seconds is not None else None, "records_per_s": _rate(written, seconds),
            })
        else:
            rows.append({"stage": name, "state": "pending"})
    return rows


def format_rate(per_s: float | None) -> str:
    """Records per second, minute or hour, whichever shows the rate with digits (a slow model stage
    makes a few records a minute: "0.00 rec/s" said nothing)."""
    if per_s is None:
        return "-"
    for unit, factor in (("s", 1), ("min", 60), ("h", 3600)):
        if per_s * factor >= 1 or unit == "h":
            value = per_s * factor
            return f"{value:.3g} rec/{unit}" if value < 1000 else f"{value:.0f} rec/{unit}"
    raise AssertionError("unreachable")


def format_run(run: dict) -> str:
    holder = run["holder"]
    if not holder:
        return f"run: {run['state']}"
    return f"run: {run['state']} (pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')})"


def format_status(rows: list[dict], run: dict | None = None) -> str:
    lines = [format_run(run)] if run else []
    lines.append(f"{'stage':12} {'state':8} {'ok':>6} {'rejects':>8} {'tokens in/out':>16} {'rate':>13}  reject reasons")
    for row in rows:
        if row["state"] == "done":
            tokens = f"{row['tokens']['prompt']}/{row['tokens']['completion']}"
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(row["reasons"].items())) or "-"
            rate = format_rate(row["records_per_s"])
            lines.append(f"{row['stage']:12} {'done':8} {row['ok']:>6} {row['rejects']:>8} {tokens:>16} {rate:>13}  {reasons}")
        elif row["state"] in ("running", "stopped"):
            lines.append(
                f"{row['stage']:12} {row['state']:8} {row['written']:>6} of {row.get('expected')} written, "
                f"{format_rate(row['records_per_s'])}"
            )
        else:
            lines.append(f"{row['stage']:12} pending")
    return "\n".join(lines)
