"""`finemed train RECIPE [--accelerate NAME|PATH] [-- --key value ...]`: check the recipe, the model
name and the data selection here, then run the stage script under `accelerate launch` with one of the
shipped configs (accelerate/*.yaml)."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from finemed_eval.training.args import Recipe, RecipeError, load_recipe, shipped_recipes
from finemed_eval.training.run import selection

CONFIG_DIR = Path(__file__).parent / "accelerate"


def shipped_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def accelerate_config(name: str) -> Path:
    """A shipped config name (zero3, multi_gpu, zero3_multinode, cpu2, zero3_cpu) or a path."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
        return path
    shipped = CONFIG_DIR / f"{name}.yaml"
    if shipped.is_file():
        return shipped
    raise RecipeError(f"--accelerate {name!r}: not a file and not one of {', '.join(shipped_configs())}")


def help_epilog() -> str:
    """`finemed train --help`'s closing text: the shipped recipes and how to override their keys."""
    names = shipped_recipes()
    lines = [f"  {' '.join(names[i:i + 3])}" for i in range(0, len(names), 3)]
    return "\n".join(
        [
            "shipped recipes (or give a recipe file):",
            *lines,
            "",
            "recipe overrides follow `--`, as --key value (any recipe key: TRL's SFTConfig/DPOConfig and",
            "ModelConfig keys, and the finemed keys data, data_dir, department, long_form, sample_size, ...):",
            "  finemed train tiny/finemedlm/stage1 -- --model_name_or_path /tmp/tiny --learning_rate 1e-3",
            "  finemed train finemedlm/stage2 --accelerate zero3 -- --data ./FineMed-SFT --output_dir out/s2",
            "a filter key set to '' is dropped (-- --data_dir ''); the recipe, the model name and the data",
            "selection are checked before anything is launched; a rerun resumes from the last checkpoint.",
        ]
    )


def check_model(name: str) -> None:
    """Fail before launch on a model the stage could not load: not a zoo name, not a checkpoint folder,
    not a hub id, or a hub id that is not in the local cache while the hub is switched off."""
    from huggingface_hub import constants, try_to_load_from_cache

    from finemed_eval import zoo

    where = f"recipe key 'model_name_or_path' {name!r}"
    try:
        canonical = zoo.canonical_model(name)
    except zoo.ZooError as error:
        raise zoo.ZooError(f"{where}: {error}") from None
    path = Path(canonical)
    if path.is_absolute():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise zoo.ZooError(f"{where}: {path} is not a model folder (no config.json)")
    elif canonical == name and constants.HF_HUB_OFFLINE and not isinstance(try_to_load_from_cache(name, "config.json"), str):
        raise zoo.ZooError(
            f"{where}: a hub id, but HF_HUB_OFFLINE is set and it is not in the local hub cache; give a zoo name "
            f"(finemed zoo list), a local folder, or download it first"
        )


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's pick, so two launches do not share one)."""
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def num_processes(accelerate: str | None, launch_args: list[str]) -> int:
    if "--num_processes" in launch_args:
        return int(launch_args[launch_args.index("--num_processes") + 1])
    if accelerate:
        config = yaml.safe_load(accelerate_config(accelerate).read_text()) or {}
        return int(config.get("num_processes", 1))
    return 1


def build_command(
    recipe: Recipe, accelerate: str | None, overrides: list[str], launch_args: list[str] = ()
) -> tuple[list[str], dict[str, str]]:
    """The `accelerate launch` command line and its environment."""
    env = dict(os.environ)
    command = [sys.executable, "-m", "accelerate.commands.launch"]
    if accelerate:
        config_path = accelerate_config(accelerate)
        config = yaml.safe_load(config_path.read_text()) or {}
        command += ["--config_file", str(config_path)]
        if config.get("use_cpu"):
            # The multi-process launchers do not pass use_cpu on; without this each process would
            # look for GPUs and, finding none, run alone.
            env["ACCELERATE_USE_CPU"] = "true"
        single_node = int(config.get("num_machines", 1)) == 1 and "--num_machines" not in launch_args
        if single_node and "main_process_port" not in config and "--main_process_port" not in launch_args:
            # accelerate's default rendezvous port is 29500 for every job: two trainings on one machine
            # would collide. (Across nodes the port is agreed on by the launcher: --launch-args.)
            command += ["--main_process_port", str(free_port())]
        if config.get("distributed_type") == "DEEPSPEED" and not _has_gpu() and recipe.train.ddp_backend is None:
            # Without a GPU accelerate finds no backend and counts one process although DeepSpeed
            # has started them all (gloo); naming the backend makes both agree on the world size.
            overrides = [*overrides, "--ddp_backend", "gloo"]
    else:
        command += ["--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    command += list(launch_args)
    command += ["-m", f"finemed_eval.training.{recipe.finemed.stage}", "--config", str(recipe.path), *overrides]
    return command, env


def train(recipe_name: str, accelerate: str | None, overrides: list[str], launch_args: str = "", dry_run: bool = False) -> int:
    extra = shlex.split(launch_args)
    # every recipe error (batch arithmetic for this many processes included) surfaces here, before any launch
    recipe = load_recipe(recipe_name, overrides, world_size=num_processes(accelerate, extra))
    check_model(recipe.model.model_name_or_path)
    # The stage's own row selection, so every data error surfaces here; a hub dataset is downloaded
    # here once (into the datasets cache the stage then reads) rather than by every process at once.
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # an error stays one line
    chosen = selection(recipe, trainer_rows=False)
    applied = "; ".join(f"{key}: {how}" for key, how in chosen.filters.items()) or "no filter"
    print(f"data: {chosen.counts} ({applied})", flush=True)
    command, env = build_command(recipe, accelerate, overrides, extra)
    print(shlex.join(command), flush=True)
    if dry_run:
        return 0
    return subprocess.run(command, env=env).returncode
