"""Which retrieved rows a document trains on: nearest neighbours, or SIFT.

* ``nn``: the ``top_k`` closest corpus rows (the paper's retrieval).
* ``sift``: SIFT (Hübotter et al., "Efficiently Learning at Test-Time: Active Fine-Tuning of LLMs",
  ICLR 2025) through the ``activeft`` package. A pool of the ``pool`` rows with the largest absolute
  cosine similarity is taken from the faiss index (activeft's ``also_query_opposite``: the kernel
  counts anti-correlated rows as informative too), then activeft's VTL picks ``top_k`` of them one at
  a time, each the row that most lowers the query's posterior variance given the rows already picked.
  A near-duplicate of a picked row lowers it by almost nothing, so it is passed over; a row can be
  picked twice when training on it again is still the most informative choice (as in the paper).

The kernel is the inner product of the L2-normalised retriever embeddings (cosine), the noise
variance is ``lam`` (λ; activeft's ``Retriever`` default 0.01): a smaller λ trusts each pick more, so
rows like those already picked are worth less (more diversity); a larger λ favours relevance.
Selection is deterministic: the pool is ordered by score then row, VTL's argmax keeps the first of
equal values, and activeft's target shuffling runs on a forked RNG, so the caller's random stream
(and with it every later seed) is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SELECTIONS = ("nn", "sift")
DEFAULT_SIFT_LAMBDA = 0.01  # activeft.sift.Retriever's default λ
DEFAULT_SIFT_POOL = 200  # faiss candidates SIFT chooses from; SIFT's cost grows with its square


@dataclass(frozen=True)
class Selection:
    """How neighbours are chosen; ``lam`` and ``pool`` are SIFT's (ignored by ``nn``)."""

    kind: str = "nn"
    lam: float = DEFAULT_SIFT_LAMBDA
    pool: int = DEFAULT_SIFT_POOL

    def __post_init__(self) -> None:
        if self.kind not in SELECTIONS:
            raise ValueError(f"unknown neighbour selection {self.kind!r}; choose one of {', '.join(SELECTIONS)}")
        if isinstance(self.lam, bool) or not isinstance(self.lam, (int, float)) or not 0 < self.lam < float("inf"):
            raise ValueError(f"SIFT lambda must be a number > 0, got {self.lam!r}")
        if isinstance(self.pool, bool) or not isinstance(self.pool, int) or self.pool < 1:
            raise ValueError(f"SIFT pool must be an integer >= 1, got {self.pool!r}")

    def check_installed(self) -> None:
        """Fail before any model is loaded, not at the first document, when activeft is missing."""
        if self.kind != "sift":
            return
        try:
            import activeft  # noqa: F401
        except ImportError as exc:
            raise ValueError(
                f"neighbour selection 'sift' needs the activeft package ({exc}); install it with: pip install activeft"
            ) from exc


@dataclass(frozen=True)
class Pick:
    position: int  # index into the candidate pool
    variance: float  # the query's posterior variance once this and every earlier pick are trained on


def sift(candidates: np.ndarray, query: np.ndarray, k: int, lam: float = DEFAULT_SIFT_LAMBDA) -> list[Pick]:
    """SIFT's ``k`` picks from ``candidates`` (n x d, normalised) for one ``query`` (d,), in pick order."""
    import torch
    from activeft.acquisition_functions.vtl import VTL

    if candidates.ndim != 2 or query.shape != (candidates.shape[1],) or len(candidates) == 0:
        raise ValueError(f"SIFT needs n x d candidates and a d-vector query, got {candidates.shape} and {query.shape}")
    # float32 as activeft computes (its kernel's identity matrix is float32).
    data = torch.from_numpy(np.ascontiguousarray(candidates, dtype=np.float32))
    target = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32)).reshape(1, -1)
    vtl = VTL(target=target, noise_std=float(np.sqrt(lam)), num_workers=0, subsample=False)
    # select_from_minibatch, not ActiveDataLoader.next: the latter shuffles the pool (ties would
    # depend on the RNG). fork_rng: VTL's target subsampling draws a randperm from the global RNG.
    with torch.random.fork_rng(devices=[]):
        positions, values = vtl.select_from_minibatch(k, None, data, torch.device("cpu"))
    # VTL's value is minus the target's total posterior variance after the pick.
    return [Pick(int(p), float(-v)) for p, v in zip(positions.tolist(), values.tolist())]
