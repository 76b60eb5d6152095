"""Which model is compared with which: named in the config (`baseline:`) or inferred once, before any compute.

Inferred pairs: a model with TTT on and a model of the same weights with `ttt` off whose other
arguments are equal once the TTT-only arguments are set aside. The pairs are written into the
board, so the renderer never re-derives them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from finemed_eval.leaderboard.cells import Cell
from finemed_eval.leaderboard.config import LeaderboardError, ModelSpec, RunConfig

# finemed_ttt arguments that also matter with TTT off: the serving engine (older name: backend).
SERVING_KEYS = frozenset({"engine", "backend"})


def ttt_only_keys() -> frozenset[str]:
    """The arguments that only matter with TTT on, read once per run from finemed_ttt's one option type."""
    from finemed_eval.ttt.options import TTTOptions

    return frozenset(TTTOptions.argument_names()) - SERVING_KEYS


# What may differ between the two cells of a pair: who is evaluated, not on what.
MODEL_FIELDS = frozenset({"lm_eval_model", "model", "model_args", "corpus"})


@dataclass(frozen=True)
class Pair:
    baseline: str  # display names
    treatment: str
    source: str  # "config" (baseline:) or "inferred"


def ttt_mode(spec: ModelSpec) -> str:
    return str(spec.args.get("ttt", "off")).lower()


def find_pairs(config: RunConfig, canonical: dict[str, str], ttt_keys: frozenset[str]) -> list[Pair]:
    """Config-named pairs, then inferred TTT pairs for treatments the config names no baseline for.

    ttt_keys: the TTT-only arguments (ttt_only_keys()), set aside when comparing two models' args.
    """
    pairs = [Pair(m.baseline, m.name, "config") for m in config.models if m.baseline is not None]
    named = {p.treatment for p in pairs}

    def rest(m: ModelSpec) -> tuple[str, dict[str, Any]]:
        return canonical[m.name], {k: v for k, v in m.args.items() if k not in ttt_keys}

    for on in config.models:
        if on.name in named or ttt_mode(on) == "off":
            continue
        pairs += [
            Pair(off.name, on.name, "inferred")
            for off in config.models
            if off is not on and ttt_mode(off) == "off" and rest(off) == rest(on)
        ]
    return pairs


def differing_args(config: RunConfig, pair: Pair) -> dict[str, list[Any]]:
    """argument -> [baseline value, treatment value] for the model arguments that differ (None: unset)."""
    by_name = {m.name: m for m in config.models}
    a, b = by_name[pair.baseline].args, by_name[pair.treatment].args
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def check_same_documents(pairs: list[Pair], plan: list[Cell]) -> None:
    """Both sides of a pair must be evaluated on the same documents: same tasks, seeds, data and protocol."""
    def what(model: str) -> dict[tuple[str, int], dict[str, Any]]:
        return {
            (c.task, c.seed): {k: v for k, v in c.material.items() if k not in MODEL_FIELDS}
            for c in plan
            if c.model.name == model
        }

    problems = []
    for p in pairs:
        a, b = what(p.baseline), what(p.treatment)
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                fields = sorted(k for k in set(a.get(key, {})) | set(b.get(key, {})) if a.get(key, {}).get(k) != b.get(key, {}).get(k))
                problems.append(
                    f"pair {p.treatment!r} vs {p.baseline!r}: task {key[0]} seed {key[1]} is evaluated on different "
                    f"documents (differs in: {', '.join(fields) or 'presence'})"
                )
    if problems:
        raise LeaderboardError("; ".join(problems))
