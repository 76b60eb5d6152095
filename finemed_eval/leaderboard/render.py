"""`finemed leaderboard render JSON`: leaderboard.json -> leaderboard.md, leaderboard.html and plots/*.png.

The view model is built once (view.build_view) and read by markdown.py, page.py and plots.py. Every
output is made in memory before any file is written, and each file is replaced atomically: a failure
(a crash, a name a font cannot draw) leaves the previous outputs whole, never half-written.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from finemed_eval.leaderboard.cells import write_atomic
from finemed_eval.leaderboard.markdown import markdown_table
from finemed_eval.leaderboard.page import ACCURACY_PLOT, GOLD_LL_PLOT, SWEEP_PLOT, html_page
from finemed_eval.leaderboard.plots import plot_accuracy, plot_gold_ll_change, plot_sweep
from finemed_eval.leaderboard.view import build_view

PLOTS = {ACCURACY_PLOT: plot_accuracy, GOLD_LL_PLOT: plot_gold_ll_change, SWEEP_PLOT: plot_sweep}
RETIRED_PLOTS = ("ttt_gain",)  # charts earlier versions drew; a stale one would contradict the page


def render(leaderboard_json: Path, out_dir: Path | None = None, *, inline_plots: bool = True) -> dict[str, Path]:
    """Write leaderboard.html, leaderboard.md and plots/*.png; return {name: path} for what was written.

    Plots are written as files and, by default, also inlined as data: URIs so the HTML stays a
    single self-contained file that can be moved or attached on its own.
    """
    leaderboard_json = Path(leaderboard_json)
    view = build_view(json.loads(leaderboard_json.read_text(encoding="utf-8")))
    out_dir = Path(out_dir) if out_dir is not None else leaderboard_json.parent
    pngs = {name: png for name, plot in PLOTS.items() if (png := plot(view)) is not None}
    srcs = {
        name: "data:image/png;base64," + base64.b64encode(png).decode() if inline_plots else f"plots/{name}.png"
        for name, png in pngs.items()
    }
    outputs = {name: (out_dir / "plots" / f"{name}.png", png) for name, png in pngs.items()}
    outputs["markdown"] = (out_dir / "leaderboard.md", markdown_table(view).encode("utf-8"))
    outputs["html"] = (out_dir / "leaderboard.html", html_page(view, srcs).encode("utf-8"))
    for path, data in outputs.values():
        write_atomic(path, data)
    for name in [*PLOTS.keys() - pngs.keys(), *RETIRED_PLOTS]:
        (out_dir / "plots" / f"{name}.png").unlink(missing_ok=True)  # no stale chart from an earlier board
    return {name: path for name, (path, _) in outputs.items()}
