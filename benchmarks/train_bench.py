"""Our SFT stage script against a plain TRL `SFTTrainer` on the same rows and settings, one run.

Both run as fresh processes, alternating, each going first in every other round (so drifting
machine load hits both): ours is
`python -m finemed_eval.training.sft --config RECIPE` (recipe parsing, data selection, provenance,
zoo registration included), plain TRL is a short script that reads the same JSONL files with
`datasets`, draws the same rows and trains `SFTTrainer` with the recipe's TRL keys. Prints training
tokens/s per round and the best of the rounds (TRL's own `num_tokens` / `train_runtime`), whole-process wall time,
and the ratio ours / plain (target >= 0.95: the wrapper adds nothing to the training loop).

Usage: python benchmarks/train_bench.py [--steps 30] [--rounds 4] [--threads 1] [--model DIR]
(default model: a 2-layer, 64-wide model cut from SmolLM2, see finemed_eval.training.tiny)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "tiny/finemedlm/stage1"
DATA = ROOT / "tests" / "fixtures" / "training" / "sft"
FAIR = [  # both runs: no evaluation, no checkpoints, a fixed number of steps
    "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
    "--holdout_fraction", "0", "--logging_steps", "5",
]  # fmt: skip

PLAIN = r'''
import json, sys, glob
import yaml
from datasets import concatenate_datasets, load_dataset
from trl import SFTConfig, SFTTrainer
from finemed_eval.training.args import FineMedArgs, recipes_root, spelled_as_installed
import dataclasses

recipe_path, model, data, out, steps = sys.argv[1:6]
raw = yaml.safe_load(open(recipe_path))
finemed_keys = {f.name for f in dataclasses.fields(FineMedArgs)}
keys = {k: v for k, v in raw.items() if k not in finemed_keys and k != "model_name_or_path"}
keys.update(eval_strategy="no", save_strategy="no", load_best_model_at_end=False, logging_steps=5,
            output_dir=out, max_steps=int(steps),
            gradient_accumulation_steps=raw["global_batch_size"] // raw["per_device_train_batch_size"],
            model_init_kwargs={"attention_dropout": raw["dropout"]})
keys = spelled_as_installed(keys, SFTConfig)  # activation_checkpointing is gradient_checkpointing before transformers 5.24
files = sorted(glob.glob(f"{data}/{raw['data_dir']}/*.jsonl"))
rows = concatenate_datasets([load_dataset("json", data_files=f, split="train").select_columns(["instruction", "response"]) for f in files])
rows = rows.shuffle(seed=raw["seed"]).select(range(raw["sample_size"]))
rows = rows.map(lambda r: {"prompt": [{"role": "user", "content": r["instruction"]}],
                           "completion": [{"role": "assistant", "content": r["response"]}]},
                remove_columns=rows.column_names)
trainer = SFTTrainer(model=model, args=SFTConfig(**keys), train_dataset=rows)
trainer.train()
history = trainer.state.log_history
print("RESULT " + json.dumps({"tokens": [e["num_tokens"] for e in history if "num_tokens" in e][-1],
                              "runtime": [e["train_runtime"] for e in history if "train_runtime" in e][-1]}))
'''


def run_ours(model: str, out: Path, steps: int, env: dict) -> dict:
    command = [
        sys.executable, "-m", "finemed_eval.training.sft", "--config", RECIPE, "--model_name_or_path", model,
        "--output_dir", str(out), "--data", str(DATA), "--max_steps", str(steps), *FAIR,
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    result = json.loads((out / "provenance.json").read_text())["result"]
    return {"tokens": result["train_tokens"], "runtime": result["train_runtime_s"], "wall": wall}


def run_plain(model: str, out: Path, steps: int, env: dict) -> dict:
    from finemed_eval.training.args import find_recipe

    command = [sys.executable, "-c", PLAIN, str(find_recipe(RECIPE)), model, str(DATA), str(out), str(steps)]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return {**json.loads(line[len("RESULT ") :]), "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--model", default=None)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per run (on a shared CPU, more threads spin and add noise)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = dict(os.environ, FINEMED_ZOO_DIR=str(work / "zoo"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
        env["OMP_NUM_THREADS"] = str(args.threads)
        model = args.model
        if model is None:
            from finemed_eval.training.tiny import derive_tiny_model

            model = str(derive_tiny_model(work / "model", layers=2, hidden_size=64))
        runners = {"plain TRL SFTTrainer": run_plain, "finemed sft.py": run_ours}
        runs: dict[str, list[dict]] = {name: [] for name in runners}
        for i in range(args.rounds):
            order = list(runners) if i % 2 == 0 else list(reversed(runners))  # neither always goes first
            for name in order:
                result = runners[name](model, work / f"{name.split()[0]}{i}", args.steps, env)
                runs[name].append(result)
                print(f"round {i + 1} {name:22} {result['tokens'] / result['runtime']:9.1f} train tokens/s", flush=True)
    best = {}
    for name, results in runs.items():
        tokens = {r["tokens"] for r in results}
        assert len(tokens) == 1, f"{name}: token counts differ between rounds: {tokens}"
        best[name] = max(r["tokens"] / r["runtime"] for r in results)
        wall = min(r["wall"] for r in results)
        print(f"best    {name:22} {best[name]:9.1f} train tokens/s   {tokens.pop():.0f} tokens   process wall {wall:6.1f} s")
    ours, plain = best["finemed sft.py"], best["plain TRL SFTTrainer"]
    print(f"ratio ours / plain TRL: {ours / plain:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
