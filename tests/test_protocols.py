"""The authors' o1 protocol as one switch, and the per-task count of generations that hit the token budget."""

from __future__ import annotations

import lm_eval
import pytest
from lm_eval.api.registry import get_model

from finemed_eval.protocols import O1_SYSTEM_PROMPT, get_protocol


def test_o1_protocol_is_chat_template_plus_the_authors_system_prompt():
    o1 = get_protocol("o1")
    assert o1.evaluate_kwargs() == {"apply_chat_template": True, "system_instruction": O1_SYSTEM_PROMPT}
    assert O1_SYSTEM_PROMPT.startswith("You are a helpful professional doctor.")
    assert "**Thought** and **Summarization**" in O1_SYSTEM_PROMPT and O1_SYSTEM_PROMPT.endswith("Here is the question: ")
    assert get_protocol("default").evaluate_kwargs() == {}
    with pytest.raises(ValueError, match="did you mean 'o1'"):
        get_protocol("o1x")


def test_cot_tasks_default_to_the_authors_2048_token_budget(task_manager, local_data):
    task = task_manager.load(["finemed_medqa_cot"])["tasks"]["finemed_medqa_cot"]
    assert task.config.generation_kwargs["max_gen_toks"] == 2048


def test_o1_protocol_prompts_in_chat_and_the_log_counts_budget_hits(task_manager, embedded_model):
    lm = get_model("finemed_ttt")(pretrained=str(embedded_model), device="cpu", ttt="off")
    results = lm_eval.simple_evaluate(
        model=lm, tasks=["finemed_demo_cot"], limit=2, num_fewshot=0, log_samples=True, task_manager=task_manager,
        gen_kwargs={"max_gen_toks": 8}, **get_protocol("o1").evaluate_kwargs(),
    )
    sample = results["samples"]["finemed_demo_cot"][0]
    assert sample["arguments"][0][0].startswith("<|im_start|>system\n" + O1_SYSTEM_PROMPT.strip())
    assert lm.log.token_limit_hits() == {"finemed_demo_cot": (2, 2)}  # 8 tokens never reach a conclusion
    assert 0 <= results["results"]["finemed_demo_cot"]["no_answer,none"] <= 1  # reported per task


def test_leaderboard_models_take_their_zoo_protocol_and_it_keys_the_cells():
    from finemed_eval.leaderboard.cells import cell_material
    from finemed_eval.leaderboard.config import LeaderboardError, parse_config

    config = parse_config({
        "models": ["finemedlm-o1", {"model": "finemedlm-o1", "name": "o1 plain", "protocol": "default"}, "smollm2-135m-instruct"],
        "tasks": ["finemed_demo_cot"],
    })
    assert [m.protocol for m in config.models] == ["o1", "default", "default"]
    materials = [
        cell_material(config, m, m.model, "finemed_demo_cot", "h", 0, task_data_hash={}, corpus_hash=None,
                      lm_eval="x", finemed_eval="y", finemed_code="z")
        for m in config.models[:2]
    ]
    assert materials[0]["protocol"] == "o1" and materials[1]["protocol"] == "default"
    with pytest.raises(LeaderboardError, match=r"models\[0\]\.protocol"):
        parse_config({"models": [{"model": "smollm2-135m-instruct", "protocol": "o2"}], "tasks": ["finemed_demo"]})
