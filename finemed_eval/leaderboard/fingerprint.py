"""Fingerprints of what produces a number: task configs, finemed-eval code, versions and git revision."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from finemed_eval.leaderboard.task_tree import members


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- versions


def lm_eval_version() -> str:
    return importlib.metadata.version("lm_eval")


def finemed_eval_version() -> str:
    try:
        return importlib.metadata.version("finemed-eval")
    except importlib.metadata.PackageNotFoundError:  # running from a bare checkout
        import finemed_eval

        return str(getattr(finemed_eval, "__version__", "0+unknown"))


def git_revision() -> str:
    """Commit of the finemed-eval checkout (with -dirty), else 'finemed-eval <version>' for an install."""
    root = Path(__file__).resolve().parents[2]
    try:
        top = _git(root, "rev-parse", "--show-toplevel")
        if Path(top).resolve() == root:  # not some unrelated repository around site-packages
            rev = _git(root, "rev-parse", "HEAD")
            dirty = _git(root, "status", "--porcelain")  # untracked, unignored files count: they may be code
            return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        pass
    return f"finemed-eval {finemed_eval_version()}"


def _git(root: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=10)
    return out.stdout.strip()


# --------------------------------------------------------------------------- hashes


def task_config_hash(task_manager: Any, name: str) -> str:
    """Hash a task's (or group's / tag's) parsed YAML and the Python helpers it uses, recursively.

    `!function` references are absolute paths once parsed; they are replaced by file name + function
    and the file's bytes are hashed instead, so the same task installed elsewhere hashes the same.
    """
    index = task_manager.task_index
    h = hashlib.sha256()
    seen: set[str] = set()

    def visit(n: str) -> None:
        if n in seen:
            return
        seen.add(n)
        entry = index.get(n)
        if entry is None:
            h.update(f"<unindexed {n}>".encode())
            return
        cfg = entry.cfg or {}
        folder = Path(entry.yaml_path).parent if entry.yaml_path is not None else None
        files: set[Path] = set(folder.glob("*.py")) if folder is not None else set()
        normalised = _normalise_paths(json.loads(json.dumps(cfg, default=str)), folder, files)
        h.update(f"{n}:{entry.kind.name}:{canonical_json(normalised)}".encode())
        for py in sorted(files):
            h.update(py.name.encode() + b"\0" + py.read_bytes())
        for member in members(index, n):
            visit(member)

    visit(name)
    return "sha256:" + h.hexdigest()


def _normalise_paths(value: Any, folder: Path | None, files: set[Path]) -> Any:
    if isinstance(value, dict):
        return {k: _normalise_paths(v, folder, files) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise_paths(v, folder, files) for v in value]
    if isinstance(value, str) and value.startswith(os.sep) and "." in Path(value).name:
        module, func = value.rsplit(".", 1)
        py = Path(module + ".py")
        if py.is_file():  # a resolved `!function module.func`
            files.add(py)
            return f"<function {py.name}:{func}>"
    if isinstance(value, str) and folder is not None:
        return value.replace(str(folder), "<taskdir>")
    return value


def files_hash(paths: list[Path]) -> str | None:
    """Content hash of files (directories: every file under them, by relative name); None if none exist."""
    h = hashlib.sha256()
    found = False
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] if path.is_file() else []
        for f in files:
            found = True
            rel = f.relative_to(path).as_posix() if path.is_dir() else f.name
            h.update(rel.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return "sha256:" + h.hexdigest() if found else None


def task_data_hash(task_manager: Any, name: str, data_dir: str | None) -> dict[str, str | None]:
    """Content of the data files a finemed task (or every leaf of a group) reads: benchmark -> hash.

    With FINEMED_DATA_DIR set, a benchmark reads <data_dir>/<benchmark>/; `demo` always reads the
    package's demo files; without a data dir the hub is read, which has no local content to hash.
    """
    from finemed_eval.data import DEMO_DIR

    out: dict[str, str | None] = {}
    for leaf in sorted(_leaf_tasks(task_manager.task_index, name)):
        entry = task_manager.task_index.get(leaf)
        benchmark = ((entry.cfg or {}).get("dataset_kwargs") or {}).get("benchmark") if entry is not None else None
        if not isinstance(benchmark, str) or benchmark in out:
            continue
        if benchmark == "demo":
            out[benchmark] = files_hash([DEMO_DIR / "demo_test.jsonl", DEMO_DIR / "demo_validation.jsonl"])
        elif data_dir:
            out[benchmark] = files_hash([Path(data_dir).expanduser() / benchmark])
        else:
            out[benchmark] = None  # the hub
    return out


def corpus_hash(model_args: dict[str, Any]) -> str | None:
    """Content of the TTT corpus a model reads: a local file or folder, or the demo corpus; None with TTT off.

    A hub dataset id has no local content; its id is already part of the model args.
    """
    if str(model_args.get("ttt", "off")).lower() == "off":
        return None
    corpus = model_args.get("corpus")
    if corpus is None or str(corpus) == "demo":  # the embedded default is the demo corpus
        from finemed_eval.data import DEMO_DIR

        return files_hash([DEMO_DIR / "reasoning_corpus.jsonl"])
    path = Path(str(corpus)).expanduser()
    return files_hash([path]) if path.exists() else None


def _leaf_tasks(index: dict[str, Any], name: str) -> set[str]:
    kids = members(index, name)
    if not kids:
        return {name}
    out: set[str] = set()
    for k in kids:
        out |= _leaf_tasks(index, k)
    return out


def code_hash() -> str:
    """Hash of the finemed-eval code a cell runs (model, tasks, data, prompts), so edits invalidate cells.

    The leaderboard, CLI, synthesis and training code cannot change a measured number and is left out.
    """
    import finemed_eval

    root = Path(finemed_eval.__file__).parent
    skip = {"leaderboard", "synth", "training", "zoo"}  # the zoo names models; cells key the resolved model
    h = hashlib.sha256()
    for py in sorted(root.rglob("*.py")):
        rel = py.relative_to(root)
        if rel.parts[0] in skip or rel.as_posix() == "cli.py":
            continue
        h.update(rel.as_posix().encode() + b"\0" + py.read_bytes())
    return "sha256:" + h.hexdigest()
