"""judge.method logprobs (synth/judge.py): the A.2 judge read from its next-token probabilities
(G-Eval's expected score) with contextual calibration (Zhao et al. 2021).

- the pure arithmetic against hand computations: value probabilities from top-k (one-token values and
  "10" = "1" then "0"), the expected score, the content-free prior and the calibration;
- the chain: each field pre-filled with the values chosen before it, content-free queries under the
  same pre-fill, a judge biased towards "True" corrected by its own prior;
- the request shape, the parser of the cached answer, the config switch (refused for the `local`
  backend, naming the file and the field, before any model call);
- on a real vLLM server: tests/test_synth_vllm.py (it shares that module's server).
"""

from __future__ import annotations

import asyncio
import json
import math

import pytest
import yaml

from finemed_eval.synth import judge as J
from finemed_eval.synth.ask import OutputFormat, payload
from finemed_eval.synth.backends import logprob_text
from finemed_eval.synth.config import ConfigError, RoleConfig, load_config
from finemed_eval.synth.parse import parse_top_logprobs


TEN = tuple(str(v) for v in range(1, 11))


def test_value_mass_reads_one_and_two_token_values():
    first = {"1": 0.5, "2": 0.2, "9": 0.1, ' "': 0.05}
    after = {"1": {"0": 0.4, ",": 0.5, "5": 0.1}}  # "15" is out of range: neither 1 nor 10
    mass = J.value_mass(first, TEN, after)
    assert mass["1"] == pytest.approx(0.5 * 0.5)
    assert mass["10"] == pytest.approx(0.5 * 0.4)
    assert mass["2"] == pytest.approx(0.2) and mass["9"] == pytest.approx(0.1)
    assert sum(mass[v] for v in ("3", "4", "5", "6", "7", "8")) == 0
    dist = J.normalise(mass)
    assert dist["1"] == pytest.approx(0.25 / 0.75) and sum(dist.values()) == pytest.approx(1)
    # G-Eval: (1*0.25 + 10*0.2 + 2*0.2 + 9*0.1) / 0.75
    assert J.expected(dist) == pytest.approx(3.55 / 0.75)
    assert J.extensions(TEN) == ("1",) and J.extensions(("1", "2", "3", "4", "5", "6")) == ()
    assert J.extensions(("True", "False")) == ()


def test_calibration_divides_by_the_content_free_prior():
    prior = J.prior([{"True": 0.9, "False": 0.1}, {"True": 1.0, "False": 0.0}])
    assert prior == {"True": pytest.approx(0.95), "False": pytest.approx(0.05)}
    q = J.calibrate({"True": 0.9, "False": 0.1}, prior)
    assert q["True"] == pytest.approx((0.9 / 0.95) / (0.9 / 0.95 + 0.1 / 0.05))  # = 18/56
    assert q["True"] == pytest.approx(18 / 56)
    q = J.calibrate({"True": 0.99, "False": 0.01}, prior)  # above its prior: True survives
    assert q["True"] > 0.5
    numbers = J.calibrate({"1": 0.6, "2": 0.4}, {"1": 0.8, "2": 0.2})
    assert numbers["2"] == pytest.approx((0.4 / 0.2) / (0.6 / 0.8 + 0.4 / 0.2))
    # an unseen value in a prior is floored at the k-th token's probability (its upper bound), never 0
    assert J.floor_unseen({"True": 0.0, "False": 0.3}, {"False": 0.3, "x": 0.01}) == {"True": 0.01, "False": 0.3}


def test_decide_rounds_the_expected_score_half_up_and_takes_the_likelier_label():
    assert J.decide("quality", {}, {"7": 0.5, "8": 0.5}, 1.0).value == 8  # 7.5 -> 8
    assert J.decide("quality", {}, {"7": 0.6, "8": 0.4}, 1.0).value == 7
    assert J.decide("MentionSpecificDetails", {}, {"True": 0.4, "False": 0.6}, 1.0).value is False
    assert J.decide("MentionSpecificDetails", {}, {"True": 0.6, "False": 0.4}, 1.0).value is True
    # near-equal masses normalise to P(True) == 0.5 exactly: a tie, so the label agrees with the stored p_true
    a, b = 0.30000000000000004, 0.3
    tie = {"True": a / (a + b), "False": b / (a + b)}
    assert tie["True"] == 0.5 and tie["False"] < 0.5
    assert J.decide("MentionSpecificDetails", {}, tie, 1.0).value is False


def test_prefill_follows_the_prompts_json_order_and_format():
    assert J.prefill([], "quality") == '{\n"quality": '
    filled = [("quality", "7"), ("difficulty", "8"), ("Relevance2Medicine", "5")]
    assert J.prefill(filled, "MentionSpecificDetails") == (
        '{\n"quality": 7,\n"difficulty": 8,\n"Relevance2Medicine": 5,\n"MentionSpecificDetails": "'
    )
    whole = J.prefill(filled, "MentionSpecificDetails") + 'False"\n}'
    assert json.loads(whole) == {"quality": 7, "difficulty": 8, "Relevance2Medicine": 5, "MentionSpecificDetails": "False"}


