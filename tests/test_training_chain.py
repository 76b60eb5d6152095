"""The paper's training chain on CPU with real TRL: stage 1 -> 2 -> 3 -> o1-SFT -> DPO on a small model
cut from SmolLM2, over original fixtures in the released FineMed layouts. Each stage starts from the
previous one by its zoo name, registers itself, and its checkpoint is scored by `lm_eval` through
`finemed_ttt` under that name. A run killed with SIGKILL and started again ends with the same weights.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.file_seconds(110)  # under -n 2 on 2 cores (CI): starts before shorter files

FIXTURES = Path(__file__).parent / "fixtures" / "training"
CHAIN = (  # (script, recipe, zoo name it registers, data folder)
    ("sft", "tiny/finemedlm/stage1", "tiny-finemedlm-stage1", "sft"),
    ("sft", "tiny/finemedlm/stage2", "tiny-finemedlm-stage2", "sft"),
    ("sft", "tiny/finemedlm/stage3", "tiny-finemedlm-stage3", "sft"),
    ("sft", "tiny/finemedlm-o1/sft", "tiny-finemedlm-o1-sft", "sft"),
    ("dpo", "tiny/finemedlm-o1/dpo", "tiny-finemedlm-o1", "dpo"),
)
# One process runs every stage, so the heavy imports are paid once; each stage is the real script's main.
DRIVER = (
    "import json, sys\n"
    "from finemed_eval.training import dpo, sft\n"
    "for script, argv in json.loads(sys.argv[1]):\n"
    "    {'sft': sft, 'dpo': dpo}[script].main(argv)\n"
)


@dataclass
class Chain:
    root: Path
    zoo_dir: Path
    base: Path
    env: dict

    def out(self, name: str) -> Path:
        return self.root / name

    def provenance(self, name: str) -> dict:
        return json.loads((self.out(name) / "provenance.json").read_text())


def training_env(zoo_dir: Path) -> dict:
    env = dict(os.environ, FINEMED_ZOO_DIR=str(zoo_dir), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env["OMP_NUM_THREADS"] = "1"  # the test machine is shared: no spinning second thread
    return env


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    from finemed_eval.training.tiny import derive_tiny_model

    return derive_tiny_model(tmp_path_factory.mktemp("tiny") / "base", layers=2, hidden_size=64)


@pytest.fixture(scope="session")
def chain(tmp_path_factory, tiny_base) -> Chain:
    root = tmp_path_factory.mktemp("chain")
    done = Chain(root, root / "zoo", tiny_base, training_env(root / "zoo"))
    steps = []
    for i, (script, recipe, name, data) in enumerate(CHAIN):
        argv = ["--config", recipe, "--output_dir", str(done.out(name)), "--data", str(FIXTURES / data)]
        if i == 0:
            argv += ["--model_name_or_path", str(tiny_base)]  # later stages start from the zoo name in the recipe
        steps.append((script, argv))
    run = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(steps)], env=done.env, cwd=root, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    return done


def test_every_stage_lowers_its_loss_and_records_complete_provenance(chain):
    from finemed_eval.training.provenance import PACKAGES

    parent = chain.base.name  # a local folder is recorded by its name and weights hash, never its path
    for script, recipe, name, data in CHAIN:
        record = chain.provenance(name)
        losses = record["result"]["train_losses"]
        assert len(losses) >= 3 and losses[-1] < losses[0], (name, losses)
        assert record["stage"] == script and record["register_as"] == name
        assert record["parent"] == parent  # stage N+1 started from stage N, named through the zoo
        source = record["parent_source"]
        assert source["zoo" if parent != chain.base.name else "local"] == parent and source["weights_sha256"]
        assert record["recipe"]["name"] == recipe and record["recipe"]["shipped"] and len(record["recipe"]["sha256"]) == 64
        assert record["recipe"]["paper_recipe"] and "learning_rate" in record["recipe"]["deviations_from_paper"]
        assert record["arguments"]["trainer"]["learning_rate"] > 0 and record["arguments"]["finemed"]["stage"] == script
        assert record["arguments"]["trainer"]["output_dir"] == "."  # the run folder, relative to itself
        rows = record["data"]["rows"]
        assert rows["loaded"] >= rows.get("sampled", rows["loaded"]) >= rows["train"] > 0
        assert record["data"]["source"] == data and len(record["data"]["sha256"]) == 64
        assert all(len(digest) == 64 and not Path(file).is_absolute() for file, digest in record["data"]["files"].items())
        assert record["launch"]["world_size"] == 1 and record["launch"]["precision"] == "fp32"
        assert record["launch"]["dtype"] == "float32"  # what ran, not the recipe's unset dtype
        assert set(PACKAGES) <= set(record["packages"]) and record["packages"]["trl"]
        assert record["code"]["git_revision"] and isinstance(record["code"]["dirty"], bool)
        weights = chain.out(name) / "model.safetensors"
        import hashlib

        assert record["weights_sha256"] == {"model.safetensors": hashlib.sha256(weights.read_bytes()).hexdigest()}
        card = (chain.out(name) / "README.md").read_text()
        assert card.startswith("---\n") and "tags:" in card and f"datasets:\n- {data}\n" in card
        assert "base_model:" not in card  # only a hub model is a base_model; these parents are local
        assert "Weights dtype float32" in card and "`dtype`: paper 'bfloat16', here 'float32'" in card
        parent = name
    # The lineage runs from DPO back to the base model.
    assert chain.provenance("tiny-finemedlm-o1")["lineage"] == [
        "tiny-finemedlm-o1-sft",
        "tiny-finemedlm-stage3",
        "tiny-finemedlm-stage2",
        "tiny-finemedlm-stage1",
        chain.base.name,
    ]


def test_filters_are_recorded_as_applied_and_o1_sft_trained_on_long_form_answers(chain):
    expected = {
        "tiny-finemedlm-stage1": {"data_dir"},
        "tiny-finemedlm-stage2": {"department"},
        "tiny-finemedlm-stage3": {"department"},
        "tiny-finemedlm-o1-sft": {"data_dir", "long_form"},
        "tiny-finemedlm-o1": set(),
    }
    for name, keys in expected.items():
        record = chain.provenance(name)
        assert set(record["data"]["filters"]) == keys, name
    files = {name: list(chain.provenance(name)["data"]["files"]) for name in expected}
    assert files == {
        "tiny-finemedlm-stage1": ["Medicine (all)/train.jsonl"],
        "tiny-finemedlm-stage2": ["InternalMedicine/train.jsonl"],
        "tiny-finemedlm-stage3": ["Endocrinology/train.jsonl"],
        "tiny-finemedlm-o1-sft": ["SFTo1Data/train.jsonl"],
        "tiny-finemedlm-o1": ["train.jsonl"],
    }


def test_no_shared_artefact_of_a_run_holds_a_path_of_this_machine(chain):
    """provenance.json, the model card, training_args.bin, config and tokenizer files: everything but
    the trainer's resume checkpoints (checkpoint-*, never uploaded by push_to_hub)."""
    home = os.path.expanduser("~")
    forbidden = {home, os.path.join(home, ".cache"), str(chain.root), str(chain.base.parent), str(FIXTURES.parents[1])}
    for *_, name, _ in CHAIN:
        run = chain.out(name)
        files = [p for p in run.rglob("*") if p.is_file() and not p.relative_to(run).parts[0].startswith("checkpoint-")]
        shared = {"provenance.json", "README.md", "training_args.bin", "config.json", "model.safetensors"}
        assert {p.name for p in files} >= shared
        for path in files:
            content = path.read_bytes()
            leaks = [text for text in forbidden if text.encode() in content]
            assert not leaks, f"{path} holds {leaks}"


