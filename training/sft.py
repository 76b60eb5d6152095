"""Supervised fine-tuning stage (FineMedLM stages 1-3, FineMedLM-o1's long-form SFT) over TRL's SFTTrainer.

    accelerate launch -m finemed_eval.training.sft --config RECIPE [--key value ...]
    (or: finemed train RECIPE [--accelerate CONFIG] [-- --key value ...])

Rows are conversational prompt/completion pairs, so TRL's completion mask puts the loss on the
response and its end-of-turn token only.
"""

from __future__ import annotations

from finemed_eval.training.run import finish, parse_argv, prepare, run_script


def main(argv: list[str] | None = None) -> None:
    from trl import SFTTrainer, get_peft_config

    from finemed_eval.training.provenance import LaunchProbe

    run = prepare(parse_argv("sft", argv))
    trainer = SFTTrainer(
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
