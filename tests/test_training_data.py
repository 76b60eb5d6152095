"""Row selection from the released FineMed layouts: department filter, seeded sample and holdout,
clear file/field errors, and rows that put the loss on the response and its end-of-turn only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from finemed_eval.training.data import DataError, select

FIXTURES = Path(__file__).parent / "fixtures" / "training"
SFT, DPO = FIXTURES / "sft", FIXTURES / "dpo"


def test_fixtures_have_exactly_the_released_columns():
    from finemed_eval.training.data import DPO_FIELDS, SFT_FIELDS

    for path in SFT.rglob("*.jsonl"):
        for line in path.read_text().splitlines():
            assert tuple(json.loads(line)) == SFT_FIELDS, path
    for line in (DPO / "train.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert tuple(row) == DPO_FIELDS
        assert all(isinstance(row[k], list) and {"role", "content"} <= set(row[k][0]) for k in ("prompt", "chosen", "rejected"))


ALL = "Medicine (all)"


def test_sample_and_holdout_are_counted_and_seeded():
    a = select("sft", str(SFT), data_dir=ALL, sample_size=20, holdout_fraction=0.25, seed=3)
    assert a.counts == {"loaded": 48, "sampled": 20, "holdout": 5, "train": 15}
    assert a.filters == {"data_dir": "folder 'Medicine (all)' of the data"}
    assert [Path(f).parent.name for f in a.files] == [ALL]
    again = select("sft", str(SFT), data_dir=ALL, sample_size=20, holdout_fraction=0.25, seed=3)
    other = select("sft", str(SFT), data_dir=ALL, sample_size=20, holdout_fraction=0.25, seed=4)
    assert a.train.to_list() == again.train.to_list() and a.holdout.to_list() == again.holdout.to_list()
    assert a.train.to_list() != other.train.to_list()
    assert a.sha256 == again.sha256 and len(a.sha256) == 64
    held = {r["prompt"][-1]["content"] + r["completion"][0]["content"] for r in a.holdout}
    assert not held & {r["prompt"][-1]["content"] + r["completion"][0]["content"] for r in a.train}


def test_one_department_and_the_long_form_subset():
    internal = select("sft", str(SFT), department="Internal Medicine")  # matched ignoring case and spaces
    assert internal.counts["loaded"] == 16 and [Path(f).parent.name for f in internal.files] == ["InternalMedicine"]
    longform = select("sft", str(SFT), data_dir="SFTo1Data")
    assert longform.counts["train"] == 16 and "**Thought**" in longform.train[0]["completion"][0]["content"]


def test_sft_rows_are_conversational_prompt_completion_with_the_system_prompt():
    row = select("sft", str(SFT), department="Surgery", system_prompt="You are a careful doctor.").train[0]
    assert set(row) == {"prompt", "completion"}
    assert [m["role"] for m in row["prompt"]] == ["system", "user"] and row["prompt"][0]["content"] == "You are a careful doctor."
    assert [m["role"] for m in row["completion"]] == ["assistant"]


def test_dpo_rows_keep_the_message_lists():
    selection = select("dpo", str(DPO), sample_size=4, seed=1, system_prompt="Think first.")
    row = selection.train[0]
    assert set(row) == {"prompt", "chosen", "rejected"}
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["chosen"][0]["role"] == row["rejected"][0]["role"] == "assistant"
    assert selection.counts == {"loaded": 16, "sampled": 4, "train": 4} and selection.filters == {}


def test_an_unknown_department_names_the_folder_and_the_departments():
    with pytest.raises(DataError) as error:
        select("sft", str(SFT), department="Cardiology")
    assert str(SFT) in str(error.value) and "Endocrinology" in str(error.value) and "InternalMedicine" in str(error.value)


def test_a_release_root_is_never_read_whole_because_its_folders_overlap():
    with pytest.raises(DataError, match=r"no data files directly here; choose a folder .*Medicine \(all\)"):
        select("sft", str(SFT))
    with pytest.raises(DataError, match="not both"):
        select("sft", str(SFT), data_dir=ALL, department="Surgery")


def test_a_single_file_is_filtered_by_its_department_column(tmp_path):
    rows = [json.loads(line) for line in (SFT / "Surgery" / "train.jsonl").read_text().splitlines()]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps({**r, "department": d}) + "\n" for r, d in zip(rows, ["Surgery", "Pediatrics"] * 8)))
    assert select("sft", str(path), department="pediatrics").counts == {"loaded": 16, "department": 8, "train": 8}
    with pytest.raises(DataError, match="no rows with department 'Oncology'"):
        select("sft", str(path), department="Oncology")


def _one_file(tmp_path: Path, rows_from: Path = SFT / ALL / "train.jsonl") -> Path:
    """The released FineMed-SFT columns in one downloaded file: no department column, in no release folder."""
    path = tmp_path / "download" / "finemed_sft.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(rows_from, path)
    return path


@pytest.mark.parametrize(
    ("key", "value"),
    [("data_dir", ALL), ("department", "InternalMedicine"), ("department", "Endocrinology"), ("data_dir", "SFTo1Data")],
)
def test_a_folder_filter_that_cannot_apply_to_one_file_is_an_error_naming_the_key_and_the_file(tmp_path, key, value):
    """Stage 1's data_dir, stages 2-3's department and o1-SFT's data_dir used to be ignored on one file."""
    path = _one_file(tmp_path)
    with pytest.raises(DataError) as error:
        select("sft", str(path), **{key: value})
    message = str(error.value)
    assert message.startswith(f"{path}: recipe key '{key}' is {value!r}") and "cannot be applied" in message
    assert f"-- --{key} ''" in message  # how to train on the whole file instead


