"""`finemed zoo card`: a model's leaderboard results as model-index entries and .eval_results/*.yaml,
read back with huggingface_hub's own parsers. Hub pushes are dry runs here (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from huggingface_hub import EvalResult, ModelCard, parse_eval_result_entries

from finemed_eval import cli
from finemed_eval.zoo.card import CardError, card

BOARD = Path(__file__).parent / "fixtures" / "leaderboard_small.json"
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def quiet(_: str) -> None:
    pass


def test_card_results_read_back_with_huggingface_hub(tmp_path):
    card(HUB_ID, BOARD, to=tmp_path, source_url="https://huggingface.co/datasets/org/board", say=quiet)
    results = ModelCard.load(tmp_path / "README.md").data.eval_results
    board = json.loads(BOARD.read_text())
    mine = [
        e for e in board["entries"]
        if e["status"] == "measured" and e["model"].startswith("smollm2-135m") and e.get("parent") is None
    ]
    assert len(results) == len(mine) == 6  # two leaderboard rows of this model x three benchmarks
    medqa = next(r for r in results if r.dataset_name == "MedQA" and "ttt=off" in r.metric_name)
    entry = next(e for e in mine if e["task"] == "finemed_medqa" and e["model"].endswith("ttt=off"))
    assert medqa.metric_value == f"{100 * entry['mean']:.2f} ± {100 * entry['std']:.2f}"
    assert medqa.dataset_type == "GBaker/MedQA-USMLE-4-options" and medqa.dataset_args == {"num_few_shot": 3}
    assert "seeds 0, 1, 2" in medqa.metric_name and medqa.source_url == "https://huggingface.co/datasets/org/board"
    # the newer per-benchmark files, only where the benchmark is a Hub dataset
    files = sorted(p.name for p in (tmp_path / ".eval_results").iterdir())
    assert files == ["medmcqa.yaml", "medqa.yaml"]
    entries = parse_eval_result_entries(yaml.safe_load((tmp_path / ".eval_results" / "medqa.yaml").read_text()))
    assert {e.dataset_id for e in entries} == {"GBaker/MedQA-USMLE-4-options"} and len(entries) == 2
    off = next(e for e in entries if "ttt=off" in e.notes)
    assert off.value == round(100 * entry["mean"], 2) and off.date == entry["date"]
    assert f"{100 * entry['mean']:.2f} ± {100 * entry['std']:.2f} %" in off.notes and "3-shot" in off.notes


def test_an_existing_card_keeps_its_text_and_other_results_and_ours_are_replaced(tmp_path):
    theirs = EvalResult(task_type="text-generation", dataset_type="gsm8k", dataset_name="GSM8K", metric_type="acc", metric_value=0.3)
    start = ModelCard("---\nlicense: apache-2.0\n---\n# A model\n\nOur own words.\n")
    start.data.eval_results = [theirs]
    start.data.model_name = "a-model"
    (tmp_path / "README.md").write_text(str(start))
    card(HUB_ID, BOARD, to=tmp_path, say=quiet)
    card(HUB_ID, BOARD, to=tmp_path, say=quiet)  # twice: replaced, not duplicated
    loaded = ModelCard.load(tmp_path / "README.md")
    assert "Our own words." in loaded.text and loaded.data.license == "apache-2.0"
    assert loaded.data.eval_results[0] == theirs and len(loaded.data.eval_results) == 1 + 6


def test_a_trained_zoo_model_gets_its_card_in_its_checkpoint(tmp_path, monkeypatch):
    from finemed_eval.zoo import register

    monkeypatch.setenv("FINEMED_ZOO_DIR", str(tmp_path / "zoo"))
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    register("my-sft", checkpoint, "a test checkpoint")
    board = json.loads(BOARD.read_text())
    board["config"]["models"][2]["model"] = "my-sft"  # the board names it by zoo name
    board["config"]["models"][2]["pin"] = {"zoo": "my-sft", "source": "trained", "weights_sha256": None, "dtype": None}
    path = tmp_path / "leaderboard.json"
    path.write_text(json.dumps(board))
    card("my-sft", path, say=quiet)
    results = ModelCard.load(checkpoint / "README.md").data.eval_results
    assert {(r.dataset_name, r.dataset_type) for r in results} == {("MedQA", "GBaker/MedQA-USMLE-4-options"), ("PubMedQA", "finemed_pubmedqa")}


def test_pull_request_for_someone_elses_model_is_a_dry_run_here(tmp_path, monkeypatch):
    lines: list[str] = []
    files = card(HUB_ID, BOARD, pr=True, dry_run=True, say=lines.append)
    # offline, the current card comes from the local Hub cache if it is there, else a new card is shown
    start = lines.index("dry run: would open a pull request on HuggingFaceTB/SmolLM2-135M-Instruct (model) one commit of:")
    assert [line.split()[1] for line in lines[start + 1 :]] == ["README.md", ".eval_results/medqa.yaml", ".eval_results/medmcqa.yaml"]
    assert len(ModelCard(files.readme).data.eval_results) >= 6  # valid for the Hub
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(CardError, match="needs a write token"):
        card(HUB_ID, BOARD, pr=True, say=quiet)


def test_cli_names_bad_input_in_one_line(tmp_path, capsys):
    assert cli.main(["zoo", "card", "no-such-model", "--results", str(BOARD), "--to", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "the board has no model 'no-such-model'" in err and HUB_ID in err
    assert cli.main(["zoo", "card", HUB_ID, "--to", str(tmp_path)]) == 2
    assert "needs --results" in capsys.readouterr().err
    assert cli.main(["zoo", "card", HUB_ID, "--results", str(BOARD), "--to", str(tmp_path)]) == 0
    assert (tmp_path / "README.md").is_file() and not list(tmp_path.glob(".*.tmp"))
