"""Runner wiring with a stand-in model and evaluator (no weights): content-keyed recomputation, shards
in two real processes vs one process, aggregate, and bad input that fails before any compute."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from finemed_eval.leaderboard import cli
from finemed_eval.leaderboard import run as lb
from finemed_eval.leaderboard.config import LeaderboardError, load_config
from finemed_eval.leaderboard.shard import Shard, parse_shard

HERE = Path(__file__).parent


class StandInModel:
    """What lm_class returns: a "model" that is just its arguments."""

    @classmethod
    def create_from_arg_obj(cls, args, extra):
        return dict(args)


def stand_in_evaluate(lm, config, task, seeds, tm, **kwargs):
    """Per-seed results shaped like lm-eval's, deterministic in (model args, task, seed, document)."""
    out = {}
    for seed in seeds:
        samples = []
        for doc in range(4):
            h = hashlib.sha256(json.dumps([lm, task, seed, doc], sort_keys=True).encode()).digest()
            lls = [-(b / 16) for b in h[:4]]
            samples.append({
                "doc_id": doc, "filter": "none", "target": 0, "acc": float(lls[0] == max(lls)),
                "filtered_resps": [(ll, False) for ll in lls], "arguments": [("q", f" {c}") for c in "ABCD"],
                "doc_hash": f"d{doc}", "prompt_hash": f"p{seed}{doc}", "target_hash": "t",
            })
        out[seed] = {
            "results": {task: {"alias": task, "acc,none": sum(s["acc"] for s in samples) / 4}},
            "versions": {task: 1.0}, "n-shot": {task: 0},
            "n-samples": {task: {"original": 44, "effective": 4}}, "group_subtasks": {}, "samples": {task: samples},
        }
    return out


def stand_in(monkeypatch=None) -> None:
    """Swap the model and the evaluator (and pin the code fingerprint), for this process."""
    patches = {"lm_class": lambda config: StandInModel, "evaluate_seeds": stand_in_evaluate, "code_hash": lambda: "sha256:code"}
    for name, value in patches.items():
        if monkeypatch is not None:
            monkeypatch.setattr(lb, name, value)
        else:
            setattr(lb, name, value)


def child(config: str, out: str, shard: str) -> None:
    """Entry point of the shard processes."""
    from lm_eval.tasks import TaskManager

    stand_in()
    lb.import_plugin()
    summary = lb.run(load_config(config), out, task_manager=TaskManager(include_defaults=False), shard=parse_shard(shard), progress=False)
    print(json.dumps({"computed": len(summary.computed), "leaderboard": summary.leaderboard}))


def write_config(tmp_path: Path, corpus: Path, tasks: str = "[finemed_demo]", extra: str = "") -> Path:
    path = tmp_path / "lb.yaml"
    path.write_text(
        "models:\n"
        "  - {name: 'off', model: smollm2-135m-instruct, args: {ttt: 'off'}}\n"
        f"  - {{name: lora, model: smollm2-135m-instruct, args: {{ttt: lora, corpus: '{corpus}'}}}}\n"
        f"  - {{name: lora demo, model: smollm2-135m-instruct, args: {{ttt: lora, corpus: demo, lr: 0.001}}, baseline: 'off'}}\n"
        f"tasks: {tasks}\nseeds: [0, 1]\nlimit: 4\ninclude_reported: false\n{extra}"
    )
    return path


@pytest.fixture()
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"question": "q", "response": "r"}\n')
    return path


def test_editing_the_corpus_recomputes_only_that_models_cells(tmp_path, monkeypatch, task_manager, corpus):
    stand_in(monkeypatch)
    cfg = load_config(write_config(tmp_path, corpus))
    first = lb.run(cfg, tmp_path / "out", task_manager=task_manager, progress=False, render_outputs=False)
    assert len(first.computed) == 6 and first.passes == [("off", "finemed_demo", [0, 1]), ("lora", "finemed_demo", [0, 1]),
                                                          ("lora demo", "finemed_demo", [0, 1])]
    board = json.loads(first.leaderboard.read_text())
    assert [(p["baseline"], p["treatment"], p["source"]) for p in board["pairs"]] == [
        ("off", "lora demo", "config"), ("off", "lora", "inferred")]
    # published relative to the config, never as a machine path
    assert board["pairs"][1]["differs_in"] == {"corpus": [None, "corpus.jsonl"], "ttt": ["off", "lora"]}
    assert board["pairs"][1]["comparisons"][0]["pooled"]["n"] == 8  # 4 documents x 2 seeds

    corpus.write_text('{"question": "q", "response": "edited"}\n')
    again = lb.run(cfg, tmp_path / "out", task_manager=task_manager, progress=False, render_outputs=False)
    assert again.passes == [("lora", "finemed_demo", [0, 1])]
    assert len(again.computed) == 2 and len(again.skipped) == 4


