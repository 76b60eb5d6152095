"""`finemed leaderboard render JSON`: leaderboard.json -> leaderboard.md, leaderboard.html and plots/*.png.

The view model is built once (view.build_view) and read by markdown.py, page.py and plots.py.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from finemed_eval.leaderboard.markdown import markdown_table
from finemed_eval.leaderboard.page import ACCURACY_PLOT, GOLD_LL_PLOT, html_page
from finemed_eval.leaderboard.plots import plot_accuracy, plot_gold_ll_change
from finemed_eval.leaderboard.view import build_view

PLOTS = {ACCURACY_PLOT: plot_accuracy, GOLD_LL_PLOT: plot_gold_ll_change}


def render(leaderboard_json: Path, out_dir: Path | None = None, *, inline_plots: bool = True) -> dict[str, Path]:
    """Write leaderboard.html, leaderboard.md and plots/*.png; return {name: path} for what was written.

    Plots are written as files and, by default, also inlined as data: URIs so the HTML stays a
    single self-contained file that can be moved or attached on its own.
    """
    leaderboard_json = Path(leaderboard_json)
    view = build_view(json.loads(leaderboard_json.read_text(encoding="utf-8")))
    out_dir = Path(out_dir) if out_dir is not None else leaderboard_json.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    srcs: dict[str, str] = {}
    for name, plot in PLOTS.items():
        path = out_dir / "plots" / f"{name}.png"
        if plot(view, path):
            paths[name] = path
            srcs[name] = (
                "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode() if inline_plots else f"plots/{name}.png"
            )
        elif path.exists():
            path.unlink()  # a stale chart from an earlier board would contradict this page
    stale = out_dir / "plots" / "ttt_gain.png"  # the bar chart this plot replaced
    stale.unlink(missing_ok=True)
    paths["markdown"] = out_dir / "leaderboard.md"
    paths["markdown"].write_text(markdown_table(view), encoding="utf-8")
    paths["html"] = out_dir / "leaderboard.html"
    paths["html"].write_text(html_page(view, srcs), encoding="utf-8")
    return paths
