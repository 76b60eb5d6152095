"""The leaderboard's PNG plots, from the view model: accuracy by benchmark, per-document gold log-likelihood change.

Each plot function returns the PNG's bytes (None when there is nothing to plot); render.py writes them.
Model and benchmark names are data: they are drawn as plain text, never parsed as mathtext.
"""

from __future__ import annotations

import io
import math

import numpy as np

from finemed_eval.leaderboard.view import View


def _new_figure(width: float, height: float = 4.4):
    # Figure + Agg canvas directly: no pyplot global state, no backend switch for the caller's process
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)  # capped at ~page width so fonts stay readable
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_axisbelow(True)
    return fig, ax


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", metadata={"Software": None})  # no version stamp: stable bytes
    return buffer.getvalue()


def _name(text: str) -> str:
    """A name as one line of plain text: '$x$' would be mathtext (and '$\\x$' a crash), a newline a second line."""
    return " ".join(text.split()).replace("$", r"\$")


def plot_accuracy(view: View) -> bytes | None:
    """Grouped bars benchmark x measured model (%), error bars = std over seeds; main-table columns only."""
    cols = view.layout.main
    series: dict[str, dict[str, tuple[float, float]]] = {}
    for r in view.rows:
        if r.status != "measured":
            continue
        for c in cols:
            e = r.cells.get(c.key)
            if e is not None and e.get("mean") is not None:
                # NaN, not 0: a single-seed value has no spread to show
                series.setdefault(_name(r.model), {})[_name(c.label)] = (100 * e["mean"], math.nan if e.get("std") is None else 100 * e["std"])
    if not series:
        return None
    groups = [_name(c.label) for c in cols if any(_name(c.label) in v for v in series.values())]
    fig, ax = _new_figure(min(10.5, max(6.5, 0.9 * len(groups) * len(series) ** 0.5 + 2.5)))
    ax.grid(axis="y", alpha=0.3)
    width = 0.8 / len(series)
    for i, (name, vals) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g, grp in enumerate(groups) if grp in vals]
        ys, errs = zip(*(vals[grp] for grp in groups if grp in vals), strict=True)
        bars = ax.bar(xs, ys, width * 0.92, yerr=errs, capsize=3, label=name, color=f"C{i % 10}",
                      error_kw={"elinewidth": 1, "ecolor": "#333"})
        if len(groups) * len(series) <= 24:  # beyond that labels collide; the table has the numbers
            ax.bar_label(bars, fmt="%.1f", fontsize=7, color="#444", padding=2)
    rotate = len(groups) > 4
    ax.set_xticks(range(len(groups)), groups, rotation=20 if rotate else 0, ha="right" if rotate else "center")
    top = max(v + (0 if math.isnan(s) else s) for vals in series.values() for v, s in vals.values())
    ax.set_ylim(0, min(100, max(10.0, top * 1.15)))
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Measured accuracy by benchmark (mean ± std over seeds)", fontsize=11)
    ax.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.25 if rotate else -0.14), ncol=min(4, len(series)))
    return _png(fig)


def plot_gold_ll_change(view: View) -> bytes | None:
    """Per pair and benchmark: every document's (x seed's) change of the gold log-likelihood, with its mean."""
    rows = [c for c in view.comparisons if c.gold_ll_changes]
    if not rows:
        return None
    fig, ax = _new_figure(8.5, max(2.4, 0.9 * len(rows) + 1.4))
    ax.grid(axis="x", alpha=0.3)
    rng = np.random.default_rng(0)  # jitter only; fixed so the image is reproducible
    for i, c in enumerate(rows):
        d = np.asarray(c.gold_ll_changes, dtype=float)
        ax.scatter(d, i + rng.uniform(-0.25, 0.25, d.size), s=9, alpha=0.45, color=f"C{i % 10}", linewidths=0)
        ax.plot([d.mean()] * 2, [i - 0.35, i + 0.35], color="#111", linewidth=2)
        ax.annotate(f"mean {d.mean():+.4f}", (d.mean(), i + 0.38), fontsize=7, ha="center", va="bottom", color="#111")
    ax.axvline(0, color="#555", linewidth=0.8, linestyle="--")
    ax.set_yticks(range(len(rows)), [f"{_name(c.label)}\n{_name(c.benchmark)}" for c in rows], fontsize=8)
    ax.set_ylim(-0.6, len(rows) - 0.2)
    ax.set_xlabel("change of the gold answer's log-likelihood (treatment − baseline), per document and seed")
    ax.set_title("Per-document effect on the gold answer (right of 0: more likely with the treatment)", fontsize=10)
    return _png(fig)


def plot_sweep(view: View) -> bytes | None:
    """Per sweep table (baseline x benchmark): Δ accuracy with its 95 % paired-bootstrap CI, and the mean
    Δ gold log-likelihood, for every grid point; one line per series (mode, steps, ...), x = lr."""
    if not view.sweeps:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from finemed_eval.leaderboard.view import SWEEP_X

    fig = Figure(figsize=(10.5, 3.4 * len(view.sweeps) + 0.8), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(view.sweeps), 2, squeeze=False)
    # one colour and offset per series across every panel (tables list points by Δ, a different order each)
    labels = sorted({label for table in view.sweeps for label in table.series()})
    spread = 0.02 * (len(labels) - 1)
    for (acc_ax, ll_ax), table in zip(axes, view.sweeps, strict=True):
        series = dict(sorted(table.series().items()))
        log_x = all(SWEEP_X in p["point"] and float(p["point"][SWEEP_X]) > 0 for p in table.points)
        for label, points in series.items():
            i = labels.index(label)
            shift = (i * 0.04 - spread) if len(labels) > 1 else 0.0  # side by side, so error bars do not overlap
            xs = [float(p["point"][SWEEP_X]) * 10 ** shift if log_x else j + shift / 2 for j, p in enumerate(points)]
            acc = np.array([100 * p["acc_diff"] for p in points])
            err = np.array([[100 * (p["acc_diff"] - p["ci_low"]) for p in points], [100 * (p["ci_high"] - p["acc_diff"]) for p in points]])
            acc_ax.errorbar(xs, acc, yerr=err, marker="o", markersize=4, capsize=3, linewidth=1, color=f"C{i % 10}", label=_name(label))
            lls = [p["gold_ll_change"] for p in points]
            if all(v is not None for v in lls):
                ll_ax.plot(xs, lls, marker="o", markersize=4, linewidth=1, color=f"C{i % 10}")
        for ax, ylabel in ((acc_ax, "Δ accuracy (pp), 95 % CI"), (ll_ax, "mean Δ gold log-likelihood")):
            ax.spines[["top", "right"]].set_visible(False)
            ax.grid(alpha=0.3)
            ax.axhline(0, color="#555", linewidth=0.8, linestyle="--")
            ax.set_ylabel(ylabel, fontsize=8)
            if log_x:
                ax.set_xscale("log")
                ax.set_xlabel(SWEEP_X, fontsize=8)
            ax.tick_params(labelsize=7)
        acc_ax.set_title(_name(f"{table.benchmark}: grid points vs {table.baseline}"), fontsize=9, loc="left")
        acc_ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return _png(fig)
