"""Three few-shot seeds in one pass vs one seed: the cost of the paper's 3-seed protocol with TTT.

Adaptation depends on the neighbours, never on the few-shot draw, so `finemed_ttt` trains each
distinct neighbour set once per pass however many seed variants of a task share it. Target: 3 seeds
cost <= 1.4x one seed (same run, same model, same documents). Also prints the seed-by-seed cost
(three separate passes) that the one-pass grouping replaces.

    python benchmarks/seeds_bench.py --limit 12 [--ttt full]
"""

from __future__ import annotations

import argparse
import time

import torch
from lm_eval import evaluator
from lm_eval.api.registry import get_model
from lm_eval.tasks import TaskManager

from finemed_eval.leaderboard.evaluate import seed_variants

TASK = "finemed_demo"


def timed_pass(lm, seeds: list[int], limit: int) -> tuple[float, int]:
    task_dict = seed_variants(TaskManager(include_defaults=False), TASK, seeds, num_fewshot=3)
    before = lm.adaptations
    start = time.perf_counter()
    evaluator.evaluate(lm=lm, task_dict=task_dict, limit=limit, bootstrap_iters=0)
    return time.perf_counter() - start, lm.adaptations - before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=12)
    parser.add_argument("--ttt", default="full", choices=("full", "lora"))
    args = parser.parse_args()
    lm = get_model("finemed_ttt")(ttt=args.ttt, lr=1e-5, corpus="demo", retriever="minilm", device="cpu", batch_size=8, cache=False)
    timed_pass(lm, [0], 2)  # warm-up: index load, allocator
    one, one_adapt = timed_pass(lm, [0], args.limit)
    three, three_adapt = timed_pass(lm, [0, 1, 2], args.limit)
    separate = sum(timed_pass(lm, [seed], args.limit)[0] for seed in (0, 1, 2))
    print(f"{TASK}, {args.limit} documents, 3-shot, SmolLM2-135M-Instruct ttt={args.ttt}, CPU threads={torch.get_num_threads()}")
    print(f"  one seed:              {one:7.1f} s  ({one_adapt} adaptations)")
    print(f"  three seeds, one pass: {three:7.1f} s  ({three_adapt} adaptations)")
    print(f"  three seeds, 3 passes: {separate:7.1f} s")
    print(f"  one pass / one seed = {three / one:.2f} (target <= 1.4)   3 passes / one pass = {separate / three:.2f}")


if __name__ == "__main__":
    main()
