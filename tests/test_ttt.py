"""Test-time training through lm-eval: real SmolLM2, real MiniLM, real faiss, real MedMCQA explanations.

Wiring tests (grouping, logging, formats, cache) use LoRA and small limits; full-parameter training
is paid for only where full mode itself is the subject (exact restore, the failure path).
"""

from __future__ import annotations

import hashlib
import json

import lm_eval
import pytest
from lm_eval.api.instance import Instance
from lm_eval.api.registry import get_model

pytestmark = pytest.mark.file_seconds(270)  # under -n 2 on 2 cores (CI): starts before shorter files

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


@pytest.fixture(scope="module")
def small_corpus(corpus, tmp_path_factory):
    """Three rows: documents are forced to share neighbours."""
    rows = [json.loads(line) for line in corpus.read_text().splitlines()][-3:]
    path = tmp_path_factory.mktemp("small") / "small.jsonl"
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
        model=lm, tasks=[TASK], limit=limit, num_fewshot=kwargs.pop("num_fewshot", 0), log_samples=True,
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


def _adapted(lm) -> list[dict]:
    return [r for r in lm.log.records if "neighbours" in r]


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


def test_bf16_checkpoint_answers_with_the_update(embedded_model, corpus, tmp_path):
    """dtype=bfloat16 (how lm-eval loads a bf16 checkpoint): the paper's step still moves >= 90 % of the
    weights that answer, and the log says so per document."""
    lm = _lm(embedded_model, corpus, ttt="full", lr=1e-5, dtype="bfloat16", ttt_log=str(tmp_path / "ttt.jsonl"))
    _samples(lm, limit=1)
    (record,) = _adapted(lm)
    assert record["changed_fraction"] >= 0.9
    assert json.loads((tmp_path / "ttt.jsonl").read_text().splitlines()[0])["changed_fraction"] == record["changed_fraction"]


def test_bf16_in_model_precision_warns_that_the_update_was_lost(embedded_model, corpus):
    lm = _lm(embedded_model, corpus, ttt="full", lr=1e-5, dtype="bfloat16", ttt_precision="model")
    with pytest.warns(UserWarning, match="rounded most of the update away"):
        _samples(lm, limit=1)
    assert _adapted(lm)[0]["changed_fraction"] < 0.1


def _requests(docs: list[dict], tasks: list[str]) -> list[Instance]:
    """The same documents under several task names (as seed variants of one task are), two options each."""
    out = []
    for task in tasks:
        for doc_id, doc in enumerate(docs):
            for option in (" A", " B"):
                out.append(Instance("loglikelihood", doc, (f"Question: {doc['question']}\nAnswer:", option), len(out), (task, doc_id, 1)))
    return out


def test_one_adaptation_per_neighbour_set_across_tasks_and_seeds(embedded_model, small_corpus):
    from finemed_eval.data import DEMO_DIR

    docs = [json.loads(line) for line in (DEMO_DIR / "demo_test.jsonl").read_text().splitlines()[:4]]
    together = _lm(embedded_model, small_corpus, ttt="lora", lr=1e-3, cache=False)
    joint = together.loglikelihood(_requests(docs, ["seed0", "seed1", "seed2"]))
    neighbour_sets = {tuple(n["id"] for n in r["neighbours"]) for r in _adapted(together)}
    assert together.adaptations == len(neighbour_sets) <= 3  # 12 documents, at most 3 distinct neighbours
    assert len(_adapted(together)) == 12 and sum(r["shared_by"] for r in _adapted(together)) >= 12
    # Seed by seed, document by document: the same numbers.
    alone = _lm(embedded_model, small_corpus, ttt="lora", lr=1e-3, cache=False)
    separate = [ll for task in ("seed0", "seed1", "seed2") for ll in alone.loglikelihood(_requests(docs, [task]))]
    assert alone.adaptations == 3 * together.adaptations
    assert [ll for ll, _ in joint] == pytest.approx([ll for ll, _ in separate], abs=1e-6)


def test_log_records_neighbour_similarity_tokens_and_time(embedded_model, corpus):
    lm = _lm(embedded_model, corpus, ttt="lora", lr=1e-3)
    _samples(lm, limit=2)
    records = _adapted(lm)
    assert sorted(r["doc_id"] for r in records) == [0, 1] and {r["task"] for r in records} == {TASK}
    for record in records:
        assert record["neighbours"][0]["id"]
        assert 0 < record["neighbours"][0]["score"] <= 1.0 + 1e-6
        assert record["trained_tokens"] > 10 and record["ms"] > 0 and 0 < record["changed_fraction"] <= 1
        assert record["format"] == "plain"  # the demo task answers on plain few-shot text