def test_a_filter_dropped_on_purpose_trains_on_the_whole_file_and_is_not_recorded(tmp_path):
    whole = select("sft", str(_one_file(tmp_path)), data_dir="", department="")
    assert whole.counts == {"loaded": 48, "train": 48} and whole.filters == {}


def test_a_file_inside_the_folder_a_filter_names_meets_it():
    internal = select("sft", str(SFT / "InternalMedicine" / "train.jsonl"), department="Internal Medicine")
    assert internal.filters == {"department": "the file lies in department folder 'InternalMedicine'"}
    everything = select("sft", str(SFT / ALL / "train.jsonl"), data_dir=ALL)
    assert everything.filters == {"data_dir": "the file lies in folder 'Medicine (all)'"}


def test_long_form_require_refuses_short_answers_naming_the_file_and_row(tmp_path):
    """o1-SFT on the short-answer rows used to train on them silently."""
    path = _one_file(tmp_path)
    with pytest.raises(DataError) as error:
        select("sft", str(path), long_form="require")
    message = str(error.value)
    assert message.startswith(f"{path} row 1: field 'response' has no Thought and Summarization sections")
    assert "48 of 48 rows" in message and "--long_form select" in message and "--long_form any" in message
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text((SFT / "SFTo1Data" / "train.jsonl").read_text() + path.read_text())
    with pytest.raises(DataError, match=r"mixed.jsonl row 17: .* 48 of 64 rows"):
        select("sft", str(mixed), long_form="require")
    assert select("sft", str(path), long_form="any").counts == {"loaded": 48, "train": 48}


def test_long_form_select_keeps_the_long_form_rows_and_the_subset_passes_require(tmp_path):
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(_one_file(tmp_path).read_text() + (SFT / "SFTo1Data" / "train.jsonl").read_text())
    chosen = select("sft", str(mixed), long_form="select", sample_size=8, seed=1)
    assert chosen.counts == {"loaded": 64, "long_form": 16, "sampled": 8, "train": 8}
    assert all("**Thought**" in r["completion"][0]["content"] for r in chosen.train)
    subset = select("sft", str(SFT), data_dir="SFTo1Data", long_form="require")
    assert subset.counts == {"loaded": 16, "train": 16} and set(subset.filters) == {"data_dir", "long_form"}
    with pytest.raises(DataError, match="long-form check applies to SFT responses"):
        select("dpo", str(DPO), long_form="require")


