"""The history view of a published leaderboard: each model's score per benchmark across dated snapshots.

Pure: snapshots (date -> board) in, `history.json` and a small static `history.html` out. The page
is a Jinja2 template with autoescaping, like the leaderboard page, so hostile model names stay text.
"""

from __future__ import annotations

from typing import Any

HISTORY_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Leaderboard history</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:72rem}
table{border-collapse:collapse;margin-bottom:2rem}th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}caption{text-align:left;font-weight:600;padding:.4rem 0}
</style></head><body>
<h1>Leaderboard history</h1>
<p>Measured accuracy (%, mean ± sample std over seeds) of each model in every snapshot of this
leaderboard; <a href="leaderboard.html">the latest board</a>, snapshots under <code>snapshots/</code>.</p>
{% for bench in benchmarks %}
<table><caption>{{ bench.name }}</caption>
<thead><tr><th>model</th>{% for s in snapshots %}<th>{{ s }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in bench.rows %}<tr><td>{{ row.model }}</td>{% for cell in row.cells %}<td>{{ cell }}</td>{% endfor %}</tr>{% endfor %}</tbody>
</table>
{% endfor %}
</body></html>
"""


def history(snapshots: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """{"snapshots": [dates], "series": [{model, task, benchmark, metric, points: [{snapshot, mean, std, n}]}]}.

    Only measured entries: the paper's reported rows do not change between snapshots.
    """
    dates = sorted(snapshots)
    series: dict[tuple[str, str, str], dict[str, Any]] = {}
    for date in dates:
        for e in snapshots[date].get("entries", []):
            if e.get("status") != "measured":
                continue
            key = (e["model"], e["task"], e["metric"])
            row = series.setdefault(
                key, {"model": e["model"], "task": e["task"], "benchmark": e["benchmark"], "metric": e["metric"], "points": []}
            )
            row["points"].append({"snapshot": date, "mean": e["mean"], "std": e["std"], "n": e["n"]})
    return {"snapshots": dates, "series": list(series.values())}


def history_html(doc: dict[str, Any]) -> str:
    import jinja2

    dates = doc["snapshots"]
    benchmarks: dict[str, list[dict[str, Any]]] = {}
    for s in doc["series"]:
        if s["metric"] != "acc":
            continue
        points = {p["snapshot"]: p for p in s["points"]}
        cells = [_percent(points.get(d)) for d in dates]
        benchmarks.setdefault(s["benchmark"], []).append({"model": s["model"], "cells": cells})
    env = jinja2.Environment(autoescape=True)
    return env.from_string(HISTORY_TEMPLATE).render(
        snapshots=dates, benchmarks=[{"name": b, "rows": rows} for b, rows in benchmarks.items()]
    )


def _percent(point: dict[str, Any] | None) -> str:
    if point is None:
        return "—"
    text = f"{100 * point['mean']:.2f}"
    return text + (f" ± {100 * point['std']:.2f}" if point["std"] is not None else "")