def test_sift_selection_reaches_the_model_and_its_log(embedded_model, corpus):
    """neighbour_selection=sift is not only validated: the model trains on SIFT's picks and logs them."""
    from finemed_eval.ttt.retrieval import Retriever, load_corpus

    lm = _lm(embedded_model, corpus, ttt="lora", lr=1e-3, top_k=2, neighbour_selection="sift", steps=1)
    samples = _samples(lm, limit=2)
    records = _adapted(lm)
    assert sorted(r["doc_id"] for r in records) == [0, 1]
    sift = Retriever(load_corpus(str(corpus)), encoder="minilm", selection="sift")
    for record, sample in zip(sorted(records, key=lambda r: r["doc_id"]), samples):
        assert record["neighbour_selection"] == "sift"
        question = sample["doc"]["question"]
        expected = sift.search([question], 2)[0]
        assert [n["id"] for n in record["neighbours"]] == [n.id for n in expected]
        assert [n["row"] for n in record["neighbours"]] == [n.row for n in expected]
        variances = [n["variance"] for n in record["neighbours"]]
        assert variances == sorted(variances, reverse=True) and variances[0] < 1.0


def test_neighbour_cache_across_calls_gives_identical_results(embedded_model, small_corpus):
    cached_lm = _lm(embedded_model, small_corpus, ttt="lora", lr=1e-3, cache=True)
    first = _loglikelihoods(_samples(cached_lm, limit=4))
    again = _loglikelihoods(_samples(cached_lm, limit=4))
    hits = [r["cache_hit"] for r in _adapted(cached_lm)]
    assert not any(hits[: len(hits) // 2]) and all(hits[len(hits) // 2:])
    assert again == first
    assert _loglikelihoods(_samples(_lm(embedded_model, small_corpus, ttt="lora", lr=1e-3, cache=False), limit=4)) == first


def _training_texts(lm, monkeypatch) -> list[str]:
    texts = []
    real = type(lm._adapter).encode

    def recording(adapter, question, response, fmt=None):
        example = real(adapter, question, response, fmt)
        texts.append(lm.tokenizer.decode(example.input_ids))
        return example

    monkeypatch.setattr(type(lm._adapter), "encode", recording)
    return texts


def _contexts(lm, monkeypatch) -> list[str]:
    contexts = []
    real = type(lm)._answer

    def recording(model, requests, answer, disable_tqdm):
        contexts.extend(r.args[0] for r in requests)
        return real(model, requests, answer, disable_tqdm)

    monkeypatch.setattr(type(lm), "_answer", recording)
    return contexts


@pytest.mark.parametrize("chat", [False, True])
def test_training_text_is_rendered_like_the_documents_prompt(embedded_model, corpus, monkeypatch, chat):
    lm = _lm(embedded_model, corpus, ttt="lora", lr=1e-3, max_length=1024)  # room for the whole neighbour
    texts, contexts = _training_texts(lm, monkeypatch), _contexts(lm, monkeypatch)
    kwargs = {"apply_chat_template": True, "system_instruction": "You answer medical exam questions."} if chat else {}
    _samples(lm, limit=1, num_fewshot=1, **kwargs)
    (text,), context = texts, contexts[0]
    if chat:  # same system message, same turn markup, up to where the user's words begin
        user = "<|im_start|>user\n"
        prefix = context[: context.index(user) + len(user)]  # lm-eval's system message (+ task description)
        assert prefix.startswith("<|im_start|>system\nYou answer medical exam questions.")
        assert text.startswith(prefix)
        assert text.endswith("<|im_end|>\n")
    else:  # plain text both: no chat markup, no default system prompt
        assert not context.startswith("<|im_start|>") and not text.startswith("<|im_start|>")
        assert "<|im_start|>" not in text and text.endswith(lm.tokenizer.eos_token)
    assert _adapted(lm)[0]["format"] == ("chat" if chat else "plain")


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
        ({"corpus": "SFT_NO_INSTRUCTION", "corpus_question_field": "instruction"}, r"sft\.jsonl row 1: field 'instruction'"),
        ({"retriever": "no-such-encoder-anywhere"}, "no-such-encoder-anywhere"),
        ({"lr": -0.1}, "lr"),
        ({"steps": -1}, "steps"),
        ({"top_k": 0}, "top_k"),
        ({"ttt_preset": "released"}, "ttt_preset"),
        ({"ttt_format": "chatml"}, "did you mean 'chat'"),
        ({"backend": "vllm"}, "engine=vllm"),
        ({"no_such_argument": 1}, "no_such_argument"),
    ],
)
def test_bad_ttt_input_fails_before_the_model_loads(embedded_model, corpus, tmp_path, monkeypatch, args, message):
    from finemed_eval.ttt import lm as lm_module

    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "no_response.jsonl").write_text(json.dumps({"id": "x", "question": "Why?"}) + "\n")
    (tmp_path / "sft.jsonl").write_text(json.dumps({"text": "raw", "response": "Because."}) + "\n")
    paths = {"EMPTY": "empty.jsonl", "NO_RESPONSE": "no_response.jsonl", "SFT_NO_INSTRUCTION": "sft.jsonl"}
    args = {k: str(tmp_path / paths[v]) if k == "corpus" else v for k, v in args.items()}

    def must_not_load(*a, **k):
        raise AssertionError("the model was loaded before the TTT input was checked")

    monkeypatch.setattr(lm_module.HFLM, "__init__", must_not_load)
    with pytest.raises(ValueError, match=message):
        _lm(embedded_model, corpus, ttt="full", **args)