class FakeJudge:
    """A judge that says "True" for everything (0.9; 0.95 for content-free queries) and prefers 9s;
    records every (query, pre-fill) it is asked."""

    def __init__(self, p_true_query: float):
        self.p_true_query = p_true_query
        self.asked: list[tuple[str, str]] = []

    async def __call__(self, query: str, head: str) -> dict[str, float]:
        self.asked.append((query, head))
        content_free = query in J.CONTENT_FREE
        if head.endswith('"MentionSpecificDetails": "'):
            p = 0.95 if content_free else self.p_true_query
            return {"True": p, "False": 1 - p}
        if head.endswith(": 1"):  # after a "1": "0" (=10) or the end of the number
            return {"0": 0.5, ",": 0.5}
        if content_free:
            return {"9": 0.5, "5": 0.5}
        return {"9": 0.5, "5": 0.3, "1": 0.2}


def test_chain_conditions_each_field_and_calibrates_a_judge_biased_to_true():
    fake = FakeJudge(p_true_query=0.9)
    raw = asyncio.run(J.judge(fake, "What causes anaemia?", calibration=False))
    assert raw["MentionSpecificDetails"].value is True  # the bias, uncorrected
    # quality: 1 -> 0.1, 10 -> 0.1, 5 -> 0.3, 9 -> 0.5; expected = 0.1 + 1 + 1.5 + 4.5 = 7.1 -> 7
    assert raw["quality"].expected == pytest.approx(7.1) and raw["quality"].value == 7
    heads = {head for _, head in fake.asked}
    assert '{\n"quality": 7,\n"difficulty": ' in heads  # difficulty conditioned on the chosen quality
    assert raw["quality"].coverage == pytest.approx(1.0)

    fake = FakeJudge(p_true_query=0.9)
    calibrated = asyncio.run(J.judge(fake, "What causes anaemia?", calibration=True))
    assert calibrated["MentionSpecificDetails"].value is False  # 0.9 is below its content-free prior 0.95
    assert calibrated["MentionSpecificDetails"].dist["True"] == pytest.approx(18 / 56)
    assert {q for q, _ in fake.asked} == {"What causes anaemia?", *J.CONTENT_FREE}
    # quality, calibrated by hand: prior (normalised) 1 -> 0.25*0.5/0.5... computed from the fake:
    # content-free masses 9 -> 0.5, 5 -> 0.5, 1/10 unseen -> floored at the k-th probability (0.5)
    prior = {v: 0.0 for v in TEN} | {"9": 0.5, "5": 0.5}
    prior = J.normalise(J.floor_unseen(prior, {"9": 0.5, "5": 0.5}))
    query = J.normalise({v: 0.0 for v in TEN} | {"9": 0.5, "5": 0.3, "1": 0.1, "10": 0.1})
    expected_dist = J.calibrate(query, prior)
    assert calibrated["quality"].dist == pytest.approx(expected_dist)
    assert calibrated["quality"].value == math.floor(J.expected(expected_dist) + 0.5)

    fake = FakeJudge(p_true_query=0.995)  # moved above its prior by the question: True stays True
    assert asyncio.run(J.judge(fake, "What did the patient above take?", calibration=True))["MentionSpecificDetails"].value


def test_chain_fails_loudly_when_no_allowed_value_is_in_the_top_k():
    async def off_topic(query, head):
        return {"Hello": 1.0}

    with pytest.raises(J.NoMass, match="no_allowed_value:quality"):
        asyncio.run(J.judge(off_topic, "q", calibration=False))


def test_next_token_request_shape_and_cached_answer():
    role = RoleConfig(backend="vllm", structured_output=True)
    messages = [{"role": "user", "content": "p"}, {"role": "assistant", "content": '{\n"quality": '}]
    body = payload(messages, role, attempt=0, seed=3, output_format=OutputFormat("next_token", top_logprobs=20))
    assert body["max_tokens"] == 1 and body["logprobs"] is True and body["top_logprobs"] == 20
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert "response_format" not in body and body["messages"] == messages

    response = {"choices": [{"message": {"content": "7"}, "finish_reason": "length", "logprobs": {"content": [
        {"token": "7", "logprob": -0.1, "top_logprobs": [{"token": "7", "logprob": math.log(0.6)}, {"token": "8", "logprob": math.log(0.3)}]}
    ]}}]}
    parsed = parse_top_logprobs(logprob_text(response))
    assert parsed.ok and parsed.value == {"7": pytest.approx(0.6), "8": pytest.approx(0.3)}
    assert parse_top_logprobs(logprob_text({"choices": [{"message": {"content": "7"}}]})).reason == "no_logprobs"
    for bad in ("", "not json", '{"top_logprobs": [{"token": 1, "logprob": -1}]}', None):
        assert not parse_top_logprobs(bad).ok


def test_switch_is_refused_for_the_local_backend_naming_file_and_field(tmp_path):
    data = {"input": {"path": "x.jsonl"}, "scoring": {"backend": "local"}, "judge": {"method": "logprobs"}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"c\.yaml: field 'judge\.method'.*'local' \(transformers serve\)"):
        load_config(path)
    data["scoring"] = {"backend": "vllm"}
    data["judge"] = {"calibration": "content_free"}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"field 'judge\.calibration' needs judge\.method 'logprobs'"):
        load_config(path)
    data["scoring"] = {"backend": "endpoint", "endpoint_url": "https://api.example.com/v1"}
    data["judge"] = {"method": "logprobs"}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"field 'judge\.method'"):
        load_config(path)
    data["scoring"] = {"backend": "vllm"}
    data["judge"] = {"method": "logprobs", "calibration": "content_free", "content_free": ["N/A", ""]}
    path.write_text(yaml.safe_dump(data))
    assert load_config(path).judge.content_free == ["N/A", ""]
