"""Render a leaderboard.json into a static HTML page, a GitHub markdown table and PNG plots.

The input has already been validated against the runner's JSON Schema, so this module only reads it.
Everything except `render()` and the two plot writers is pure (board dict in, string out) so the
table logic can be tested without touching the file system or a browser.

The main table has one column per benchmark (see `layout`): a group with its own score stands for
its subtasks, which are shown, with secondary metrics such as acc_single / acc_multi, in a Details
table per benchmark and never enter the Average.

    python -m finemed_eval.leaderboard.render path/to/leaderboard.json [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

ACCURACY_PLOT = "accuracy_by_benchmark"
TTT_PLOT = "ttt_gain"
MISSING = "—"


# --------------------------------------------------------------------------- table model


@dataclass(frozen=True)
class Column:
    key: str  # stable id used by data-key / #sort=<key>; the task name, plus ":metric" if not acc
    task: str
    benchmark: str
    metric: str

    @property
    def label(self) -> str:
        # acc is the default metric, so only other metrics are spelled out in the header
        return self.benchmark if self.metric == "acc" else f"{self.benchmark} ({self.metric})"


@dataclass(frozen=True)
class Details:
    """What one main-table column stands for: its own other metrics and everything measured under it."""

    column: Column  # the main-table column
    columns: tuple[Column, ...]  # the rest, in order of first appearance

    def label(self, c: Column) -> str:
        # inside "MMLU" details, the group's own numbers need no benchmark name
        if c.task != self.column.task:
            return c.label
        if c == self.column:
            return "overall" if c.metric == "acc" else f"overall ({c.metric})"
        return c.metric


@dataclass(frozen=True)
class Layout:
    main: tuple[Column, ...]  # one per benchmark: what the Average is over
    details: tuple[Details, ...]  # only for main columns that have something to break down


@dataclass
class Row:
    model: str
    status: str  # "measured" | "reported"
    cells: dict[str, dict] = field(default_factory=dict)  # column key -> entry
    sources: list[str] = field(default_factory=list)

    @property
    def average(self) -> float | None:
        # Mean over the benchmarks this row has; rows are per (model, status), so a paper number
        # is never averaged together with a measured one.
        means = [e["mean"] for e in self.cells.values() if e.get("mean") is not None]
        return sum(means) / len(means) if means else None


def layout(board: dict) -> Layout:
    """Split the board's (task, metric) pairs into main-table columns and per-benchmark details.

    A task is a main column if no group above it (via `parent`) has a value on the board: a group
    with its own score (MMLU) stands for its subtasks, a group without one (finemed_table1) is
    replaced by its members. Per task, the main column is `acc`, else the task's first metric;
    everything else under it (acc_single/acc_multi, subtasks) goes to that column's details.
    """
    entries = board.get("entries", [])
    every: dict[tuple[str, str], Column] = {}
    parent_of: dict[str, str] = {}
    for e in entries:
        ident = (e["task"], e["metric"])
        if ident not in every:
            key = e["task"] if e["metric"] == "acc" else f"{e['task']}:{e['metric']}"
            every[ident] = Column(key, e["task"], e["benchmark"], e["metric"])
        if e.get("parent"):  # reported rows have none; any measured row of the task tells
            parent_of.setdefault(e["task"], e["parent"])
    scored = {task for task, _ in every}
    first_metric: dict[str, str] = {}
    for task, metric in every:
        first_metric.setdefault(task, metric)
    main_metric = {t: "acc" if (t, "acc") in every else m for t, m in first_metric.items()}

    def top(task: str) -> str:
        # the highest scored group above task; the walk stops at a repeat in case of a bad cycle
        found, seen, p = task, {task}, parent_of.get(task)
        while p is not None and p not in seen:
            seen.add(p)
            if p in scored:
                found = p
            p = parent_of.get(p)
        return found

    main = tuple(c for c in every.values() if top(c.task) == c.task and c.metric == main_metric[c.task])
    details = []
    for m in main:
        rest = tuple(c for c in every.values() if c != m and top(c.task) == m.task)
        if rest:
            details.append(Details(m, (m, *rest)))
    return Layout(main, tuple(details))


def columns(board: dict) -> list[Column]:
    """The main table's columns: one per benchmark, in order of first appearance."""
    return list(layout(board).main)


