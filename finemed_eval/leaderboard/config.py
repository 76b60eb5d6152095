"""Leaderboard run configuration: parse a YAML file into a typed RunConfig and validate it.

Every check here runs before any model is loaded, so a typo costs seconds, not a model load. All
problems found are reported together in one LeaderboardError, each naming its field and the file.
"""

from __future__ import annotations

import difflib
import json
import os
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from finemed_eval.leaderboard.sweep import DEFAULT_MAX_POINTS, expand_sweeps
from finemed_eval.zoo import ZooError, canonical_model

DEFAULT_SEEDS = (0, 1, 2)  # the paper's protocol: three runs with random 3-shot exemplars, mean reported
DEFAULT_NUM_FEWSHOT = 3
DEFAULT_LM = "finemed_ttt"

Scalar = str | int | float | bool | None
# lm-eval HFLM arguments a sweep may vary besides the TTT options (finemed_eval.ttt.options).
HF_MODEL_ARGS = frozenset({"dtype", "revision", "max_length", "trust_remote_code", "attn_implementation", "peft", "delta"})


class LeaderboardError(ValueError):
    """Bad leaderboard input; the CLI prints it without a traceback and exits 2."""


@dataclass(frozen=True)
class ModelSpec:
    name: str  # display name on the board
    model: str  # as written: zoo name, hub id or local path
    args: dict[str, Scalar] = field(default_factory=dict)  # extra model_args for the lm-eval model
    baseline: str | None = None  # display name of the model this one is compared with (paired statistics)
    protocol: str = "default"  # how it is prompted (finemed_eval.protocols); default: its zoo entry's
    sweep: dict[str, Any] | None = None  # a grid point: {"name": the sweep entry's name, "point": {arg: value}}

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
    max_points: int = DEFAULT_MAX_POINTS  # the most grid points all sweeps may expand to
    source: str = "<config>"  # the file it came from, for error messages


SCHEMA_PATH = Path(__file__).with_name("config.schema.json")


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
    """Validate a config mapping against config.schema.json; raise one LeaderboardError listing every bad field."""
    if not isinstance(data, Mapping):
        raise LeaderboardError(f"{source}: the config must be a mapping with at least 'models' and 'tasks'")
    data = dict(data)
    if isinstance(data.get("models"), list):  # shorthand: a model entry may be just its name
        data["models"] = [{"model": m} if isinstance(m, str) else m for m in data["models"]]
    errors = schema_errors(data)
    if not errors and any("sweep" in m for m in data["models"]):
        data["models"], errors = _expand_sweeps(data)
    models = [] if errors else [
        ModelSpec(
            name=m.get("name", m["model"]), model=m["model"], args=dict(m.get("args") or {}), baseline=m.get("baseline"),
            protocol=m.get("protocol") or _zoo_protocol(m["model"]), sweep=m.get("sweep"),
        )
        for m in data["models"]
    ]
    names = [m.name for m in models]
    for i, m in enumerate(models):
        if m.name in names[:i]:
            errors.append(f"field 'models[{i}].name' duplicates the display name {m.name!r}; give each entry its own 'name'")
        if m.baseline is not None and (m.baseline not in names or m.baseline == m.name):
            what = "is the entry itself" if m.baseline == m.name else f"names no model of this config{_suggest(m.baseline, names)}"
            errors.append(f"field 'models[{i}].baseline': {m.baseline!r} {what}; models: {', '.join(names)}")
    if errors:
        raise LeaderboardError(_format(source, errors))
    base = base_dir or Path.cwd()
    return RunConfig(
        models=tuple(models),
        tasks=tuple(data["tasks"]),
        seeds=tuple(data.get("seeds", DEFAULT_SEEDS)),
        num_fewshot=data.get("num_fewshot", DEFAULT_NUM_FEWSHOT),
        limit=data.get("limit"),
        batch_size=data.get("batch_size", 1),
        include_reported=data.get("include_reported", True),
        lm_eval_model=data.get("lm_eval_model", DEFAULT_LM),
        include_path=tuple(str((base / p).resolve()) for p in data.get("include_path", [])),  # relative to the file
        device=data.get("device"),
        apply_chat_template=data.get("apply_chat_template", False),
        max_points=data.get("max_points", DEFAULT_MAX_POINTS),
        source=source,
    )


