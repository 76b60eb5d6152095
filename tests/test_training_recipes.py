"""Recipes: every shipped recipe parses through TRL's TrlParser; the paper's numbers are the paper's;
bad keys, types and batch arithmetic fail as one clear error before anything is loaded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from finemed_eval.training.args import RecipeError, load_recipe, recipes_root

SHIPPED = sorted(str(p.relative_to(recipes_root()).with_suffix("")) for p in recipes_root().rglob("*.yaml"))
FULL = [r for r in SHIPPED if not r.startswith("tiny/")]


def _load(name: str, *overrides: str, world_size: int = 4):
    # The full recipes say bf16 (GPU); use_cpu lets TrainingArguments accept them on this machine.
    if name not in FULL:
        return load_recipe(name, list(overrides), world_size=1)
    return load_recipe(name, ["--use_cpu", "true", *overrides], world_size=world_size)


def test_shipped_recipes_are_the_paper_chain_the_released_variants_and_a_tiny_twin_of_each():
    assert FULL == [
        "finemedlm-o1/dpo",
        "finemedlm-o1/sft",
        "finemedlm/stage1",
        "finemedlm/stage2",
        "finemedlm/stage3",
        "released/dpo",
        "released/o1-sft",
    ]
    assert sorted(r.removeprefix("tiny/") for r in SHIPPED if r.startswith("tiny/")) == FULL


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_recipe_parses_into_trl_configs(name):
    from trl import DPOConfig, ModelConfig, SFTConfig

    recipe = _load(name)
    assert isinstance(recipe.train, SFTConfig if recipe.finemed.stage == "sft" else DPOConfig)
    assert isinstance(recipe.model, ModelConfig) and recipe.model.model_name_or_path
    assert recipe.finemed.register_as and recipe.finemed.paper_recipe in FULL


def test_paper_recipes_carry_the_papers_hyperparameters():
    # paper §3.1: (lr, batch, epochs, sampled rows, department)
    expected = {
        "finemedlm/stage1": (3e-5, 256, 2, 200_000, None),
        "finemedlm/stage2": (5e-6, 128, 2, 36_000, "InternalMedicine"),
        "finemedlm/stage3": (5e-6, 128, 1, 11_000, "Endocrinology"),
    }
    for name, (lr, batch, epochs, rows, department) in expected.items():
        r = _load(name)
        assert (r.train.learning_rate, r.finemed.global_batch_size, r.train.num_train_epochs) == (lr, batch, epochs)
        assert (r.finemed.sample_size, r.finemed.department) == (rows, department)
        assert r.train.max_length == 1024 and r.train.warmup_steps == 0.1 and r.train.lr_scheduler_type == "cosine"
        assert r.train.weight_decay == 0.01 and r.finemed.dropout == 0.1 and r.train.bf16
        assert r.train.load_best_model_at_end and r.train.metric_for_best_model == "eval_loss"
        # batch 256/128 on the paper's 4 GPUs: accumulation fills what the devices cannot hold
        assert r.train.per_device_train_batch_size * 4 * r.train.gradient_accumulation_steps == batch
    assert _load("finemedlm/stage1").finemed.holdout_fraction == 0.1
    assert _load("finemedlm/stage2").model.model_name_or_path == "finemedlm-stage1"
    assert _load("finemedlm/stage3").model.model_name_or_path == "finemedlm-stage2"
    o1 = _load("finemedlm-o1/sft")  # §3.2
    assert (o1.train.learning_rate, o1.finemed.global_batch_size, o1.train.max_length, o1.train.num_train_epochs) == (
        5e-7, 64, 8192, 2
    )
    assert o1.finemed.sample_size == 17_000 and o1.finemed.data_dir == "SFTo1Data"
    # long-form reasoning answers only, in the paper's recipe, the released one and their tiny twins
    for name in ("finemedlm-o1/sft", "released/o1-sft", "tiny/finemedlm-o1/sft", "tiny/released/o1-sft"):
        assert _load(name).finemed.long_form == "require", name
    assert o1.model.model_name_or_path == "finemedlm-stage3"
    dpo = _load("finemedlm-o1/dpo")
    assert (dpo.train.beta, dpo.train.num_train_epochs, dpo.finemed.sample_size) == (0.1, 1, None)  # all pairs
    assert dpo.model.model_name_or_path == "finemedlm-o1-sft"


def test_released_variants_differ_from_the_paper_where_the_code_does():
    sft, dpo = _load("released/o1-sft"), _load("released/dpo")
    assert sft.train.learning_rate == 5e-6 and sft.train.max_length is None and sft.finemed.dropout is None
    assert dpo.train.learning_rate == 1e-7 and dpo.finemed.sample_size == 12_800 and dpo.train.max_length is None
    from finemed_eval.training.provenance import deviations

    assert set(deviations(sft.raw, "finemedlm-o1/sft")) >= {"learning_rate", "max_length", "dropout"}
    # the paper recipe itself deviates only by what the command line changed
    assert deviations(_load("finemedlm/stage2").raw, "finemedlm/stage2") == {"use_cpu": {"paper": None, "here": "true"}}


def test_trl_1x_traps_are_handled_in_the_recipes():
    for name in SHIPPED:
        raw = yaml.safe_load((recipes_root() / f"{name}.yaml").read_text())
        assert "bf16" in raw, f"{name}: TRL 1.x defaults bf16 on; every recipe must say"
        assert "warmup_ratio" not in raw and raw["warmup_steps"] < 1, f"{name}: warm-up ratio is warmup_steps < 1"
        assert not raw.get("assistant_only_loss"), f"{name}: the loss mask comes from prompt/completion rows"
        if raw["stage"] == "dpo":
            assert not (raw.get("disable_dropout", True) and raw.get("dropout")), name


def _error(tmp_path: Path, text: str, *overrides: str, world_size: int = 1) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as error:
        load_recipe(path, list(overrides), world_size=world_size)
    return str(error.value)


COMMON = "model_name_or_path: some-org/some-model\ndata: some-org/some-data\nbf16: false\nactivation_checkpointing: false\n"
GOOD = "stage: sft\n" + COMMON


def test_unknown_keys_get_a_did_you_mean(tmp_path):
    message = _error(tmp_path, GOOD + "learnig_rate: 1.0e-5\nglobal_batchsize: 4\n")
    assert "unknown key 'learnig_rate' (did you mean 'learning_rate'?)" in message
    assert "unknown key 'global_batchsize' (did you mean 'global_batch_size'?)" in message
    assert str(tmp_path / "recipe.yaml") in message


def test_wrong_types_are_rejected_with_the_expected_type(tmp_path):
    message = _error(tmp_path, GOOD + "learning_rate: fast\nnum_train_epochs: [1]\nsample_size: 2.5\nbf16: maybe\n")
    assert "key 'learning_rate' expects float" in message
    assert "key 'num_train_epochs'" in message and "key 'sample_size'" in message and "key 'bf16'" in message


def test_overrides_get_the_same_checks(tmp_path):
    assert "unknown override --lerning_rate (did you mean 'learning_rate'?)" in _error(tmp_path, GOOD, "--lerning_rate", "1")
    assert "override --per_device_train_batch_size expects int" in _error(
        tmp_path, GOOD, "--per_device_train_batch_size", "two"
    )


def test_a_global_batch_that_does_not_divide_is_an_error(tmp_path):
    text = GOOD + "global_batch_size: 6\nper_device_train_batch_size: 2\n"
    assert "global_batch_size 6 is not a multiple of per_device_train_batch_size 2 x 2 process(es)" in _error(
        tmp_path, text, world_size=2
    )
    path = tmp_path / "recipe.yaml"
    assert load_recipe(path, world_size=1).train.gradient_accumulation_steps == 3
    assert "not both" in _error(tmp_path, text + "gradient_accumulation_steps: 2\n")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("", "key 'stage' must be one of sft, dpo"),
        ("stage: ppo\n", "key 'stage' must be one of sft, dpo"),
    ],
)
def test_stage_is_required(tmp_path, extra, expected):
    assert expected in _error(tmp_path, extra + COMMON)


def test_contradictions_are_errors(tmp_path):
    dpo = "stage: dpo\n" + COMMON
    assert "disable_dropout is true but dropout is set" in _error(tmp_path, dpo + "dropout: 0.1\n")
    assert "eval_strategy needs a holdout" in _error(tmp_path, GOOD + "eval_strategy: epoch\n")
    assert "holdout_fraction must be in [0, 1)" in _error(tmp_path, GOOD + "holdout_fraction: 1.5\n")
    assert "register_as 'Bad/Name'" in _error(tmp_path, GOOD + "register_as: Bad/Name\n")
    assert "key 'data' is required" in _error(tmp_path, GOOD.replace("data: some-org/some-data\n", ""))
    assert "long_form must be one of require, select, any, got 'maybe'" in _error(tmp_path, GOOD + "long_form: maybe\n")
    assert "long_form 'require' checks SFT responses" in _error(tmp_path, dpo + "long_form: require\n")


def test_unknown_recipe_names_suggest_a_shipped_one():
    with pytest.raises(RecipeError, match="Did you mean 'finemedlm/stage1'"):
        load_recipe("finemedlm/stage_1")


def test_finemed_train_reports_recipe_errors_in_one_line_before_launching(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(GOOD + "learnig_rate: 1.0e-5\n")
    done = subprocess.run(
        [sys.executable, "-m", "finemed_eval.cli", "train", str(path), "--accelerate", "cpu2"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "did you mean 'learning_rate'" in done.stderr and "accelerate" not in done.stdout


def test_finemed_train_builds_the_accelerate_command_with_config_and_overrides(tmp_path):
    from finemed_eval.training.launch import build_command, shipped_configs

    assert shipped_configs() == ["cpu2", "multi_gpu", "zero3", "zero3_cpu", "zero3_multinode"]
    recipe = load_recipe("tiny/finemedlm/stage2", ["--learning_rate", "1e-4"], world_size=2)
    command, env = build_command(recipe, "cpu2", ["--learning_rate", "1e-4"])
    assert command[1:3] == ["-m", "accelerate.commands.launch"]
    assert command[command.index("--config_file") + 1].endswith("training/accelerate/cpu2.yaml")
    assert command[-6:] == ["-m", "finemed_eval.training.sft", "--config", str(recipe.path), "--learning_rate", "1e-4"]
    assert env["ACCELERATE_USE_CPU"] == "true"
    with pytest.raises(RecipeError, match="not one of cpu2"):
        build_command(recipe, "zero4", [])
    # the paper's batch on 4 GPUs: checked against the config's process count before launching
    assert load_recipe("finemedlm/stage1", ["--use_cpu", "true"], world_size=4).train.gradient_accumulation_steps == 8


def test_multinode_launch_arguments_reach_accelerate_and_the_batch_check(tmp_path):
    from finemed_eval.training.launch import build_command, num_processes

    extra = ["--num_machines", "2", "--num_processes", "8", "--machine_rank", "1", "--main_process_ip", "10.0.0.1"]
    assert num_processes("zero3_multinode", extra) == 8 and num_processes("zero3", []) == 4
    recipe = load_recipe("finemedlm/stage1", ["--use_cpu", "true"], world_size=8)
    assert recipe.train.gradient_accumulation_steps == 4  # 256 = 8 per device x 8 processes x 4
    command, _ = build_command(recipe, "zero3_multinode", [], extra)
    assert command[command.index("--machine_rank") + 1] == "1"
    assert command[command.index("--config_file") + 1].endswith("zero3_multinode.yaml")


# ---------------------------------------------------------------- before launch (issue 16 §4, issue 18 §8)

SFT_DATA = Path(__file__).parent / "fixtures" / "training" / "sft"
DPO_DATA = Path(__file__).parent / "fixtures" / "training" / "dpo"


def _finemed_train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "finemed_eval.cli", "train", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def test_too_few_rows_for_sample_size_fails_before_launch_in_one_line(tmp_path):
    """The tiny DPO recipe samples 16 pairs; on 8 this used to fail twice inside the launched stage."""
    pairs = tmp_path / "dpo.jsonl"
    pairs.write_text("".join((DPO_DATA / "train.jsonl").read_text().splitlines(keepends=True)[:8]))
    out = tmp_path / "out"
    done = _finemed_train(
        "tiny/finemedlm-o1/dpo", "--", "--model_name_or_path", "smollm2-135m-instruct", "--data", str(pairs),
        "--output_dir", str(out), cwd=Path(__file__).parents[1],
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0  # one line
    assert f"{pairs}: recipe key 'sample_size' is 16 but there are only 8 rows in the data" in done.stderr
    assert "accelerate.commands.launch" not in done.stdout and not out.exists()  # nothing started


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("smollm3-tiny", "unknown model 'smollm3-tiny'"),
        ("/nonexistent/checkpoint", "unknown model '/nonexistent/checkpoint'"),
        ("no-such-org/no-such-model", "HF_HUB_OFFLINE is set and it is not in the local hub cache"),
    ],
)
def test_a_model_the_stage_could_not_load_fails_before_launch(model, expected, monkeypatch):
    from huggingface_hub import constants

    from finemed_eval import zoo
    from finemed_eval.training.launch import train

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(zoo.ZooError) as error:
        train("tiny/finemedlm/stage1", None, ["--model_name_or_path", model, "--data", str(SFT_DATA)], dry_run=True)
    assert str(error.value).startswith(f"recipe key 'model_name_or_path' {model!r}: ") and expected in str(error.value)


def test_a_folder_that_is_not_a_checkpoint_fails_before_launch(tmp_path):
    from finemed_eval import zoo
    from finemed_eval.training.launch import check_model

    with pytest.raises(zoo.ZooError, match="is not a model folder"):
        check_model(str(tmp_path))
    check_model("smollm2-135m-instruct")  # the embedded model: a zoo name, nothing converted


def test_a_filter_that_cannot_apply_fails_before_launch_through_finemed_train(tmp_path):
    one_file = tmp_path / "finemed_sft.jsonl"
    one_file.write_text((SFT_DATA / "Medicine (all)" / "train.jsonl").read_text())
    from finemed_eval.training.data import DataError
    from finemed_eval.training.launch import train

    args = ["--model_name_or_path", "smollm2-135m-instruct", "--data", str(one_file)]
    with pytest.raises(DataError, match="recipe key 'data_dir' is 'Medicine \\(all\\)'"):
        train("tiny/finemedlm/stage1", None, args, dry_run=True)
    with pytest.raises(DataError, match="recipe key 'long_form' is 'require'"):
        train("tiny/finemedlm-o1/sft", None, [*args, "--data_dir", ""], dry_run=True)
    assert train("tiny/finemedlm/stage1", None, [*args, "--data_dir", ""], dry_run=True) == 0


def test_finemed_train_help_lists_the_shipped_recipes_and_the_override_syntax(capsys):
    from finemed_eval.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert all(name in text for name in SHIPPED)
    assert "[-- --key value ...]" in text and "-- --model_name_or_path" in text


def test_single_node_launches_get_a_free_rendezvous_port_not_accelerates_default():
    """Two trainings on one machine both took accelerate's default 29500."""
    import socket

    from finemed_eval.training.launch import build_command

    recipe = load_recipe("tiny/finemedlm/stage2", world_size=2)
    with socket.socket() as busy:
        try:
            busy.bind(("", 29500))
            busy.listen()
        except OSError:
            pass  # something else holds 29500 already: busy either way
        commands = [build_command(recipe, config, [])[0] for config in ("cpu2", "zero3_cpu", "cpu2")]
    ports = [int(c[c.index("--main_process_port") + 1]) for c in commands]
    assert 29500 not in ports and len(set(ports)) == 3
    for port in ports:  # free when chosen
        with socket.socket() as probe:
            probe.bind(("", port))
    # an explicit port is kept; across nodes the port is the launcher's to agree on (--launch-args)
    explicit = build_command(recipe, "cpu2", [], ["--main_process_port", "29555"])[0]
    assert explicit.count("--main_process_port") == 1 and explicit[explicit.index("--main_process_port") + 1] == "29555"
    multinode = build_command(load_recipe("finemedlm/stage1", ["--use_cpu", "true"], world_size=8), "zero3_multinode", [])[0]
    assert "--main_process_port" not in multinode


