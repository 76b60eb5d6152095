"""`finemed synth export`: the released FineMed layouts, loadable with datasets.load_dataset("json", ...).

FineMed-SFT (columns text, instruction, complexity, quality, language, response, instruction_type):
    sft/Medicine (all)/train.jsonl     every SFT row (also those the classifier could not place)
    sft/<Department>/train.jsonl       one folder per first-level department (e.g. InternalMedicine)
    sft/<SubDepartment>/train.jsonl    one folder per second-level department (e.g. Cardiology)
    sft/SFTo1Data/train.jsonl          the long-form (complex) subset: also a finemed_ttt corpus
                                       (question_field=instruction, response_field=response)
FineMed-DPO (text, complexity, quality, language, prompt, chosen, rejected; chat message lists):
    dpo/train.jsonl
Rows are sorted by id; folders are named like the release (department names without spaces).
"""

from __future__ import annotations

import re
from pathlib import Path

from .config import SynthConfig
from .pipeline import dpo_records, stage_dir
from .records import RecordError, is_done, ok_records, write_jsonl

SFT_COLUMNS = ("text", "instruction", "complexity", "quality", "language", "response", "instruction_type")
DPO_COLUMNS = ("text", "complexity", "quality", "language", "prompt", "chosen", "rejected")
ALL = "Medicine (all)"
LONGFORM = "SFTo1Data"


def folder_name(department: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "", department.title() if department.islower() else department)


def export(config: SynthConfig, out: Path | None = None) -> dict[str, int]:
    run_dir = Path(config.output)
    if not is_done(stage_dir(run_dir, "classify")):
        raise RecordError(f"{run_dir}: the run has not finished (finemed synth run first); nothing exported")
    target = Path(out) if out else run_dir / "export"
    sft = ok_records(stage_dir(run_dir, "sft"))  # all SFT rows, classified or not
    classified = ok_records(stage_dir(run_dir, "classify"))
    groups: dict[str, list[dict]] = {ALL: sft, LONGFORM: [r for r in sft if r["instruction_type"] == "complex"]}
    for row in classified:
        # a set: ENT's first sub-department has the department's own name, so one folder, one row
        for name in {folder_name(d) for d in (row.get("department"), row.get("sub_department")) if d}:
            groups.setdefault(name, []).append(row)
    counts = {}
    for name, members in groups.items():
        if not members:  # an empty JSON file is not a loadable dataset: no folder instead
            counts[f"sft/{name}"] = 0
            continue
        counts[f"sft/{name}"] = write_jsonl(target / "sft" / name / "train.jsonl", ({k: r[k] for k in SFT_COLUMNS} for r in members))
    pairs = dpo_records(config, run_dir)
    counts["dpo"] = write_jsonl(target / "dpo" / "train.jsonl", ({k: p[k] for k in DPO_COLUMNS} for p in pairs)) if pairs else 0
    return counts
