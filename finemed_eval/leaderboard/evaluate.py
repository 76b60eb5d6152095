"""The leaderboard's side of lm-eval: plugin registration, model class, one cell's run, what of it to keep."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from finemed_eval.leaderboard.cells import Cell
from finemed_eval.leaderboard.config import LeaderboardError, RunConfig
from finemed_eval.leaderboard.fingerprint import sha256_text
from finemed_eval.leaderboard.task_tree import leaves


def import_plugin() -> None:
    # The .pth autoload normally did this already; both calls are idempotent, and they make the run
    # work with FINEMED_EVAL_NO_AUTOLOAD=1 or a bare checkout on sys.path too.
    if importlib.util.find_spec("finemed_eval.plugin") is None:
        return
    plugin = importlib.import_module("finemed_eval.plugin")
    for hook in ("register_model", "add_task_folder"):
        if hasattr(plugin, hook):
            getattr(plugin, hook)()


def make_task_manager(config: RunConfig) -> Any:
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(config.include_path) or None)


def lm_class(config: RunConfig) -> Any:
    from lm_eval.api.registry import get_model

    try:
        return get_model(config.lm_eval_model)
    except (ValueError, KeyError) as e:
        hint = (
            " (install finemed-eval so its lm-eval plugin registers it)"
            if config.lm_eval_model == "finemed_ttt"
            else ""
        )
        raise LeaderboardError(
            f"{config.source}: field 'lm_eval_model': {config.lm_eval_model!r} is not an lm-eval model{hint}: {e}"
        ) from None


def evaluate_cell(lm: Any, config: RunConfig, cell: Cell, task_manager: Any) -> dict[str, Any]:
    """One lm-eval run: one task (or group), one seed for every RNG including few-shot sampling."""
    from lm_eval import evaluator

    results = evaluator.simple_evaluate(
        model=lm,
        tasks=[cell.task],
        num_fewshot=config.num_fewshot,
        batch_size=config.batch_size,
        limit=config.limit,
        task_manager=task_manager,
        apply_chat_template=config.apply_chat_template,
        log_samples=True,  # only to compute lm-eval's task hash; samples are not stored
        bootstrap_iters=0,  # per-seed stderr is not reported; the spread over seeds is
        random_seed=cell.seed,
        numpy_random_seed=cell.seed,
        torch_random_seed=cell.seed,
        fewshot_random_seed=cell.seed,
    )
    if results is None:
        raise RuntimeError("lm-eval returned no results (non-zero rank?)")
    return results


def slim_results(results: dict[str, Any]) -> dict[str, Any]:
    """Keep what aggregation and provenance need; drop samples and non-JSON task configs."""
    samples = results.get("samples") or {}
    leaf_hashes = {
        task: sha256_text("".join(s["doc_hash"] + s["prompt_hash"] + s["target_hash"] for s in rows))
        for task, rows in samples.items()
    }
    groups = results.get("group_subtasks") or {}
    task_hashes = dict(leaf_hashes)
    for group in groups:  # a group's hash covers its leaves, like lm-eval's per-task hash covers its samples
        group_leaves = sorted(leaves(group, groups))
        if group_leaves and all(t in leaf_hashes for t in group_leaves):
            task_hashes[group] = sha256_text("".join(leaf_hashes[t] for t in group_leaves))
    return {
        "results": results.get("results", {}),
        "versions": results.get("versions", {}),
        "n-shot": results.get("n-shot", {}),
        "n-samples": results.get("n-samples", {}),
        "group_subtasks": groups,
        "task_hashes": task_hashes,
    }
