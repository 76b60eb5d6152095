"""The leaderboard as one self-contained HTML page: a Jinja2 template (autoescaped) + static CSS/JS package files."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from finemed_eval.leaderboard.view import Row, View, average_text, cell_text, pct, point_text, stats_text

ACCURACY_PLOT = "accuracy_by_benchmark"
GOLD_LL_PLOT = "gold_ll_change"
SWEEP_PLOT = "sweep"


@cache
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("finemed_eval.leaderboard", "templates"),
        autoescape=True,  # every value from the board is data, never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        cell_text=cell_text, average_text=average_text, pct=pct, stats_text=stats_text, value=_value,
        seeds_tip=_seeds_tip, avg_tip=_avg_tip, point_text=point_text,
    )
    return env


def _static(name: str) -> str:
    return resources.files("finemed_eval.leaderboard").joinpath("static", name).read_text(encoding="utf-8")


def html_page(view: View, plots: dict[str, str]) -> str:
    """The whole page; `plots` maps plot name -> img src (relative path or data: URI)."""
    return _environment().get_template("leaderboard.html.j2").render(
        view=view,
        plots=plots,
        css=_static("leaderboard.css"),
        js=_static("leaderboard.js"),
        ACCURACY_PLOT=ACCURACY_PLOT,
        GOLD_LL_PLOT=GOLD_LL_PLOT,
        SWEEP_PLOT=SWEEP_PLOT,
    )


def _value(entry: dict | None) -> str:
    return "" if entry is None or entry.get("mean") is None else repr(float(entry["mean"]))


def _seeds_tip(e: dict | None) -> str:
    if not e or not e.get("seeds"):
        return ""
    n = f" (n={e['n']})" if e.get("n") else ""
    return "per seed: " + ", ".join(f"seed {s['seed']}: {pct(s['value'])}" for s in e["seeds"]) + n


def _avg_tip(row: Row, view: View) -> str:
    return "average over: " + ", ".join(c.label for c in view.layout.main if row.cells.get(c.key, {}).get("mean") is not None)
