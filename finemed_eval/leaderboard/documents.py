"""Per-document records from lm-eval's logged samples: what the paired statistics need, nothing more.

One record set per leaf task and seed, stored column-wise in the cell:
  doc_id   lm-eval's document index
  correct  the primary metric (acc, else exact_match, ...) is 1
  gold_ll  log-likelihood of the gold continuation (multiple-choice tasks); null for generative tasks
  docs_hash  hash over the documents' lm-eval doc hashes, in doc_id order (pairs must agree on it)
"""

from __future__ import annotations

import math
from typing import Any, TypedDict

from finemed_eval.leaderboard.fingerprint import sha256_text

CORRECTNESS_METRICS = ("acc", "exact_match", "acc_norm")


class Documents(TypedDict):
    docs_hash: str
    doc_id: list[int]
    correct: list[bool]
    gold_ll: list[float] | None


def per_document(samples: list[dict[str, Any]]) -> Documents:
    """Records from one task's logged samples (lm-eval logs one sample per document and filter)."""
    first_filter = "none" if any(s.get("filter") == "none" for s in samples) else (samples[0].get("filter") if samples else None)
    rows = sorted((s for s in samples if s.get("filter") == first_filter), key=lambda s: s["doc_id"])
    lls = [_gold_ll(s) for s in rows]
    return {
        "docs_hash": sha256_text("".join(s["doc_hash"] for s in rows)),
        "doc_id": [int(s["doc_id"]) for s in rows],
        "correct": [_correct(s) for s in rows],
        "gold_ll": None if not rows or any(v is None for v in lls) else lls,  # type: ignore[misc]
    }


def _correct(sample: dict[str, Any]) -> bool:
    metric = next((m for m in CORRECTNESS_METRICS if m in sample), None)
    if metric is None:
        raise ValueError(f"logged sample of document {sample.get('doc_id')} has none of {CORRECTNESS_METRICS}")
    return bool(float(sample[metric]) == 1.0)


def _gold_ll(sample: dict[str, Any]) -> float | None:
    """The gold choice's log-likelihood for a multiple-choice sample; None otherwise."""
    resps = sample.get("filtered_resps") or []
    # in memory (ll, is_greedy); in lm-eval's samples files both as strings ("-1.5", "False")
    if not resps or not all(isinstance(r, (list, tuple)) and len(r) == 2 and r[1] in (True, False, "True", "False") for r in resps):
        return None  # generation: no per-choice log-likelihoods
    lls = [float(r[0]) for r in resps]
    target = sample.get("target")
    if isinstance(target, str) and target.isdigit():  # a samples file writes the gold index as text
        target = int(target)
    golds = target if isinstance(target, list) else [target]
    idx: list[int] = []
    for g in golds:
        if isinstance(g, int) and not isinstance(g, bool) and 0 <= g < len(lls):
            idx.append(g)
        elif isinstance(g, str):  # a target given as the choice text: match the continuation
            args = sample.get("arguments") or []
            if isinstance(args, dict):  # a samples file: {"gen_args_0": {"arg_0": context, "arg_1": continuation}}
                args = [[a.get("arg_0"), a.get("arg_1")] for a in args.values()]
            conts = [str(a[1]).strip() for a in args]
            idx += [i for i, c in enumerate(conts) if c == g.strip()]
    if not idx:
        return None
    best = max(lls[i] for i in idx)
    return best if math.isfinite(best) else None
