"""A re-ask after the model copied the prompt's JSON placeholder bans the placeholder's first token.

- the request side, with the real embedded SmolLM2 tokenizer: first asks carry no ban (they are the
  paper's request); a re-ask after `placeholder:<key>` carries `logit_bias` -100 for exactly the tokens
  that open the placeholder after a JSON string's quote ("Gen") and after a space (" Generated"), and
  keeps it on later attempts; a re-ask after any other failure carries none. The model's outputs are the
  ones SmolLM2 wrote for fixture text t02 in the offline-vllm run (recorded), answered in order.
- on a real vLLM server (test_synth_vllm.py, sharing that module's server): greedy, the model copies the
  placeholder for t02's answer prompt; the same request with the ban does not, nor does the sampled re-ask.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import AutoTokenizer

from finemed_eval.embedded import embedded_model_dir
from finemed_eval.synth import prompts
from finemed_eval.synth.ask import ask, payload
from finemed_eval.synth.backends import placeholder_ban
from finemed_eval.synth.config import RetryConfig, RoleConfig
from finemed_eval.synth.parse import PLACEHOLDER_TEXT, copied_placeholder, parse_answers
from finemed_eval.synth.stages import ANSWERS

FIXTURES = Path(__file__).parent / "fixtures" / "synth"
T02_QUESTION = "What is the role of SGLT2 inhibitors in reducing heart failure hospitalisation?"
# what SmolLM2 answered (greedy, then sampled) to t02's answer prompt in the offline-vllm run
COPIED = '{\n"answer1": "Generated first answer content",\n"answer2": "Generated second answer content"\n}'
REAL = json.dumps({
    "answer1": "SGLT2 inhibitors lower glucose by increasing urinary glucose excretion.",
    "answer2": "They also reduce hospitalisation for heart failure in type 2 diabetes.",
})


def t02_messages() -> list[dict]:
    text = next(json.loads(line)["text"] for line in (FIXTURES / "raw_texts.jsonl").open() if '"t02"' in line)
    return prompts.chat(prompts.answer_prompt(T02_QUESTION, text))


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(str(embedded_model_dir()))


def first_token(tokenizer, context: str, text: str) -> int:
    """The token after the context's own tokens (SmolLM2's pre-tokenizer splits quotes and spaces from letters)."""
    ids = tokenizer.encode(context + text, add_special_tokens=False)
    return ids[len(tokenizer.encode(context, add_special_tokens=False))] if context.strip() else ids[0]


def replay(outputs: list[str]):
    """The recorded outputs in order, as datatrove's results; the request bodies are kept."""
    bodies: list[dict] = []

    async def generate(body: dict):
        bodies.append(body)
        return SimpleNamespace(text=outputs[len(bodies) - 1], finish_reason="stop", usage={})

    return generate, bodies


def test_the_ban_is_the_placeholders_first_token_in_every_context(tokenizer):
    role = RoleConfig(backend="vllm", model="embedded")
    for key, text in PLACEHOLDER_TEXT.items():
        assert copied_placeholder(f"placeholder:{key}") == text
        expected = {first_token(tokenizer, context, text) for context in ("", " ", '"', ' "', '{"answer1": "', '":"')}
        ban = placeholder_ban(role, [text])
        assert {int(token) for token in ban} == expected and set(ban.values()) == {-100.0}
        # "Generated" opens a JSON string as "Gen" + "erated", after a space as one token " Generated"
        assert sorted(tokenizer.decode([int(token)]) for token in ban) == [" Generated", "Gen"]
    assert copied_placeholder("identical_answers") is None and copied_placeholder("placeholder:answer9") is None
    assert placeholder_ban(role, []) == {}


def test_first_asks_carry_no_ban_and_re_asks_after_a_copy_do(tokenizer):
    role = RoleConfig(backend="vllm", model="embedded", max_tokens=384, structured_output=True)
    ban = {str(first_token(tokenizer, '"', PLACEHOLDER_TEXT["answer1"])): -100.0,
           str(first_token(tokenizer, " ", PLACEHOLDER_TEXT["answer1"])): -100.0}

    generate, bodies = replay([COPIED, REAL, REAL])
    answer = asyncio.run(ask(generate, t02_messages(), parse_answers, role=role, retry=RetryConfig(attempts=3),
                             seed_parts=(0, "answer", "t02", "a"), output_format=ANSWERS))
    assert answer.ok and answer.failures == ["placeholder:answer1"] and len(bodies) == 2
    assert "logit_bias" not in bodies[0]  # the first ask is the paper's request
    assert bodies[1]["logit_bias"] == ban and bodies[1]["seed"] != bodies[0]["seed"]
    assert {k: v for k, v in bodies[1].items() if k != "logit_bias"} == payload(
        t02_messages(), role, attempt=1, seed=bodies[1]["seed"], output_format=ANSWERS)

    # the ban stays on every later attempt, also after a different failure in between
    identical = json.dumps({"answer1": "Metformin is the usual first drug.", "answer2": "Metformin is the usual first drug."})
    generate, bodies = replay([COPIED, identical, COPIED])
    answer = asyncio.run(ask(generate, t02_messages(), parse_answers, role=role, retry=RetryConfig(attempts=3),
                             seed_parts=(0, "answer", "t02", "a"), output_format=ANSWERS))
    assert answer.reason == "placeholder:answer1" and [("logit_bias" in b) for b in bodies] == [False, True, True]

    # re-asks after other failures carry none
    generate, bodies = replay([identical, "no json here", REAL])
    asyncio.run(ask(generate, t02_messages(), parse_answers, role=role, retry=RetryConfig(attempts=3),
                    seed_parts=(0, "answer", "t02", "a"), output_format=ANSWERS))
    assert len(bodies) == 3 and not any("logit_bias" in body for body in bodies)


def test_every_backend_gets_the_ban_as_logit_bias():
    # vLLM and OpenAI-compatible endpoints read `logit_bias`; `transformers serve` maps it to sequence_bias
    for backend in ("vllm", "endpoint", "local"):
        role = RoleConfig(backend=backend, model="embedded", structured_output=True)
        ban = placeholder_ban(role, [PLACEHOLDER_TEXT["question1"]])
        body = payload([{"role": "user", "content": "q"}], role, attempt=1, seed=3, logit_bias=ban)
        assert body["logit_bias"] == ban
    # an endpoint model whose tokenizer is not on this machine: its token ids are unknown, no ban
    assert placeholder_ban(RoleConfig(backend="endpoint", model=str(FIXTURES / "no-such-model")), ["Generated"]) == {}
