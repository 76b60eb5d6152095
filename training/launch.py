"""`finemed train RECIPE [--accelerate NAME|PATH] [-- --key value ...]`: check the recipe here, then
run the stage script under `accelerate launch` with one of the shipped configs (accelerate/*.yaml)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from finemed_eval.training.args import Recipe, RecipeError, load_recipe
from finemed_eval.training.data import check_source

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
    f = recipe.finemed
    check_source(f.stage, f.data, data_dir=f.data_dir, department=f.department)  # files and fields, too
    command, env = build_command(recipe, accelerate, overrides, extra)
    print(shlex.join(command), flush=True)
    if dry_run:
        return 0
    return subprocess.run(command, env=env).returncode