def rows(board: dict, cols: list[Column] | tuple[Column, ...] | None = None) -> list[Row]:
    """One row per (model, status) with its entries for `cols` (default: the main table's columns).

    Measured rows first, then reported, each in input order.
    """
    by_ident = {(c.task, c.metric): c for c in (columns(board) if cols is None else cols)}
    by_key: dict[tuple[str, str], Row] = {}
    for e in board.get("entries", []):
        row = by_key.setdefault((e["model"], e["status"]), Row(e["model"], e["status"]))
        col = by_ident.get((e["task"], e["metric"]))
        if col is not None:
            row.cells[col.key] = e
        if e.get("source") and e["source"] not in row.sources:
            row.sources.append(e["source"])
    return sorted(by_key.values(), key=lambda r: r.status != "measured")  # stable sort


def detail_rows(board: dict, d: Details) -> list[Row]:
    """Rows with something beyond the main column's value (paper rows usually have nothing)."""
    return [r for r in rows(board, d.columns) if set(r.cells) - {d.column.key}]


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def cell_text(entry: dict | None) -> str:
    """'mean ± std' in percent; std is left out when null (reported rows, single seed)."""
    if entry is None or entry.get("mean") is None:
        return MISSING
    if entry.get("std") is None:
        return pct(entry["mean"])
    return f"{pct(entry['mean'])} ± {pct(entry['std'])}"


def coverage(rs: list[Row]) -> dict[str, int]:
    """status -> how many benchmarks that status has any value for (the N of a full average)."""
    keys: dict[str, set[str]] = {}
    for r in rs:
        keys.setdefault(r.status, set()).update(k for k, e in r.cells.items() if e.get("mean") is not None)
    return {status: len(k) for status, k in keys.items()}


def average_text(row: Row, n_columns: int) -> str:
    avg = row.average
    if avg is None:
        return MISSING
    have = sum(1 for e in row.cells.values() if e.get("mean") is not None)
    # flag partial averages: they are over fewer benchmarks and not comparable with full rows
    return pct(avg) if have >= n_columns else f"{pct(avg)} ({have}/{n_columns})"


def run_details(board: dict) -> list[str]:
    """Footnote lines: what one number means and where it came from."""
    cfg = board.get("config", {})
    measured = [e for e in board.get("entries", []) if e["status"] == "measured"]
    shape = layout(board)
    main = {(c.task, c.metric) for c in shape.main}
    lines = []
    # n of the benchmarks in the main table; a subtask's n is part of its group's
    ns = sorted({e["n"] for e in measured if e.get("n") is not None and (e["task"], e["metric"]) in main})
    if ns:
        n = str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]} (varies by benchmark)"
        lines.append(f"n = {n} examples per seed")
    seeds = cfg.get("seeds") or sorted({s["seed"] for e in measured for s in e.get("seeds", [])})
    if seeds:
        lines.append("seeds: " + ", ".join(str(s) for s in seeds) + "; ± is the sample std over seeds")
    if cfg.get("num_fewshot") is not None:
        lines.append(f"few-shot: {cfg['num_fewshot']}")
    if "limit" in cfg:
        lines.append(f"limit: {cfg['limit'] if cfg['limit'] is not None else 'none (full test sets)'}")
    lines.append(f"lm-eval {board.get('lm_eval_version', '?')}, finemed-eval {board.get('finemed_eval_version', '?')}")
    lines.append(f"git revision: {board.get('git_revision', '?')}")
    # resumed runs can mix cells from older checkouts / lm-eval releases: say so rather than hide it
    for field_, what in (("git_revision", "git revisions"), ("lm_eval_version", "lm-eval versions")):
        seen = sorted({e[field_] for e in measured if e.get(field_)})
        if seen and seen != [board.get(field_)]:
            lines.append(f"measured cells come from {what}: " + ", ".join(seen))
    lines.append(f"generated: {board.get('generated_at', '?')}")
    lines.append("values are percentages; (k/N) marks an average over only k of the N benchmarks that rows of its kind (measured / paper) have")
    lines.append("paper rows are copied from the publication, not re-measured, and are never averaged with measured rows")
    if shape.details:
        lines.append("subtasks and secondary metrics (e.g. acc_single / acc_multi) are under Details and not in the Average")
    return lines


