"""FineMedLM / FineMedLM-o1 training (paper §3.1-3.2): YAML recipes over TRL, launched with accelerate.

`args` parses and checks a recipe, `data` selects rows from the released FineMed layouts, `sft` and
`dpo` are the two stage scripts, `launch` builds the `accelerate launch` command, `provenance`
writes what a checkpoint came from. Nothing here imports the evaluator.
"""
