"""Preference stage (FineMedLM-o1's DPO) over TRL's DPOTrainer.

    accelerate launch -m finemed_eval.training.dpo --config RECIPE [--key value ...]
    (or: finemed train RECIPE [--accelerate CONFIG] [-- --key value ...])

Rows are conversational prompt/chosen/rejected; the reference model is TRL's frozen copy of the
starting model.
"""

from __future__ import annotations

from finemed_eval.training.run import finish, parse_argv, prepare, run_script


def main(argv: list[str] | None = None) -> None:
    from trl import DPOTrainer, get_peft_config

    from finemed_eval.training.provenance import LaunchProbe

    run = prepare(parse_argv("dpo", argv))
    trainer = DPOTrainer(
        model=run.model_path,
        args=run.recipe.train,
        train_dataset=run.data.train,
        eval_dataset=run.data.holdout,
        peft_config=get_peft_config(run.recipe.model),
        callbacks=[LaunchProbe()],
    )
    trainer.train(resume_from_checkpoint=run.resume_from)
    finish(trainer, run)


if __name__ == "__main__":
    run_script(main)
