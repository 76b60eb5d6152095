"""`finemed zoo card NAME --results BOARD [--to PATH | --push | --pr] [--dry-run]`: a model's leaderboard
results in the two forms the Hub reads.

- `model-index` in the card's YAML (huggingface_hub `EvalResult`): one entry per benchmark and
  leaderboard row of the model, value "mean ± std" (percent), `num_few_shot`, the seeds in the
  metric name, `source` = the board;
- `.eval_results/<benchmark>.yaml` (huggingface_hub `EvalResultEntry`): numeric mean (percent),
  date, source, and the protocol in `notes`; only for benchmarks that have a Hub dataset id.

Both are built with huggingface_hub's own types and read back with its own parsers before anything
is written (`ModelCard`, `model_index_to_eval_results`, `parse_eval_result_entries`). An existing
card keeps its text and other results; results from the same board source are replaced.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

EVAL_RESULTS_FOLDER = ".eval_results"
TASK_TYPE = "multiple-choice"
SOURCE_NAME = "finemed-eval leaderboard"

# Our task -> (Hub dataset id, dataset config) of the benchmark it evaluates; None: no Hub copy.
_DATASETS: list[tuple[str, str | None, Callable[[str], str | None]]] = [
    ("finemed_mmlu_pro_", "TIGER-Lab/MMLU-Pro", lambda t: None),
    ("finemed_mmlu_", "cais/mmlu", lambda t: t.removeprefix("finemed_mmlu_").removesuffix("_cot") or None),
    ("finemed_ceval_", "ceval/ceval-exam", lambda t: t.removeprefix("finemed_ceval_").removesuffix("_cot") or None),
    ("finemed_medqa", "GBaker/MedQA-USMLE-4-options", lambda t: None),
    ("finemed_medmcqa", "openlifescienceai/medmcqa", lambda t: None),
    ("finemed_cmb_exam", "FreedomIntelligence/CMB", lambda t: "exam"),
]


class CardError(ValueError):
    """Bad input to `finemed zoo card`; printed as one line, exit 2."""


@dataclass(frozen=True)
class CardFiles:
    readme: str
    eval_results: dict[str, str]  # path in the repo -> YAML text

    def files(self) -> dict[str, str]:
        return {"README.md": self.readme, **self.eval_results}


def hub_dataset(task: str) -> tuple[str | None, str | None]:
    for prefix, dataset_id, config in _DATASETS:
        if task.startswith(prefix):
            return dataset_id, config(task)
    return None, None


def model_rows(board: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The board's measured top-level rows of `name` (a zoo name, hub id or the board's display name)."""
    models = {m["name"]: m for m in board["config"]["models"]}
    mine = {display for display, m in models.items() if name in (display, m["model"], m["pin"].get("hub_id"))}
    if not mine:
        known = sorted({m["model"] for m in models.values()} | set(models))
        raise CardError(f"the board has no model {name!r}; it has: {', '.join(known)}")
    return [
        e for e in board["entries"] if e["status"] == "measured" and e["model"] in mine and e.get("parent") is None
    ]


def _value(e: dict[str, Any]) -> str:
    mean = f"{100 * e['mean']:.2f}"
    return f"{mean} ± {100 * e['std']:.2f}" if e["std"] is not None else mean


def _protocol(e: dict[str, Any]) -> str:
    seeds = ", ".join(str(s["seed"]) for s in e["seeds"])
    limit = f", first {e['limit']} documents" if e.get("limit") is not None else ""
    return f"{e['num_fewshot']}-shot, mean ± std over seeds {seeds}{limit}"


def eval_results(board: dict[str, Any], name: str, source_url: str | None) -> list[Any]:
    """model-index entries (huggingface_hub EvalResult), one per benchmark row of the model."""
    from huggingface_hub import EvalResult

    out = []
    for e in model_rows(board, name):
        dataset_id, dataset_config = hub_dataset(e["task"])
        out.append(
            EvalResult(
                task_type=TASK_TYPE,
                task_name=e["benchmark"],
                dataset_type=dataset_id or e["task"],
                dataset_name=e["benchmark"],
                dataset_config=dataset_config,
                dataset_args={"num_few_shot": e["num_fewshot"]},
                metric_type=e["metric"],
                metric_value=_value(e),
                metric_name=f"{e['metric']} (%), {e['model']}: {_protocol(e)}",
                source_name=SOURCE_NAME if source_url else None,
                source_url=source_url,
            )
        )
    return out


def eval_result_files(board: dict[str, Any], name: str, source_url: str | None) -> dict[str, str]:
    """`.eval_results/<benchmark>.yaml`: one file per benchmark with a Hub dataset id."""
    from huggingface_hub import EvalResultEntry, eval_result_entries_to_yaml

    by_file: dict[str, list[Any]] = {}
    for e in model_rows(board, name):
        dataset_id, dataset_config = hub_dataset(e["task"])
        if dataset_id is None:
            continue  # the format names a Hub dataset; ours (demo) has none
        slug = re.sub(r"[^a-z0-9]+", "_", e["task"].removeprefix("finemed_").lower()).strip("_")
        by_file.setdefault(f"{EVAL_RESULTS_FOLDER}/{slug}.yaml", []).append(
            EvalResultEntry(
                dataset_id=dataset_id,
                task_id=dataset_config or "default",
                value=round(100 * e["mean"], 2),
                date=e["date"],
                source_url=source_url,
                source_name=SOURCE_NAME if source_url else None,
                notes=f"{e['model']}: {_value(e)} % ({_protocol(e)}); finemed-eval task {e['task']}, "
                f"git {e['git_revision']}",
            )
        )
    return {path: yaml.safe_dump(eval_result_entries_to_yaml(entries), sort_keys=False, allow_unicode=True) for path, entries in by_file.items()}


