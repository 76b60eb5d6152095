"""Paired statistics of two models on the same documents. Pure: arrays in, numbers out.

  flips            wrong -> right and right -> wrong documents
  acc_diff         treatment accuracy - baseline accuracy, with a paired bootstrap 95 % CI
                   (scipy.stats.bootstrap, paired, percentile method, fixed RNG seed)
  mcnemar_p        exact McNemar test: two-sided binomial test of the discordant pairs at 1/2
  gold_ll_change   mean over documents of treatment - baseline log-likelihood of the gold answer
                   (multiple-choice tasks; None for generative ones)
  holm             Holm's step-down adjustment of several p-values tested at once (a sweep's grid)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


@dataclass(frozen=True)
class PairedStats:
    n: int
    baseline_acc: float
    treatment_acc: float
    acc_diff: float
    ci_low: float
    ci_high: float
    wrong_to_right: int
    right_to_wrong: int
    mcnemar_p: float
    gold_ll_change: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def paired_stats(
    baseline_correct: Sequence[bool],
    treatment_correct: Sequence[bool],
    baseline_ll: Sequence[float] | None = None,
    treatment_ll: Sequence[float] | None = None,
) -> PairedStats:
    """Statistics over documents i, where baseline_correct[i] and treatment_correct[i] are the same document."""
    b = np.asarray(baseline_correct, dtype=bool)
    t = np.asarray(treatment_correct, dtype=bool)
    if b.shape != t.shape or b.ndim != 1 or b.size == 0:
        raise ValueError(f"paired results need the same non-empty documents, got {b.shape} and {t.shape}")
    up, down = int(np.sum(~b & t)), int(np.sum(b & ~t))
    low, high = bootstrap_ci(b.astype(float), t.astype(float))
    return PairedStats(
        n=int(b.size),
        baseline_acc=float(b.mean()),
        treatment_acc=float(t.mean()),
        acc_diff=float(t.mean() - b.mean()),
        ci_low=low,
        ci_high=high,
        wrong_to_right=up,
        right_to_wrong=down,
        mcnemar_p=mcnemar_exact(up, down),
        gold_ll_change=gold_ll_change(baseline_ll, treatment_ll),
    )


def mcnemar_exact(wrong_to_right: int, right_to_wrong: int) -> float:
    from scipy.stats import binomtest

    n = wrong_to_right + right_to_wrong
    return 1.0 if n == 0 else float(binomtest(wrong_to_right, n, 0.5, alternative="two-sided").pvalue)


def bootstrap_ci(baseline: np.ndarray, treatment: np.ndarray) -> tuple[float, float]:
    """Percentile CI of mean(treatment) - mean(baseline), resampling documents (pairs stay together)."""
    from scipy.stats import bootstrap

    diff = treatment - baseline
    if np.all(diff == diff[0]):  # every resample gives the same difference (e.g. no document flips)
        d = float(treatment.mean() - baseline.mean())
        return d, d
    res = bootstrap(
        (baseline, treatment),
        lambda x, y, axis: np.mean(y, axis=axis) - np.mean(x, axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        random_state=np.random.default_rng(BOOTSTRAP_SEED),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def gold_ll_change(baseline_ll: Sequence[float] | None, treatment_ll: Sequence[float] | None) -> float | None:
    if baseline_ll is None or treatment_ll is None:
        return None
    return float(np.mean(np.asarray(treatment_ll, dtype=float) - np.asarray(baseline_ll, dtype=float)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order (family-wise error control, any dependence).

    The i-th smallest p is multiplied by (m - i), running maxima keep the order, capped at 1. Written
    here rather than adding statsmodels (`multipletests(method="holm")` gives the same numbers) for
    these few lines.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        adjusted[i] = running
    return adjusted
