"""The board's `pairs` section: paired statistics per pair and configured task, per seed and pooled over seeds."""

from __future__ import annotations

from typing import Any

from finemed_eval.leaderboard.aggregate import MeasuredCell, benchmark_name
from finemed_eval.leaderboard.config import LeaderboardError
from finemed_eval.leaderboard.pairs import Pair
from finemed_eval.leaderboard.stats import paired_stats

LL_DIGITS = 6  # per-document log-likelihood changes on the board (for the plot)


def compare_pairs(
    pairs: list[Pair],
    differs: dict[Pair, dict[str, list[Any]]],
    cells: list[MeasuredCell],
    tasks: tuple[str, ...],
    benchmarks: dict[str, str],
) -> list[dict[str, Any]]:
    by_key = {(c.model, c.task, c.seed): c for c in cells}
    out = []
    for pair in pairs:
        comparisons = []
        for task in tasks:
            seeds = sorted(s for (m, t, s) in by_key if m == pair.baseline and t == task)
            sides = [_side(by_key, pair, task, seed) for seed in seeds]
            if not sides:
                continue
            pooled = _concat(sides)
            changes = None
            if pooled[2] is not None and pooled[3] is not None:
                changes = [round(t - b, LL_DIGITS) for b, t in zip(pooled[2], pooled[3], strict=True)]
            comparisons.append(
                {
                    "task": task,
                    "benchmark": benchmark_name(task, by_key[(pair.baseline, task, seeds[0])].slim, benchmarks),  # as in entries
                    "seeds": [{"seed": s, **paired_stats(*side).to_json()} for s, side in zip(seeds, sides, strict=True)],
                    "pooled": paired_stats(*pooled).to_json(),
                    "gold_ll_changes": changes,
                }
            )
        out.append(
            {
                "baseline": pair.baseline,
                "treatment": pair.treatment,
                "source": pair.source,
                "differs_in": differs[pair],
                "comparisons": comparisons,
            }
        )
    return out


Side = tuple[list[bool], list[bool], list[float] | None, list[float] | None]


def _side(by_key: dict, pair: Pair, task: str, seed: int) -> Side:
    """Both models' per-document results for one task and seed, leaves concatenated in name order."""
    base, treat = by_key.get((pair.baseline, task, seed)), by_key.get((pair.treatment, task, seed))
    where = f"pair {pair.treatment!r} vs {pair.baseline!r}, task {task} seed {seed}"
    if base is None or treat is None:
        raise LeaderboardError(f"{where}: a cell is missing")
    a, b = base.slim.get("documents") or {}, treat.slim.get("documents") or {}
    if not a or sorted(a) != sorted(b):
        raise LeaderboardError(f"{where}: the two cells hold different tasks ({sorted(a)} vs {sorted(b)})")
    side: Side = ([], [], [], [])
    for leaf in sorted(a):
        x, y = a[leaf], b[leaf]
        if x["doc_id"] != y["doc_id"] or x["docs_hash"] != y["docs_hash"]:
            raise LeaderboardError(
                f"{where}: the documents of {leaf} differ between the two models "
                f"({len(x['doc_id'])} vs {len(y['doc_id'])} documents, doc hashes {x['docs_hash'][:12]} vs {y['docs_hash'][:12]}); "
                "rerun both with the same data"
            )
        side[0].extend(x["correct"])
        side[1].extend(y["correct"])
        for i, docs in ((2, x), (3, y)):
            if side[i] is not None and docs["gold_ll"] is not None:
                side[i].extend(docs["gold_ll"])  # type: ignore[union-attr]
            else:
                side = tuple(None if j == i else v for j, v in enumerate(side))  # type: ignore[assignment]
    return side


def _concat(sides: list[Side]) -> Side:
    def join(i: int) -> list | None:
        return None if any(s[i] is None for s in sides) else [v for s in sides for v in s[i]]  # type: ignore[union-attr]

    return ([v for s in sides for v in s[0]], [v for s in sides for v in s[1]], join(2), join(3))
