"""Algorithm 1 (CompareInstructionScore) of the paper, exactly; pure.

1. mentions-details XOR: keep the one that does NOT mention specific details;
2. both mention: drop both (None);
3. higher quality + complexity + relevance; 4. then quality + complexity; 5. then quality;
6. then a random choice, seeded by (seed, document id) so a rerun picks the same one.

The released notebook adds a rule the paper does not have: when one question has no score (its
scoring failed), keep the other. `missing="keep_other"` switches it on; the paper default
(`missing="reject"`) drops the pair.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    key: str  # "question1" / "question2"
    quality: int
    complexity: int  # the scoring prompt's "difficulty"
    relevance: int
    mentions_details: bool


@dataclass(frozen=True)
class Decision:
    chosen: Item | None
    rule: str  # which line of Algorithm 1 decided (or why nothing was chosen)


def _rng(seed: int, doc_id: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x00{doc_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def compare(item1: Item, item2: Item, *, seed: int, doc_id: str) -> Decision:
    if item1.mentions_details != item2.mentions_details:
        return Decision(item2 if item1.mentions_details else item1, "mentions_details_xor")
    if item1.mentions_details and item2.mentions_details:
        return Decision(None, "both_mention_details")
    for rule, score in (
        ("quality+complexity+relevance", lambda i: i.quality + i.complexity + i.relevance),
        ("quality+complexity", lambda i: i.quality + i.complexity),
        ("quality", lambda i: i.quality),
    ):
        score1, score2 = score(item1), score(item2)
        if score1 != score2:
            return Decision(item1 if score1 > score2 else item2, rule)
    return Decision(_rng(seed, doc_id).choice([item1, item2]), "random_choice")


def select(item1: Item | None, item2: Item | None, *, seed: int, doc_id: str, missing: str = "reject") -> Decision:
    """Algorithm 1 over a pair where scoring may have failed for one or both questions."""
    if item1 is not None and item2 is not None:
        return compare(item1, item2, seed=seed, doc_id=doc_id)
    if item1 is None and item2 is None:
        return Decision(None, "no_scores")
    if missing == "keep_other":
        return Decision(item1 or item2, "other_score_missing")
    return Decision(None, "one_score_missing")
