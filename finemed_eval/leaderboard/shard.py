"""`--shard K/N`: the K-th of N disjoint, deterministic slices of a run's work.

The unit is a (model, task) pass with all its seeds, so sharding keeps the one-pass-per-task
saving; units are dealt round-robin in the config's order (models, then tasks).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from finemed_eval.leaderboard.config import LeaderboardError

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def select(self, units: Sequence[T]) -> list[T]:
        return [u for i, u in enumerate(units) if i % self.count == self.index - 1]


def parse_shard(text: str) -> Shard:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None:
        raise LeaderboardError(f"--shard {text!r}: expected K/N, e.g. --shard 1/4 (the first of four shards)")
    k, n = int(match[1]), int(match[2])
    if n < 1 or not 1 <= k <= n:
        raise LeaderboardError(f"--shard {text!r}: K must be between 1 and N (N >= 1), e.g. 1/{max(n, 1)} ... {max(n, 1)}/{max(n, 1)}")
    return Shard(k, n)
