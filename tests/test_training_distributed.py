"""`finemed train` under real `accelerate launch` with two processes on the CPU: plain data parallel
(gloo) and DeepSpeed ZeRO-3. What the run itself recorded (provenance.json `launch`, written from
inside the trainer) shows the world size, the backend and how much of the model rank 0 held."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.file_seconds(90)  # under -n 2 on 2 cores (CI): starts before shorter files

FIXTURES = Path(__file__).parent / "fixtures" / "training"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    from finemed_eval.training.tiny import derive_tiny_model

    return derive_tiny_model(tmp_path_factory.mktemp("tiny") / "base", layers=2, hidden_size=64)


def _train(base: Path, out: Path, accelerate: str) -> dict:
    env = dict(os.environ, FINEMED_ZOO_DIR=str(out.parent / "zoo"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env["OMP_NUM_THREADS"] = "1"
    # no port given: finemed train picks a free one (other jobs on this machine may hold accelerate's 29500)
    command = [
        sys.executable, "-m", "finemed_eval.cli", "train", "tiny/finemedlm/stage3", "--accelerate", accelerate, "--",
        "--model_name_or_path", str(base), "--output_dir", str(out), "--data", str(FIXTURES / "sft"),
        "--register_as", f"tiny-{accelerate.replace('_', '-')}",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, cwd=out.parent, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-5000:]
    assert f"--config_file {Path(__file__).parents[1] / 'training' / 'accelerate' / accelerate}.yaml" in done.stdout
    assert "--main_process_port" in done.stdout and "--main_process_port 29500" not in done.stdout
    return json.loads((out / "provenance.json").read_text())


def _changed(base: Path, out: Path) -> None:
    before, after = load_file(base / "model.safetensors"), load_file(out / "model.safetensors")
    assert before.keys() == after.keys()
    assert all(before[k].shape == after[k].shape for k in before)  # full tensors, gathered from the shards
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_two_data_parallel_processes_on_cpu(base, tmp_path):
    record = _train(base, tmp_path / "cpu2", "cpu2")
    launch = record["launch"]
    assert launch["world_size"] == 2 and launch["backend"] == "gloo" and launch["distributed_type"] == "MULTI_CPU"
    # the recipe's global batch 4 = 2 per device x 2 processes x 1 accumulation step
    assert launch["per_device_train_batch_size"] == 2 and launch["gradient_accumulation_steps"] == 1
    assert record["result"]["global_step"] == 3  # 12 rows / global batch 4, as on one process
    assert launch["rank0_param_share"] == 1.0  # plain data parallel: every process holds the whole model
    _changed(base, tmp_path / "cpu2")


def test_deepspeed_zero3_partitions_the_parameters_across_two_cpu_processes(base, tmp_path):
    record = _train(base, tmp_path / "zero3_cpu", "zero3_cpu")
    launch = record["launch"]
    assert launch["distributed_type"] == "DEEPSPEED" and launch["zero_stage"] == 3
    assert launch["world_size"] == 2 and launch["backend"] == "gloo"
    # rank 0 held about half of every parameter tensor (ZeRO-3 pads each to a multiple of the world size)
    assert 0.45 <= launch["rank0_param_share"] <= 0.55
    assert record["result"]["global_step"] == 3 and record["result"]["eval_losses"]
    _changed(base, tmp_path / "zero3_cpu")
    assert record["packages"]["deepspeed"]