def test_stages_with_a_holdout_keep_the_best_checkpoint(chain):
    for name in ("tiny-finemedlm-stage1", "tiny-finemedlm-stage2", "tiny-finemedlm-stage3"):
        result = chain.provenance(name)["result"]
        assert result["eval_losses"] and result["best_checkpoint"] and result["best_metric"] == min(result["eval_losses"])


def test_every_checkpoint_is_registered_in_one_file_each(chain, monkeypatch):
    from finemed_eval import zoo

    monkeypatch.setenv("FINEMED_ZOO_DIR", str(chain.zoo_dir))
    assert sorted(p.name for p in chain.zoo_dir.iterdir()) == sorted(f"{name}.json" for *_, name, _ in CHAIN)
    for *_, name, _ in CHAIN:
        entry = zoo.get_entry(name)
        assert entry.trained and Path(entry.source) == chain.out(name).resolve()
        assert zoo.resolve_pretrained(name) == str(chain.out(name).resolve())


def test_checkpoints_load_in_finemed_ttt_by_zoo_name_and_score_the_demo_task(chain, monkeypatch, task_manager):
    import lm_eval

    monkeypatch.setenv("FINEMED_ZOO_DIR", str(chain.zoo_dir))
    for *_, name, _ in CHAIN:
        results = lm_eval.simple_evaluate(
            model="finemed_ttt",
            model_args=f"pretrained={name},ttt=off,device=cpu",
            tasks=["finemed_demo"],
            limit=2,
            batch_size=2,
            task_manager=task_manager,
        )
        assert results["config"]["model_args"].startswith(f"pretrained={name}")
        assert 0.0 <= results["results"]["finemed_demo"]["acc,none"] <= 1.0


