"""The whole pipeline over our 12 raw texts against a real HTTP replay server on 127.0.0.1 (recorded
outputs; the reward step is the seeded-head SmolLM2, which tests plumbing only): every input id ends in
exactly one of ok / rejects at every stage, exports load with `datasets`, the long-form export is a
finemed_ttt corpus; kill -9 of a real `finemed synth run` at 5 seeded random moments, then a rerun,
gives output identical to the uninterrupted run; bad configs and inputs fail before any model call.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from finemed_eval.synth.config import ConfigError, load_config
from finemed_eval.synth.pipeline import STAGES, run, stage_dir
from finemed_eval.synth.replay import ReplayServer, load_recorded

FIXTURES = Path(__file__).parent / "fixtures" / "synth"
TEXTS = FIXTURES / "raw_texts.jsonl"
ROLES = ("instruction", "scoring", "answer", "longform", "classifier")


def write_config(path: Path, url: str, output: Path, **extra) -> Path:
    config = {
        "output": str(output),
        "input": {"path": str(TEXTS), "id_field": "id"},
        **{role: {"backend": "endpoint", "endpoint_url": url, "model": "replay", "max_tokens": 64} for role in ROLES},
        "retry": {"attempts": 2, "backoff_s": 0.01},
        "reward": {"model": "embedded", "seeded_head": True, "batch_size": 4, "max_length": 256},
        **extra,
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def replay():
    with ReplayServer(load_recorded(FIXTURES / "recorded_outputs.json"), delay_s=0.02) as server:
        yield server


@pytest.fixture(scope="module")
def reference(replay, tmp_path_factory):
    """One uninterrupted run, shared by the end-to-end and the kill tests."""
    folder = tmp_path_factory.mktemp("reference")
    config_path = write_config(folder / "synth.yaml", replay.url, folder / "out")
    started = time.monotonic()
    run(load_config(config_path), progress=False, log=lambda line: None)
    return config_path, folder / "out", time.monotonic() - started


def stage_files(out: Path) -> dict[str, str]:
    """The sealed outputs (ok parts and rejects) of every stage, as text."""
    files = {}
    for name in STAGES:
        folder = stage_dir(out, name)
        for path in sorted([*(folder / "ok").glob("part-*.jsonl"), folder / "rejects.jsonl"]):
            files[str(path.relative_to(out))] = path.read_text(encoding="utf-8")
    return files


def ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def assert_each_input_once(out: Path) -> None:
    """Every stage: the ids of its input are exactly the ids of ok + rejects, each once."""
    stage_inputs = {
        "instruction": ids(out / "input" / "part-00000.jsonl"),
        "filter": ids(stage_dir(out, "scoring") / "ok" / "part-00000.jsonl"),
        "reward": ids(stage_dir(out, "answer") / "ok" / "part-00000.jsonl"),
        "sft": ids(stage_dir(out, "filter") / "ok" / "part-00000.jsonl"),
    }
    for name in STAGES:
        folder = stage_dir(out, name)
        outputs = ids(folder / "ok" / "part-00000.jsonl") + ids(folder / "rejects.jsonl")
        expected = stage_inputs.get(name) or ids(folder / "input" / "part-00000.jsonl")
        assert sorted(outputs) == sorted(expected), name
        assert len(outputs) == len(set(outputs)), name


def test_end_to_end_every_id_once_and_exports_load(reference):
    from datasets import load_dataset

    from finemed_eval.cli import main
    from finemed_eval.ttt.corpus import load_corpus

    config_path, out, _ = reference
    assert len(ids(out / "input" / "part-00000.jsonl")) == 12
    assert_each_input_once(out)
    rejects = [json.loads(line) for name in STAGES for line in (stage_dir(out, name) / "rejects.jsonl").read_text().splitlines()]
    assert rejects, "the recorded outputs include malformed ones: they must surface as rejects"
    for reject in rejects:
        assert reject["status"] == "reject" and reject["reason"]
        if reject["stage"] in ("instruction", "scoring", "answer", "longform", "classify"):
            assert reject["attempts"] >= 1 and "raw" in reject

    assert main(["synth", "export", str(config_path)]) == 0
    export = out / "export"
    sft = load_dataset("json", data_files=str(export / "sft" / "Medicine (all)" / "train.jsonl"), split="train")
    assert sft.column_names == ["complexity", "instruction", "instruction_type", "language", "quality", "response", "text"]
    assert len(sft) == len(ids(stage_dir(out, "sft") / "ok" / "part-00000.jsonl")) > 0
    placed = sum(1 for p in (export / "sft").glob("*/train.jsonl") if p.parent.name in {
        "InternalMedicine", "Surgery", "ObstetricsandGynecology", "Pediatrics", "OtorhinolaryngologyENT", "OtherDepartments"}
        for _ in p.read_text().splitlines())
    assert placed == len(ids(stage_dir(out, "classify") / "ok" / "part-00000.jsonl"))  # one first-level folder each
    dpo = load_dataset("json", data_files=str(export / "dpo" / "train.jsonl"), split="train")
    assert set(dpo.column_names) == {"text", "complexity", "quality", "language", "prompt", "chosen", "rejected"}
    assert dpo[0]["prompt"][0]["role"] == "user" and dpo[0]["chosen"][0]["role"] == "assistant"
    longform = export / "sft" / "SFTo1Data" / "train.jsonl"
    corpus = load_corpus(longform, question_field="instruction", response_field="response")
    assert len(corpus) == len(load_dataset("json", data_files=str(longform), split="train")) > 0
    departments = {p.parent.name for p in (export / "sft").glob("*/train.jsonl")} - {"Medicine (all)", "SFTo1Data"}
    assert departments, "rows are exported per department"


def test_status_counts(reference, capsys):
    from finemed_eval.cli import main

    _, out, _ = reference
    assert main(["synth", "status", str(out), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["run"]["state"] == "finished"
    rows = {row["stage"]: row for row in status["stages"]}
    assert set(rows) == set(STAGES) and all(row["state"] == "done" for row in rows.values())
    assert rows["instruction"]["ok"] + rows["instruction"]["rejects"] == 12
    assert rows["scoring"]["tokens"]["prompt"] > 0


def test_kill_9_at_seeded_moments_then_rerun_is_identical(reference, tmp_path):
    config_path, reference_out, duration = reference
    out = tmp_path / "out"
    config = write_config(tmp_path / "synth.yaml", yaml.safe_load(config_path.read_text())["instruction"]["endpoint_url"], out)
    rng = random.Random(7)
    command = [sys.executable, "-m", "finemed_eval.cli", "synth", "run", str(config), "--no-progress"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    kills = 0
    for _ in range(5):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        moment = rng.uniform(0.5, 3.0 + duration)  # start-up (imports, manifest) through the last stage
        try:
            process.wait(timeout=moment)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            kills += 1
    assert kills >= 3, "most seeded moments must land while the run is still working"
    final = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert final.returncode == 0, final.stderr[-2000:]
    assert_each_input_once(out)
    assert stage_files(out) == stage_files(reference_out)


def test_changed_input_refuses_to_resume(reference, tmp_path):
    config_path, _, _ = reference
    changed = tmp_path / "texts.jsonl"
    changed.write_text(TEXTS.read_text(encoding="utf-8").replace("Iron deficiency", "Iron overload"), encoding="utf-8")
    data = yaml.safe_load(config_path.read_text())
    data["input"]["path"] = str(changed)
    bad = tmp_path / "changed.yaml"
    bad.write_text(yaml.safe_dump(data))
    from finemed_eval.synth.inputs import InputError

    with pytest.raises(InputError, match="input_sha256"):
        run(load_config(bad), progress=False, log=lambda line: None)


def test_config_and_input_errors_name_file_and_field(tmp_path, capsys):
    from finemed_eval.cli import main

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"input": {"path": str(TEXTS)}, "scoring": {"max_tokenz": 5}}))
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'scoring.max_tokenz'; did you mean 'scoring.max_tokens'"):
        load_config(path)
    path.write_text(yaml.safe_dump({"input": {"path": str(TEXTS)}, "retry": {"attempts": "three"}}))
    with pytest.raises(ConfigError, match=r"field 'retry.attempts' should be int"):
        load_config(path)
    path.write_text(yaml.safe_dump({"input": {"path": str(TEXTS)}, "switches": {"complex_op": ">>"}}))
    with pytest.raises(ConfigError, match=r"'switches.complex_op' is '>>'; allowed: '>=', '>'"):
        load_config(path)

    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "Asthma is a chronic airway disease."}\n{"body": "no text field"}\n')
    path.write_text(yaml.safe_dump({"output": str(tmp_path / "o"), "input": {"path": str(rows)},
                                    **{r: {"backend": "endpoint", "endpoint_url": "http://127.0.0.1:9"} for r in ROLES}}))
    assert main(["synth", "run", str(path), "--no-progress"]) == 2
    assert f"{rows} row 2: field 'text' is missing" in capsys.readouterr().err
    assert not (tmp_path / "o").exists(), "nothing is written (and no model called) before the input is valid"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    path.write_text(yaml.safe_dump({"input": {"path": str(empty)}}))
    assert main(["synth", "run", str(path)]) == 2
    assert "the input has no rows" in capsys.readouterr().err


def test_analyze_writes_figures_3_and_4(reference, tmp_path):
    from finemed_eval.cli import main

    config_path, out, _ = reference
    if not (out / "export").is_dir():
        assert main(["synth", "export", str(config_path)]) == 0
    other = tmp_path / "other.jsonl"  # a second "dataset": our raw texts' first sentences as instructions
    other.write_text("".join(json.dumps({"q": json.loads(l)["text"].split(".")[0] + "?"}) + "\n" for l in TEXTS.read_text().splitlines()))
    figures = tmp_path / "figures"
    assert main([
        "synth", "analyze", str(config_path), "--dataset", f"FineMed={out / 'export' / 'sft' / 'Medicine (all)' / 'train.jsonl'}",
        "--dataset", f"Other={other}", "--sample", "6", "--to", str(figures),
    ]) == 2, "field 'instruction' is missing in other.jsonl: one clear error"
    assert main([
        "synth", "analyze", str(config_path), "--dataset", f"FineMed={out / 'export' / 'sft' / 'Medicine (all)' / 'train.jsonl'}",
        "--sample", "6", "--to", str(figures),
    ]) == 0
    scores = json.loads((figures / "judge_scores.json").read_text())
    assert 0 < len(scores["FineMed"]) <= 6 and all(1 <= s["quality"] <= 10 for s in scores["FineMed"])
    for name in ("figure3_quality_complexity.png", "figure4_tsne_departments.png"):
        assert (figures / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
