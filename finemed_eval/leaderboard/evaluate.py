"""The leaderboard's side of lm-eval: plugin registration, model class, and one pass over all seeds of a task.

`evaluate_seeds` builds one task object per seed (each with its own few-shot seed and the name
`<task>@seed<s>`, groups renamed alike), hands all of them to ONE `lm_eval.evaluator.evaluate`
call, and splits the output back into one results dict per seed, shaped as `simple_evaluate`
would have returned it for that seed alone. The model therefore sees every request of every seed
in one call (finemed_ttt adapts once per distinct neighbour set across all of them).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

from finemed_eval.leaderboard.config import LeaderboardError, RunConfig
from finemed_eval.leaderboard.documents import per_document
from finemed_eval.leaderboard.fingerprint import scrub, scrub_text, sha256_text
from finemed_eval.leaderboard.task_tree import leaves
from finemed_eval.protocols import get_protocol

SEED_MARK = "@seed"
# Global RNGs are seeded once per pass with lm-eval's own defaults; the few-shot draw, the only
# seed-dependent part of an evaluation, has its own RNG per task object.
GLOBAL_SEEDS = {"random": 0, "numpy": 1234, "torch": 1234}


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
    """lm-eval's index of its own ~14k tasks takes 15-45 s to build on a small machine; a board whose
    tasks (and every subtask of its groups) are finemed tasks or come from its include_path does not
    need it. Tags fall back to the full index: lm-eval's own tasks may carry the same tag."""
    from lm_eval.tasks import TaskManager

    from finemed_eval.leaderboard.task_tree import expand_task_names

    include = list(config.include_path) or None
    own = TaskManager(include_path=include, include_defaults=False)
    names = expand_task_names(own, list(config.tasks))
    if all(n in own.task_index and own.task_index[n].kind.name != "TAG" for n in names):
        return own
    return TaskManager(include_path=include)


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


def variant_name(name: str, seed: int) -> str:
    return f"{name}{SEED_MARK}{seed}"


def seed_variants(task_manager: Any, task: str, seeds: list[int], num_fewshot: int | None) -> dict[str, Any]:
    """One lm-eval TaskDict holding a renamed copy of `task` (and its groups) per seed."""
    merged: dict[str, Any] = {"tasks": {}, "groups": {}, "group_map": {}}
    for seed in seeds:
        loaded = task_manager.load([task])
        for t in loaded["tasks"].values():
            _set_fewshot(t, num_fewshot, seed)
            original = t.task_name
            if not t.config.task_alias:
                t.config.task_alias = original  # results keep the name the task is known by
            t.config.task = variant_name(original, seed)
            merged["tasks"][t.task_name] = t
        for g in loaded["groups"].values():
            g.alias = g.alias or g.name
            g.name = variant_name(g.name, seed)
        for g in loaded["groups"].values():  # re-key children under their new names
            children = [g.pop(name) for name in list(g.child_names)]
            for child in children:
                g.add(child)
            merged["groups"][g.name] = g
            merged["group_map"][g.name] = g.child_names
    return merged


def _set_fewshot(task: Any, num_fewshot: int | None, seed: int) -> None:
    """What simple_evaluate does per task: override num_fewshot (unless the YAML pins 0), seed the sampler."""
    if num_fewshot is not None and task.get_config("num_fewshot") != 0:
        task.set_config(key="num_fewshot", value=num_fewshot)
    elif task.get_config("num_fewshot") is None:
        task.set_config(key="num_fewshot", value=0)
    task.set_fewshot_seed(seed=seed)


def evaluate_seeds(
    lm: Any, config: RunConfig, task: str, seeds: list[int], task_manager: Any, protocol: str = "default"
) -> dict[int, dict]:
    """ONE lm-eval pass over every seed of `task`; returns seed -> that seed's results (with samples)."""
    import numpy as np
    from lm_eval import evaluator
    from lm_eval.utils import set_torch_seed

    random.seed(GLOBAL_SEEDS["random"])
    np.random.seed(GLOBAL_SEEDS["numpy"])
    set_torch_seed(GLOBAL_SEEDS["torch"])
    prompting = get_protocol(protocol)
    results = evaluator.evaluate(
        lm=lm,
        task_dict=seed_variants(task_manager, task, seeds, config.num_fewshot),
        limit=config.limit,
        bootstrap_iters=0,  # per-seed stderr is not reported; the spread over seeds and paired tests are
        log_samples=True,  # per-document records for the paired statistics, and lm-eval's task hashes
        apply_chat_template=config.apply_chat_template or prompting.apply_chat_template,
        system_instruction=prompting.system_instruction,
    )
    if results is None:
        raise RuntimeError("lm-eval returned no results (non-zero rank?)")
    return {seed: split_seed(results, seed) for seed in seeds}


