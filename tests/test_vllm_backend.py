"""engine=vllm request plumbing. vLLM needs a GPU, so this is the one place a stand-in is used:
a fake `vllm` module with the real API names (LLM, SamplingParams, lora.request.LoRARequest)
records what finemed_ttt sends. Adapters are trained for real (SmolLM2, peft, MiniLM, faiss)."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from lm_eval.api.instance import Instance
from lm_eval.api.registry import get_model


@dataclass
class SamplingParams:
    max_tokens: int
    stop: list
    temperature: float


@dataclass
class LoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str


@dataclass
class StandInLLM:
    """Records engine construction and generate calls; answers 'The answer is (B).' to every prompt."""

    kwargs: dict
    calls: list = field(default_factory=list)

    def generate(self, prompts, sampling_params, lora_request=None, use_tqdm=True):
        self.calls.append((prompts, sampling_params, lora_request))
        completion = types.SimpleNamespace(text="The answer is (B).")
        return [types.SimpleNamespace(outputs=[completion]) for _ in prompts]


@pytest.fixture()
def stand_in_vllm(monkeypatch):
    vllm = types.ModuleType("vllm")
    engines = []

    def make_llm(**kwargs):
        engines.append(StandInLLM(kwargs))
        return engines[-1]

    vllm.LLM, vllm.SamplingParams = make_llm, SamplingParams
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = LoRARequest
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.lora", lora)
    monkeypatch.setitem(sys.modules, "vllm.lora.request", request)
    return engines


def _requests(questions):
    gen = {"until": ["Question:"], "max_gen_toks": 32, "do_sample": False}
    return [
        Instance("generate_until", {"question": q}, (f"Question: {q}\nAnswer:", dict(gen)), idx=0, metadata=("t", i, 1))
        for i, q in enumerate(questions)
    ]


def test_one_engine_call_with_one_trained_adapter_per_document(stand_in_vllm, embedded_model, tmp_path):
    rows = [
        {"id": "r1", "question": "How does insulin lower blood glucose?", "response": "**Thought**\n\nInsulin ... **Summarization**\n\nGLUT4."},
        {"id": "r2", "question": "What causes croup in children?", "response": "**Thought**\n\nParainfluenza ... **Summarization**\n\nViral."},
    ]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps(r) for r in rows))
    lm = get_model("finemed_ttt")(
        pretrained=str(embedded_model), device="cpu", ttt="lora", engine="vllm", corpus=str(corpus), retriever="minilm", lr=1e-4
    )
    (engine,) = stand_in_vllm
    assert engine.kwargs["enable_lora"] is True and engine.kwargs["max_lora_rank"] == 16
    questions = ["Which hormone lowers blood glucose?", "Barking cough in a toddler: cause?", "What does insulin do to glucose?"]
    outputs = lm.generate_until(_requests(questions))

    assert outputs == ["The answer is (B)."] * 3
    assert len(engine.calls) == 1  # every document batched into one engine call
    prompts, params, loras = engine.calls[0]
    assert prompts == [f"Question: {q}\nAnswer:" for q in questions]
    assert params[0] == SamplingParams(max_tokens=32, stop=["Question:"], temperature=0.0)
    assert [lora.lora_int_id for lora in loras] == [1, 2, 1]  # documents sharing a neighbour share its adapter
    assert all(Path(lora.lora_path, "adapter_model.safetensors").is_file() for lora in loras)  # real peft saves
    assert lm.adaptations == 2  # one per distinct neighbour: documents 1 and 3 share theirs


def test_vllm_serves_lora_only(stand_in_vllm):
    with pytest.raises(ValueError, match="engine"):
        get_model("finemed_ttt")(ttt="full", engine="vllm")


def test_missing_vllm_names_the_extra(monkeypatch, embedded_model):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ImportError, match=r"finemed-eval\[vllm\]"):
        get_model("finemed_ttt")(pretrained=str(embedded_model), device="cpu", engine="vllm")
