"""Grouped multi-LoRA ops for vLLM's CPU build, loaded as a vLLM general plugin in every engine process.

vLLM 0.32's CPU punica ops (`vllm.lora.ops.torch_ops`) gather a whole LoRA matrix per token
(`weights[indices]`, then a per-token einsum): a 3-shot prompt of ~900 tokens through a 1536-wide MLP
at r=16 materialises ~90 MB per projection and layer, which made `engine=vllm` slower than HF on long
prompts (docs/vllm.md). These ops compute the same products per adapter instead: one matmul per
sequence when prefilling (its tokens share one adapter), one per distinct adapter for a large
per-token batch. Decode steps (one token per sequence; vLLM's V1 runner sends them through the same
"prefill" ops) gather one matrix per token with `index_select` + `bmm`, 2.5-4x faster than vLLM's
advanced-indexing einsum at 16 tokens (benchmarks/lora_ops_bench.py). Semantics are vLLM's, index for index (an index of -1 reads the last slot, as vLLM's ops do), so outputs
equal vLLM's up to float summation order (tests/test_vllm_cpu_lora.py). Registered through the
`vllm.general_plugins` entry point; vLLM's own `VLLM_PLUGINS` variable turns it off (any value that
does not name `finemed_cpu_lora`). Only the CPU platform is patched: GPU builds use their own kernels.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

OPS = ("bgmv_expand", "bgmv_expand_slice", "bgmv_shrink", "sgmv_expand", "sgmv_expand_slice", "sgmv_shrink")


# Gathering one matrix per token is the faster way while the gathered copy is small (decoding: one token
# per sequence), per-adapter or per-sequence matmuls beyond that (prefill); measured in
# benchmarks/lora_ops_bench.py.
GATHER_LIMIT = 1 << 22  # elements (16 MB in float32): never gather more at once
GATHER_PER_SEQUENCE = 1 << 18  # elements whose copy costs about one sequence's own matmul (~20 us here)


def per_token_products(inputs: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Row t of the result = inputs[t] @ weights[indices[t]].T."""
    if indices.shape[0] != inputs.shape[0]:  # vLLM's einsum raises here too; never leave rows unwritten
        raise ValueError(f"LoRA: {indices.shape[0]} adapter indices for {inputs.shape[0]} tokens")
    if weights.dim() == 4:
        weights = weights.squeeze(1)
    inputs = inputs.to(dtype)
    if indices.shape[0] * weights[0].numel() <= GATHER_LIMIT:
        return gathered_products(inputs, weights, indices, dtype)
    out = inputs.new_empty(inputs.shape[0], weights.shape[1])
    for value in indices.unique():
        rows = (indices == value).nonzero().squeeze(1)
        out[rows] = inputs[rows] @ weights[value].to(dtype).T
    return out


