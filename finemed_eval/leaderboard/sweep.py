"""Sweeps: a model entry's `sweep:` grid, expanded into named entries before anything is computed.

    - name: SmolLM2-135M
      model: smollm2-135m-instruct
      args: {corpus: demo, retriever: minilm}
      sweep: {ttt: [full, lora], lr: [1.0e-5, 1.0e-4], steps: [1, 4]}

becomes `SmolLM2-135M ttt=off` (the entry's baseline: its `baseline:` if it names one, else generated
from its arguments with TTT off) and one entry per grid point, `SmolLM2-135M ttt=full lr=1e-05 steps=1`,
each paired with that baseline. The expanded entries are ordinary model entries: their cells are
keyed by content (the display name is not part of a key), so a grown grid computes only its new
points, and `--shard K/N` deals grid points across machines like any other entries.

`sweep_tables` is the board side: per baseline and task, every grid point's paired statistics with
the McNemar p-values Holm-adjusted across the grid (many points are tested at once).
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Mapping
from typing import Any

from finemed_eval.leaderboard.stats import holm

DEFAULT_MAX_POINTS = 64
OFF = "off"


def point_name(name: str, point: Mapping[str, Any]) -> str:
    """The display name of a grid point: the entry's name plus key=value for every swept argument."""
    return " ".join([name, *(f"{k}={_text(v)}" for k, v in point.items())])


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def expand_sweeps(
    models: list[dict[str, Any]], *, max_points: int, known_args: frozenset[str], ttt_only: frozenset[str], check_point
) -> tuple[list[dict[str, Any]], list[str]]:
    """Replace every entry with `sweep:` by its baseline and grid points; return (entries, errors).

    known_args: the argument names a sweep may vary (did-you-mean for the others); ttt_only: those
    the generated baseline leaves out (they only matter with TTT on).
    check_point(args) -> str | None: the model's own validation of one point's arguments (its message).
    Nothing is expanded when any sweep is bad, and a grid larger than max_points is refused whole.
    """
    errors: list[str] = []
    points_total = 0
    plans: list[tuple[int, dict[str, Any], list[dict[str, Any]]]] = []
    for i, m in enumerate(models):
        grid = m.get("sweep")
        if grid is None:
            continue
        where = f"models[{i}].sweep"
        bad_keys = [k for k in grid if k not in known_args]
        for key in bad_keys:
            close = difflib.get_close_matches(key, sorted(known_args), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            errors.append(f"field '{where}.{key}' is not an argument the model takes{hint}")
        clash = sorted(set(grid) & set(m.get("args") or {}))
        if clash:
            errors.append(f"field '{where}': {', '.join(clash)} is set in both 'args' and 'sweep'; keep it in one place")
        if bad_keys or clash:
            continue
        keys = list(grid)
        points = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]
        points_total += len(points)
        point_errors = []
        for point in points:
            args = {**(m.get("args") or {}), **point}
            if str(args.get("ttt", OFF)).lower() == OFF:
                point_errors.append(f"field '{where}': the point {_show(point)} has ttt off; the baseline is added for you")
            elif (problem := check_point(args)) is not None:
                point_errors.append(f"field '{where}': the point {_show(point)} is invalid: {problem}")
        errors += point_errors[:3] + ([f"field '{where}': {len(point_errors) - 3} more invalid points"] if len(point_errors) > 3 else [])
        plans.append((i, m, points))
    if points_total > max_points:
        sizes = ", ".join(f"models[{i}]: {len(p)}" for i, _, p in plans)
        errors.append(
            f"the sweeps expand to {points_total} grid points ({sizes}), more than max_points={max_points}; "
            "shrink the grid or raise 'max_points'"
        )
    if errors:
        return models, errors
    by_index = {i: (m, points) for i, m, points in plans}
    out: list[dict[str, Any]] = []
    names = {m.get("name", m["model"]) for m in models}
    for i, m in enumerate(models):
        if i not in by_index:
            out.append(m)
            continue
        entry, points = by_index[i]
        name = entry.get("name", entry["model"])
        base = {k: v for k, v in entry.items() if k != "sweep"}
        baseline = entry.get("baseline")
        if baseline is None:
            baseline = point_name(name, {"ttt": OFF})
            if baseline not in names:  # an entry of that name already in the config is the baseline
                off_args = {k: v for k, v in (entry.get("args") or {}).items() if k not in ttt_only}
                out.append({**{k: v for k, v in base.items() if k != "baseline"}, "name": baseline, "args": {**off_args, "ttt": OFF}})
                names.add(baseline)
        for point in points:
            out.append({**base, "name": point_name(name, point), "args": {**(entry.get("args") or {}), **point},
                        "baseline": baseline, "sweep": {"name": name, "point": point}})
    return out, []


def _show(point: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {_text(v)}" for k, v in point.items()) + "}"


# --------------------------------------------------------------------------- the board side


def sweep_tables(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per baseline and task: every grid point compared with that baseline (all its sweeps), sorted by
    accuracy change, with the McNemar p-values Holm-adjusted across those points (one family)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for p in pairs:
        if p.get("sweep"):
            groups.setdefault(p["baseline"], []).append(p)
    out = []
    for baseline, members in groups.items():
        tasks: dict[str, dict[str, Any]] = {}
        for p in members:
            for c in p["comparisons"]:
                t = tasks.setdefault(c["task"], {"task": c["task"], "benchmark": c["benchmark"], "points": []})
                s = c["pooled"]
                t["points"].append({
                    "sweep": p["sweep"]["name"],
                    "treatment": p["treatment"],
                    "point": p["sweep"]["point"],
                    **{k: s[k] for k in SWEEP_STATS},
                })
        for t in tasks.values():
            for row, adjusted in zip(t["points"], holm([r["mcnemar_p"] for r in t["points"]]), strict=True):
                row["mcnemar_p_holm"] = adjusted
            t["points"].sort(key=lambda r: (-r["acc_diff"], r["mcnemar_p"], r["treatment"]))
        out.append({"baseline": baseline, "tasks": list(tasks.values())})
    return out


SWEEP_STATS = ("n", "acc_diff", "ci_low", "ci_high", "wrong_to_right", "right_to_wrong", "mcnemar_p", "gold_ll_change")