def test_editing_a_data_file_recomputes_only_the_cells_of_its_task(tmp_path, monkeypatch, task_manager, corpus, shared_data):
    import shutil

    stand_in(monkeypatch)
    data = tmp_path / "data"
    for bench in ("medqa", "medmcqa"):
        shutil.copytree(shared_data / bench, data / bench)
    monkeypatch.setenv("FINEMED_DATA_DIR", str(data))
    cfg = load_config(write_config(tmp_path, corpus, tasks="[finemed_medqa, finemed_medmcqa]"))
    assert len(lb.run(cfg, tmp_path / "out", task_manager=task_manager, progress=False, render_outputs=False).computed) == 12
    test = data / "medqa" / "phrases_no_exclude_test.jsonl"
    test.write_text(test.read_text().replace("?", "? ", 1))
    again = lb.run(cfg, tmp_path / "out", task_manager=task_manager, progress=False, render_outputs=False)
    assert {t for _, t, _ in again.passes} == {"finemed_medqa"} and len(again.computed) == 6 and len(again.skipped) == 6


def _comparable(board: dict) -> dict:
    """The board without what differs between any two runs (when it was written)."""
    drop = {"generated_at", "date"}
    return json.loads(json.dumps(board), object_hook=lambda d: {k: v for k, v in d.items() if k not in drop})


def test_two_shard_processes_give_the_one_process_board(tmp_path, monkeypatch, task_manager, corpus):
    config = write_config(tmp_path, corpus)
    shared = tmp_path / "shared"
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import test_leaderboard_wiring as t; t.child(*sys.argv[1:])"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(config), str(shared), f"{k}/2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for k in (1, 2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    reports = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
    # (model, task) passes dealt round-robin: off + lora demo to shard 1, lora to shard 2; no board yet
    assert [r["computed"] for r in reports] == [4, 2] and all(r["leaderboard"] is None for r in reports)
    assert len(list((shared / "cells").glob("*.json"))) == 6 and not (shared / "leaderboard.json").exists()

    stand_in(monkeypatch)
    cfg = load_config(config)
    aggregated = lb.run(cfg, shared, task_manager=task_manager, compute=False, progress=False, render_outputs=False)
    single = lb.run(cfg, tmp_path / "single", task_manager=task_manager, progress=False, render_outputs=False)
    assert aggregated.computed == [] and len(single.computed) == 6
    assert _comparable(json.loads(aggregated.leaderboard.read_text())) == _comparable(json.loads(single.leaderboard.read_text()))


def test_aggregate_with_missing_cells_is_one_clear_error(tmp_path, monkeypatch, task_manager, corpus):
    stand_in(monkeypatch)
    cfg = load_config(write_config(tmp_path, corpus))
    lb.run(cfg, tmp_path / "out", task_manager=task_manager, shard=Shard(1, 2), progress=False)
    with pytest.raises(LeaderboardError, match=r"2 of 6 cells are missing .*\(lora, finemed_demo, seed 0\)"):
        lb.run(cfg, tmp_path / "out", task_manager=task_manager, compute=False, progress=False)


def test_a_pair_on_different_documents_is_refused_before_any_compute(tmp_path, monkeypatch, task_manager, corpus):
    stand_in(monkeypatch)
    evaluated = []
    monkeypatch.setattr(lb, "evaluate_seeds", lambda *a, **k: evaluated.append(a) or stand_in_evaluate(*a, **k))
    # the o1 protocol prompts differently: its documents are not the baseline's documents
    path = write_config(tmp_path, corpus)
    path.write_text(path.read_text().replace("baseline: 'off'}", "baseline: 'off', protocol: o1}"))
    with pytest.raises(LeaderboardError, match=r"pair 'lora demo' vs 'off': task finemed_demo seed 0 is evaluated on different documents \(differs in: protocol\)"):
        lb.run(load_config(path), tmp_path / "out", task_manager=task_manager, progress=False)
    assert evaluated == [] and not list((tmp_path / "out" / "cells").iterdir())


@pytest.mark.parametrize("text", ["1", "0/2", "3/2", "1/0", "a/b", "-1/2", "1/2/3"])
def test_a_bad_shard_is_refused_before_any_compute(tmp_path, capsys, text, corpus):
    config = write_config(tmp_path, corpus)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["leaderboard", "run", str(config), "--out", str(tmp_path / "out"), f"--shard={text}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --shard {text!r}: ") and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before the output folder, let alone a model


def test_shards_are_disjoint_and_cover_everything():
    units = list(range(7))
    picked = [Shard(k, 3).select(units) for k in (1, 2, 3)]
    assert sorted(u for p in picked for u in p) == units and picked[0] == [0, 3, 6]
    assert parse_shard(" 2 / 3 ") == Shard(2, 3)
