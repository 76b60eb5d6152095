"""The faiss index over corpus embeddings and its content-keyed on-disk cache.

The index is stored as ``<cache_dir>/<key>.faiss`` where ``key`` is a sha256 over the corpus content
fingerprint, the encoder identity, the index type and parameters, and the embedding recipe (what is
embedded, pooling, normalisation, metric). An unchanged corpus therefore reloads without loading
the encoder or encoding anything; any change gives a new key. Writes go to a temporary file renamed
into place; an unreadable or mismatched cache file is rebuilt with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # faiss loads lazily: importing this module stays cheap
    import faiss

INDEX_TYPES = ("flat", "hnsw")
METRICS = ("inner_product", "l2")
HNSW_M = 32  # graph degree (faiss' default): good recall/memory trade-off at 1M+ rows
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 128
CACHE_FORMAT = 2  # bump when the on-disk layout or the key's meaning changes (2: recipes, messages)


def cache_key(fingerprint: str, encoder_id: str, index: str, recipe: Mapping[str, Any]) -> str:
    params: dict[str, Any] = {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION} if index == "hnsw" else {}
    spec = {
        "format": CACHE_FORMAT,
        "corpus": fingerprint,
        "encoder": encoder_id,
        "index": index,
        "index_params": params,
        "recipe": dict(recipe),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def new_index(kind: str, metric: str, dim: int) -> faiss.Index:
    import faiss

    faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "inner_product" else faiss.METRIC_L2
    if kind == "flat":
        return faiss.IndexFlatIP(dim) if metric == "inner_product" else faiss.IndexFlatL2(dim)
    index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss_metric)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    return index


def load_or_build(
    path: Path, kind: str, metric: str, size: int, embed: Callable[[], np.ndarray]
) -> tuple[faiss.Index, bool]:
    """The cached index at ``path`` (and True), or one built from ``embed()`` and cached (and False)."""
    cached = _read_cached(path, kind, metric, size)
    if cached is not None:
        return cached, True
    vectors = np.ascontiguousarray(embed(), dtype=np.float32)
    index = new_index(kind, metric, vectors.shape[1])
    index.add(vectors)
    _write_atomic(index, path)
    return index, False


def _read_cached(path: Path, kind: str, metric: str, size: int) -> faiss.Index | None:
    """The cached index, or None (with a warning) when it is unreadable or does not fit."""
    import faiss

    if not path.is_file():
        return None
    try:
        index = faiss.read_index(str(path))
    except Exception as exc:  # faiss raises RuntimeError on truncated/garbage files
        warnings.warn(f"retrieval cache {path} is unreadable ({exc}); rebuilding it", RuntimeWarning, stacklevel=4)
        return None
    expected = type(new_index(kind, metric, 1))
    faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "inner_product" else faiss.METRIC_L2
    if type(index) is not expected or index.ntotal != size or index.metric_type != faiss_metric:
        warnings.warn(
            f"retrieval cache {path} does not match the corpus ({type(index).__name__}, {index.ntotal} rows, "
            f"expected {expected.__name__} with {size}); rebuilding it",
            RuntimeWarning,
            stacklevel=4,
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
        warnings.warn(f"could not write retrieval cache {path} ({exc}); continuing without it", RuntimeWarning, stacklevel=4)
