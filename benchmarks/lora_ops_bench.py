"""vLLM's CPU multi-LoRA ops vs finemed's grouped ops (finemed_eval/vllm_cpu_lora.py), same tensors, one run.

Shapes are SmolLM2-135M's widest LoRA pair (576 -> 1536, r=16) with 16 adapters: a prefill step of
`--prefill-tokens` tokens in 16 sequences (one adapter each), and decode steps of 16 tokens (one per
sequence). vLLM's V1 runner sends every step of a LoRA linear layer through the sgmv ("prefill") ops,
decode steps included (sequences of one token); the bgmv ops serve the LoRA logits. Each row times
shrink (x @ A) + expand (y += s @ B), the two calls vLLM makes per projection.

    python benchmarks/lora_ops_bench.py
"""

from __future__ import annotations

import argparse
import time

import torch


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefill-tokens", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import vllm.lora.ops.torch_ops.lora_ops as vllm_ops

    from finemed_eval import vllm_cpu_lora as grouped

    torch.set_num_threads(args.threads)
    hidden, wide, rank, adapters = 576, 1536, 16, 16
    a = torch.randn(adapters, 1, rank, hidden)
    b = torch.randn(adapters, 1, wide, rank)
    steps = (("prefill (sgmv)", [args.prefill_tokens // adapters] * adapters), ("decode (sgmv)", [1] * adapters), ("decode (bgmv)", [1] * adapters))
    for label, seq_lens in steps:
        tokens = sum(seq_lens)
        x, s, y = torch.randn(tokens, hidden), torch.randn(tokens, rank), torch.zeros(tokens, wide)
        lens, seq_index = torch.tensor(seq_lens), torch.arange(adapters)
        meta = (torch.cumsum(torch.tensor([0, *seq_lens[:-1]]), 0), lens, seq_index, adapters, max(seq_lens), tokens)
        token_index = torch.repeat_interleave(seq_index, lens)
        times = {}
        for name, ops in (("vllm", vllm_ops), ("grouped", grouped)):
            if "sgmv" in label:
                def step(ops=ops):
                    ops.sgmv_shrink(x, a, torch.zeros(tokens, rank), *meta, 1.0)
                    ops.sgmv_expand(s, b, y, *meta, True)
            else:
                def step(ops=ops):
                    ops.bgmv_shrink(x, a, torch.zeros(tokens, rank), token_index, 1.0)
                    ops.bgmv_expand(s, b, y, token_index, True)
            times[name] = _time(step, repeats=5 if label.startswith("prefill") else 200)
        print(f"{label}: {tokens} tokens, {adapters} adapters: vLLM ops {times['vllm'] * 1e3:.2f} ms, grouped "
              f"{times['grouped'] * 1e3:.2f} ms, vLLM / grouped = {times['vllm'] / times['grouped']:.1f}", flush=True)


if __name__ == "__main__":
    main()