def gathered_products(inputs: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """One matrix copied per token, one batched product: index_select + bmm (vLLM's `weights[indices]`
    einsum does the same work 2.5-4x slower). Index -1 reads the last slot, as Python indexing does."""
    chosen = weights.index_select(0, indices.remainder(weights.shape[0])).to(dtype)
    return torch.bmm(inputs.unsqueeze(1), chosen.transpose(1, 2)).squeeze(1)


def per_sequence_products(inputs: torch.Tensor, weights: torch.Tensor, seq_lens: torch.Tensor, seq_indices: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Each sequence's tokens are contiguous and share one adapter: one matmul per sequence (prefill), or,
    when the sequences are short (decode steps), one gathered matrix per token."""
    if weights.dim() == 4:
        weights = weights.squeeze(1)
    inputs = inputs.to(dtype)
    if inputs.shape[0] * weights[0].numel() <= min(GATHER_LIMIT, len(seq_lens) * GATHER_PER_SEQUENCE):
        # per_token_products raises if the lengths do not cover the batch
        return per_token_products(inputs, weights, torch.repeat_interleave(seq_indices, seq_lens), dtype)
    out = inputs.new_empty(inputs.shape[0], weights.shape[1])
    start = 0
    for length, index in zip(seq_lens.tolist(), seq_indices.tolist()):
        torch.matmul(inputs[start : start + length], weights[index].to(dtype).T, out=out[start : start + length])
        start += length
    if start != inputs.shape[0]:  # vLLM's repeat_interleave would have failed too; keep its contract loud
        raise ValueError(f"LoRA prefill: sequence lengths sum to {start}, the batch has {inputs.shape[0]} tokens")
    return out


def _write(output: torch.Tensor, outputs: torch.Tensor, columns: slice, add_inputs: bool) -> None:
    if add_inputs:
        output[:, columns] += outputs
    else:
        output[:, columns] = outputs


def bgmv_shrink(inputs, lora_a_weights, output_tensor, lora_indices_tensor, scaling=1.0):
    outputs = per_token_products(inputs, lora_a_weights, lora_indices_tensor, output_tensor.dtype)
    output_tensor[:, : outputs.shape[1]] = scaling * outputs


def bgmv_expand(inputs, lora_b_weights, output_tensor, lora_indices_tensor, add_inputs=True):
    outputs = per_token_products(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    _expand_into(output_tensor, outputs, add_inputs)


def bgmv_expand_slice(inputs, lora_b_weights, output_tensor, lora_indices_tensor, slice_offset, slice_size, add_inputs=True):
    outputs = per_token_products(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    _write(output_tensor, outputs, slice(slice_offset, slice_offset + slice_size), add_inputs)


def sgmv_shrink(inputs, lora_a_weights, output_tensor, b_seq_start_loc, seq_len_tensor, lora_indices_tensor, batches, max_seq_length, token_nums, scaling):
    outputs = per_sequence_products(inputs, lora_a_weights, seq_len_tensor, lora_indices_tensor, output_tensor.dtype)
    output_tensor[:, : outputs.shape[1]] = scaling * outputs


def sgmv_expand(inputs, lora_b_weights, output_tensor, b_seq_start_loc, seq_len_tensor, lora_indices_tensor, batches, max_seq_length, token_nums, add_inputs=False):
    outputs = per_sequence_products(inputs, lora_b_weights, seq_len_tensor, lora_indices_tensor, output_tensor.dtype)
    _expand_into(output_tensor, outputs, add_inputs)


def sgmv_expand_slice(inputs, lora_b_weights, output_tensor, b_seq_start_loc, seq_len_tensor, lora_indices_tensor, batches, max_seq_length, token_nums, slice_offset, slice_size, add_inputs=False):
    outputs = per_sequence_products(inputs, lora_b_weights, seq_len_tensor, lora_indices_tensor, output_tensor.dtype)
    _write(output_tensor, outputs, slice(slice_offset, slice_offset + slice_size), add_inputs)


def _expand_into(output_tensor: torch.Tensor, outputs: torch.Tensor, add_inputs: bool) -> None:
    # vLLM's bgmv_expand: a single output row broadcasts to row 0 only; adapter and model may pad differently
    limit = 1 if outputs.shape[0] == 1 and output_tensor.shape[0] != 1 else output_tensor.shape[0]
    common = min(outputs.shape[1], output_tensor.shape[1])
    if add_inputs:
        output_tensor[:, :common] += outputs[:limit, :common]
    else:
        output_tensor[:, :common] = outputs[:limit, :common]


def eager_only(ours: Callable, theirs: Callable) -> Callable:
    """Our op when run eagerly (finemed's engines and synthesis servers run eager on CPU); vLLM's own
    while torch.compile traces (vLLM's compiled CPU mode): data-dependent loops do not trace."""

    @functools.wraps(ours)
    def op(*args, **kwargs):
        return theirs(*args, **kwargs) if torch.compiler.is_compiling() else ours(*args, **kwargs)

    return op


def register() -> None:
    """vLLM general plugin: swap the CPU punica wrapper's ops for these (no-op off CPU or without LoRA)."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    import vllm.lora.ops.torch_ops as torch_ops
    import vllm.lora.ops.torch_ops.lora_ops as vllm_ops  # left as it is: vLLM's originals
    import vllm.lora.punica_wrapper.punica_cpu as punica_cpu

    ours = globals()
    for name in OPS:
        op = eager_only(ours[name], getattr(vllm_ops, name))
        setattr(torch_ops, name, op)
        setattr(punica_cpu, name, op)
