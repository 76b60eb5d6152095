"""Leaderboard run configuration: parse a YAML file into a typed RunConfig and validate it.

Every check here runs before any model is loaded, so a typo costs seconds, not a model load. All
problems found are reported together in one LeaderboardError, each naming its field and the file.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from finemed_eval.zoo import ZooError, canonical_model

DEFAULT_SEEDS = (0, 1, 2)  # the paper's protocol: three runs with random 3-shot exemplars, mean reported
DEFAULT_NUM_FEWSHOT = 3
DEFAULT_LM = "finemed_ttt"

Scalar = str | int | float | bool | None


class LeaderboardError(ValueError):
    """Bad leaderboard input; the CLI prints it without a traceback and exits 2."""


@dataclass(frozen=True)
class ModelSpec:
    name: str  # display name on the board
    model: str  # as written: zoo name, hub id or local path
    args: dict[str, Scalar] = field(default_factory=dict)  # extra model_args for the lm-eval model

    def model_args(self, pretrained: str) -> dict[str, Scalar]:
        """What the lm-eval model is created with: the resolved weights plus the config's args."""
        return {"pretrained": pretrained, **self.args}


@dataclass(frozen=True)
class RunConfig:
    models: tuple[ModelSpec, ...]
    tasks: tuple[str, ...]
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    num_fewshot: int = DEFAULT_NUM_FEWSHOT
    limit: int | float | None = None
    batch_size: int | str = 1
    include_reported: bool | str = True  # True: reported rows for configured tasks; "all": every row
    lm_eval_model: str = DEFAULT_LM  # registry name of the lm-eval model class
    include_path: tuple[str, ...] = ()  # extra lm-eval task folders (absolute after parsing)
    device: str | None = None
    apply_chat_template: bool = False
    source: str = "<config>"  # the file it came from, for error messages


_TOP_FIELDS = {
    "models",
    "tasks",
    "seeds",
    "num_fewshot",
    "limit",
    "batch_size",
    "include_reported",
    "lm_eval_model",
    "include_path",
    "device",
    "apply_chat_template",
}
_MODEL_FIELDS = {"name", "model", "args"}


def load_config(path: str | Path) -> RunConfig:
    """Read and type-check a YAML config file (no task or model look-ups yet)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise LeaderboardError(f"cannot read config file {path}: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise LeaderboardError(f"{path}: not valid YAML: {e}") from None
    return parse_config(data, source=str(path), base_dir=path.parent)


def parse_config(data: Any, *, source: str = "<config>", base_dir: Path | None = None) -> RunConfig:
    """Type-check a config mapping; raise one LeaderboardError listing every bad field."""
    errors: list[str] = []

    def bad(field_name: str, msg: str) -> None:
        errors.append(f"field {field_name!r} {msg}")

    if not isinstance(data, Mapping):
        raise LeaderboardError(f"{source}: the config must be a mapping with at least 'models' and 'tasks'")
    for key in sorted(set(data) - _TOP_FIELDS, key=str):
        bad(str(key), f"is not a known field{_suggest(str(key), _TOP_FIELDS)}; known: {', '.join(sorted(_TOP_FIELDS))}")

    models = _parse_models(data.get("models"), bad)
    tasks = _str_list(data.get("tasks"), "tasks", bad, required=True)
    if len(set(tasks)) != len(tasks):
        bad("tasks", "lists a task twice")

    seeds_raw = data.get("seeds", list(DEFAULT_SEEDS))
    seeds: tuple[int, ...] = ()
    if not isinstance(seeds_raw, list) or not seeds_raw:
        bad("seeds", f"must be a non-empty list of integers, got {seeds_raw!r}")
    elif not all(_is_int(s) for s in seeds_raw):
        bad("seeds", f"must contain only integers, got {seeds_raw!r}")
    elif len(set(seeds_raw)) != len(seeds_raw):
        bad("seeds", f"lists a seed twice: {seeds_raw!r}")
    else:
        seeds = tuple(seeds_raw)

    num_fewshot = data.get("num_fewshot", DEFAULT_NUM_FEWSHOT)
    if not _is_int(num_fewshot) or num_fewshot < 0:
        bad("num_fewshot", f"must be an integer >= 0, got {num_fewshot!r}")

    limit = data.get("limit")
    if limit is not None and not ((_is_int(limit) and limit > 0) or (isinstance(limit, float) and 0.0 < limit <= 1.0)):
        bad("limit", f"must be null, a positive integer or a fraction in (0, 1], got {limit!r}")

    batch_size = data.get("batch_size", 1)
    if not (
        (_is_int(batch_size) and batch_size > 0) or (isinstance(batch_size, str) and batch_size.startswith("auto"))
    ):
        bad("batch_size", f"must be a positive integer or 'auto', got {batch_size!r}")

    include_reported = data.get("include_reported", True)
    if not (isinstance(include_reported, bool) or include_reported == "all"):
        bad("include_reported", f"must be true, false or 'all', got {include_reported!r}")

    lm_eval_model = data.get("lm_eval_model", DEFAULT_LM)
    if not isinstance(lm_eval_model, str) or not lm_eval_model:
        bad("lm_eval_model", f"must be an lm-eval model name, got {lm_eval_model!r}")

    include_path = _str_list(data.get("include_path", []), "include_path", bad, required=False)
    base = base_dir or Path.cwd()
    include_path = [str((base / p).resolve()) for p in include_path]  # relative to the config file

    device = data.get("device")
    if device is not None and not isinstance(device, str):
        bad("device", f"must be a string like 'cpu' or 'cuda:0', got {device!r}")

    apply_chat_template = data.get("apply_chat_template", False)
    if not isinstance(apply_chat_template, bool):
        bad("apply_chat_template", f"must be true or false, got {apply_chat_template!r}")

    if errors:
        raise LeaderboardError(_format(source, errors))
    return RunConfig(
        models=tuple(models),
        tasks=tuple(tasks),
        seeds=seeds,
        num_fewshot=num_fewshot,
        limit=limit,
        batch_size=batch_size,
        include_reported=include_reported,
        lm_eval_model=lm_eval_model,
        include_path=tuple(include_path),
        device=device,
        apply_chat_template=apply_chat_template,
        source=source,
    )


def check_names(config: RunConfig, known_tasks: Collection[str]) -> dict[str, str]:
    """Check model and task names without loading anything; return display name -> canonical model."""
    errors: list[str] = []
    canonical: dict[str, str] = {}
    for i, spec in enumerate(config.models):
        try:
            canonical[spec.name] = canonical_model(spec.model)
        except ZooError as e:
            errors.append(f"field 'models[{i}].model': {e}")
    known = set(known_tasks)
    for i, task in enumerate(config.tasks):
        if task not in known:
            close = difflib.get_close_matches(task, sorted(known), n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            errors.append(f"field 'tasks[{i}]': unknown lm-eval task or group {task!r}{hint}")
    if errors:
        raise LeaderboardError(_format(config.source, errors))
    return canonical


def check_output_dir(out_dir: Path) -> None:
    """Create the output folder and prove it is writable, before any compute."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise LeaderboardError(f"output directory {out_dir} is not writable: {e.strerror or e}") from None