# --------------------------------------------------------------------------- TTT pairs


def ttt_pairs(board: dict) -> list[tuple[str, str]]:
    """(off_model, on_model) pairs: measured models whose model_args differ only in TTT settings
    (`ttt` itself and what only matters with TTT on: corpus, retriever, lr, steps, ...)."""
    from finemed_eval.ttt.options import TTTOptions

    ttt_only = TTTOptions.argument_names()
    args: dict[str, dict] = {}
    for e in board.get("entries", []):
        if e["status"] == "measured":
            args.setdefault(e["model"], e.get("model_args") or {})
    rest = {m: {k: v for k, v in a.items() if k not in ttt_only} for m, a in args.items()}
    return [
        (off, on)
        for off, a_off in args.items() if str(a_off.get("ttt", "")).lower() == "off"
        for on, a_on in args.items()
        if on != off and str(a_on.get("ttt", "off")).lower() != "off" and rest[on] == rest[off]
    ]


def pair_label(board: dict, off: str, on: str) -> str:
    """'smollm2-135m: full − off' from display names like 'smollm2-135m ttt=off'."""
    base = re.sub(r"[\s,;(\[]*ttt\s*=\s*off[)\]]?\s*$", "", off, flags=re.I) or off
    ttt_on = next((e.get("model_args") or {}).get("ttt") for e in board["entries"] if e["model"] == on)
    return f"{base}: ttt={ttt_on} − off"


def ttt_gains(board: dict, off: str, on: str) -> dict[str, tuple[float, float | None]]:
    """Benchmark -> (gain, std) in percentage points; std over seed-paired differences when >= 2 seeds match."""
    measured = {(e["model"], e["task"], e["metric"]): e for e in board["entries"] if e["status"] == "measured"}
    gains = {}
    for c in columns(board):
        a, b = measured.get((off, c.task, c.metric)), measured.get((on, c.task, c.metric))
        if a is None or b is None:
            continue
        sa, sb = {s["seed"]: s["value"] for s in a.get("seeds", [])}, {s["seed"]: s["value"] for s in b.get("seeds", [])}
        diffs = [100 * (sb[s] - sa[s]) for s in sa.keys() & sb.keys()]
        std = statistics.stdev(diffs) if len(diffs) >= 2 else None
        gains[c.label] = (100 * (b["mean"] - a["mean"]), std)
    return gains


# --------------------------------------------------------------------------- markdown


def _md(text: str) -> str:
    # a '|' would split the cell; '<' would let GitHub try to read HTML
    return html.escape(text, quote=False).replace("|", "\\|")


def markdown_table(board: dict) -> str:
    """The main table and its footnotes, then one Details table per benchmark that has any."""
    cols, rs = columns(board), rows(board)
    full = coverage(rs)
    lines = [
        # Average right after Model: with many benchmarks it is the column people look for first
        _md_header(["Average", *(c.label for c in cols)]),
        *(_md_row(r, [average_text(r, full[r.status])] + [cell_text(r.cells.get(c.key)) for c in cols]) for r in rs),
        "",
        *(f"- {_md(line)}" for line in run_details(board)),
    ]
    for d in layout(board).details:
        lines += ["", f"### Details: {_md(d.column.label)}", "", _md_header([d.label(c) for c in d.columns])]
        lines += [_md_row(r, [cell_text(r.cells.get(c.key)) for c in d.columns]) for r in detail_rows(board, d)]
    return "\n".join(lines) + "\n"


def _md_header(labels: list[str]) -> str:
    return "| Model | " + " | ".join(_md(label) for label in labels) + " |\n|---|" + "---:|" * len(labels)


def _md_row(r: Row, texts: list[str]) -> str:
    if r.status == "reported":  # italic + tag, so paper numbers never pass for measured ones
        texts = [f"*{t}*" if t != MISSING else t for t in texts]
        name = f"*{_md(r.model)}* (paper)"
    else:
        name = _md(r.model)
    return "| " + " | ".join([name, *texts]) + " |"