def split_seed(results: dict[str, Any], seed: int) -> dict[str, Any]:
    """The part of a multi-seed results dict that belongs to `seed`, under the original task names."""
    suffix = variant_name("", seed)

    def own(mapping: dict[str, Any] | None) -> dict[str, Any]:
        return {k[: -len(suffix)]: v for k, v in (mapping or {}).items() if k.endswith(suffix)}

    def unmark(metrics: dict[str, Any]) -> dict[str, Any]:
        return {
            k: v[: -len(suffix)] if k in ("name", "alias") and isinstance(v, str) and v.endswith(suffix) else v
            for k, v in metrics.items()
        }

    def unmark_config(config: dict[str, Any]) -> dict[str, Any]:
        name = config.get("task")
        return {**config, "task": name[: -len(suffix)]} if isinstance(name, str) and name.endswith(suffix) else config

    return {
        "results": {k: unmark(v) for k, v in own(results.get("results")).items()},
        "versions": own(results.get("versions")),
        "n-shot": own(results.get("n-shot")),
        "n-samples": own(results.get("n-samples")),
        "group_subtasks": {g: [c[: -len(suffix)] for c in kids] for g, kids in own(results.get("group_subtasks")).items()},
        "samples": own(results.get("samples")),
        "configs": {k: unmark_config(v) for k, v in own(results.get("configs")).items()},
        "higher_is_better": own(results.get("higher_is_better")),
        "groups": {k: unmark(v) for k, v in own(results.get("groups")).items()},
    }


def slim_results(results: dict[str, Any]) -> dict[str, Any]:
    """Keep what aggregation, statistics and provenance need; samples shrink to per-document records."""
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
        # kept for lm-eval's own results_<date>.json at publish time; local paths never stored
        "configs": scrub(json.loads(json.dumps(results.get("configs") or {}, default=handle_non_serializable))),
        "higher_is_better": results.get("higher_is_better", {}),
        "groups": results.get("groups", {}),
        "versions": results.get("versions", {}),
        "n-shot": results.get("n-shot", {}),
        "n-samples": results.get("n-samples", {}),
        "group_subtasks": groups,
        "task_hashes": task_hashes,
        "documents": {task: per_document(rows) for task, rows in sorted(samples.items())},
    }


# --------------------------------------------------------------------------- logged samples


def handle_non_serializable(obj: Any) -> Any:
    from lm_eval.utils import handle_non_serializable as lm_eval_handler

    return lm_eval_handler(obj)


def sample_line(sample: dict[str, Any]) -> str:
    """One logged sample exactly as lm-eval's EvaluationTracker.save_results_samples writes it (so
    `datasets` loads the file), with local paths scrubbed."""
    from lm_eval.utils import sanitize_list

    row = dict(sample)
    row["arguments"] = {
        f"gen_args_{i}": {f"arg_{j}": part for j, part in enumerate(arg)}
        for i, arg in enumerate(sample.get("arguments") or [])
    }
    for key in ("resps", "filtered_resps"):
        if key in row:
            row[key] = sanitize_list(row[key])
    row["target"] = str(sample.get("target"))
    return scrub_text(json.dumps(row, default=handle_non_serializable, ensure_ascii=False)) + "\n"


def samples_dir(cells_dir: Path, key: str) -> Path:
    return cells_dir / f"{key}.samples"


def write_samples(cells_dir: Path, key: str, samples: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Write a cell's logged samples as cells/<key>.samples/<task>.jsonl (one folder, moved into place
    whole); return task -> {sha256, rows}, which the cell records so a damaged file is detected."""
    return write_sample_files(
        cells_dir, key, {task: "".join(sample_line(r) for r in rows).encode("utf-8") for task, rows in samples.items()}
    )


def write_sample_files(cells_dir: Path, key: str, files: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    """write_samples for lines already in lm-eval's file format (a stock `lm_eval --log_samples` run)."""
    target = samples_dir(cells_dir, key)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.samples-", suffix=".partial", dir=cells_dir))
    index: dict[str, dict[str, Any]] = {}
    try:
        for task, data in sorted(files.items()):
            (tmp / f"{task}.jsonl").write_bytes(data)
            index[task] = {"sha256": hashlib.sha256(data).hexdigest(), "rows": data.count(b"\n")}
        tmp.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return index


def remove_partial_samples(cells_dir: Path) -> None:
    """Sample folders a killed run left half-written; only safe while holding the run lock."""
    for stale in cells_dir.glob(".*.samples-*.partial"):
        shutil.rmtree(stale, ignore_errors=True)
