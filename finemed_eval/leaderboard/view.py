"""The view model of a leaderboard.json: built ONCE per render, then read by the markdown, HTML and plots.

The board has been validated against schema.json, so this module only reads it. Pure: board in, View out.

The main table has one column per benchmark (see `layout`): a group with its own score stands for
its subtasks, which are shown, with secondary metrics such as acc_single / acc_multi, in a Details
table per benchmark and never enter the Average. Pairs (treatment vs baseline) come from the board's
`pairs`, written by the runner; nothing here decides what pairs with what.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MISSING = "—"


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


def run_details(board: dict, shape: Layout | None = None) -> list[str]:
    """Footnote lines: what one number means and where it came from."""
    cfg = board.get("config", {})
    measured = [e for e in board.get("entries", []) if e["status"] == "measured"]
    shape = shape or layout(board)
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
    if board.get("pairs"):
        lines.append(
            "paired comparisons: the same documents under both models; CI = paired bootstrap (10,000 resamples, percentile); "
            "McNemar = exact two-sided binomial test of the flipped documents; pooled = documents x seeds"
        )
    if shape.details:
        lines.append("subtasks and secondary metrics (e.g. acc_single / acc_multi) are under Details and not in the Average")
    return lines


# --------------------------------------------------------------------------- pairs


@dataclass(frozen=True)
class Comparison:
    """One pair on one configured task: the pooled statistics and each seed's."""

    baseline: str
    treatment: str
    benchmark: str
    task: str
    pooled: dict[str, Any]
    seeds: list[dict[str, Any]]
    gold_ll_changes: list[float] | None

    @property
    def label(self) -> str:
        return f"{self.treatment} vs {self.baseline}"

    def table_rows(self) -> list[tuple[str, dict[str, Any]]]:
        return [(str(s["seed"]), s) for s in self.seeds] + [("pooled", self.pooled)]

    def line(self) -> str:
        """The paired line a reader looks for: effect, CI, flips, test, continuous effect."""
        return f"{self.label} on {self.benchmark} (pooled over {len(self.seeds)} seeds): " + stats_text(self.pooled)


def stats_text(s: dict[str, Any]) -> str:
    ll = "" if s["gold_ll_change"] is None else f", mean change of gold log-likelihood {s['gold_ll_change']:+.4f}"
    return (
        f"accuracy {pp(s['acc_diff'])} pp (95% CI {pp(s['ci_low'])} to {pp(s['ci_high'])}), "
        f"flips {s['wrong_to_right']} wrong→right / {s['right_to_wrong']} right→wrong, "
        f"exact McNemar p = {s['mcnemar_p']:.3g}, n = {s['n']}{ll}"
    )


def pp(x: float) -> str:
    return f"{100 * x:+.2f}"


def comparisons(board: dict) -> list[Comparison]:
    return [
        Comparison(p["baseline"], p["treatment"], c["benchmark"], c["task"], c["pooled"], c["seeds"], c["gold_ll_changes"])
        for p in board.get("pairs", [])
        for c in p["comparisons"]
    ]


# --------------------------------------------------------------------------- sweeps

SWEEP_X = "lr"  # the sweep figure's x axis when the grid varies it; other swept arguments name the series


@dataclass(frozen=True)
class SweepTable:
    """Every grid point compared with one baseline on one benchmark, sorted by Δ accuracy (board `sweeps`)."""

    baseline: str
    benchmark: str
    task: str
    points: list[dict[str, Any]]

    def series(self) -> dict[str, list[dict[str, Any]]]:
        """Series label -> its points by x: one series per sweep and per value of the non-x swept arguments."""
        several = len({p["sweep"] for p in self.points}) > 1
        out: dict[str, list[dict[str, Any]]] = {}
        for p in self.points:
            rest = point_text({k: v for k, v in p["point"].items() if k != SWEEP_X})
            label = " · ".join(x for x in ((p["sweep"] if several else ""), rest) if x) or p["sweep"]
            out.setdefault(label, []).append(p)
        for members in out.values():
            members.sort(key=lambda p: (float(p["point"].get(SWEEP_X, 0)), p["treatment"]))
        return out


def point_text(point: dict[str, Any]) -> str:
    """A grid point as its entry name writes it (sweep.point_name, without the entry's name)."""
    from finemed_eval.leaderboard.sweep import point_name

    return point_name("", point).strip()


def sweep_tables(board: dict) -> list[SweepTable]:
    return [
        SweepTable(s["baseline"], t["benchmark"], t["task"], t["points"])
        for s in board.get("sweeps", [])
        for t in s["tasks"]
    ]


# --------------------------------------------------------------------------- the view


@dataclass(frozen=True)
class DetailTable:
    details: Details
    rows: list[Row]

    @property
    def labels(self) -> list[str]:
        return [self.details.label(c) for c in self.details.columns]


@dataclass(frozen=True)
class View:
    board: dict
    layout: Layout
    rows: list[Row]  # main table, measured first
    coverage: dict[str, int]
    details: list[DetailTable]
    comparisons: list[Comparison]
    sweeps: list[SweepTable]
    reported: list[dict]
    footnotes: list[str]
    meta: str = field(default="")


def build_view(board: dict) -> View:
    shape = layout(board)
    rs = rows(board, shape.main)
    return View(
        board=board,
        layout=shape,
        rows=rs,
        coverage=coverage(rs),
        details=[DetailTable(d, detail_rows(board, d)) for d in shape.details],
        comparisons=comparisons(board),
        sweeps=sweep_tables(board),
        reported=[e for e in board.get("entries", []) if e["status"] == "reported"],
        footnotes=run_details(board, shape),
        meta=f"generated {board.get('generated_at', '?')} · git {board.get('git_revision', '?')} · lm-eval {board.get('lm_eval_version', '?')}",
    )