# --------------------------------------------------------------------------- HTML

_CSS = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --zebra:#f6f8fa; --accent:#0969da; --paper:#fff8e6; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; color:var(--fg); background:#fff; }
main { max-width:1200px; margin:0 auto; padding:28px 24px 48px; }
h1 { font-size:26px; margin:0 0 4px; } h2 { font-size:19px; margin:36px 0 10px; border-bottom:1px solid var(--line); padding-bottom:4px; }
h3 { font-size:16px; margin:22px 0 8px; }
.meta, .note, footer { color:var(--muted); font-size:13px; }
.scroll { overflow-x:auto; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
th, td { padding:7px 12px; border-bottom:1px solid var(--line); text-align:right; white-space:nowrap; }
th:first-child, td:first-child { text-align:left; }
thead th { background:#eef2f6; font-weight:600; position:sticky; top:0; }
#leaderboard thead th { cursor:pointer; user-select:none; }
#leaderboard thead th:hover { background:#e2e8f0; }
th[aria-sort=ascending]::after { content:" ▲"; font-size:11px; } th[aria-sort=descending]::after { content:" ▼"; font-size:11px; }
tbody tr { background:#fff; } tbody tr:nth-child(even) { background:var(--zebra); }  /* opaque: sticky cells cover what scrolls under them */
tr.reported, tr.reported td { font-style:italic; background:var(--paper); color:#4a3b12; }
td.missing { color:#9aa4ae; }
td.avg { font-weight:600; }
#leaderboard th:first-child, #leaderboard td:first-child { position:sticky; left:0; z-index:1; }
#leaderboard td:first-child { background:inherit; }
#leaderboard thead th:first-child { z-index:2; }
.badge { display:inline-block; font-style:normal; font-size:11px; font-weight:600; padding:0 6px; margin-left:6px; border-radius:9px; background:#f2c94c; color:#3d2e00; vertical-align:1px; }
figure { margin:0; } img { max-width:100%; height:auto; border:1px solid var(--line); border-radius:6px; }
#reported th, #reported td { text-align:left; } #reported .num { text-align:right; }
table.details { width:auto; min-width:min(100%, 640px); }  /* a few columns: keep them near their names */
footer ul { padding-left:18px; margin:6px 0; }
"""

# Sorting: click a header (numbers first descending = best first, text ascending; click again flips),
# or open the page with #sort=<data-key>[:asc|:desc]. Missing cells always go last.
_JS = """
(function () {
  var table = document.getElementById('leaderboard');
  var heads = table.tHead.rows[0].cells;
  function sortBy(key, dir) {
    var idx = -1;
    for (var i = 0; i < heads.length; i++) if (heads[i].dataset.key === key) idx = i;
    if (idx < 0) return false;
    var numeric = heads[idx].dataset.type === 'number';
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[idx].dataset.value, y = b.cells[idx].dataset.value;
      if (x === '' || y === '') return (x === '') - (y === '');
      var c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
      return dir === 'desc' ? -c : c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    for (var j = 0; j < heads.length; j++) heads[j].removeAttribute('aria-sort');
    heads[idx].setAttribute('aria-sort', dir === 'desc' ? 'descending' : 'ascending');
    return true;
  }
  for (var i = 0; i < heads.length; i++) heads[i].addEventListener('click', function (ev) {
    var th = ev.currentTarget, cur = th.getAttribute('aria-sort');
    var dir = cur ? (cur === 'ascending' ? 'desc' : 'asc') : (th.dataset.type === 'number' ? 'desc' : 'asc');
    sortBy(th.dataset.key, dir);
    history.replaceState(null, '', '#sort=' + encodeURIComponent(th.dataset.key) + ':' + dir);
  });
  function fromHash() {
    var m = /^#sort=(.+?)(?::(asc|desc))?$/.exec(location.hash);  // keys may hold ':' and ','
    if (m) sortBy(decodeURIComponent(m[1]), m[2] || 'asc');
  }
  window.addEventListener('hashchange', fromHash);
  fromHash();
})();
"""


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _table_html(board: dict) -> str:
    cols, rs = columns(board), rows(board)
    full = coverage(rs)
    head = ['<th data-key="average" data-type="number" scope="col">Average</th>']
    head += [_th(c, c.label) for c in cols]
    body = []
    for r in rs:
        avg = r.average
        tds = [
            # tooltip: averages of different rows may cover different benchmarks
            f'<td class="avg" data-value="{"" if avg is None else repr(avg)}" title="{_e(_avg_tip(r, cols))}">'
            f"{_e(average_text(r, full[r.status]))}</td>"
        ]
        body.append(_tr(r, tds + [_value_td(r.cells.get(c.key)) for c in cols]))
    return _table("leaderboard", head, body)


def _details_html(board: dict) -> str:
    """One table per main-table benchmark with subtasks or secondary metrics; '' if there are none."""
    parts = []
    for d in layout(board).details:
        head = [_th(c, d.label(c)) for c in d.columns]
        body = [_tr(r, [_value_td(r.cells.get(c.key)) for c in d.columns]) for r in detail_rows(board, d)]
        parts.append(f"<h3>{_e(d.column.label)}</h3>\n" + _table(f"details-{d.column.key}", head, body, cls="details"))
    if not parts:
        return ""
    return (
        "<h2>Details</h2>\n"
        '<p class="note">Subtasks and secondary metrics (such as accuracy on single- and multi-answer questions) '
        "of the benchmarks above; they are not part of the Average.</p>\n" + "\n".join(parts)
    )


def _table(table_id: str, head: list[str], body: list[str], cls: str = "") -> str:
    model_th = '<th data-key="model" data-type="text" scope="col">Model</th>'
    cls_attr = f' class="{_e(cls)}"' if cls else ""
    return (
        f'<div class="scroll"><table id="{_e(table_id)}"{cls_attr}>\n'
        f"<thead><tr>{model_th}{''.join(head)}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody></table></div>"
    )


def _th(c: Column, label: str) -> str:
    return f'<th data-key="{_e(c.key)}" data-type="number" scope="col">{_e(label)}</th>'


def _tr(r: Row, value_tds: list[str]) -> str:
    badge = ' <span class="badge">paper</span>' if r.status == "reported" else ""
    title = f' title="{_e("; ".join(r.sources))}"' if r.sources else ""
    model_td = f'<td data-value="{_e(r.model)}"{title}>{_e(r.model)}{badge}</td>'
    return (
        f'<tr class="{_e(r.status)}" data-model="{_e(r.model)}" data-status="{_e(r.status)}">'
        f'{model_td}{"".join(value_tds)}</tr>'
    )


def _value_td(e: dict | None) -> str:
    value = "" if e is None or e.get("mean") is None else repr(float(e["mean"]))
    cls = ' class="missing"' if not value else ""
    tip = f' title="{_e(_seeds_tip(e))}"' if e and e.get("seeds") else ""
    return f'<td data-value="{value}"{cls}{tip}>{_e(cell_text(e))}</td>'


def _avg_tip(row: Row, cols: list[Column]) -> str:
    return "average over: " + ", ".join(c.label for c in cols if row.cells.get(c.key, {}).get("mean") is not None)


def _seeds_tip(e: dict) -> str:
    return "per seed: " + ", ".join(f"seed {s['seed']}: {pct(s['value'])}" for s in e["seeds"]) + (f" (n={e['n']})" if e.get("n") else "")


def _reported_html(board: dict) -> str:
    reported = [e for e in board.get("entries", []) if e["status"] == "reported"]
    if not reported:
        return '<p class="note">This leaderboard contains no numbers reported by the paper.</p>'
    trs = "\n".join(
        f"<tr><td>{_e(e['model'])}</td><td>{_e(e['benchmark'])}</td><td>{_e(e['metric'])}</td>"
        f'<td class="num" data-value="{repr(float(e["mean"]))}">{_e(pct(e["mean"]))}</td><td>{_e(e.get("source") or "")}</td></tr>'
        for e in reported
    )
    return (
        '<p class="note">Copied from the publication for reference; not re-measured by this harness, '
        "so they may use other prompts, few-shot settings or test splits.</p>\n"
        '<div class="scroll"><table id="reported"><thead><tr><th>Model</th><th>Benchmark</th><th>Metric</th>'
        f'<th class="num">Value (%)</th><th>Source</th></tr></thead>\n<tbody>\n{trs}\n</tbody></table></div>'
    )


def _figure(plots: dict[str, str], name: str, alt: str, absent: str) -> str:
    if name not in plots:
        return f'<p class="note" id="{name}-absent">{_e(absent)}</p>'
    return f'<figure id="{name}"><img src="{_e(plots[name])}" alt="{_e(alt)}"></figure>'


def html_page(board: dict, plots: dict[str, str]) -> str:
    """The whole page; `plots` maps plot name -> img src (relative path or data: URI)."""
    pairs = ttt_pairs(board)
    if pairs:
        ttt_note = "Gain of TTT over the same model without TTT, per benchmark, in percentage points " \
                   "(error bars: std of seed-paired differences). Pairs: " + \
                   "; ".join(pair_label(board, off, on) for off, on in pairs) + "."
    else:
        ttt_note = "No TTT pair in this leaderboard (two measured models whose model_args differ only in ttt)."
    meta = f"generated {board.get('generated_at', '?')} · git {board.get('git_revision', '?')} · lm-eval {board.get('lm_eval_version', '?')}"
    details = "".join(f"<li>{_e(line)}</li>" for line in run_details(board))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>finemed-eval leaderboard</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<h1>finemed-eval leaderboard</h1>
<p class="meta">{_e(meta)}</p>
<h2>Results</h2>
<p class="note">Accuracy in %, mean ± sample std over seeds. Click a column header to sort.
Rows tagged <span class="badge">paper</span> are reported by the FineMedLM-o1 paper, not measured here.</p>
{_table_html(board)}
{_details_html(board)}
<h2>Accuracy by benchmark</h2>
{_figure(plots, ACCURACY_PLOT, "Grouped bar chart of accuracy per benchmark and model with seed error bars",
         "No measured results to plot.")}
<h2>Test-time training gain</h2>
<p class="note">{_e(ttt_note)}</p>
{_figure(plots, TTT_PLOT, "Bar chart of the accuracy gain from test-time training per benchmark",
         "TTT-gain chart skipped: no TTT pair.")}
<h2>Reported by the paper</h2>
{_reported_html(board)}
<footer>
<h2>Run details</h2>
<ul>{details}</ul>
</footer>
</main>
<script>{_JS}</script>
</body>
</html>
"""


# --------------------------------------------------------------------------- plots


def _new_figure(n_groups: int, n_series: int):
    # Figure + Agg canvas directly: no pyplot global state, no backend switch for the caller's process
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # capped at ~page width (1100 px at 110 dpi) so the browser never shrinks the fonts to nothing
    fig = Figure(figsize=(min(10.5, max(6.5, 0.9 * n_groups * max(1, n_series) ** 0.5 + 2.5)), 4.4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return fig, ax


def _grouped_bars(ax, groups: list[str], series: dict[str, dict[str, tuple[float, float | None]]], value_fmt: str) -> None:
    """Bars for series[name][group] = (value, err); absent groups leave a gap."""
    width = 0.8 / max(1, len(series))
    for i, (name, vals) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g, grp in enumerate(groups) if grp in vals]
        ys = [vals[grp][0] for grp in groups if grp in vals]
        # NaN, not 0: a single-seed value has no spread to show, and a flat cap would suggest std=0
        errs = [math.nan if vals[grp][1] is None else vals[grp][1] for grp in groups if grp in vals]
        ax.bar(xs, ys, width * 0.92, yerr=errs, capsize=3, label=name, color=f"C{i % 10}",
               error_kw={"elinewidth": 1, "ecolor": "#333"})
        if len(groups) * len(series) > 24:  # value labels would collide; the table has the numbers
            continue
        for x, y, err in zip(xs, ys, errs):  # label past the error bar so the two never overlap
            tip = y + (0.0 if math.isnan(err) else err) * (1 if y >= 0 else -1)
            ax.annotate(value_fmt.format(y), (x, tip), xytext=(0, 2 if y >= 0 else -2), textcoords="offset points",
                        ha="center", va="bottom" if y >= 0 else "top", fontsize=7, color="#444")
    ax.set_xticks(range(len(groups)), groups, rotation=20 if len(groups) > 4 else 0, ha="right" if len(groups) > 4 else "center")
    ax.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14 if len(groups) <= 4 else -0.25),
              ncol=min(4, len(series)))


def plot_accuracy(board: dict, path: Path) -> bool:
    """Grouped bars benchmark x model of measured means (%), error bars = std over seeds; main-table columns only."""
    cols = columns(board)
    series: dict[str, dict] = {}
    for r in rows(board, cols):
        if r.status != "measured":
            continue
        for c in cols:
            e = r.cells.get(c.key)
            if e is not None and e.get("mean") is not None:
                series.setdefault(r.model, {})[c.label] = (100 * e["mean"], None if e.get("std") is None else 100 * e["std"])
    if not series:
        return False
    groups = [c.label for c in cols if any(c.label in vals for vals in series.values())]
    fig, ax = _new_figure(len(groups), len(series))
    _grouped_bars(ax, groups, series, "{:.1f}")
    top = max(v + (s or 0) for vals in series.values() for v, s in vals.values())
    ax.set_ylim(0, min(100, max(10.0, top * 1.15)))
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Measured accuracy by benchmark (mean ± std over seeds)", fontsize=11)
    _save(fig, path)
    return True


def plot_ttt_gain(board: dict, path: Path) -> bool:
    """Grouped bars benchmark x TTT pair of the gain in percentage points; False if there is no pair."""
    pairs = ttt_pairs(board)
    series = {pair_label(board, off, on): ttt_gains(board, off, on) for off, on in pairs}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return False
    groups = [c.label for c in columns(board) if any(c.label in v for v in series.values())]
    fig, ax = _new_figure(len(groups), len(series))
    _grouped_bars(ax, groups, series, "{:+.1f}")
    ax.axhline(0, color="#333", linewidth=0.8)
    ax.set_ylabel("gain (percentage points)")
    ax.set_title("Test-time training gain over ttt=off", fontsize=11)
    _save(fig, path)
    return True


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight", metadata={"Software": None})  # no version stamp: stable bytes


# --------------------------------------------------------------------------- entry point


def render(leaderboard_json: Path, out_dir: Path | None = None, *, inline_plots: bool = True) -> dict[str, Path]:
    """Write leaderboard.html, leaderboard.md and plots/*.png; return {name: path} for what was written.

    Plots are written as files and, by default, also inlined as data: URIs so the HTML stays a
    single self-contained file that can be moved or attached on its own.
    """
    leaderboard_json = Path(leaderboard_json)
    board = json.loads(leaderboard_json.read_text(encoding="utf-8"))
    out_dir = Path(out_dir) if out_dir is not None else leaderboard_json.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    srcs: dict[str, str] = {}
    for name, plot in ((ACCURACY_PLOT, plot_accuracy), (TTT_PLOT, plot_ttt_gain)):
        path = out_dir / "plots" / f"{name}.png"
        if plot(board, path):
            paths[name] = path
            srcs[name] = ("data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
                          if inline_plots else f"plots/{name}.png")
        elif path.exists():
            path.unlink()  # a stale chart from an earlier board would contradict this page
    paths["markdown"] = out_dir / "leaderboard.md"
    paths["markdown"].write_text(markdown_table(board), encoding="utf-8")
    paths["html"] = out_dir / "leaderboard.html"
    paths["html"].write_text(html_page(board, srcs), encoding="utf-8")
    return paths


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("leaderboard_json", type=Path)
    ap.add_argument("--out-dir", type=Path, default=None)
    ap.add_argument("--link-plots", action="store_true", help="link plots/*.png instead of inlining them")
    args = ap.parse_args(argv)
    for name, path in render(args.leaderboard_json, args.out_dir, inline_plots=not args.link_plots).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
