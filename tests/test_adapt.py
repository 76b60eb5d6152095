"""Test-time adaptation on the real embedded SmolLM2-135M-Instruct: exact restore, masking, caching."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from finemed_eval.embedded import embedded_model_dir
from finemed_eval.ttt.adapt import (
    IGNORE_INDEX,
    AdaptConfig,
    Adapter,
    AdaptError,
    build_example,
    collate,
    encode,
)

EXAMPLE = (
    "What is the first-line treatment for anaphylaxis?",
    "Intramuscular epinephrine into the mid-outer thigh, repeated every 5 to 15 minutes if needed.",
)
OTHER = ("Which vitamin deficiency causes scurvy?", "Vitamin C (ascorbic acid) deficiency.")
PROBE = "A patient with hives and wheezing after a bee sting should receive"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # With 2 cores shared by other jobs, torch's 2 intra-op threads measured 5-10x slower per
    # adaptation than 1 thread (spinning workers); 1 thread keeps this module fast either way.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dir():
    return embedded_model_dir()


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def load_model(model_dir) -> Callable[[], torch.nn.Module]:
    return lambda: AutoModelForCausalLM.from_pretrained(model_dir).eval()


@pytest.fixture(scope="module")
def full_model(load_model):
    return load_model()  # shared by the full-mode tests: each one must leave it restored


@pytest.fixture(scope="module")
def full(full_model, tokenizer):
    return Adapter(full_model, tokenizer, AdaptConfig("full", lr=1e-4))


@pytest.fixture(scope="module")
def lora(load_model, tokenizer):
    return Adapter(load_model(), tokenizer, AdaptConfig("lora", lr=1e-3))


@pytest.fixture(scope="module")
def original_hash(full, lora):
    """Weight hashes taken once, before any test adapted: every test must leave them unchanged."""
    return {"full": weights_hash(full.model), "lora": weights_hash(lora.model)}


@pytest.fixture(scope="module")
def probe(tokenizer):
    return tokenizer(PROBE, return_tensors="pt").input_ids


def logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def weights_hash(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().view(torch.uint8).numpy())
    return digest.hexdigest()


def no_grads(adapter: Adapter) -> bool:
    return all(p.grad is None for p in adapter.model.parameters())


# --- config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mode": "full", "lr": -1e-5}, "lr"),
        ({"mode": "full", "lr": float("nan")}, "lr"),
        ({"mode": "full", "steps": -1}, "steps"),
        ({"mode": "sgd"}, "mode"),
        ({"mode": "full", "max_length": 0}, "max_length"),
        ({"mode": "lora", "lora_r": 0}, "lora_r"),
        ({"mode": "full", "cache_bytes": -1}, "cache_bytes"),
    ],
)
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(AdaptError, match=rf"\.{field}\b"):
        AdaptConfig(**kwargs)


# --- labels ---------------------------------------------------------------------------------------


def test_labels_mask_prompt_and_padding_only():
    eos = 2
    a = build_example([7, 8, 9], [10, 11, eos, 198], max_length=100)
    b = build_example([7, 8], [12, eos], max_length=100)
    batch = collate([a, b], pad_id=eos)  # pad == eos, as in the reference code
    assert batch.input_ids.tolist() == [[7, 8, 9, 10, 11, eos, 198], [7, 8, 12, eos, eos, eos, eos]]
    assert batch.attention_mask.tolist() == [[1] * 7, [1, 1, 1, 1, 0, 0, 0]]
    assert batch.labels.tolist() == [
        [IGNORE_INDEX] * 3 + [10, 11, eos, 198],
        [IGNORE_INDEX] * 2 + [12, eos] + [IGNORE_INDEX] * 3,  # real eos labelled, padding eos not
    ]
    assert batch.trained_tokens == 6


def test_chat_template_labels_the_whole_response_with_end_of_turn(tokenizer):
    example = encode(tokenizer, *EXAMPLE, max_length=2048)
    labelled = [t for t, lab in zip(example.input_ids, example.labels) if lab != IGNORE_INDEX]
    prompt = [t for t, lab in zip(example.input_ids, example.labels) if lab == IGNORE_INDEX]
    assert example.labels[: len(prompt)] == [IGNORE_INDEX] * len(prompt)  # prompt first, then response
    assert tokenizer.decode(labelled) == EXAMPLE[1] + "<|im_end|>\n"
    assert tokenizer.eos_token_id in labelled
    # SmolLM2's template adds its default system prompt; the prompt ends with the generation prompt.
    assert tokenizer.decode(prompt).startswith("<|im_start|>system\nYou are a helpful AI assistant")
    assert tokenizer.decode(prompt).endswith(EXAMPLE[0] + "<|im_end|>\n<|im_start|>assistant\n")


def test_truncation_keeps_prompt_and_cuts_response_end():
    example = build_example([1, 2, 3], [4, 5, 6, 7], max_length=5)
    assert example.truncated
    assert example.input_ids == [1, 2, 3, 4, 5]
    assert example.labels == [IGNORE_INDEX] * 3 + [4, 5]
    assert not build_example([1, 2, 3], [4, 5], max_length=5).truncated


def test_truncation_is_counted(full_model, tokenizer):
    prompt_len = encode(tokenizer, *EXAMPLE, max_length=2048).labels.count(IGNORE_INDEX)
    adapter = Adapter(full_model, tokenizer, AdaptConfig("full", steps=0, max_length=prompt_len + 4))
    same_prompt = (EXAMPLE[0], "Epinephrine, given intramuscularly, without delay.")
    with adapter.adapted([EXAMPLE, same_prompt]) as stats:
        assert stats.truncated and stats.trained_tokens == 8
    with adapter.adapted([EXAMPLE]):
        pass
    assert adapter.truncation_count == 3


# --- exact restore --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_weights_restored_bitwise_and_adaptation_changes_outputs(mode, request, probe, original_hash):
    adapter: Adapter = request.getfixturevalue(mode)
    original = logits(adapter.model, probe)
    # lm-eval calls under no_grad: training must still happen.
    with torch.no_grad(), adapter.adapted([EXAMPLE]) as stats:
        inside = logits(adapter.model, probe)
    assert stats.trained_tokens > 0 and not stats.cache_hit and not stats.truncated
    assert not torch.equal(inside, original)
    assert weights_hash(adapter.model) == original_hash[mode]
    assert torch.equal(logits(adapter.model, probe), original)
    assert no_grads(adapter)


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_failure_in_optimizer_step_restores(mode, request, monkeypatch, original_hash):
    adapter: Adapter = request.getfixturevalue(mode)
    real_step = torch.optim.Adam.step

    def step_then_fail(self, *args, **kwargs):
        real_step(self, *args, **kwargs)  # weights already moved when the failure hits
        raise RuntimeError("boom in step")

    monkeypatch.setattr(torch.optim.Adam, "step", step_then_fail)
    with pytest.raises(RuntimeError, match="boom in step"), adapter.adapted([EXAMPLE]):
        pytest.fail("body must not run")
    assert weights_hash(adapter.model) == original_hash[mode]
    assert no_grads(adapter)


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_failure_in_forward_restores(mode, request, original_hash):
    adapter: Adapter = request.getfixturevalue(mode)
    layers = [m for name, m in adapter.model.named_modules() if name.endswith("layers.20")]

    def fail(*_):
        raise RuntimeError("boom in forward")

    handle = layers[0].register_forward_hook(fail)
    try:
        with pytest.raises(RuntimeError, match="boom in forward"), adapter.adapted([EXAMPLE]):
            pass
    finally:
        handle.remove()
    assert weights_hash(adapter.model) == original_hash[mode]
    assert no_grads(adapter)


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_exception_in_body_restores(mode, request, original_hash):
    adapter: Adapter = request.getfixturevalue(mode)
    with pytest.raises(KeyError), adapter.adapted([OTHER]):
        raise KeyError("body")
    assert weights_hash(adapter.model) == original_hash[mode]


def test_not_reentrant(lora):
    with lora.adapted([]), pytest.raises(AdaptError), lora.adapted([]):
        pass


# --- no training ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["full", "lora"])
@pytest.mark.parametrize("change", [{"steps": 0}, {"lr": 0.0}])
def test_no_training_leaves_outputs_bitwise(mode, change, load_model, full_model, tokenizer, probe):
    model = load_model() if mode == "lora" else full_model  # LoRA wraps the model: use a fresh one
    original = logits(model, probe)  # before any LoRA wrapping: a fresh adapter must be a no-op
    adapter = Adapter(model, tokenizer, AdaptConfig(mode, **change))
    with adapter.adapted([EXAMPLE]) as stats:
        assert torch.equal(logits(adapter.model, probe), original)
    assert stats.trained_tokens > 0
    assert torch.equal(logits(adapter.model, probe), original)


# --- fresh optimizer and cache --------------------------------------------------------------------


def adapted_logits(adapter: Adapter, probe, key=None, examples=(EXAMPLE,)) -> tuple[torch.Tensor, bool]:
    with adapter.adapted(list(examples), cache_key=key) as stats:
        return logits(adapter.model, probe), stats.cache_hit


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_fresh_optimizer_and_cache_hit_match_training(mode, request, probe):
    adapter: Adapter = request.getfixturevalue(mode)
    plain, _ = adapted_logits(adapter, probe)
    first, hit_first = adapted_logits(adapter, probe, key="k")
    assert torch.equal(first, plain)  # trained twice from scratch: no optimizer state leaked
    cached, hit_cached = adapted_logits(adapter, probe, key="k")
    assert (hit_first, hit_cached) == (False, True)
    assert torch.equal(cached, plain)  # bitwise what training again gives
    other_key, hit_other_key = adapted_logits(adapter, probe, key="k2")
    assert not hit_other_key and torch.equal(other_key, plain)
    if mode == "lora":  # (cheaper there; the key logic is shared by both modes)
        # The same key with other examples is trained, never served the cached weights.
        other, hit_other = adapted_logits(adapter, probe, key="k", examples=(OTHER,))
        assert not hit_other and not torch.equal(other, plain)


def test_full_mode_entry_over_budget_is_not_cached(full_model, tokenizer, probe):
    adapter = Adapter(full_model, tokenizer, AdaptConfig("full", lr=1e-4, cache_bytes=1024))
    hits = [adapted_logits(adapter, probe, key="k", examples=(OTHER,))[1] for _ in range(2)]
    assert hits == [False, False]


def test_cache_evicts_least_recently_used(lora, load_model, tokenizer, probe):
    entry = sum(p.numel() * p.element_size() for p in lora.model.parameters() if p.requires_grad)
    adapter = Adapter(load_model(), tokenizer, AdaptConfig("lora", lr=1e-3, cache_bytes=entry))
    short = (OTHER,)
    hits = [adapted_logits(adapter, probe, key=k, examples=short)[1] for k in ("a", "a", "b", "a", "a")]
    assert hits == [False, True, False, False, True]  # "b" pushed "a" out of a one-entry budget