def _parse_models(raw: Any, bad) -> list[ModelSpec]:
    if not isinstance(raw, list) or not raw:
        bad("models", f"must be a non-empty list of model entries, got {raw!r}")
        return []
    models: list[ModelSpec] = []
    for i, item in enumerate(raw):
        where = f"models[{i}]"
        if isinstance(item, str):  # shorthand: just a model name
            item = {"model": item}
        if not isinstance(item, Mapping):
            bad(where, f"must be a mapping with 'model' (and optional 'name', 'args'), got {item!r}")
            continue
        for key in sorted(set(item) - _MODEL_FIELDS, key=str):
            bad(f"{where}.{key}", f"is not a known field{_suggest(str(key), _MODEL_FIELDS)}; known: name, model, args")
        model = item.get("model")
        if not isinstance(model, str) or not model:
            bad(f"{where}.model", f"must be a zoo name, hub id or local path, got {model!r}")
            continue
        name = item.get("name", model)
        if not isinstance(name, str) or not name:
            bad(f"{where}.name", f"must be a non-empty string, got {name!r}")
            continue
        args = item.get("args") or {}
        if not isinstance(args, Mapping):
            bad(f"{where}.args", f"must be a mapping of model arguments, got {args!r}")
            continue
        ok = True
        for key, value in args.items():
            if not isinstance(key, str) or not (value is None or isinstance(value, (str, int, float, bool))):
                bad(f"{where}.args.{key}", f"must be a string, number, boolean or null, got {value!r}")
                ok = False
        if isinstance(args.get("ttt"), bool):  # YAML 1.1 reads a bare `off` as false
            bad(f"{where}.args.ttt", 'must be a string: write ttt: "off" (quoted), "full" or "lora"')
            ok = False
        if "pretrained" in args:
            bad(f"{where}.args.pretrained", "is set from 'model'; put the model there instead")
            ok = False
        if any(m.name == name for m in models):
            bad(f"{where}.name", f"duplicates the display name {name!r}; give each entry its own 'name'")
            ok = False
        if ok:
            models.append(ModelSpec(name=name, model=model, args=dict(args)))
    return models


def _str_list(raw: Any, name: str, bad, *, required: bool) -> list[str]:
    if not isinstance(raw, list) or (required and not raw) or not all(isinstance(x, str) and x for x in raw):
        kind = "a non-empty list" if required else "a list"
        bad(name, f"must be {kind} of strings, got {raw!r}")
        return []
    return list(raw)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)  # YAML `true` is not a seed


def _suggest(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _format(source: str, errors: list[str]) -> str:
    if len(errors) == 1:
        return f"{source}: {errors[0]}"
    return f"{source}: {len(errors)} problems:\n" + "\n".join(f"  - {e}" for e in errors)
