"""What the two stage scripts share: recipe -> (model to start from, rows, resume point) before the
trainer exists, and checkpoint -> provenance, model card and zoo registration after it is done."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finemed_eval import zoo
from finemed_eval.training.args import Recipe, RecipeError, load_recipe
from finemed_eval.training.data import DataError, Selection, choose, select


@dataclass
class Prepared:
    recipe: Recipe
    parent: str  # model_name_or_path as written (zoo name, hub id or folder)
    model_path: str  # what it resolved to, once, for this run
    lineage: tuple[str, ...]
    data: Selection
    resume_from: str | None


def parse_argv(stage: str, argv: list[str] | None) -> Recipe:
    """`--config RECIPE [--key value ...]`, as TRL's scripts take them."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if "--config" not in args or args.index("--config") + 1 >= len(args):
        raise RecipeError(f"usage: python -m finemed_eval.training.{stage} --config RECIPE [--key value ...]")
    i = args.index("--config")
    path, overrides = args[i + 1], args[:i] + args[i + 2 :]
    recipe = load_recipe(path, overrides)
    if recipe.finemed.stage != stage:
        raise RecipeError(f"{recipe.path}: stage {recipe.finemed.stage!r} recipe given to the {stage} script")
    return recipe


def prepare(recipe: Recipe) -> Prepared:
    f, train, model = recipe.finemed, recipe.train, recipe.model
    parent = model.model_name_or_path
    model_path = zoo.resolve_pretrained(parent)  # the one place this run resolves a model name
    entry = zoo.get_entry(parent)
    if entry is not None and entry.revision and not model.model_revision:
        model.model_revision = entry.revision
    init = dict(train.model_init_kwargs or {})
    init.setdefault("revision", model.model_revision)
    init.setdefault("attn_implementation", model.attn_implementation)
    init.setdefault("dtype", model.dtype)
    if f.dropout is not None:
        init["attention_dropout"] = f.dropout
    elif f.stage == "dpo" and train.disable_dropout:
        # TRL's disable_dropout zeroes nn.Dropout modules; Llama's attention dropout is a float in its
        # config, applied functionally, so it has to be switched off here.
        init["attention_dropout"] = 0.0
    train.model_init_kwargs = init
    data = selection(recipe)
    resume = train.resume_from_checkpoint
    if resume is None:
        resume = last_complete_checkpoint(Path(train.output_dir))  # rerunning a killed command continues it
    if resume and os.environ.get("RANK", "0") == "0":
        print(f"finemed training: resuming from {Path(resume).name} ({resume})", flush=True)
    return Prepared(recipe, parent, model_path, zoo.lineage_of(parent), data, resume)


def selection(recipe: Recipe, trainer_rows: bool = True) -> Selection:
    """The recipe's rows: trainer-ready for the stage; as released (cheaper) for the launcher's check."""
    f = recipe.finemed
    keys = dict(data_dir=f.data_dir, department=f.department, long_form=f.long_form, sample_size=f.sample_size)
    keys.update(holdout_fraction=f.holdout_fraction, seed=recipe.train.seed)
    if trainer_rows:
        return select(f.stage, f.data, system_prompt=f.system_prompt, **keys)
    return choose(f.stage, f.data, **keys)


def last_complete_checkpoint(output_dir: Path) -> str | None:
    """The newest `checkpoint-N` that was written to the end. The trainer writes trainer_state.json
    last, and a process killed while saving leaves a newer folder without it, which transformers'
    get_last_checkpoint would pick."""
    if not output_dir.is_dir():
        return None
    folders = [p for p in output_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    for folder in sorted(folders, key=lambda p: int(p.name.split("-")[-1]), reverse=True):
        if (folder / "trainer_state.json").is_file():
            return str(folder)
    return None


def finish(trainer: Any, run: Prepared) -> None:
    """Save the final (or best) model, then on the main process write provenance.json and the model
    card (no local paths in either) and register the folder in the zoo (which keeps them: it is local)."""
    from finemed_eval.training.provenance import build, write_card, write_provenance, write_training_args

    out = Path(run.recipe.train.output_dir)
    trainer.save_model(str(out))
    if trainer.accelerator.is_main_process:
        write_training_args(out, trainer.args)  # the copy shared with the weights, without this machine's paths
        record = build(run, trainer, out)
        write_provenance(out, record)
        write_card(out, record)
        if run.recipe.finemed.register_as:
            description = run.recipe.finemed.description or f"{run.recipe.path.name} from {run.parent}"
            path = zoo.register(run.recipe.finemed.register_as, out, description, run.parent, run.lineage)
            trainer.accelerator.print(f"registered {run.recipe.finemed.register_as!r} -> {out} ({path})")
    trainer.accelerator.wait_for_everyone()


def run_script(main: Any) -> None:
    """Run a stage script's main; recipe, data and zoo errors end it with one line and exit code 2."""
    import sys

    try:
        main()
    except (RecipeError, DataError, zoo.ZooError) as error:
        print(f"finemed training: error: {error}", file=sys.stderr)
        sys.exit(2)
