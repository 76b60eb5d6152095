"""finemed_ttt with ttt=off against lm-eval's `hf` on the same checkpoint and requests, one run.

Prints wall time per model (best of 3 alternating rounds) and the ratio ours / hf (target <= 1.0 within noise).
Usage: FINEMED_DATA_DIR=../shared/data python benchmarks/ttt_off_bench.py [--task finemed_medqa] [--limit 20]
"""

from __future__ import annotations

import argparse
import time

import lm_eval
from lm_eval.api.registry import get_model
from lm_eval.models.huggingface import HFLM

from finemed_eval.embedded import embedded_model_dir


def _seconds(model, task: str, limit: int) -> float:
    start = time.perf_counter()
    lm_eval.simple_evaluate(model=model, tasks=[task], limit=limit, num_fewshot=0, verbosity="ERROR")
    return time.perf_counter() - start


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="finemed_demo")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    path = str(embedded_model_dir())
    hf = HFLM(pretrained=path, device="cpu", batch_size=8)
    ours = get_model("finemed_ttt")(pretrained=path, ttt="off", device="cpu", batch_size=8)
    _seconds(hf, args.task, 2)  # warm-up (task indexing, allocator)
    times = {"hf": [], "finemed_ttt ttt=off": []}
    for _ in range(args.rounds):  # alternate so machine load drifts hit both equally
        times["hf"].append(_seconds(hf, args.task, args.limit))
        times["finemed_ttt ttt=off"].append(_seconds(ours, args.task, args.limit))
    best = {name: min(values) for name, values in times.items()}
    for name, value in best.items():
        print(f"{name:22} {value:7.2f} s  (rounds: {', '.join(f'{v:.2f}' for v in times[name])})")
    print(f"ratio finemed_ttt/hf = {best['finemed_ttt ttt=off'] / best['hf']:.3f}  ({args.task}, limit {args.limit}, best of {args.rounds})")
