"""Three few-shot seeds in one pass vs one seed: the cost of the paper's 3-seed protocol with TTT.

Adaptation depends on the neighbours, never on the few-shot draw, so `finemed_ttt` trains each
distinct neighbour set once per pass however many seed variants of a task share it. Target: 3 seeds
cost <= 1.4x one seed (same run, same model, same documents; best of alternating rounds, so load
drifting on the machine hits both). Also prints the seed-by-seed cost (three separate passes) that
the one-pass grouping replaces.

    python benchmarks/seeds_bench.py --limit 12 --rounds 3 [--ttt full] [--batch-size 8]
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
    parser.add_argument("--batch-size", type=int, default=8)  # the main job's (leaderboards/demo.yaml)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    lm = get_model("finemed_ttt")(ttt=args.ttt, lr=1e-5, corpus="demo", retriever="minilm", device="cpu", batch_size=args.batch_size, cache=False)
    timed_pass(lm, [0], 2)  # warm-up: index load, allocator
    ones, threes = [], []
    for _ in range(args.rounds):
        ones.append(timed_pass(lm, [0], args.limit))
        threes.append(timed_pass(lm, [0, 1, 2], args.limit))
    (one, one_adapt), (three, three_adapt) = min(ones), min(threes)
    separate = sum(timed_pass(lm, [seed], args.limit)[0] for seed in (0, 1, 2))
    print(f"{TASK}, {args.limit} documents, 3-shot, SmolLM2-135M-Instruct ttt={args.ttt}, batch_size={args.batch_size}, CPU threads={torch.get_num_threads()}")
    rounds = lambda runs: ", ".join(f"{seconds:.1f}" for seconds, _ in runs)  # noqa: E731
    print(f"  one seed:              {one:7.1f} s  ({one_adapt} adaptations; rounds {rounds(ones)})")
    print(f"  three seeds, one pass: {three:7.1f} s  ({three_adapt} adaptations; rounds {rounds(threes)})")
    print(f"  three seeds, 3 passes: {separate:7.1f} s")
    print(f"  one pass / one seed = {three / one:.2f} (best of {args.rounds}; target <= 1.4)   3 passes / one pass = {separate / three:.2f}")


if __name__ == "__main__":
    main()
