"""Test-time adaptation on the real embedded SmolLM2-135M-Instruct: exact restore, masking, caching."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from finemed_eval.embedded import embedded_model_dir
from finemed_eval.ttt.adapt import Adapter, AdaptError, collate
from finemed_eval.ttt.options import TTTError, TTTOptions
from finemed_eval.ttt.render import IGNORE_INDEX, Format, build_example, encode

pytestmark = pytest.mark.file_seconds(100)  # under -n 2 on 2 cores (CI): starts before shorter files

EXAMPLE = (
    "What is the first-line treatment for anaphylaxis?",
    "Intramuscular epinephrine into the mid-outer thigh, repeated every 5 to 15 minutes if needed.",
)
OTHER = ("Which vitamin deficiency causes scurvy?", "Vitamin C (ascorbic acid) deficiency.")
PROBE = "A patient with hives and wheezing after a bee sting should receive"




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
    return make(full_model, tokenizer, "full", lr=1e-4)


@pytest.fixture(scope="module")
def lora(load_model, tokenizer):
    return make(load_model(), tokenizer, "lora", lr=1e-3)


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


def make(model, tokenizer, mode: str, max_length: int = 2048, **options) -> Adapter:
    return Adapter(model, tokenizer, TTTOptions(ttt=mode, **options), max_length)


def no_grads(adapter: Adapter) -> bool:
    return all(p.grad is None for p in adapter.model.parameters())


# --- config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ttt": "full", "lr": -1e-5}, "lr"),
        ({"ttt": "full", "lr": float("nan")}, "lr"),
        ({"ttt": "full", "steps": -1}, "steps"),
        ({"ttt": "sgd"}, "ttt"),
        ({"ttt": "lora", "lora_r": 0}, "lora_r"),
        ({"ttt": "full", "cache": -1}, "cache"),
        ({"ttt": "full", "ttt_format": "chatml"}, "ttt_format"),
        ({"ttt": "full", "ttt_preset": "released"}, "ttt_preset"),
        ({"ttt": "full", "ttt_precision": "bf16"}, "ttt_precision"),
        ({"ttt": "full", "engine": "vllm"}, "engine"),
    ],
)
def test_bad_options_name_the_argument(kwargs, field):
    with pytest.raises(TTTError, match=rf"argument {field}="):
        TTTOptions.from_model_args(kwargs, embedded=True)


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
    adapter = make(full_model, tokenizer, "full", steps=0, max_length=prompt_len + 4)
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
    adapter = make(model, tokenizer, mode, **change)
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
    adapter = make(full_model, tokenizer, "full", lr=1e-4, cache=1)  # 1 MiB < one entry
    hits = [adapted_logits(adapter, probe, key="k", examples=(OTHER,))[1] for _ in range(2)]
    assert hits == [False, False]


def test_cache_evicts_least_recently_used(lora, load_model, tokenizer, probe):
    entry = sum(p.numel() * p.element_size() for p in lora.model.parameters() if p.requires_grad)
    budget_mib = -(-entry // 2**20)  # room for one entry, not two
    assert 2 * entry > budget_mib * 2**20
    adapter = make(load_model(), tokenizer, "lora", lr=1e-3, cache=budget_mib)
    short = (OTHER,)
    hits = [adapted_logits(adapter, probe, key=k, examples=short)[1] for k in ("a", "a", "b", "a", "a")]
    assert hits == [False, True, False, False, True]  # "b" pushed "a" out of a one-entry budget


# --- precision ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bf16_model(model_dir):
    return lambda: AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).eval()


def test_bf16_checkpoint_keeps_the_paper_update_and_restores_bitwise(bf16_model, tokenizer, probe):
    model = bf16_model()
    checkpoint = [p.detach().clone() for p in model.parameters()]
    adapter = make(model, tokenizer, "full", lr=1e-5)  # the paper's setting: one Adam step at 1e-5
    assert adapter.trainable_dtype == torch.float32  # answered with the weights the update lives in
    before = logits(adapter.model, probe)
    with adapter.adapted([EXAMPLE]) as stats:
        inside = logits(adapter.model, probe)
    assert stats.changed_fraction >= 0.9
    assert not torch.equal(inside, before)
    assert all(torch.equal(p, c.float()) for p, c in zip(model.parameters(), checkpoint, strict=True))
    assert torch.equal(logits(adapter.model, probe), before)


def test_bf16_update_is_mostly_lost_in_model_precision(bf16_model, tokenizer):
    adapter = make(bf16_model(), tokenizer, "full", lr=1e-5, ttt_precision="model")
    assert adapter.trainable_dtype == torch.bfloat16
    with adapter.adapted([EXAMPLE]) as stats:
        pass
    assert stats.changed_fraction < 0.1  # what lm-eval's bf16 load used to give: most of the step rounded away


def test_lora_adapter_trains_in_float32_on_a_bf16_base(bf16_model, tokenizer):
    adapter = make(bf16_model(), tokenizer, "lora", lr=1e-3)
    trainable = {p.dtype for p in adapter.model.parameters() if p.requires_grad}
    frozen = {p.dtype for p in adapter.model.parameters() if not p.requires_grad}
    assert trainable == {torch.float32} and frozen == {torch.bfloat16}
    with adapter.adapted([EXAMPLE]) as stats:
        assert stats.changed_fraction > 0.3  # B moves on the first step (A's gradient is zero while B = 0)


# --- formats ----------------------------------------------------------------------------------------


def test_plain_format_labels_response_and_eos_without_chat_markup(tokenizer):
    example = encode(tokenizer, *EXAMPLE, max_length=2048, fmt=Format("plain"))
    prompt = [t for t, lab in zip(example.input_ids, example.labels) if lab == IGNORE_INDEX]
    labelled = [t for t, lab in zip(example.input_ids, example.labels) if lab != IGNORE_INDEX]
    assert tokenizer.decode(prompt) == EXAMPLE[0] + "\n"
    assert tokenizer.decode(labelled) == EXAMPLE[1] + tokenizer.eos_token


def test_chat_format_uses_the_documents_system_message(tokenizer):
    example = encode(tokenizer, *EXAMPLE, max_length=2048, fmt=Format("chat", system="Answer briefly."))
    assert tokenizer.decode(example.input_ids).startswith("<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\n")


def test_reference_format_trains_the_whole_o1_conversation_with_pad_masked(tokenizer):
    from finemed_eval.protocols import O1_SYSTEM_PROMPT

    example = encode(tokenizer, *EXAMPLE, max_length=2048, fmt=Format("reference"))
    text = tokenizer.decode(example.input_ids)
    assert text.startswith("<|im_start|>system\n" + O1_SYSTEM_PROMPT) and EXAMPLE[1] in text
    pad = tokenizer.pad_token_id  # SmolLM2: pad == eos == <|im_end|>, as in the released code
    for token, label in zip(example.input_ids, example.labels):
        assert label == (IGNORE_INDEX if token == pad else token)  # everything else, prompt included, is trained


def test_reference_preset_steps_in_train_mode_ours_in_eval_mode(full_model, tokenizer):
    modes = []
    handle = full_model.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    try:
        for preset in ("ours", "reference"):
            with make(full_model, tokenizer, "full", lr=1e-4, ttt_preset=preset).adapted([EXAMPLE]):
                pass
    finally:
        handle.remove()
    assert modes == [False, True]
    assert not full_model.training