def test_trained_model_offline_gets_an_error_naming_corpus_and_retriever(embedded_model, tmp_path, monkeypatch):
    """A trained zoo model (or any non-embedded one) defaults to the hub corpus and bge-large; offline
    the one error names what works, before the model loads. With them given, it runs on a local
    FineMed-SFT-layout file (instruction/response columns, no field arguments) and real MiniLM."""
    from finemed_eval import zoo
    from finemed_eval.data.schema import DataError
    from finemed_eval.ttt import lm as lm_module

    monkeypatch.setenv("FINEMED_ZOO_DIR", str(tmp_path / "zoo"))
    zoo.register("my-trained", embedded_model, "a trained model (the embedded weights stand in for a checkpoint)")
    original_init = lm_module.HFLM.__init__
    monkeypatch.setattr(lm_module.HFLM, "__init__", lambda *a, **k: pytest.fail("the model loaded before the corpus was checked"))
    with pytest.raises(DataError) as excinfo:
        get_model("finemed_ttt")(pretrained="my-trained", ttt="full", device="cpu")
    message = str(excinfo.value)
    assert "finemed-sft-o1" in message and "corpus=demo" in message and "retriever=minilm" in message
    assert "FINEMED_DATA_DIR" not in message and "data_dir=" not in message

    monkeypatch.setattr(lm_module.HFLM, "__init__", original_init)
    sft = tmp_path / "sft.jsonl"
    demo = [json.loads(line) for line in (pytest.importorskip("finemed_eval.data").DEMO_DIR / "reasoning_corpus.jsonl").read_text().splitlines()]
    sft.write_text("".join(json.dumps({"text": "", "instruction": r["question"], "response": r["response"]}) + "\n" for r in demo))
    lm = get_model("finemed_ttt")(pretrained="my-trained", ttt="lora", lr=1e-3, corpus=str(sft), retriever="minilm",
                                  device="cpu", batch_size=8, max_length=256)
    _samples(lm, limit=1)
    (record,) = _adapted(lm)
    assert record["neighbours"][0]["id"].startswith("sft.jsonl:")  # retrieved from the local file, rows numbered from 1


def test_bf16_on_a_device_without_bf16_is_one_clear_error():
    from finemed_eval.ttt.lm import check_dtype_supported
    from finemed_eval.ttt.options import TTTError

    with pytest.raises(TTTError, match="no bfloat16 support"):
        check_dtype_supported("bfloat16", "cuda:0", bf16_supported=lambda: False)
    check_dtype_supported("bfloat16", "cuda:0", bf16_supported=lambda: True)
    check_dtype_supported("bfloat16", "cpu")  # computed in software on CPU
    check_dtype_supported("float16", "cuda:0", bf16_supported=lambda: False)


def test_reference_preset_runs_the_released_procedure(embedded_model, corpus):
    """ttt_preset=reference: retrieval over whole o1-rendered conversations (mean pooled, L2) and a
    train-mode step on the whole text; scores differ from ours, weights are still restored."""
    lm = _lm(embedded_model, corpus, ttt="full", lr=1e-5, ttt_preset="reference")
    before = _weights_hash(lm)
    _samples(lm, limit=1)
    (record,) = _adapted(lm)
    assert record["format"] == "reference" and record["neighbours"][0]["score"] >= 0  # an L2 distance
    assert record["trained_tokens"] > 100  # the o1 system prompt and the question are trained on too
    assert _weights_hash(lm) == before


# Data parallel TTT over two CPU (gloo) processes, 3-shot: test_fewshot_determinism.py's launches
# (test_two_gloo_processes_give_one_process_prompts_loglikelihoods_and_ttt) run it with the few-shot seeds.
