"""Test-time training through lm-eval: real SmolLM2, real MiniLM, real faiss, real MedMCQA explanations."""

from __future__ import annotations

import hashlib
import json

import lm_eval
import pytest
from lm_eval.api.registry import get_model

TASK = "finemed_demo"


@pytest.fixture(scope="module")
def corpus(shared_data, tmp_path_factory):
    """MedMCQA questions with their official explanations, plus the project's demo reasoning corpus."""
    rows = []
    for line in (shared_data / "medmcqa" / "validation.jsonl").read_text().splitlines():
        doc = json.loads(line)
        if doc["exp"] != "nan" and len(rows) < 150:
            rows.append({"id": f"medmcqa-{doc['id']}", "question": doc["question"], "response": doc["exp"]})
    demo = (pytest.importorskip("finemed_eval.data").DEMO_DIR / "reasoning_corpus.jsonl").read_text().splitlines()
    rows += [json.loads(line) for line in demo]
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def _lm(embedded_model, default_corpus, **args):
    # max_length bounds the neighbour's trained tokens (and the scored context) to keep CPU tests quick.
    defaults = dict(
        pretrained=str(embedded_model), device="cpu", batch_size=8, corpus=str(default_corpus), retriever="minilm", max_length=256
    )
    return get_model("finemed_ttt")(**{**defaults, **args})


def _samples(lm, limit=3, **kwargs) -> list[dict]:
    from lm_eval.tasks import TaskManager

    results = lm_eval.simple_evaluate(
        model=lm, tasks=[TASK], limit=limit, num_fewshot=0, log_samples=True,
        task_manager=TaskManager(include_defaults=False), **kwargs,
    )
    return sorted(results["samples"][TASK], key=lambda s: s["doc_id"])


def _loglikelihoods(samples) -> list[float]:
    return [resp[0][0] for s in samples for resp in s["resps"]]


def _weights_hash(lm) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(lm._model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def baseline(embedded_model, corpus):
    return _loglikelihoods(_samples(_lm(embedded_model, corpus, ttt="off")))


@pytest.mark.parametrize("no_training", [{"steps": 0}, {"lr": 0.0}])
def test_no_training_equals_ttt_off_exactly(embedded_model, corpus, baseline, no_training):
    lm = _lm(embedded_model, corpus, ttt="full", **no_training)
    assert _loglikelihoods(_samples(lm)) == baseline


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_ttt_changes_loglikelihoods_and_restores_weights_exactly(embedded_model, corpus, baseline, mode):
    lm = _lm(embedded_model, corpus, ttt=mode, lr=1e-4)
    before = _weights_hash(lm)
    adapted = _loglikelihoods(_samples(lm))
    assert _weights_hash(lm) == before
    assert len(adapted) == len(baseline)
    assert any(abs(a - b) > 1e-4 for a, b in zip(adapted, baseline))


def test_one_adaptation_per_document_serves_all_its_requests(embedded_model, corpus, monkeypatch):
    lm = _lm(embedded_model, corpus, ttt="full", lr=1e-5, cache=False)
    served = []
    original = type(lm._adapter).adapted

    def counting(adapter, examples, cache_key=None):
        context = original(adapter, examples, cache_key)
        served.append(None)
        return context

    monkeypatch.setattr(type(lm._adapter), "adapted", counting)
    samples = _samples(lm, limit=4)
    assert lm.adaptations == len(served) == 4  # demo questions have up to 10 options: still one adaptation each
    assert sum(len(s["resps"]) for s in samples) > 4


def test_samples_record_neighbour_similarity_tokens_and_time(embedded_model, corpus):
    samples = _samples(_lm(embedded_model, corpus, ttt="full", lr=1e-5), limit=2)
    for sample in samples:
        record = sample["doc"]["finemed_ttt"]
        assert record["neighbours"][0]["id"]
        assert 0 < record["neighbours"][0]["similarity"] <= 1.0 + 1e-6
        assert record["trained_tokens"] > 10 and record["ms"] > 0


def test_neighbour_cache_gives_identical_results(embedded_model, corpus, tmp_path):
    """A three-row corpus forces documents to share neighbours, so the cache is really hit."""
    rows = [json.loads(line) for line in corpus.read_text().splitlines()][-3:]
    small = tmp_path / "small.jsonl"
    small.write_text("\n".join(json.dumps(r) for r in rows))
    cached_lm = _lm(embedded_model, small, ttt="full", lr=1e-4, cache=True)
    cached = _samples(cached_lm, limit=6)
    uncached = _samples(_lm(embedded_model, small, ttt="full", lr=1e-4, cache=False), limit=6)
    assert _loglikelihoods(cached) == _loglikelihoods(uncached)
    hits = [s["doc"]["finemed_ttt"]["cache_hit"] for s in cached]
    assert any(hits) and not all(hits)


def test_failure_during_adaptation_restores_weights(embedded_model, corpus, monkeypatch):
    lm = _lm(embedded_model, corpus, ttt="full", lr=1e-3, cache=False)
    before = _weights_hash(lm)
    real_train = type(lm._adapter)._train

    def train_then_fail(adapter, batch):
        real_train(adapter, batch)  # the weights really change ...
        raise RuntimeError("simulated failure after the optimizer step")

    monkeypatch.setattr(type(lm._adapter), "_train", train_then_fail)
    with pytest.raises(RuntimeError, match="simulated failure"):
        _samples(lm, limit=1)
    assert _weights_hash(lm) == before  # ... and are restored anyway


@pytest.mark.parametrize(
    "args, message",
    [
        ({"corpus": "EMPTY"}, "empty"),
        ({"corpus": "NO_RESPONSE"}, "response"),
        ({"retriever": "no-such-encoder-anywhere"}, "no-such-encoder-anywhere"),
        ({"lr": -0.1}, "lr"),
        ({"steps": -1}, "steps"),
        ({"top_k": 0}, "top_k"),
    ],
)
def test_bad_ttt_input_fails_before_the_model_loads(embedded_model, corpus, tmp_path, monkeypatch, args, message):
    from finemed_eval.ttt import lm as lm_module

    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "no_response.jsonl").write_text(json.dumps({"id": "x", "question": "Why?"}) + "\n")
    paths = {"EMPTY": tmp_path / "empty.jsonl", "NO_RESPONSE": tmp_path / "no_response.jsonl"}
    args = {k: str(paths.get(v, v)) if k == "corpus" else v for k, v in args.items()}

    def must_not_load(*a, **k):
        raise AssertionError("the model was loaded before the TTT input was checked")

    monkeypatch.setattr(lm_module.HFLM, "__init__", must_not_load)
    with pytest.raises(ValueError, match=message):
        _lm(embedded_model, corpus, ttt="full", **args)
