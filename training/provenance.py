"""What a checkpoint came from: provenance.json and a model card README.md in its folder."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainerCallback

from finemed_eval.training.args import find_recipe

PACKAGES = ("finemed-eval", "torch", "transformers", "trl", "accelerate", "deepspeed", "datasets", "peft")
_NOT_TRAINING_CHOICES = {"paper_recipe", "description", "register_as", "output_dir"}


class LaunchProbe(TrainerCallback):
    """Records, from inside the run, how it was really launched: processes, ZeRO stage, precision,
    and which share of the parameters this process holds (1.0 unless ZeRO-3 partitions them)."""

    def __init__(self) -> None:
        self.launch: dict[str, Any] = {}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        import torch.distributed as dist
        from accelerate.state import AcceleratorState
        from accelerate.utils import DistributedType

        state = AcceleratorState()
        params = list(model.parameters()) if model is not None else []
        local = sum(p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel() for p in params)
        total = sum(getattr(p, "ds_numel", p.numel()) for p in params)
        plugin = state.deepspeed_plugin if state.distributed_type == DistributedType.DEEPSPEED else None
        self.launch = {
            "world_size": state.num_processes,
            "distributed_type": str(state.distributed_type).split(".")[-1],
            "backend": dist.get_backend() if dist.is_available() and dist.is_initialized() else None,
            "zero_stage": plugin.zero_stage if plugin is not None else None,
            "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
            "device": str(state.device),
            "rank0_param_share": round(local / total, 4) if total else None,
            "per_device_train_batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
        }


def build(run: Any, trainer: Any, out: Path) -> dict:
    recipe = run.recipe
    train_losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    eval_losses = [e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e]
    summary = next((e for e in reversed(trainer.state.log_history) if "train_runtime" in e), {})
    tokens = next((e["num_tokens"] for e in reversed(trainer.state.log_history) if "num_tokens" in e), None)
    probe = next((c for c in trainer.callback_handler.callbacks if isinstance(c, LaunchProbe)), None)
    return {
        "register_as": recipe.finemed.register_as,
        "description": recipe.finemed.description,
        "stage": recipe.finemed.stage,
        "parent": run.parent,
        "parent_resolved": run.model_path,
        "lineage": list(run.lineage),
        "recipe": {
            "path": str(recipe.path),
            "sha256": hashlib.sha256(recipe.path.read_bytes()).hexdigest(),
            "overrides": list(recipe.overrides),
            "paper_recipe": recipe.finemed.paper_recipe,
            "deviations_from_paper": deviations(recipe.raw, recipe.finemed.paper_recipe),
        },
        "arguments": {
            "finemed": dataclasses.asdict(recipe.finemed),
            "trainer": json.loads(recipe.train.to_json_string()),
            "model": json.loads(json.dumps(dataclasses.asdict(recipe.model), default=str)),
        },
        "data": {
            "source": run.data.source,
            "files": run.data.files,
            "sha256": run.data.sha256,
            "rows": run.data.counts,
        },
        "launch": probe.launch if probe else {},
        "result": {
            "global_step": trainer.state.global_step,
            "resumed_from": run.resume_from,
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "best_metric": trainer.state.best_metric,
            "train_loss_first": train_losses[0] if train_losses else None,
            "train_loss_last": train_losses[-1] if train_losses else None,
            "train_losses": train_losses,
            "eval_losses": eval_losses,
            "train_runtime_s": summary.get("train_runtime"),
            "train_tokens": tokens,  # TRL's count of the tokens the trainer consumed (SFT)
        },
        "weights_sha256": weights_sha256(out),
        "code": code_revision(),
        "packages": package_versions(),
    }


def deviations(raw: dict, paper_recipe: str | None) -> dict:
    """Keys whose value differs from the paper recipe this recipe derives from ({} for the paper's own)."""
    if not paper_recipe:
        return {}
    paper = yaml.safe_load(find_recipe(paper_recipe).read_text(encoding="utf-8"))
    out = {}
    for key in sorted((set(raw) | set(paper)) - _NOT_TRAINING_CHOICES):
        here, there = _norm(raw.get(key)), _norm(paper.get(key))
        if here != there:
            out[key] = {"paper": paper.get(key), "here": raw.get(key)}
    return out


def _norm(value: Any) -> Any:
    if isinstance(value, str) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def weights_sha256(folder: Path) -> dict[str, str]:
    out = {}
    for path in sorted(folder.glob("*.safetensors")):
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        out[path.name] = digest.hexdigest()
    return out


def code_revision() -> dict:
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    revision = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if revision else None
    return {"git_revision": revision, "dirty": bool(status) if status is not None else None}


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_provenance(folder: Path, record: dict) -> None:
    (folder / "provenance.json").write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")


def write_card(folder: Path, record: dict) -> None:
    """A model card with the hub's metadata block; `model-index` is added once a leaderboard scores it."""
    card = folder / "README.md"
    meta: dict[str, Any] = {
        "base_model": record["parent"],
        "datasets": [record["data"]["source"]],
        "library_name": "transformers",
        "tags": ["finemed-eval", "trl", record["stage"], "medical"],
    }
    name = record["register_as"] or folder.name
    rows = "\n".join(f"| {step} | {count} |" for step, count in record["data"]["rows"].items())
    deviations = record["recipe"]["deviations_from_paper"]
    deviation_lines = "\n".join(f"- `{k}`: paper {v['paper']!r}, here {v['here']!r}" for k, v in deviations.items())
    result = record["result"]
    body = f"""# {name}

{record.get("description") or ""}

Trained with finemed-eval ({record["stage"]}) from `{record["parent"]}` by the recipe
`{record["recipe"]["path"]}` (sha256 `{record["recipe"]["sha256"][:12]}`).
Lineage: {" <- ".join([name, *record["lineage"]])}.

| data selection step | rows |
|---|---|
{rows}

Training loss {result["train_loss_first"]} -> {result["train_loss_last"]} in {result["global_step"]} steps;
best checkpoint {result["best_checkpoint"]} ({result["best_metric"]}).
Launch: {json.dumps(record["launch"])}.

Deviations from the paper recipe ({record["recipe"]["paper_recipe"] or "none named"}):
{deviation_lines or "- none"}

Full record: `provenance.json`.
"""
    card.write_text("---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n\n" + body, encoding="utf-8")
