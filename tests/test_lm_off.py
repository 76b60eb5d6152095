"""finemed_ttt with ttt=off is lm-eval's `hf` model: same log-likelihoods, same greedy generations."""

from __future__ import annotations

import lm_eval
import pytest
from lm_eval.api.registry import get_model
from lm_eval.models.huggingface import HFLM


def _samples(model, task: str, task_manager, **kwargs) -> list[dict]:
    results = lm_eval.simple_evaluate(model=model, tasks=[task], log_samples=True, task_manager=task_manager, **kwargs)
    return sorted(results["samples"][task], key=lambda s: s["doc_id"])


@pytest.fixture(scope="module")
def models(embedded_model):
    reference = HFLM(pretrained=str(embedded_model), device="cpu", batch_size=4)
    ours = get_model("finemed_ttt")(pretrained=str(embedded_model), ttt="off", device="cpu", batch_size=4)
    return reference, ours


def test_loglikelihoods_equal_hf(models, local_data, task_manager):
    reference, ours = models
    kwargs = dict(limit=3, num_fewshot=1, fewshot_random_seed=7)
    expected = _samples(reference, "finemed_medqa", task_manager, **kwargs)
    actual = _samples(ours, "finemed_medqa", task_manager, **kwargs)
    assert [s["arguments"] for s in actual] == [s["arguments"] for s in expected]
    pairs = [(a[0], e[0]) for s_a, s_e in zip(actual, expected) for a, e in zip(s_a["resps"], s_e["resps"])]
    assert len(pairs) == 12
    for (ll_ours, greedy_ours), (ll_ref, greedy_ref) in pairs:
        assert abs(ll_ours - ll_ref) <= 1e-6
        assert greedy_ours == greedy_ref


def test_lm_head_runs_only_where_continuations_can_be_scored(models):
    """Scoring skips the LM head for context positions, yet every (log-likelihood, greedy) equals
    HFLM's own computation: rows of different lengths in one padded batch, continuations of 1-4
    tokens, and a row whose input really ends with token 0 (the pad value)."""
    reference, ours = models
    encode = ours.tok_encode
    preamble = "The following are multiple choice questions about medicine, answered by a careful clinician. "
    contexts = [preamble * 3 + "Which organ makes insulin?\nAnswer:", preamble * 2 + "Pick one:", preamble * 2 + "Kidney stones are mostly"]
    continuations = [encode(" the pancreas"), encode(" B"), encode(" calcium oxalate crystals")]
    requests = [((c, ""), encode(c), cont) for c, cont in zip(contexts, continuations)]
    requests.append((("zero", ""), encode(preamble * 2 + "Token zero then"), [0, encode(" x")[0]]))  # input row ends in 0
    head_positions = []
    hook = ours.model.lm_head.register_forward_hook(lambda _m, args, _o: head_positions.append(args[0].shape[1]))
    try:
        ours_results = ours._loglikelihood_tokens(requests, disable_tqdm=True)
    finally:
        hook.remove()
    expected = reference._loglikelihood_tokens(requests, disable_tqdm=True)
    longest_input = max(len(r[1]) + len(r[2]) - 1 for r in requests)
    assert head_positions and max(head_positions) < longest_input / 2  # the head saw only the tail window
    for (ll, greedy), (ll_ref, greedy_ref) in zip(ours_results, expected, strict=True):
        assert abs(ll - ll_ref) <= 1e-6 and greedy == greedy_ref


def test_greedy_generations_equal_hf(models, local_data, task_manager):
    reference, ours = models
    kwargs = dict(limit=2, num_fewshot=0, gen_kwargs="max_gen_toks=24")
    expected = _samples(reference, "finemed_mmlu_pro_health_cot", task_manager, **kwargs)
    actual = _samples(ours, "finemed_mmlu_pro_health_cot", task_manager, **kwargs)
    assert [s["resps"] for s in actual] == [s["resps"] for s in expected]
    assert all(s["resps"][0][0].strip() for s in actual)  # it really generated text


def test_model_is_registered_with_lm_eval():
    from finemed_eval.ttt.lm import FineMedTTT

    assert get_model("finemed_ttt") is FineMedTTT
    assert get_model("hf") is HFLM  # lm-eval's own models still resolve


@pytest.mark.parametrize(
    "args, message",
    [
        ({"ttt": "sometimes"}, "ttt='sometimes'"),
        ({"not_an_arg": 1}, "'not_an_arg'"),
        ({"ttt": "full", "lr": -1.0}, "lr=-1.0"),
        ({"ttt": "full", "steps": -2}, "steps=-2"),
        ({"backend": "seq2seq"}, "backend"),
    ],
)
def test_bad_model_arguments_fail_before_loading(args, message, monkeypatch):
    from finemed_eval.ttt import lm

    def must_not_load(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(lm.HFLM, "__init__", must_not_load)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        get_model("finemed_ttt")(**args)


@pytest.mark.parametrize(
    "path, rank, expected",
    [
        ("runs.d/ttt", 0, "runs.d/ttt.rank0"),  # the folder keeps its name; the suffix goes on the file
        ("runs.d/ttt.jsonl", 1, "runs.d/ttt.rank1.jsonl"),
        ("ttt.jsonl", 0, "ttt.rank0.jsonl"),
    ],
)
def test_ttt_log_of_each_process_lands_in_the_folder_named(path, rank, expected, tmp_path, monkeypatch):
    from finemed_eval.ttt.lm import _per_process
    from finemed_eval.ttt.log import TTTLog

    monkeypatch.chdir(tmp_path)
    assert _per_process(path, rank, world_size=2) == expected
    assert _per_process(path, rank, world_size=1) == path  # one process: the name as given
    TTTLog(_per_process(path, rank, world_size=2)).add([{"task": "t", "doc_id": 0}])
    assert (tmp_path / expected).is_file()
    assert not any(p.name.startswith("runs.rank") for p in tmp_path.iterdir())