def test_a_missing_field_names_the_file_and_the_field(tmp_path):
    bad = tmp_path / "Pediatrics" / "train.jsonl"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"text": "t", "instruction": "q", "answer": "a"}) + "\n")
    with pytest.raises(DataError) as error:
        select("sft", str(tmp_path), department="Pediatrics")
    assert str(bad) in str(error.value) and "'response'" in str(error.value) and "FineMed-SFT" in str(error.value)
    with pytest.raises(DataError, match="missing field.*'chosen'.*FineMed-DPO"):
        select("dpo", str(bad))


def test_an_empty_department_and_too_few_rows_are_errors(tmp_path):
    (tmp_path / "Pediatrics").mkdir()
    shutil.copytree(SFT / "Surgery", tmp_path / "Surgery")
    with pytest.raises(DataError, match="no .jsonl/.json/.parquet files for department 'Pediatrics'"):
        select("sft", str(tmp_path), department="Pediatrics")
    with pytest.raises(DataError, match="recipe key 'sample_size' is 100 but there are only 16 rows"):
        select("sft", str(tmp_path), department="Surgery", sample_size=100)
    with pytest.raises(DataError, match="no such file or folder"):
        select("sft", str(tmp_path / "nowhere"))


def test_the_loss_covers_the_response_and_its_end_of_turn_only(tmp_path):
    """TRL's completion mask on our rows: system prompt, question and assistant header are masked; the
    response and the end-of-turn token (`<|im_end|>`, SmolLM2's eos) are trained on."""
    from trl import SFTConfig, SFTTrainer

    from finemed_eval.training.tiny import derive_tiny_model

    model = derive_tiny_model(tmp_path / "m", layers=1, hidden_size=32)
    selection = select("sft", str(SFT), department="Endocrinology", sample_size=2, seed=1, system_prompt="Be brief.")
    from finemed_eval.training.args import spelled_as_installed

    no_checkpointing = spelled_as_installed({"activation_checkpointing": False}, SFTConfig)  # either transformers
    args = SFTConfig(output_dir=str(tmp_path / "out"), report_to="none", bf16=False, max_length=128, **no_checkpointing)
    trainer = SFTTrainer(model=str(model), args=args, train_dataset=selection.train)
    tokenizer = trainer.processing_class
    assert tokenizer.eos_token == tokenizer.pad_token == "<|im_end|>"  # padding must not be trained as eos
    rows = [trainer.train_dataset[0], trainer.train_dataset[1]]
    batch = trainer.data_collator(rows)
    assert len(set(len(r["input_ids"]) for r in rows)) == 2  # different lengths: one row is padded
    for labels, row in zip(batch["labels"], selection.train):
        text = tokenizer.decode([t for t in labels.tolist() if t != -100])
        response = row["completion"][0]["content"]
        assert text == response + "<|im_end|>\n"  # the template's end-of-turn; no prompt, no padding


def test_finemed_train_checks_files_and_fields_before_launching(tmp_path):
    from finemed_eval.training.launch import train

    bad = tmp_path / "Pediatrics" / "train.jsonl"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"text": "t", "instruction": "q"}) + "\n")
    model = ["--model_name_or_path", "smollm2-135m-instruct"]
    with pytest.raises(DataError, match=r"Pediatrics/train.jsonl: missing field\(s\) 'response'"):
        train("tiny/finemedlm/stage2", None, [*model, "--data", str(tmp_path), "--department", "Pediatrics"], dry_run=True)
    with pytest.raises(DataError, match="no department folder 'Cardiology'"):
        train("tiny/finemedlm/stage2", None, [*model, "--data", str(SFT), "--department", "Cardiology"], dry_run=True)
    assert train("tiny/finemedlm/stage2", None, [*model, "--data", str(SFT)], dry_run=True) == 0


def test_the_stage_scripts_end_data_errors_with_one_line():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "finemed_eval.training.sft", "--config", "tiny/finemedlm/stage2",
         "--model_name_or_path", "smollm2-135m-instruct", "--data", str(SFT), "--department", "Cardiology"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "finemed training: error:" in done.stderr and "no department folder 'Cardiology'" in done.stderr
