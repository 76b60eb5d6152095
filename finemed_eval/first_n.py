"""Tasks whose few-shot exemplars ignore the seed, and the finemed twin that draws them with it.

lm-eval's built-in mmlu, mmlu_pro and ceval tasks set `fewshot_config: {sampler: first_n}`: every
document gets the first k rows of the few-shot split, whatever `--seed` / the few-shot seed says,
so the paper's protocol (three seeds of random 3-shot exemplars) run on them gives three identical
runs. Our task folder defines a twin of each that draws exemplars at random per document and seed.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import Any

FIRST_N = "first_n"


def draws_first_n(task_config: dict[str, Any] | None) -> bool:
    """Whether a task config's exemplars are the first rows of the few-shot split (seed-independent).
    Its fewshot_config is a mapping in the task index and a FewshotConfig on a loaded task."""
    fewshot = (task_config or {}).get("fewshot_config") or {}
    sampler = fewshot.get("sampler") if isinstance(fewshot, dict) else getattr(fewshot, "sampler", None)
    return sampler == FIRST_N


@functools.cache
def finemed_task_names() -> frozenset[str]:
    """Every `task:` name in the installed finemed task folder (read as text: no lm-eval import)."""
    names = set()
    for path in _yaml_files(resources.files("finemed_eval.tasks")):
        names.update(re.findall(r"^task:\s*([\w.-]+)\s*$", path.read_text(encoding="utf-8"), flags=re.M))
    return frozenset(names)


def _yaml_files(folder: Any) -> list[Any]:
    out = []
    for item in folder.iterdir():
        if item.is_dir():
            out += _yaml_files(item)
        elif item.name.endswith(".yaml"):
            out.append(item)
    return out


def finemed_twin(task: str) -> str | None:
    """The finemed task for the same benchmark subset (mmlu_pro_health -> finemed_mmlu_pro_health,
    ceval-valid_physician -> finemed_ceval_physician), if we define one."""
    bare = task.split("@seed")[0]
    for candidate in (f"finemed_{bare}", f"finemed_{bare.replace('ceval-valid_', 'ceval_')}"):
        if candidate in finemed_task_names():
            return candidate
    return None


def seed_warning(task: str) -> str:
    twin = finemed_twin(task)
    instead = f"; `{twin}` draws them with the seed" if twin else "; use a task whose fewshot_config draws at random"
    return f"{task}: exemplars do not depend on the seed (fewshot_config sampler: first_n){instead}"