def test_activation_checkpointing_reaches_the_trainer_under_either_transformers_spelling():
    """transformers 5.24 renamed gradient_checkpointing; the recipes say the new name and must run on
    the versions before the rename too (5.19 here)."""
    tiny = _load("tiny/finemedlm/stage1")
    field = "activation_checkpointing" if hasattr(tiny.train, "activation_checkpointing") else "gradient_checkpointing"
    assert getattr(tiny.train, field) is False and getattr(_load("finemedlm/stage1").train, field) is True
    assert getattr(_load("tiny/finemedlm/stage1", "--activation_checkpointing", "true").train, field) is True
    assert "activation_checkpointing" not in deviations_of("finemedlm/stage1")  # the paper recipe's own spelling


def deviations_of(name: str) -> dict:
    from finemed_eval.training.provenance import deviations

    return deviations(_load(name).raw, name)


def test_a_hub_dataset_that_cannot_be_loaded_fails_before_launch():
    """The paper recipes read the hub; offline and uncached, that used to fail in every launched process."""
    from finemed_eval.training.data import DataError
    from finemed_eval.training.launch import train

    overrides = ["--model_name_or_path", "smollm2-135m-instruct", "--data", "no-such-org/no-such-data"]
    expected = r"^no-such-org/no-such-data: cannot load this hub dataset \(recipe key data_dir 'Medicine \(all\)'\)"
    with pytest.raises(DataError, match=expected):
        train("tiny/finemedlm/stage1", None, overrides, dry_run=True)