def build_card(board: dict[str, Any], name: str, existing: str | None, source_url: str | None) -> CardFiles:
    """The card text (existing text kept, results from our source replaced) and the eval-results files,
    both checked by reading them back with huggingface_hub's parsers."""
    from huggingface_hub import ModelCard, ModelCardData, parse_eval_result_entries
    from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results

    new = eval_results(board, name, source_url)
    if not new:
        raise CardError(f"the board has no measured results for {name!r}")
    card = ModelCard(existing) if existing else ModelCard(f"---\n{ModelCardData().to_yaml()}\n---\n# {name}\n")
    ours = {(r.dataset_type, r.dataset_config, r.metric_type, r.metric_name.split(":")[0]) for r in new}
    kept = [
        r for r in (card.data.eval_results or [])
        if (r.dataset_type, r.dataset_config, r.metric_type, (r.metric_name or "").split(":")[0]) not in ours
    ]
    card.data.eval_results = kept + new
    card.data.model_name = card.data.model_name or name
    text = str(card)
    # read back with the Hub's own parsers: what the Hub will show is what we meant
    # (the model-index groups results by task and dataset, so compare regardless of order)
    def same(results: list[Any]) -> bool:
        return sorted(map(repr, results)) == sorted(map(repr, kept + new))

    if not same(ModelCard(text).data.eval_results):
        raise RuntimeError("internal error: the card's model-index does not read back as written")
    if not same(model_index_to_eval_results(eval_results_to_model_index(card.data.model_name, kept + new))[1]):
        raise RuntimeError("internal error: the model-index does not round-trip")
    files = eval_result_files(board, name, source_url)
    for path, body in files.items():
        parse_eval_result_entries(yaml.safe_load(body))  # raises on a malformed entry
    return CardFiles(text, files)


def load_board(path: Path) -> dict[str, Any]:
    """A leaderboard.json (or a run / published folder holding one), schema-checked."""
    from finemed_eval.leaderboard.board import validate_board

    path = Path(path)
    if path.is_dir():
        path = path / "leaderboard.json"

    try:
        board = json.loads(path.read_text(encoding="utf-8"))
        validate_board(board)
    except (OSError, json.JSONDecodeError) as e:
        raise CardError(f"{path}: unreadable board ({e})") from None
    except Exception as e:
        raise CardError(f"{path}: does not match the leaderboard schema: {getattr(e, 'message', e)}") from None
    return board


def card(
    name: str,
    results: Path,
    *,
    to: Path | None = None,
    push: bool = False,
    pr: bool = False,
    dry_run: bool = False,
    source_url: str | None = None,
    say: Callable[[str], None] = print,
) -> CardFiles:
    """Write (to a folder) or commit / open a PR (on the Hub) the card results of `name` from a board."""
    from finemed_eval import zoo

    board = load_board(results)
    entry = zoo.get_entry(name)
    if push or pr:
        repo_id = _hub_id(board, name, entry)
        existing = _hub_readme(repo_id, dry_run, say)
        files = build_card(board, name, existing, source_url)
        what = "open a pull request on" if pr else "commit to"
        if dry_run:
            say(f"dry run: would {what} {repo_id} (model) one commit of:")
            for path, body in files.files().items():
                say(f"  add {path} ({len(body.encode()):,} bytes)")
            return files
        _commit(repo_id, files, pr)
        say(f"{what} {repo_id}: done")
        return files
    folder = to or _checkpoint_folder(name, entry)
    readme = folder / "README.md"
    existing = readme.read_text(encoding="utf-8") if readme.is_file() else None
    files = build_card(board, name, existing, source_url)
    if dry_run:
        say(f"dry run: would write into {folder}:")
        for path, body in files.files().items():
            say(f"  {path} ({len(body.encode()):,} bytes)")
        return files
    for path, body in files.files().items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(body, encoding="utf-8")
        tmp.replace(target)
    say(f"wrote {', '.join(files.files())} in {folder}")
    return files


def _hub_id(board: dict[str, Any], name: str, entry: Any) -> str:
    if entry is not None and not entry.embedded and not entry.trained and "/" in entry.source and not entry.api_only:
        return entry.source
    for m in board["config"]["models"]:
        if name in (m["name"], m["model"]) and m["pin"].get("hub_id"):
            return m["pin"]["hub_id"]
    if re.fullmatch(r"[\w.-]+/[\w.-]+", name):
        return name
    raise CardError(f"{name!r} has no Hub repository to push to; write the card into a folder with --to PATH")


def _checkpoint_folder(name: str, entry: Any) -> Path:
    if entry is not None and entry.trained:
        return Path(entry.source)
    raise CardError(f"{name!r} is not a trained zoo model with a local checkpoint: give --to PATH, or --push / --pr for its Hub repository")


def _hub_readme(repo_id: str, dry_run: bool, say: Callable[[str], None]) -> str | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import EntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, "README.md", token=None if dry_run else _token())).read_text(encoding="utf-8")
    except EntryNotFoundError:
        return None
    except Exception as e:
        if dry_run:
            say(f"note: cannot read {repo_id}'s card ({type(e).__name__}); shown as a new card")
            return None
        raise CardError(f"cannot read the card of {repo_id}: {e}") from None


def _token() -> str:
    from finemed_eval.leaderboard.publish import hub_token

    try:
        return hub_token()
    except ValueError as e:
        raise CardError(str(e)) from None


def _commit(repo_id: str, files: CardFiles, pr: bool) -> None:
    """One commit (or pull request) with the card and the eval-results files. Not run offline."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=_token())
    operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=b.encode("utf-8")) for p, b in files.files().items()]
    api.create_commit(
        repo_id, operations=operations, commit_message="Evaluation results (finemed-eval leaderboard)", create_pr=pr
    )