def test_a_leaderboard_config_accepts_the_trained_zoo_names(chain, monkeypatch):
    from finemed_eval.leaderboard.config import check_names, parse_config

    monkeypatch.setenv("FINEMED_ZOO_DIR", str(chain.zoo_dir))
    config = parse_config(
        {"models": [{"name": name, "model": name} for *_, name, _ in CHAIN], "tasks": ["finemed_demo"], "seeds": [0]}
    )
    canonical = check_names(config, ["finemed_demo"])
    assert canonical == {name: str(chain.out(name).resolve()) for *_, name, _ in CHAIN}


def test_resume_skips_a_checkpoint_that_was_being_written_when_killed(tmp_path):
    from finemed_eval.training.run import last_complete_checkpoint

    for step, complete in ((2, True), (10, True), (12, False)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    assert last_complete_checkpoint(tmp_path / "missing") is None


def test_a_rerun_that_resumes_says_from_which_checkpoint(tmp_path, capsys):
    from finemed_eval.training.args import load_recipe
    from finemed_eval.training.run import prepare

    for step in (2, 3):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text("{}")  # checkpoint-3 was cut off
    overrides = ["--model_name_or_path", "smollm2-135m-instruct", "--data", str(FIXTURES / "sft"), "--output_dir", str(tmp_path)]
    recipe = load_recipe("tiny/finemedlm/stage1", overrides)
    assert prepare(recipe).resume_from == str(tmp_path / "checkpoint-2")
    assert f"finemed training: resuming from checkpoint-2 ({tmp_path / 'checkpoint-2'})" in capsys.readouterr().out


def test_a_run_killed_with_sigkill_resumes_to_the_same_weights(chain, tmp_path):
    """The chain's o1-SFT stage is the uninterrupted run; the same recipe, saving every step, is
    killed (the whole process group, as a node failure would) and started again with the same command."""
    out = tmp_path / "resumed"
    command = [
        sys.executable, "-m", "finemed_eval.training.sft", "--config", "tiny/finemedlm-o1/sft",
        "--output_dir", str(out), "--data", str(FIXTURES / "sft"),
        "--save_strategy", "steps", "--save_steps", "1", "--register_as", "tiny-resume-check",
    ]  # fmt: skip
    first = subprocess.Popen(command, env=chain.env, cwd=tmp_path, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    marker = out / "checkpoint-1" / "trainer_state.json"  # the earliest point to resume from: 5 steps left
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert first.poll() is None, first.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint-1 within 240 s"
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert not (out / "model.safetensors").exists()  # it really died mid-run

    second = subprocess.run(command, env=chain.env, cwd=tmp_path, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "finemed training: resuming from checkpoint-" in second.stdout  # the rerun says so
    record = json.loads((out / "provenance.json").read_text())
    assert record["result"]["resumed_from"].startswith("checkpoint-")  # relative to the run folder
    resumed = load_file(out / "model.safetensors")
    reference = load_file(chain.out("tiny-finemedlm-o1-sft") / "model.safetensors")
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)
