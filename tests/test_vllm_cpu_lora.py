"""The grouped CPU LoRA ops (finemed_eval/vllm_cpu_lora.py) against vLLM's own torch ops, which they replace
in the engine process: same outputs on prefill and decode batches, mixed adapters, index -1 included; and
the plugin is registered where vLLM looks for it. The engine-level check (same greedy tokens as HF + peft with
the plugin loaded) is tests/test_vllm_backend.py, which runs with it."""

from importlib.metadata import entry_points

import pytest
import torch

vllm_ops = pytest.importorskip("vllm.lora.ops.torch_ops.lora_ops")

from finemed_eval import vllm_cpu_lora as ours  # noqa: E402

SLOTS, RANK, HIDDEN, WIDE = 4, 16, 64, 96


def batch(seq_lens, seq_indices, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = sum(seq_lens)
    return dict(
        x=torch.randn(tokens, HIDDEN, generator=g),
        a=torch.randn(SLOTS, 1, RANK, HIDDEN, generator=g),
        b=torch.randn(SLOTS, 1, WIDE, RANK, generator=g),
        shrunk=torch.randn(tokens, RANK, generator=g),
        y=torch.randn(tokens, WIDE + 8, generator=g),
        seq_lens=torch.tensor(seq_lens),
        seq_indices=torch.tensor(seq_indices),
        starts=torch.cumsum(torch.tensor([0, *seq_lens[:-1]]), 0),
        token_indices=torch.repeat_interleave(torch.tensor(seq_indices), torch.tensor(seq_lens)),
    )


CASES = {
    "one adapter": ([7], [2]),
    "mixed adapters and -1": ([5, 3, 9, 1], [0, 3, -1, 0]),
    "decode": ([1] * 6, [1, 1, 0, -1, 2, 1]),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("add_inputs", [True, False])
@pytest.mark.parametrize("gather_limit", [ours.GATHER_LIMIT, 0], ids=["small batches gather", "always grouped"])
def test_grouped_ops_equal_vllms_ops(case, add_inputs, gather_limit, monkeypatch):
    monkeypatch.setattr(ours, "GATHER_LIMIT", gather_limit)
    seq_lens, seq_indices = CASES[case]
    t = batch(seq_lens, seq_indices)
    meta = (t["starts"], t["seq_lens"], t["seq_indices"], len(seq_lens), max(seq_lens), sum(seq_lens))

    def both(name, *args):
        theirs, mine = t["y"].clone(), t["y"].clone()
        getattr(vllm_ops, name)(args[0], args[1], theirs, *args[2:])
        getattr(ours, name)(args[0], args[1], mine, *args[2:])
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-4)

    both("sgmv_shrink", t["x"], t["a"], *meta, 0.5)
    both("bgmv_shrink", t["x"], t["a"], t["token_indices"], 0.5)
    both("sgmv_expand", t["shrunk"], t["b"], *meta, add_inputs)
    both("bgmv_expand", t["shrunk"], t["b"], t["token_indices"], add_inputs)
    both("sgmv_expand_slice", t["shrunk"], t["b"], *meta, 4, WIDE, add_inputs)
    both("bgmv_expand_slice", t["shrunk"], t["b"], t["token_indices"], 4, WIDE, add_inputs)


def test_single_row_expand_keeps_vllms_broadcast_rule():
    t = batch([1], [1])
    theirs, mine = torch.zeros(3, WIDE), torch.zeros(3, WIDE)
    vllm_ops.bgmv_expand(t["shrunk"], t["b"], theirs, t["token_indices"], True)
    ours.bgmv_expand(t["shrunk"], t["b"], mine, t["token_indices"], True)
    torch.testing.assert_close(mine, theirs)


def test_registered_as_a_vllm_general_plugin_and_patches_the_cpu_wrapper(monkeypatch):
    plugins = {e.name: e.value for e in entry_points(group="vllm.general_plugins")}
    assert plugins.get("finemed_cpu_lora") == "finemed_eval.vllm_cpu_lora:register"
    import vllm.lora.punica_wrapper.punica_cpu as punica_cpu

    for name in ours.OPS:
        monkeypatch.setattr(punica_cpu, name, getattr(punica_cpu, name))  # restored after the test
    ours.register()
    assert all(getattr(punica_cpu, name).__wrapped__ is getattr(ours, name) for name in ours.OPS)
    assert vllm_ops.sgmv_shrink.__module__ == "vllm.lora.ops.torch_ops.lora_ops"  # originals kept for tracing

    t = batch([4, 4], [0, 1])
    calls = []
    monkeypatch.setattr(vllm_ops, "bgmv_shrink", lambda *args: calls.append("vllm"))
    monkeypatch.setattr(ours, "bgmv_shrink", lambda *args: calls.append("ours"))
    op = ours.eager_only(ours.bgmv_shrink, vllm_ops.bgmv_shrink)
    op(t["x"], t["a"], torch.zeros(8, RANK), t["token_indices"], 1.0)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    op(t["x"], t["a"], torch.zeros(8, RANK), t["token_indices"], 1.0)
    assert calls == ["ours", "vllm"]  # eager: ours; under torch.compile: vLLM's


def test_fewer_indices_than_tokens_is_an_error_as_in_vllm():
    """vLLM's per-token einsum raises on this mismatch (its prompt-logprobs-with-LoRA bug, docs/vllm.md); the
    grouped op must not instead leave the unmatched rows unwritten."""
    t = batch([5], [1])
    with pytest.raises(RuntimeError):
        vllm_ops.bgmv_shrink(t["x"], t["a"], torch.zeros(5, RANK), t["token_indices"][:3], 1.0)
    with pytest.raises(ValueError, match="3 adapter indices for 5 tokens"):
        ours.bgmv_shrink(t["x"], t["a"], torch.zeros(5, RANK), t["token_indices"][:3], 1.0)
