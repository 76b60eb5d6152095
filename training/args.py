"""A recipe: TRL's flat config keys (as `trl sft --config` takes them) plus the finemed keys of
`FineMedArgs`, parsed by TRL's own `TrlParser` into (FineMedArgs, SFTConfig | DPOConfig, ModelConfig).

Strict: before TRL sees the file, every key must belong to one of the three dataclasses and every
value must fit its field's type; all problems come back as one `RecipeError` with did-you-mean
suggestions. Command-line overrides (`--key value` after the recipe) get the same checks.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STAGES = ("sft", "dpo")
# Keys transformers renamed, new name -> old: a recipe written with either runs on either side of the
# rename (activation_checkpointing arrived in transformers 5.24; 5.19 knows only gradient_checkpointing).
RENAMED_KEYS = {"activation_checkpointing": "gradient_checkpointing"}
_ZOO_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class RecipeError(ValueError):
    """A recipe or override that cannot be trained: the message names the file and every bad key."""


@dataclass
class FineMedArgs:
    """The finemed keys of a recipe (everything else is TRL's / transformers')."""

    stage: str = field(default="", metadata={"help": "sft or dpo"})
    data: str = field(default="", metadata={"help": "a FineMed-style folder, a .jsonl/.json/.parquet file or a hub id"})
    data_dir: str | None = field(
        default=None, metadata={"help": "folder of `data`: 'Medicine (all)', SFTo1Data (long-form), ..."}
    )
    department: str | None = field(
        default=None, metadata={"help": "a department folder (case/space-insensitive), or a column filter on a file"}
    )
    long_form: str | None = field(
        default=None,
        metadata={
            "help": "require: every response has Thought and Summarization sections (o1-SFT); select: keep only "
            "such rows; any (or unset): no check"
        },
    )
    sample_size: int | None = field(default=None, metadata={"help": "rows drawn at random (seed) after filtering"})
    holdout_fraction: float = field(default=0.0, metadata={"help": "seeded share held out for evaluation"})
    system_prompt: str | None = field(default=None, metadata={"help": "system turn put before every prompt"})
    global_batch_size: int | None = field(
        default=None, metadata={"help": "paper batch on any device count: sets gradient_accumulation_steps"}
    )
    dropout: float | None = field(default=None, metadata={"help": "model config attention_dropout (Llama family)"})
    register_as: str | None = field(default=None, metadata={"help": "zoo name registered at the end"})
    description: str | None = field(default=None, metadata={"help": "zoo description of the trained model"})
    paper_recipe: str | None = field(
        default=None, metadata={"help": "the paper recipe this one derives from (recipes/...); deviations are recorded"}
    )


@dataclass(frozen=True)
class Recipe:
    path: Path
    finemed: FineMedArgs
    train: Any  # trl.SFTConfig | trl.DPOConfig
    model: Any  # trl.ModelConfig
    raw: dict  # the YAML mapping as written, overrides applied (for provenance and deviations)
    overrides: tuple[str, ...] = ()


def recipes_root() -> Path:
    return Path(__file__).parent / "recipes"


def shipped_recipes() -> list[str]:
    """The shipped recipe names (`finemedlm/stage1`, `tiny/finemedlm-o1/dpo`, ...)."""
    return sorted(str(p.relative_to(recipes_root()).with_suffix("")) for p in recipes_root().rglob("*.yaml"))


def find_recipe(name: str | os.PathLike) -> Path:
    """A path, or a name relative to the shipped recipes (`finemedlm/stage1`, `tiny/finemedlm/stage1.yaml`)."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (recipes_root() / path, recipes_root() / f"{path}.yaml"):
        if candidate.is_file():
            return candidate
    shipped = shipped_recipes()
    close = difflib.get_close_matches(str(name), shipped, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise RecipeError(f"no recipe {str(name)!r}: not a file and not a shipped recipe.{hint} Shipped: {', '.join(shipped)}")


def dataclass_types(stage: str) -> tuple[type, type, type]:
    from trl import DPOConfig, ModelConfig, SFTConfig

    return (FineMedArgs, SFTConfig if stage == "sft" else DPOConfig, ModelConfig)


def load_recipe(
    name: str | os.PathLike, overrides: list[str] | tuple[str, ...] = (), world_size: int | None = None
) -> Recipe:
    """Parse and check a recipe plus `--key value` overrides for `world_size` processes (default: the
    launcher's WORLD_SIZE, else 1). Loads no model and no data."""
    path = find_recipe(name)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping of keys to values")
    override_map = _parse_overrides(list(overrides), path)
    merged = {**raw, **override_map}
    stage = merged.get("stage")
    if stage not in STAGES:
        raise RecipeError(f"{path}: key 'stage' must be one of {', '.join(STAGES)}, got {stage!r}")
    types_ = dataclass_types(stage)
    known = _field_types(types_)
    installed_overrides = _installed_names(override_map, known)
    _check_keys_and_types(_installed_names(merged, known), types_, path, from_cli=set(installed_overrides))

    from trl import TrlParser

    parser = TrlParser(types_)
    config = {k: v for k, v in _installed_names(raw, known).items() if k != "env"}
    cli = [item for key, value in installed_overrides.items() for item in (f"--{key}", str(value))]
    steps = _accumulation_steps(merged, path, world_size or world_size_from_env())
    if steps is not None:  # before TrainingArguments exists: DeepSpeed's batch config derives from it
        config["gradient_accumulation_steps"] = steps
    try:
        if "env" in raw:
            for key, value in (raw["env"] or {}).items():
                os.environ[str(key)] = str(value)
        unused = parser.set_defaults_with_config(**config)
        if unused:  # _check_keys_and_types has rejected unknown keys already; TRL must agree
            raise RecipeError(f"{path}: keys TRL's parser did not take: {unused}")
        finemed, train, model = parser.parse_args_into_dataclasses(args=cli, look_for_args_file=False)
    except (ValueError, TypeError) as error:
        raise RecipeError(f"{path}: {error}") from error
    recipe = Recipe(path.resolve(), finemed, train, model, merged, tuple(overrides))
    _check_finemed(recipe)
    return recipe


def spelled_as_installed(values: dict, *classes: type) -> dict:
    """`values` (config keys) with each renamed key spelled as the installed `classes` spell it."""
    return _installed_names(values, _field_types(classes))


def _installed_names(values: dict, known: dict) -> dict:
    """`values` with each renamed key spelled as the installed transformers spells it."""
    out = {}
    for key, value in values.items():
        for new, old in RENAMED_KEYS.items():
            if key == new and new not in known and old in known:
                key = old
            elif key == old and old not in known and new in known:
                key = new
        out[key] = value
    return out


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _accumulation_steps(values: dict, path: Path, world_size: int) -> int | None:
    """gradient_accumulation_steps so that per-device batch x processes x steps = global_batch_size."""
    wanted = values.get("global_batch_size")
    if wanted is None:
        return None
    if "gradient_accumulation_steps" in values:
        raise RecipeError(f"{path}: set global_batch_size or gradient_accumulation_steps, not both")
    per_device = int(values.get("per_device_train_batch_size", 8))  # TrainingArguments' default
    per_step = per_device * world_size
    if int(wanted) % per_step:
        raise RecipeError(
            f"{path}: global_batch_size {wanted} is not a multiple of per_device_train_batch_size "
            f"{per_device} x {world_size} process(es) = {per_step}"
        )
    return int(wanted) // per_step


# ---------------------------------------------------------------- checks


def _check_finemed(recipe: Recipe) -> None:
    f, problems = recipe.finemed, []
    if not f.data:
        problems.append("key 'data' is required (a folder, a .jsonl/.json/.parquet file or a hub id)")
    if not recipe.model.model_name_or_path:
        problems.append("key 'model_name_or_path' is required (a zoo name, a hub id or a folder)")
    if not 0.0 <= f.holdout_fraction < 1.0:
        problems.append(f"holdout_fraction must be in [0, 1), got {f.holdout_fraction}")
    from finemed_eval.training.data import LONG_FORM

    if f.long_form not in (None, "", *LONG_FORM):
        problems.append(f"long_form must be one of {', '.join(LONG_FORM)}, got {f.long_form!r}")
    if f.long_form in ("require", "select") and f.stage != "sft":
        problems.append(f"long_form {f.long_form!r} checks SFT responses; a {f.stage} stage has none")
    if f.sample_size is not None and f.sample_size < 1:
        problems.append(f"sample_size must be positive, got {f.sample_size}")
    if f.global_batch_size is not None and f.global_batch_size < 1:
        problems.append(f"global_batch_size must be positive, got {f.global_batch_size}")
    if f.register_as is not None and not _ZOO_NAME.match(f.register_as):
        problems.append(f"register_as {f.register_as!r} must match {_ZOO_NAME.pattern}")
    if f.dropout is not None and not 0.0 <= f.dropout < 1.0:
        problems.append(f"dropout must be in [0, 1), got {f.dropout}")
    if f.stage == "dpo" and recipe.train.disable_dropout and f.dropout:
        problems.append("disable_dropout is true but dropout is set: say which one you want")
    if f.holdout_fraction == 0 and recipe.train.eval_strategy != "no":
        problems.append("eval_strategy needs a holdout: set holdout_fraction > 0 or eval_strategy: 'no'")
    if problems:
        raise RecipeError(f"{recipe.path}: " + "; ".join(problems))


def _field_types(types_: tuple[type, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cls in types_:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.init:
                out.setdefault(f.name, hints.get(f.name, Any))
    return out


def _check_keys_and_types(values: dict, types_: tuple[type, ...], path: Path, from_cli: set[str]) -> None:
    known = _field_types(types_)
    problems = []
    for key, value in values.items():
        where = f"override --{key}" if key in from_cli else f"key {key!r}"
        if key == "env":
            if not isinstance(value, dict):
                problems.append("key 'env' must be a mapping of environment variables")
            continue
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.7)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"unknown {where}{hint}")
            continue
        if not _fits(value, known[key]):
            problems.append(f"{where} expects {_type_name(known[key])}, got {value!r}")
    if problems:
        raise RecipeError(f"{path}: " + "; ".join(problems))


def _fits(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arm) for arm in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if value is None:
        return False
    if tp is bool:
        return isinstance(value, bool) or (isinstance(value, str) and value.lower() in ("true", "false"))
    if tp in (int, float):
        if isinstance(value, bool):
            return False
        if isinstance(value, int) or (tp is float and isinstance(value, float)):
            return True
        if isinstance(value, str):  # YAML reads 3e-5 as a string; argparse converts it like the CLI would
            try:
                tp(value)
            except ValueError:
                return False
            return True
        return False
    if tp is str:
        return isinstance(value, str)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return value in {m.value for m in tp} or isinstance(value, tp)
    if origin in (list, tuple) or tp in (list, tuple):
        args = typing.get_args(tp)
        if isinstance(value, str):  # a single item is fine for argparse (nargs='+')
            return not args or _fits(value, args[0])
        return isinstance(value, list) and (not args or all(_fits(v, args[0]) for v in value))
    if origin is dict or tp is dict:
        return isinstance(value, (dict, str))  # a JSON string is what the CLI passes
    return True  # types argparse has no converter for: TRL/transformers check them in __post_init__


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _parse_overrides(args: list[str], path: Path) -> dict[str, Any]:
    """`--key value` / `--key=value` pairs (values as strings, typed later by the same checks)."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise RecipeError(f"{path}: override {arg!r} is not --key value")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise RecipeError(f"{path}: override --{key} needs a value")
            value = args[i + 1]
            i += 1
        out[key.replace("-", "_")] = value
        i += 1
    return out
