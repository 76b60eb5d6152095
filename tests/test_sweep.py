"""Sweeps in leaderboard configs: expansion, validation before compute, Holm on the board, the page,
resuming a grown grid, and seed-honest built-in tasks (first_n exemplars)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from finemed_eval.leaderboard.config import LeaderboardError, check_seeded_exemplars, parse_config
from finemed_eval.leaderboard.stats import holm

MODEL = "smollm2-135m-instruct"
TASK_FIXTURE = Path(__file__).parent / "fixtures" / "first_n_task"


def _config(sweep, **extra):
    entry = {"name": "S", "model": MODEL, "args": {"corpus": "demo", "retriever": "minilm"}, "sweep": sweep}
    return {"models": [entry], "tasks": ["finemed_demo"], **extra}


def test_sweep_expands_into_named_points_paired_with_a_generated_baseline() -> None:
    config = parse_config(_config({"ttt": ["full", "lora"], "lr": [1.0e-5, 1.0e-4], "steps": [1, 4]}))
    names = [m.name for m in config.models]
    assert names[0] == "S ttt=off" and len(names) == 9
    assert "S ttt=lora lr=0.0001 steps=4" in names
    off = config.models[0]
    assert off.args == {"ttt": "off"} and off.sweep is None  # TTT-only arguments left out
    point = next(m for m in config.models if m.name == "S ttt=full lr=1e-05 steps=1")
    assert point.args == {"corpus": "demo", "retriever": "minilm", "ttt": "full", "lr": 1.0e-5, "steps": 1}
    assert point.baseline == "S ttt=off"
    assert point.sweep == {"name": "S", "point": {"ttt": "full", "lr": 1.0e-5, "steps": 1}}


def test_a_named_baseline_is_used_and_not_generated() -> None:
    data = _config({"ttt": ["full"], "lr": [1.0e-4]})
    data["models"].insert(0, {"name": "base", "model": MODEL, "args": {"ttt": "off"}})
    data["models"][1]["baseline"] = "base"
    config = parse_config(data)
    assert [m.name for m in config.models] == ["base", "S ttt=full lr=0.0001"]
    assert config.models[1].baseline == "base"


def test_bad_key_and_bad_value_are_named_with_a_suggestion() -> None:
    with pytest.raises(LeaderboardError) as e:
        parse_config(_config({"ttt": ["full"], "lrr": [1.0e-4]}), source="grid.yaml")
    assert "grid.yaml" in str(e.value) and "'models[0].sweep.lrr'" in str(e.value) and "did you mean 'lr'" in str(e.value)
    with pytest.raises(LeaderboardError) as e:
        parse_config(_config({"ttt": ["full", "fulll"]}))
    assert "{ttt: fulll}" in str(e.value) and "did you mean 'full'" in str(e.value)
    with pytest.raises(LeaderboardError, match="the baseline is added for you"):
        parse_config(_config({"ttt": ["off", "full"]}))
    with pytest.raises(LeaderboardError, match="distinct"):
        parse_config(_config({"ttt": ["full"], "lr": [1.0e-4, 1.0e-4]}))


def test_a_grid_larger_than_max_points_is_refused_before_anything_runs() -> None:
    grid = {"ttt": ["full", "lora"], "lr": [1e-6, 1e-5, 1e-4, 1e-3], "steps": [1, 2, 4, 8], "top_k": [1, 2, 3]}
    with pytest.raises(LeaderboardError, match=r"96 grid points .* more than max_points=64"):
        parse_config(_config(grid))
    assert len(parse_config(_config(grid, max_points=96)).models) == 97


def test_holm_matches_the_step_down_definition() -> None:
    # sorted p: 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0] and holm([]) == []


def test_several_seeds_on_a_first_n_task_are_refused_naming_the_finemed_twin() -> None:
    from lm_eval.tasks import TaskManager

    tm = TaskManager()
    config = parse_config({"models": [MODEL], "tasks": ["mmlu_pro_health"], "seeds": [0, 1, 2]}, source="board.yaml")
    with pytest.raises(LeaderboardError) as e:
        check_seeded_exemplars(config, tm)
    assert "3 identical runs" in str(e.value) and "finemed_mmlu_pro_health" in str(e.value)
    check_seeded_exemplars(parse_config({"models": [MODEL], "tasks": ["mmlu_pro_health"], "seeds": [0]}), tm)  # one seed: as asked
    check_seeded_exemplars(parse_config({"models": [MODEL], "tasks": ["finemed_mmlu_pro_health"]}), tm)  # random exemplars


def test_finemed_ttt_warns_once_when_exemplars_ignore_the_seed() -> None:
    import lm_eval
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=[str(TASK_FIXTURE)], include_defaults=False)  # the fixture task only: no 14k-task index
    lm = lm_eval.api.registry.get_model("finemed_ttt").create_from_arg_obj({"ttt": "off"}, {"batch_size": 8})
    for shots, expected in ((3, 1), (0, 0)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lm._seed_checked.clear()
            lm_eval.simple_evaluate(model=lm, tasks=["demo_first_n"], num_fewshot=shots, limit=2, task_manager=tm, fewshot_random_seed=1)
        messages = [str(w.message) for w in caught if "do not depend on the seed" in str(w.message)]
        assert len(messages) == expected, messages


def test_a_grown_grid_computes_only_its_new_point_and_the_page_shows_the_sweep(tmp_path: Path) -> None:
    from finemed_eval.leaderboard.run import run

    def config(lrs):
        data = _config({"ttt": ["lora"], "lr": lrs})
        # a wiring test, not a TTT benchmark: max_length 128 bounds the trained neighbour (the demo
        # corpus is long-form reasoning) and the scored context, as in test_leaderboard_run.py
        data["models"][0]["args"]["max_length"] = 128
        return parse_config(
            {**data, "seeds": [0, 1], "num_fewshot": 3, "limit": 2, "batch_size": 8}, source=str(tmp_path / "grid.yaml")
        )

    first = run(config([1.0e-3]), tmp_path / "out", progress=False)
    assert len(first.computed) == 4  # baseline + one point, two seeds
    second = run(config([1.0e-3, 1.0e-2]), tmp_path / "out", progress=False)
    assert len(second.computed) == 2 and len(second.skipped) == 4  # only the new point
    board = json.loads((tmp_path / "out" / "leaderboard.json").read_text())
    [table] = board["sweeps"][0]["tasks"]
    assert {p["treatment"] for p in table["points"]} == {"S ttt=lora lr=0.001", "S ttt=lora lr=0.01"}
    for p in table["points"]:
        assert p["mcnemar_p"] <= p["mcnemar_p_holm"] <= 1 and p["n"] == 4
    assert [p["acc_diff"] for p in table["points"]] == sorted((p["acc_diff"] for p in table["points"]), reverse=True)
    page = (tmp_path / "out" / "leaderboard.html").read_text()
    assert 'id="sweep"' in page and "Holm-adjusted" in page and "ttt=lora lr=0.01" in page
    assert (tmp_path / "out" / "plots" / "sweep.png").stat().st_size > 10_000
