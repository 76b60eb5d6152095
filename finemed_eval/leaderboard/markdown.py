"""The leaderboard as GitHub markdown: main table, footnotes, paired comparisons, per-benchmark details."""

from __future__ import annotations

import html
import re

from finemed_eval.leaderboard.view import MISSING, Row, View, average_text, cell_text, point_text, stats_text

# Markdown syntax a display name must not trigger: '|' splits a table cell and a backslash before it
# would unescape it; '$' is math on GitHub; the rest are code, emphasis, links and strikethrough
# ('_' inside a word, as in acc_norm, never delimits emphasis and stays as it is).
_MARKDOWN_SYNTAX = re.compile(r"([\\`*\[\]|~$]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z]))")
_LINE_BREAKS = re.compile(r"\s*[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+\s*")


def _md(text: str) -> str:
    """Text shown verbatim in one Markdown table cell or list item: a line break would end the row,
    so it becomes a space; '<' would let GitHub read HTML, so it is an entity."""
    one_line = _LINE_BREAKS.sub(" ", text)
    return _MARKDOWN_SYNTAX.sub(r"\\\1", html.escape(one_line, quote=False))


def markdown_table(view: View) -> str:
    cols = view.layout.main
    lines = [
        # Average right after Model: with many benchmarks it is the column people look for first
        _header(["Average", *(c.label for c in cols)]),
        *(_row(r, [average_text(r, view.coverage[r.status])] + [cell_text(r.cells.get(c.key)) for c in cols]) for r in view.rows),
        "",
        *(f"- {_md(line)}" for line in view.footnotes),
    ]
    if view.comparisons:
        lines += ["", "### Paired comparisons", ""]
        lines += [f"- **{_md(c.label)}** on {_md(c.benchmark)} (pooled over {len(c.seeds)} seeds): {_md(stats_text(c.pooled))}" for c in view.comparisons]
        lines += ["", "| Pair | Benchmark | Seed | Δ accuracy (pp) | 95% CI | wrong→right | right→wrong | McNemar p | Δ gold log-lik. |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for c in view.comparisons:
            for label, s in [*((str(x["seed"]), x) for x in c.seeds), ("pooled", c.pooled)]:
                ll = MISSING if s["gold_ll_change"] is None else f"{s['gold_ll_change']:+.4f}"
                lines.append(
                    f"| {_md(c.label)} | {_md(c.benchmark)} | {label} | {100 * s['acc_diff']:+.2f} | "
                    f"{100 * s['ci_low']:+.2f} to {100 * s['ci_high']:+.2f} | {s['wrong_to_right']} | {s['right_to_wrong']} | "
                    f"{s['mcnemar_p']:.3g} | {ll} |"
                )
    for t in view.sweeps:
        lines += ["", f"### Sweep: {_md(t.benchmark)} vs {_md(t.baseline)} (McNemar p Holm-adjusted across the {len(t.points)} points)", "",
                  "| Grid point | Δ accuracy (pp) | 95% CI | wrong→right | right→wrong | McNemar p | Holm p | Δ gold log-lik. |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for p in t.points:
            ll = MISSING if p["gold_ll_change"] is None else f"{p['gold_ll_change']:+.4f}"
            lines.append(
                f"| {_md(p['sweep'] + ': ' + point_text(p['point']))} | {100 * p['acc_diff']:+.2f} | "
                f"{100 * p['ci_low']:+.2f} to {100 * p['ci_high']:+.2f} | {p['wrong_to_right']} | {p['right_to_wrong']} | "
                f"{p['mcnemar_p']:.3g} | {p['mcnemar_p_holm']:.3g} | {ll} |"
            )
    for t in view.details:
        d = t.details
        lines += ["", f"### Details: {_md(d.column.label)}", "", _header([d.label(c) for c in d.columns])]
        lines += [_row(r, [cell_text(r.cells.get(c.key)) for c in d.columns]) for r in t.rows]
    return "\n".join(lines) + "\n"


def _header(labels: list[str]) -> str:
    return "| Model | " + " | ".join(_md(label) for label in labels) + " |\n|---|" + "---:|" * len(labels)


def _row(r: Row, texts: list[str]) -> str:
    if r.status == "reported":  # italic + tag, so paper numbers never pass for measured ones
        texts = [f"*{t}*" if t != MISSING else t for t in texts]
        name = f"*{_md(r.model)}* (paper)"
    else:
        name = _md(r.model)
    return "| " + " | ".join([name, *texts]) + " |"
