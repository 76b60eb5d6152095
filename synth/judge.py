"""The A.2 judge read from token probabilities instead of a decoded answer; pure.

A weak judge decoded greedily copies the prompt's format line (SmolLM2-135M answers quality 1 /
difficulty 1 / "True" for nearly every question). Two published remedies, both computed here from the
judge's own next-token probabilities:

- G-Eval (Liu et al. 2023): the distribution over a field's allowed values at the value's position and
  the probability-weighted expected score, instead of the single sampled or greedy token;
- contextual calibration (Zhao et al. 2021, "Calibrate Before Use"): the same prompt with content-free
  queries ("N/A", "", "[MASK]") measures the judge's prior over each field's values; the query's
  distribution is divided by that prior (q_v ∝ p_v / prior_v) and renormalised, so a judge that says
  "True" for anything, including "N/A", no longer does so for a real question unless the question moves
  it there.

The fields are filled in the prompt's JSON order, each conditioned on the values already chosen (the
assistant turn is pre-filled with the JSON so far and the model continues it). How a value's
probability is read from top-k next-token log-probabilities (OpenAI `top_logprobs`):

- a value that is one token (here "1".."9", "True", "False"): that token's probability;
- a value that extends another ("10" after "1" with SmolLM2's one-digit tokens): P("1") * P("0" | "1"),
  and "1" itself is P("1") * P(a token that ends the number | "1");
- values outside the top-k get probability 0 in the query; in a content-free prior they get the
  probability of the k-th token (an upper bound: they were not in the top k), so dividing never
  blows up on an unseen value.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

# (JSON key in the paper's prompt, score field, allowed values as written in the JSON)
FIELDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("quality", "quality", tuple(str(v) for v in range(1, 11))),
    ("difficulty", "difficulty", tuple(str(v) for v in range(1, 11))),
    ("Relevance2Medicine", "relevance", tuple(str(v) for v in range(1, 7))),
    ("MentionSpecificDetails", "mentions_details", ("True", "False")),
)


def prefill(filled: list[tuple[str, str]], key: str) -> str:
    """The assistant's JSON so far, in the A.2 format, ending where `key`'s value starts: numbers follow
    `": `, the True/False string its opening quote."""
    lines = [f'"{k}": "{v}"' if v in ("True", "False") else f'"{k}": {v}' for k, v in filled]
    head = "{\n" + "".join(line + ",\n" for line in lines)
    return head + f'"{key}": ' + ('"' if key == "MentionSpecificDetails" else "")


def extensions(allowed: tuple[str, ...]) -> tuple[str, ...]:
    """Allowed values that are a proper prefix of another allowed value ("1" of "10"): after each of
    them the next token decides, so it needs its own request."""
    return tuple(v for v in allowed if any(w != v and w.startswith(v) for w in allowed))


def _ends_value(token: str) -> bool:
    text = token.strip()
    return not text or not text[0].isalnum()


def value_mass(first: dict[str, float], allowed: tuple[str, ...], after: dict[str, dict[str, float]]) -> dict[str, float]:
    """Unnormalised probability of each allowed value. `first`: token -> probability at the value's
    position; `after[p]`: token -> probability right after the value prefix `p` (for p in `extensions`)."""
    def token_mass(dist: dict[str, float], text: str) -> float:
        return sum(p for token, p in dist.items() if token.strip() == text)

    mass = {}
    for value in allowed:
        p = token_mass(first, value)
        if value in after:  # "1" counts only when the number ends there
            p *= sum(q for token, q in after[value].items() if _ends_value(token))
        for prefix, dist in after.items():
            if value != prefix and value.startswith(prefix):
                p += token_mass(first, prefix) * token_mass(dist, value[len(prefix):])
        mass[value] = p
    return mass


def normalise(mass: dict[str, float]) -> dict[str, float] | None:
    total = sum(mass.values())
    return {v: p / total for v, p in mass.items()} if total > 0 else None


def floor_unseen(mass: dict[str, float], first: dict[str, float]) -> dict[str, float]:
    """For a prior: a value the top-k did not contain gets the k-th token's probability (its upper bound)."""
    floor = min(first.values()) if first else 0.0
    return {v: (p if p > 0 else floor) for v, p in mass.items()}