def _expand_sweeps(data: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """Expand `sweep:` entries (finemed_eval.leaderboard.sweep), checking every point as finemed_ttt would."""
    from finemed_eval.leaderboard.pairs import ttt_only_keys
    from finemed_eval.ttt.options import TTTError, TTTOptions

    ttt_names = frozenset(TTTOptions.argument_names())

    def check_point(args: dict[str, Any]) -> str | None:
        try:
            TTTOptions.from_model_args({k: v for k, v in args.items() if k in ttt_names}, embedded=True)
        except (TTTError, TypeError) as e:
            return str(e).removeprefix("finemed_ttt: ")
        return None

    return expand_sweeps(
        data["models"], max_points=data.get("max_points", DEFAULT_MAX_POINTS),
        known_args=ttt_names | HF_MODEL_ARGS, ttt_only=ttt_only_keys(), check_point=check_point,
    )


def _zoo_protocol(model: str) -> str:
    """A zoo model's own default protocol (FineMedLM-o1: the authors' o1 prompt); others: default."""
    from finemed_eval.zoo import ZOO

    entry = ZOO.get(model)
    return entry.protocol if entry is not None else "default"


def schema_errors(data: dict[str, Any]) -> list[str]:
    """Every violation of config.schema.json as "field 'path' must be <description>, got <value>"."""
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    out: list[str] = []
    for error in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        where = list(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = sorted(_node(schema, where).get("properties", {}))
            for key in sorted(set(error.instance) - set(known), key=str):
                out.append(
                    f"field {_path(where + [key])!r} is not a known field{_suggest(str(key), known)}; known: {', '.join(known)}"
                )
            continue
        # the nearest enclosing field with a description: 'seeds' for a bad seeds[1]
        depth = next(k for k in range(len(where), -1, -1) if k == 0 or _node(schema, where[:k]).get("description"))
        what = _node(schema, where[:depth]).get("description") or error.message
        value = _value(data, where[:depth])
        if error.validator == "not":
            out.append(f"field {_path(where[:depth])!r} is {what}")
        else:
            out.append(f"field {_path(where[:depth])!r} must be {what}, got {value!r}")
    return list(dict.fromkeys(out))


def _node(schema: dict[str, Any], where: list[Any]) -> dict[str, Any]:
    """The subschema describing the value at `where` (follows properties, items, additionalProperties, $ref)."""
    node = schema
    for part in where:
        node = _deref(schema, node)
        if isinstance(part, int):
            node = node.get("items", {})
        elif part in node.get("properties", {}):
            node = node["properties"][part]
        else:
            extra = node.get("additionalProperties")
            node = extra if isinstance(extra, dict) else {}
    return _deref(schema, node)


def _value(data: Any, where: list[Any]) -> Any:
    for part in where:
        data = data[part]
    return data


def _deref(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return schema["$defs"][ref.split("/")[-1]]
    return node


def _path(where: list[Any]) -> str:
    out = ""
    for part in where:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


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


def check_seeded_exemplars(config: RunConfig, task_manager: Any) -> None:
    """Several seeds of a few-shot task whose exemplars ignore the seed (lm-eval's first_n sampler:
    built-in mmlu, mmlu_pro, ceval) would be one run repeated: refuse them, naming the finemed twin."""
    from finemed_eval.first_n import draws_first_n, seed_warning
    from finemed_eval.leaderboard.task_tree import expand_task_names

    if len(config.seeds) < 2 or config.num_fewshot == 0:
        return
    errors = []
    for i, task in enumerate(config.tasks):
        fixed = sorted(
            t for t in expand_task_names(task_manager, [task])
            if (entry := task_manager.task_index.get(t)) is not None and draws_first_n(entry.cfg)
        )
        if fixed:
            shown = ", ".join(seed_warning(t) for t in fixed[:3]) + (f" (and {len(fixed) - 3} more)" if len(fixed) > 3 else "")
            errors.append(
                f"field 'tasks[{i}]': {task!r} with seeds {list(config.seeds)} would give {len(config.seeds)} identical runs: {shown}; "
                "use the finemed task, or one seed"
            )
    if errors:
        raise LeaderboardError(_format(config.source, errors))


def check_output_dir(out_dir: Path) -> None:
    """Create the output folder and prove it is writable, before any compute."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise LeaderboardError(f"output directory {out_dir} is not writable: {e.strerror or e}") from None


def _suggest(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _format(source: str, errors: list[str]) -> str:
    if len(errors) == 1:
        return f"{source}: {errors[0]}"
    return f"{source}: {len(errors)} problems:\n" + "\n".join(f"  - {e}" for e in errors)
