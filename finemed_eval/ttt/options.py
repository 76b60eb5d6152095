"""Every TTT setting of `finemed_ttt`, in one validated type (defaults, checks and errors live here)."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # selection.py is imported when a Selection is built, not with the options
    from finemed_eval.ttt.selection import Selection

MODES = ("off", "full", "lora")
PRESETS = ("ours", "reference")  # reference = the released TTT/TTT.py semantics, for side-by-side runs
FORMATS = ("auto", "chat", "plain")
PRECISIONS = ("float32", "model")
ENGINES = ("hf", "vllm")
INDEXES = ("flat", "hnsw")
NEIGHBOUR_SELECTIONS = ("nn", "sift")  # nearest rows, or SIFT (activeft) over a faiss candidate pool
ONLINE_CORPUS = "finemed-sft-o1"  # the paper's long-form (o1) SFT data; presets in finemed_eval.ttt.corpus
OFFLINE_CORPUS = "demo"  # the project's own long-form reasoning examples (finemed_eval/demo)
ONLINE_RETRIEVER = "bge-large"
OFFLINE_RETRIEVER = "minilm"
FULL_CACHE_MIB = 2048  # `cache=true`


class TTTError(ValueError):
    """A bad `finemed_ttt` TTT argument; raised before any model is loaded."""


@dataclass(frozen=True)
class TTTOptions:
    ttt: str = "off"
    ttt_preset: str = "ours"
    ttt_format: str = "auto"  # how the neighbour is rendered for training: like the requests, or forced
    ttt_precision: str = "float32"  # ttt=full: weights held in float32 while TTT is on; "model" keeps the dtype
    ttt_log: str | None = None  # JSONL of per-document TTT records
    corpus: str | None = None  # None: finemed-sft-o1 online, demo for the embedded model
    corpus_question_field: str | None = None  # None: the corpus preset's field
    corpus_response_field: str | None = None
    retriever: str | None = None  # None: bge-large online, the embedded MiniLM for the embedded model
    retrieval_index: str = "flat"
    top_k: int = 1
    neighbour_selection: str = "nn"
    sift_lambda: float | None = None  # None: activeft's default λ (0.01); a neighbour_selection=sift setting
    sift_pool: int | None = None  # None: 200 faiss candidates; a neighbour_selection=sift setting
    lr: float = 1e-5
    steps: int = 1
    lora_r: int = 16
    lora_alpha: int = 32
    cache: bool | int = True  # reuse adapted weights across calls: true (2 GiB), false, or a budget in MiB
    engine: str = "hf"  # who generates: hf, or vllm with per-document LoRA adapters (GPU)

    @classmethod
    def argument_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    @classmethod
    def from_model_args(cls, args: dict, embedded: bool) -> TTTOptions:
        unknown = sorted(set(args) - cls.argument_names())
        if unknown:
            raise TTTError(f"finemed_ttt: unknown TTT argument(s) {', '.join(map(repr, unknown))}")
        options = cls(**args)
        options = replace(
            options,
            corpus=options.corpus or (OFFLINE_CORPUS if embedded else ONLINE_CORPUS),
            retriever=options.retriever or (OFFLINE_RETRIEVER if embedded else ONLINE_RETRIEVER),
        )
        options.validate()
        return options

    def validate(self) -> None:
        def bad(name: str, why: str) -> TTTError:
            return TTTError(f"finemed_ttt: model argument {name}={getattr(self, name)!r} {why}")

        for name, allowed in (
            ("ttt", MODES), ("ttt_preset", PRESETS), ("ttt_format", FORMATS),
            ("ttt_precision", PRECISIONS), ("engine", ENGINES), ("retrieval_index", INDEXES),
            ("neighbour_selection", NEIGHBOUR_SELECTIONS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                close = difflib.get_close_matches(str(value), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise bad(name, f"must be one of {', '.join(allowed)}{hint}")
        if self.engine == "vllm" and self.ttt == "full":
            raise bad("engine", "serves LoRA adapters only: use ttt=lora or ttt=off with engine=vllm")
        if self.ttt_preset == "reference" and self.ttt != "full":
            raise bad("ttt_preset", "reproduces the released full-parameter TTT: use it with ttt=full")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr >= 0 or math.isinf(self.lr):
            raise bad("lr", "must be a number >= 0")
        for name, least in (("steps", 0), ("top_k", 1), ("lora_r", 1), ("lora_alpha", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise bad(name, f"must be an integer >= {least}")
        self._validate_selection(bad)
        if not isinstance(self.cache, bool) and (not isinstance(self.cache, int) or self.cache < 0):
            raise bad("cache", "must be true, false or a budget in MiB >= 0")
        for name in ("corpus_question_field", "corpus_response_field", "ttt_log"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise bad(name, "must be a non-empty string")

    def _validate_selection(self, bad) -> None:
        if self.neighbour_selection == "nn":
            for name in ("sift_lambda", "sift_pool"):
                if getattr(self, name) is not None:
                    raise bad(name, "is a neighbour_selection=sift setting; add neighbour_selection=sift or drop it")
            return
        if self.ttt_preset == "reference":
            raise bad("neighbour_selection", "needs ttt_preset=ours (the reference preset retrieves the nearest row as released)")
        lam = self.sift_lambda
        if lam is not None and (isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0 < lam < math.inf):
            raise bad("sift_lambda", "must be a number > 0 (SIFT's λ, the noise variance)")
        pool = self.sift_pool
        if pool is not None and (isinstance(pool, bool) or not isinstance(pool, int) or pool < self.top_k):
            raise bad("sift_pool", f"must be an integer >= top_k ({self.top_k}): SIFT chooses top_k rows from it")

    @property
    def selection(self) -> Selection:
        """How the neighbours of a document are chosen (finemed_eval.ttt.selection)."""
        from finemed_eval.ttt.selection import DEFAULT_SIFT_LAMBDA, DEFAULT_SIFT_POOL, Selection

        return Selection(
            self.neighbour_selection,
            DEFAULT_SIFT_LAMBDA if self.sift_lambda is None else float(self.sift_lambda),
            DEFAULT_SIFT_POOL if self.sift_pool is None else self.sift_pool,
        )

    @property
    def trains(self) -> bool:
        """Whether adaptation would change any weight (ttt on, steps > 0 and lr > 0)."""
        return self.ttt != "off" and self.steps > 0 and self.lr > 0

    @property
    def cache_bytes(self) -> int:
        if self.cache is True:
            return FULL_CACHE_MIB * 1024**2
        return int(self.cache) * 1024**2

    @property
    def reference(self) -> bool:
        return self.ttt_preset == "reference"

    def adaptation_settings(self) -> dict:
        """What, besides the neighbours, decides the adapted weights (part of every adaptation key)."""
        keys = ("ttt", "ttt_preset", "ttt_precision", "lr", "steps", "lora_r", "lora_alpha")
        return {k: getattr(self, k) for k in keys}
