"""A sweep grid in one leaderboard run vs one run per grid point; SIFT selection vs nn per query.

(1) The same G grid points (each paired with TTT off) as ONE config with `sweep:` and as G separate
configs, each in its own output folder, each a `finemed leaderboard run` process of its own (as a
user runs them; in one process the first run would also pay the others' warm-up). Target: the grid
costs at most G TTT passes plus one baseline pass (no repeated baseline, index or retrieval), so the
ratio grid / separate approaches (G + 1) / (2G). Printed with the pass times the cells record.

(2) Neighbour selection per query, nn vs sift, on the demo corpus (fresh searches: the process
memo is cleared), against the whole TTT step (adapt and answer, from the grid's TTT log). Target:
(step + sift - nn) / step <= 1.2.

    python benchmarks/sweep_bench.py --limit 4 --lrs 1e-4,1e-3 [--ttt lora] [--seeds 0,1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

MODEL = "smollm2-135m-instruct"
TASK = "finemed_demo"


def entry(name: str, args: dict, **extra) -> dict:
    return {"name": name, "model": MODEL, "args": args, **extra}


def timed(config: dict, out: Path, source: Path) -> float:
    source.write_text(yaml.safe_dump(config), encoding="utf-8")
    command = [sys.executable, "-m", "finemed_eval.cli", "leaderboard", "run", str(source), "--out", str(out), "--no-progress"]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def pass_times(out: Path) -> dict[str, float]:
    times = {}
    for cell in (out / "cells").glob("*.json"):
        body = json.loads(cell.read_text())
        times[body["model"]] = body["pass"]["duration_s"]
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--lrs", default="1e-4,1e-3")
    parser.add_argument("--ttt", default="lora", choices=("full", "lora"))
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--queries", type=int, default=44)
    args = parser.parse_args()
    lrs = [float(x) for x in args.lrs.split(",")]
    common = {"tasks": [TASK], "seeds": [int(s) for s in args.seeds.split(",")], "num_fewshot": 3, "limit": args.limit, "batch_size": 8}
    ttt_args = {"corpus": "demo", "retriever": "minilm"}
    root = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    log = root / "ttt.jsonl"
    grid = {**common, "models": [entry("S", {**ttt_args, "ttt_log": str(log)}, sweep={"ttt": [args.ttt], "lr": lrs})]}
    grid_s = timed(grid, root / "grid", root / "grid.yaml")
    separate_s, separate_passes = 0.0, 0.0
    for i, lr in enumerate(lrs):
        one = {**common, "models": [entry("off", {"ttt": "off"}), entry("on", {**ttt_args, "ttt": args.ttt, "lr": lr}, baseline="off")]}
        separate_s += timed(one, root / f"point{i}", root / f"point{i}.yaml")
        separate_passes += sum(pass_times(root / f"point{i}").values())
    passes = pass_times(root / "grid")
    off = passes.pop("S ttt=off")
    g = len(lrs)
    print(f"grid of {g} points ({args.ttt}, lr {args.lrs}, {TASK} limit {args.limit}, seeds {args.seeds}, 3-shot)")
    print(f"  one run with sweep: {grid_s:.1f} s   {g} separate runs: {separate_s:.1f} s   ratio {grid_s / separate_s:.2f} "
          f"(ideal (G+1)/2G = {(g + 1) / (2 * g):.2f})")
    print(f"  the grid's passes: baseline {off:.1f} s once, points " + ", ".join(f"{v:.1f} s" for v in passes.values())
          + f"; start-up and board beyond them {grid_s - off - sum(passes.values()):.1f} s")
    print(f"  passes alone: grid {off + sum(passes.values()):.1f} s vs separate {separate_passes:.1f} s, "
          f"ratio {(off + sum(passes.values())) / separate_passes:.2f}")

    from finemed_eval.ttt import retrieval
    from finemed_eval.ttt.retrieval import Retriever, load_corpus

    corpus = load_corpus("demo")
    queries = [json.loads(line)["question"] for line in (Path(retrieval.__file__).parents[1] / "demo" / "demo_test.jsonl").read_text().splitlines()][: args.queries]
    per_query = {}
    for k in (1, 4):  # top_k 1 (the paper's) and 4: SIFT's cost grows with the examples it selects
        for kind in ("nn", "sift"):
            retriever = Retriever(corpus, encoder="minilm", selection=kind)
            retriever.search(queries[:1])  # load the encoder outside the timing
            retrieval._SEARCHES.clear()
            started = time.perf_counter()
            retriever.search(queries, k=k)
            per_query[kind, k] = (time.perf_counter() - started) * 1000 / len(queries)
    steps = [json.loads(line)["adapt_and_answer_ms"] for line in log.read_text().splitlines()] if log.exists() else []
    step = statistics.median(steps) if steps else float("nan")
    print(f"TTT step (median adapt and answer, from the grid's log): {step:.0f} ms")
    for k in (1, 4):
        nn, sift = per_query["nn", k], per_query["sift", k]
        print(f"  top_k {k}: selection per query nn {nn:.2f} ms, sift {sift:.2f} ms; "
              f"(step + sift - nn) / step = {(step + sift - nn) / step:.3f} (target <= 1.2)")

if __name__ == "__main__":
    main()
