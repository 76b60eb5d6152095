"""What a checkpoint came from: provenance.json and a model card README.md in its folder.

Both are meant to be shared with the weights, so they hold no path of this machine: zoo names, hub ids,
paths relative to the run folder, and local models or data by folder name plus content hashes.
Both are written to a temporary file and renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainerCallback

from finemed_eval.training.args import find_recipe, recipes_root

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
            "dtype": str(params[0].dtype).removeprefix("torch.") if params else None,  # the weights as trained
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
    launch = probe.launch if probe else {}
    record = {
        "register_as": recipe.finemed.register_as,
        "description": recipe.finemed.description,
        "stage": recipe.finemed.stage,
        "parent": run.parent,
        "parent_source": parent_identity(run.parent, run.model_path),
        "lineage": list(run.lineage),
        "recipe": {
            **recipe_identity(recipe.path),
            "overrides": list(recipe.overrides),
            "paper_recipe": recipe.finemed.paper_recipe,
            "deviations_from_paper": deviations(recipe.raw, recipe.finemed.paper_recipe, launch.get("dtype")),
        },
        "arguments": {
            "finemed": dataclasses.asdict(recipe.finemed),
            "trainer": json.loads(recipe.train.to_json_string()),
            "model": json.loads(json.dumps(dataclasses.asdict(recipe.model), default=str)),
        },
        "data": {
            "source": run.data.source,  # a hub id, or the local file or folder (by name below)
            "files": run.data.files,  # relative to the source folder -> sha256
            "sha256": run.data.sha256,
            "filters": run.data.filters,  # recipe key -> how it was applied; a key absent here was not
            "rows": run.data.counts,
        },
        "launch": launch,
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
    return portable(record, out)


def parent_identity(parent: str, resolved: str) -> dict:
    """Where the starting weights came from, without local paths: a hub id or the embedded model
    (`id`), or a trained zoo name or local folder name with the weights' sha256."""
    from finemed_eval import zoo

    canonical = zoo.canonical_model(parent)
    folder = Path(resolved)
    if canonical.startswith("embedded:") or not folder.is_dir():
        return {"id": canonical}
    earlier = folder / "provenance.json"  # a finemed checkpoint has hashed its weights already
    digests = json.loads(earlier.read_text(encoding="utf-8")).get("weights_sha256") if earlier.is_file() else None
    key = "zoo" if zoo.get_entry(parent) is not None else "local"
    return {key: parent if key == "zoo" else folder.name, "weights_sha256": digests or weights_sha256(folder)}


def recipe_identity(path: Path) -> dict:
    """A shipped recipe by its name, any other by its file name; both with the content hash."""
    path = path.resolve()
    root = recipes_root().resolve()
    shipped = path.is_relative_to(root)
    name = path.relative_to(root).with_suffix("").as_posix() if shipped else path.name
    return {"name": name, "shipped": shipped, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def portable(value: Any, run_dir: Path) -> Any:
    """`value` with every local path made shareable: below the run folder relative to it, elsewhere by
    its name (the record carries the content hashes). Names, hub ids and other strings are unchanged."""
    if isinstance(value, dict):
        return {key: portable(item, run_dir) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(item, run_dir) for item in value]
    if not isinstance(value, str):
        return value
    if value.startswith("--") and "=" in value:  # an override written --key=value
        key, _, rest = value.partition("=")
        return f"{key}={portable(rest, run_dir)}"
    if not _is_path(value):
        return value
    path = Path(value).expanduser().resolve()
    if path.is_relative_to(run_dir.resolve()):
        return path.relative_to(run_dir.resolve()).as_posix() or "."
    return path.name


def _is_path(text: str) -> bool:
    if text.startswith(("/", "~", "./", "../")):
        return True
    return "/" in text and Path(text).exists()  # a relative path (an `org/name` hub id exists nowhere here)


def deviations(raw: dict, paper_recipe: str | None, dtype: str | None = None) -> dict:
    """Keys whose value differs from the paper recipe this recipe derives from ({} for the paper's own).
    An unset `dtype` is reported as the dtype the weights were trained in (`dtype`), not as None."""
    if not paper_recipe:
        return {}
    paper = yaml.safe_load(find_recipe(paper_recipe).read_text(encoding="utf-8"))
    here_values = dict(raw)
    if here_values.get("dtype") in (None, "auto") and dtype:
        here_values["dtype"] = dtype
    out = {}
    for key in sorted((set(here_values) | set(paper)) - _NOT_TRAINING_CHOICES):
        here, there = _norm(here_values.get(key)), _norm(paper.get(key))
        if here != there:
            out[key] = {"paper": paper.get(key), "here": here_values.get(key)}
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


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`: readers see the old
    file or the new one, never a part. The file gets the mode the umask gives a new file."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_provenance(folder: Path, record: dict) -> None:
    write_atomic(folder / "provenance.json", json.dumps(record, indent=2, default=str) + "\n")


def write_training_args(folder: Path, args: Any) -> None:
    """The trainer's `training_args.bin` beside the weights, its paths made shareable like the record's."""
    import copy

    import torch

    shared = copy.copy(args)
    for f in dataclasses.fields(args):
        value = getattr(args, f.name, None)
        if isinstance(value, (str, list, dict)):
            setattr(shared, f.name, portable(value, folder))
    temp = folder / f".training_args.bin.{os.getpid()}.tmp"
    torch.save(shared, temp)
    os.replace(temp, folder / "training_args.bin")


def write_card(folder: Path, record: dict) -> None:
    """A model card with the hub's metadata block (`base_model` only when the parent is a hub model,
    `datasets` the hub id or the local data's name); `model-index` is added once a leaderboard scores it."""
    parent_id = record["parent_source"].get("id", "")
    meta: dict[str, Any] = {}
    if "/" in parent_id and not parent_id.startswith("embedded:"):
        meta["base_model"] = parent_id
    meta |= {
        "datasets": [record["data"]["source"]],
        "library_name": "transformers",
        "tags": ["finemed-eval", "trl", record["stage"], "medical"],
    }
    name = record["register_as"] or folder.name
    rows = "\n".join(f"| {step} | {count} |" for step, count in record["data"]["rows"].items())
    filters = "; ".join(f"`{key}`: {how}" for key, how in record["data"]["filters"].items()) or "none"
    deviations = record["recipe"]["deviations_from_paper"]
    deviation_lines = "\n".join(f"- `{k}`: paper {v['paper']!r}, here {v['here']!r}" for k, v in deviations.items())
    result, launch = record["result"], record["launch"]
    body = f"""# {name}

{record.get("description") or ""}

Trained with finemed-eval ({record["stage"]}) from `{record["parent"]}` by the recipe
`{record["recipe"]["name"]}` (sha256 `{record["recipe"]["sha256"][:12]}`).
Lineage: {" <- ".join([name, *record["lineage"]])}.

Data: `{record["data"]["source"]}` (sha256 `{record["data"]["sha256"][:12]}`); filters applied: {filters}.

| data selection step | rows |
|---|---|
{rows}

Training loss {result["train_loss_first"]} -> {result["train_loss_last"]} in {result["global_step"]} steps;
best checkpoint {result["best_checkpoint"]} ({result["best_metric"]}).
Weights dtype {launch.get("dtype")}, mixed precision {launch.get("precision")}.
Launch: {json.dumps(launch)}.

Deviations from the paper recipe ({record["recipe"]["paper_recipe"] or "none named"}):
{deviation_lines or "- none"}

Full record: `provenance.json`.
"""
    write_atomic(folder / "README.md", "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n\n" + body)
