"""Paired statistics against independent computations, pairs from configs, and the board's pairs section."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from finemed_eval.leaderboard.aggregate import MeasuredCell
from finemed_eval.leaderboard.compare import compare_pairs
from finemed_eval.leaderboard.config import LeaderboardError, parse_config
from finemed_eval.leaderboard.pairs import Pair, differing_args, find_pairs, ttt_only_keys
from finemed_eval.leaderboard.stats import paired_stats


def constructed(n: int = 60, seed: int = 3):
    """Per-document results with known flips: 12 wrong->right, 5 right->wrong, the rest unchanged."""
    rng = np.random.default_rng(seed)
    base = rng.random(n) < 0.4
    treat = base.copy()
    wrong, right = np.flatnonzero(~base), np.flatnonzero(base)
    treat[wrong[:12]] = True
    treat[right[:5]] = False
    base_ll = rng.normal(-2.0, 1.0, n)
    treat_ll = base_ll + rng.normal(0.05, 0.1, n)
    return base, treat, base_ll, treat_ll


def mcnemar_by_hand(b: int, c: int) -> float:
    """Exact McNemar: two-sided binomial tail of the discordant pairs at 1/2, summed term by term."""
    n = b + c
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def test_every_statistic_matches_an_independent_computation():
    base, treat, base_ll, treat_ll = constructed()
    s = paired_stats(base.tolist(), treat.tolist(), base_ll.tolist(), treat_ll.tolist())
    up = sum(1 for x, y in zip(base, treat) if not x and y)
    down = sum(1 for x, y in zip(base, treat) if x and not y)
    assert (s.wrong_to_right, s.right_to_wrong) == (up, down) == (12, 5)
    assert s.n == 60
    assert s.baseline_acc == pytest.approx(sum(base) / 60) and s.treatment_acc == pytest.approx(sum(treat) / 60)
    assert s.acc_diff == pytest.approx((up - down) / 60)
    assert s.mcnemar_p == pytest.approx(mcnemar_by_hand(12, 5), rel=1e-12)
    assert s.gold_ll_change == pytest.approx(statistics.fmean(t - b for b, t in zip(base_ll, treat_ll)))
    # paired bootstrap by hand: resample documents (both models together), percentile interval
    rng = np.random.default_rng(12345)
    idx = rng.integers(0, 60, size=(20_000, 60))
    diffs = treat[idx].mean(axis=1) - base[idx].mean(axis=1)
    low, high = np.percentile(diffs, [2.5, 97.5])
    assert s.ci_low == pytest.approx(low, abs=0.012) and s.ci_high == pytest.approx(high, abs=0.012)
    assert s.ci_low < s.acc_diff < s.ci_high


def test_no_flips_gives_a_point_interval_and_p_1():
    s = paired_stats([True, False, True], [True, False, True], [-1.0, -2.0, -3.0], [-0.5, -2.0, -3.0])
    assert (s.acc_diff, s.ci_low, s.ci_high, s.mcnemar_p) == (0.0, 0.0, 0.0, 1.0)
    assert s.gold_ll_change == pytest.approx(0.5 / 3)


def test_generative_tasks_have_no_log_likelihood_change():
    assert paired_stats([True, False], [True, True]).gold_ll_change is None
    with pytest.raises(ValueError):
        paired_stats([True], [True, False])


def cell(model, seed, correct, ll, docs_hash="h", task="t"):
    docs = {"leaf": {"docs_hash": docs_hash, "doc_id": list(range(len(correct))), "correct": correct, "gold_ll": ll}}
    return MeasuredCell(model, {}, seed, "d", {"documents": docs}, None, task)


def test_board_pairs_per_seed_and_pooled():
    pair = Pair("off", "on", "inferred")
    cells = [
        cell("off", 0, [True, False, False], [-1.0, -2.0, -3.0]),
        cell("on", 0, [True, True, False], [-1.0, -1.5, -3.0]),
        cell("off", 1, [False, False, True], [-1.0, -2.0, -3.0]),
        cell("on", 1, [False, True, True], [-0.9, -1.0, -3.0]),
    ]
    [section] = compare_pairs([pair], {pair: {"ttt": ["off", "lora"]}}, cells, ("t",), {"t": "T"})
    assert section["source"] == "inferred" and section["differs_in"] == {"ttt": ["off", "lora"]}
    [c] = section["comparisons"]
    assert [s["seed"] for s in c["seeds"]] == [0, 1] and c["benchmark"] == "T"
    expected = paired_stats(
        [True, False, False, False, False, True], [True, True, False, False, True, True],
        [-1.0, -2.0, -3.0, -1.0, -2.0, -3.0], [-1.0, -1.5, -3.0, -0.9, -1.0, -3.0],
    )
    assert c["pooled"] == expected.to_json()
    assert c["gold_ll_changes"] == pytest.approx([0.0, 0.5, 0.0, 0.1, 1.0, 0.0])


def test_a_pair_whose_documents_differ_is_one_clear_error():
    pair = Pair("off", "on", "config")
    cells = [cell("off", 0, [True, False], [-1.0, -2.0]), cell("on", 0, [True, True], [-1.0, -2.0], docs_hash="other")]
    with pytest.raises(LeaderboardError, match=r"pair 'on' vs 'off', task t seed 0: the documents of leaf differ"):
        compare_pairs([pair], {pair: {}}, cells, ("t",), {})


KEYS = frozenset({"ttt", "corpus", "lr"})
CONFIG = {
    "models": [
        {"name": "a off", "model": "m", "args": {"ttt": "off", "dtype": "float32"}},
        {"name": "a lora", "model": "m", "args": {"ttt": "lora", "corpus": "demo", "lr": 1e-4, "dtype": "float32"}},
        {"name": "a full bf16", "model": "m", "args": {"ttt": "full", "dtype": "bfloat16"}},  # no ttt=off twin
        {"name": "b lora", "model": "m2", "args": {"ttt": "lora"}},  # other weights
    ],
    "tasks": ["t"],
}


def test_pairs_are_inferred_from_ttt_only_arguments_and_named_baselines_win():
    cfg = parse_config(CONFIG)
    canonical = {"a off": "m", "a lora": "m", "a full bf16": "m", "b lora": "m2"}
    assert find_pairs(cfg, canonical, KEYS) == [Pair("a off", "a lora", "inferred")]
    assert differing_args(cfg, Pair("a off", "a lora", "inferred")) == {
        "corpus": [None, "demo"], "lr": [None, 1e-4], "ttt": ["off", "lora"]}
    named = dict(CONFIG, models=[*CONFIG["models"][:2], {**CONFIG["models"][2], "baseline": "a lora"}])
    pairs = find_pairs(parse_config(named), canonical, KEYS)
    assert pairs == [Pair("a lora", "a full bf16", "config"), Pair("a off", "a lora", "inferred")]


def test_a_baseline_naming_no_model_is_a_config_error():
    bad = dict(CONFIG, models=[*CONFIG["models"][:1], {**CONFIG["models"][1], "baseline": "a of"}])
    with pytest.raises(LeaderboardError, match=r"'models\[1\].baseline': 'a of' names no model of this config \(did you mean 'a off'\?\)"):
        parse_config(bad, source="lb.yaml")


def test_ttt_only_keys_come_from_the_ttt_options():
    keys = ttt_only_keys()
    assert {"ttt", "corpus", "retriever", "lr", "steps", "top_k", "lora_r"} <= keys
    assert not keys & {"engine", "backend", "dtype", "batch_size"}  # they change ttt=off results too