def prior(distributions: list[dict[str, float]]) -> dict[str, float]:
    """The content-free prior: the mean of the content-free inputs' normalised distributions (Zhao et al.)."""
    values = distributions[0].keys()
    return {v: sum(d[v] for d in distributions) / len(distributions) for v in values}


def calibrate(dist: dict[str, float], prior_dist: dict[str, float]) -> dict[str, float]:
    """q_v ∝ p_v / prior_v, renormalised (diagonal W = diag(prior)^-1, b = 0, as in Zhao et al. 2021)."""
    ratio = {v: dist[v] / prior_dist[v] if prior_dist[v] > 0 else 0.0 for v in dist}
    return normalise(ratio) or dict(dist)


def expected(dist: dict[str, float]) -> float:
    """G-Eval's score: sum of value * probability."""
    return sum(int(v) * p for v, p in dist.items())


@dataclass(frozen=True)
class FieldScore:
    value: int | bool  # what Algorithm 1 gets: the rounded expected score, or the more probable of True/False
    expected: float | None  # numbers: the probability-weighted score
    dist: dict[str, float]  # the distribution the value was read from (calibrated when calibration is on)
    raw: dict[str, float]  # the judge's own distribution over the allowed values
    coverage: float  # probability mass the top-k gave to the allowed values at the value's position


def decide(key: str, raw: dict[str, float], dist: dict[str, float], coverage: float) -> FieldScore:
    if key == "MentionSpecificDetails":
        # Read from the stored P(True), so the record's p_true always explains the label; a tie to float
        # precision (P(True) == 0.5 after normalising near-equal bf16 masses) is not a mention.
        return FieldScore(dist["True"] > 0.5, None, dist, raw, coverage)
    score = expected(dist)
    return FieldScore(int(math.floor(score + 0.5)), score, dist, raw, coverage)


def value_text(score: FieldScore) -> str:
    """The value as the JSON of the next field's pre-fill writes it."""
    if isinstance(score.value, bool):
        return "True" if score.value else "False"
    return str(score.value)


CONTENT_FREE = ("N/A", "", "[MASK]")  # Zhao et al. 2021's content-free inputs

# top(query, prefill) -> {token: probability} at the position after `prefill`, for the scoring prompt of `query`
Top = Callable[[str, str], Awaitable[dict[str, float]]]


class NoMass(ValueError):
    """The judge's top-k next tokens hold none of a field's allowed values."""

    def __init__(self, key: str):
        super().__init__(f"no_allowed_value:{key}")
        self.key = key


async def judge(top: Top, query: str, *, calibration: bool, content_free: Sequence[str] = CONTENT_FREE) -> dict[str, FieldScore]:
    """The four A.2 fields of `query`, in the prompt's order, each conditioned on the values chosen for
    the previous ones. With `calibration`, every field is divided by the prior measured with the
    content-free queries under the same pre-fill. `top` may raise (and so may this: `NoMass`); the
    function does no I/O itself."""

    filled: list[tuple[str, str]] = []
    scores: dict[str, FieldScore] = {}
    for key, _field, allowed in FIELDS:
        head = prefill(filled, key)
        ext = extensions(allowed)
        queries = (query, *(content_free if calibration else ()))
        calls = [top(q, head) for q in queries] + [top(q, head + e) for q in queries for e in ext]
        results = await asyncio.gather(*calls)
        firsts, rest = results[: len(queries)], results[len(queries):]
        masses = []
        for i, first in enumerate(firsts):
            after = {e: rest[i * len(ext) + j] for j, e in enumerate(ext)}
            masses.append((first, value_mass(first, allowed, after)))
        first, mass = masses[0]
        coverage = sum(mass.values())
        raw = normalise(mass)
        if raw is None:
            raise NoMass(key)
        dist = raw
        if calibration:
            priors = [normalise(floor_unseen(m, f)) for f, m in masses[1:]]
            priors = [p for p in priors if p is not None]
            if priors:
                dist = calibrate(raw, prior(priors))
        scores[key] = decide(key, raw, dist, coverage)
        filled.append((key, value_text(scores[key])))
    return scores
