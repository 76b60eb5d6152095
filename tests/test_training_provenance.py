"""provenance.json and the model card are shared with the weights: no path of this machine in them,
and written whole or not at all."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from finemed_eval.training.provenance import deviations, portable, recipe_identity, write_card, write_provenance

FIXTURES = Path(__file__).parent / "fixtures" / "training"


def test_paths_become_relative_to_the_run_folder_or_a_name(tmp_path, monkeypatch):
    run = tmp_path / "runs" / "stage1"
    (run / "checkpoint-4").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    record = {
        "output_dir": str(run),
        "best": str(run / "checkpoint-4"),
        "relative_best": "runs/stage1/checkpoint-4",  # relative to the working directory
        "base": "/somewhere/else/base-model",
        "home": "~/.cache/finemed-eval/models/smollm2",
        "data": str(FIXTURES / "sft"),
        "overrides": ["--output_dir", str(run), f"--data={FIXTURES / 'dpo'}"],
        "names": ["tiny-finemedlm-stage1", "hongzhouyu/FineMed-SFT", "Medicine (all)", "sft", 0.1, None],
    }
    assert portable(record, run) == {
        "output_dir": ".",
        "best": "checkpoint-4",
        "relative_best": "checkpoint-4",
        "base": "base-model",
        "home": "smollm2",
        "data": "sft",
        "overrides": ["--output_dir", ".", "--data=dpo"],
        "names": ["tiny-finemedlm-stage1", "hongzhouyu/FineMed-SFT", "Medicine (all)", "sft", 0.1, None],
    }


def test_a_recipe_is_named_not_located():
    from finemed_eval.training.args import find_recipe

    shipped = recipe_identity(find_recipe("tiny/finemedlm/stage1"))
    assert shipped["name"] == "tiny/finemedlm/stage1" and shipped["shipped"] and len(shipped["sha256"]) == 64


def test_an_unset_dtype_is_reported_as_the_dtype_that_ran():
    raw = {"learning_rate": 3e-5, "dtype": None}
    assert deviations(raw, "finemedlm/stage1", "float32")["dtype"] == {"paper": "bfloat16", "here": "float32"}
    assert deviations({**raw, "dtype": "bfloat16"}, "finemedlm/stage1", "bfloat16").get("dtype") is None


def _record(size: int) -> dict:
    return {
        "register_as": "tiny", "description": "x" * size, "stage": "sft", "parent": "base", "parent_source": {"local": "base"},
        "lineage": ["base"],
        "recipe": {"name": "r", "path": "r.yaml", "sha256": "0" * 64, "paper_recipe": None, "deviations_from_paper": {}},
        "data": {"source": "sft", "sha256": "0" * 64, "filters": {}, "rows": {"train": 1}},
        "result": {"train_loss_first": 1, "train_loss_last": 0.5, "global_step": 2, "best_checkpoint": None, "best_metric": None},
        "launch": {"dtype": "float32", "precision": "fp32"},
    }  # fmt: skip


def test_writes_are_atomic_a_reader_never_sees_part_of_a_file(tmp_path):
    """A reader polling while the record and the card are rewritten sees a whole old or new file."""
    records = [_record(2_000_000 + i) for i in range(12)]
    write_provenance(tmp_path, records[0])
    write_card(tmp_path, records[0])
    done, seen, bad = threading.Event(), [], []

    def read() -> None:
        while not done.is_set():
            try:
                seen.append(len(json.loads((tmp_path / "provenance.json").read_text())["description"]))
            except (json.JSONDecodeError, KeyError) as error:
                bad.append(repr(error)[:80])
            card = (tmp_path / "README.md").read_text()
            if not card.rstrip().endswith("Full record: `provenance.json`."):
                bad.append("partial card")

    reader = threading.Thread(target=read)
    reader.start()
    for record in records[1:]:
        write_provenance(tmp_path, record)
        write_card(tmp_path, record)
    done.set()
    reader.join()
    assert not bad and seen
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "provenance.json"]  # no temporary left
    (tmp_path / "plain").write_text("")
    assert (tmp_path / "provenance.json").stat().st_mode == (tmp_path / "plain").stat().st_mode  # the umask's mode
