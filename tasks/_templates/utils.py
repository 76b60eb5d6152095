"""Functions the task YAMLs reference with !function (lm-eval resolves them relative to this file)."""

from finemed_eval.prompts import cot_fewshot_target, cot_text, mc_choices, mc_target, mc_text  # noqa: F401
from finemed_eval.task import (  # noqa: F401
    FineMedTask,
    process_cot,
    process_cot_by_type,
    process_mc,
    process_mc_by_type,
)
