"""Retrieval for test-time training: real MiniLM encoder, real faiss, a small MedMCQA-derived corpus."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sentence_transformers import SentenceTransformer

from finemed_eval.ttt.retrieval import (
    DEFAULT_ONLINE_CORPUS,
    Corpus,
    RetrievalError,
    Retriever,
    load_corpus,
)

MEDMCQA = Path(__file__).resolve().parents[2] / "shared/data/medmcqa/validation.jsonl"  # via the shared_data fixture
CORPUS_ROWS = 300
# (paraphrase, the corpus question it should retrieve)
PARAPHRASES = [
    (
        "Humans cannot make ascorbic acid because they lack which enzyme?",
        "Due to which of the following enzyme deficiency, vitamin C cannot be synthesised in humans?",
    ),
    ("Apple jelly nodules are a feature of which disease?", "Which of the following is characterized by Apple Jelly Nodules?"),
    ("Where is the centre that generates the breathing rhythm?", "Respiratory rhythm generation center is located at:"),
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def medmcqa_rows(shared_data) -> list[dict[str, str]]:
    rows = []
    with MEDMCQA.open(encoding="utf-8") as handle:
        for line in handle:
            item = json.loads(line)
            if item["exp"] != "nan" and item["question"].strip():
                rows.append({"id": item["id"], "question": item["question"], "response": item["exp"]})
            if len(rows) == CORPUS_ROWS:
                break
    return rows


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory: pytest.TempPathFactory, medmcqa_rows: list[dict[str, str]]) -> Path:
    return _write_jsonl(tmp_path_factory.mktemp("corpus") / "medmcqa_exp.jsonl", medmcqa_rows)


@pytest.fixture(scope="module")
def corpus(corpus_file: Path) -> Corpus:
    return load_corpus(corpus_file)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("retrieval-cache")


@pytest.fixture(scope="module")
def flat(corpus: Corpus, cache_dir: Path) -> Retriever:
    start = time.perf_counter()
    retriever = Retriever(corpus, encoder="minilm", cache_dir=cache_dir)
    print(f"\nbuild flat index ({len(corpus.rows)} rows, incl. encoder load): {time.perf_counter() - start:.2f}s")
    assert not retriever.loaded_from_cache
    return retriever


@pytest.fixture
def encode_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Spy on SentenceTransformer.encode: records how many texts each call encoded."""
    calls: list[int] = []
    original = SentenceTransformer.encode

    def spy(self: SentenceTransformer, sentences: list[str], *args: object, **kwargs: object) -> object:
        calls.append(len(sentences))
        return original(self, sentences, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformer, "encode", spy)
    return calls


# ---------------------------------------------------------------- corpus loading


def test_load_corpus_reads_rows_and_fingerprints_content(corpus: Corpus, corpus_file: Path, tmp_path: Path) -> None:
    assert len(corpus.rows) == CORPUS_ROWS
    assert corpus.source == str(corpus_file)
    assert all(row.question and row.response and row.id for row in corpus.rows)
    moved = tmp_path / corpus_file.name
    moved.write_bytes(corpus_file.read_bytes())
    assert load_corpus(moved).fingerprint == corpus.fingerprint  # content, not path/mtime


def test_load_corpus_json_parquet_chat_and_default_ids(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"question": "Q one?", "response": "R one."}, {"question": "Q two?", "response": "R two."}]
    (tmp_path / "c.json").write_text(json.dumps(rows), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet")
    from_json = load_corpus(tmp_path / "c.json")
    from_parquet = load_corpus(tmp_path / "c.parquet")
    assert [r.id for r in from_json.rows] == ["c.json:1", "c.json:2"]
    assert [r.question for r in from_parquet.rows] == ["Q one?", "Q two?"]

    chat = [{"messages": [{"role": "user", "content": "Why?"}, {"role": "assistant", "content": "## Thought\nBecause."}]}]
    row = load_corpus(_write_jsonl(tmp_path / "chat.jsonl", chat), "messages", "messages").rows[0]
    assert (row.question, row.response) == ("Why?", "## Thought\nBecause.")


def test_default_online_corpus_reads_its_o1_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    seen: dict[str, object] = {}

    def fake_load_dataset(path: str, name: str | None = None, **kwargs: object) -> list[dict[str, object]]:
        seen.update(path=path, name=name, **kwargs)
        chat = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "## Thought\\n..."}]
        return [{"messages": chat}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    corpus = load_corpus(DEFAULT_ONLINE_CORPUS)
    assert seen == {"path": DEFAULT_ONLINE_CORPUS, "name": None, "split": "train", "data_dir": "SFTo1Data"}
    assert corpus.rows[0].question == "Q?" and corpus.rows[0].id == f"{DEFAULT_ONLINE_CORPUS}:1"


def test_load_corpus_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(RetrievalError, match=r"empty\.jsonl.*empty"):
        load_corpus(empty)

    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"question": "Q?", "response": "R."}, {"question": "Q2?"}])
    with pytest.raises(RetrievalError) as excinfo:
        load_corpus(bad)
    message = str(excinfo.value)
    assert "bad.jsonl" in message and "row 2" in message and "'response'" in message

    blank = _write_jsonl(tmp_path / "blank.jsonl", [{"question": "  ", "response": "R."}])
    with pytest.raises(RetrievalError, match=r"blank\.jsonl: row 1: field 'question' is empty"):
        load_corpus(blank)

    with pytest.raises(RetrievalError, match="not found"):
        load_corpus(tmp_path / "missing.jsonl")


# ---------------------------------------------------------------- search quality


def test_corpus_question_retrieves_itself(flat: Retriever, corpus: Corpus) -> None:
    picks = [0, 57, 149, 299]
    start = time.perf_counter()
    results = flat.search([corpus.rows[i].question for i in picks], k=1)
    print(f"\nquery {len(picks)} questions: {time.perf_counter() - start:.3f}s")
    for i, hits in zip(picks, results):
        assert hits[0].row == i
        assert hits[0].id == corpus.rows[i].id
        assert hits[0].response == corpus.rows[i].response
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_paraphrase_retrieves_the_right_row(flat: Retriever) -> None:
    results = flat.search([paraphrase for paraphrase, _ in PARAPHRASES], k=1)
    for (paraphrase, target), hits in zip(PARAPHRASES, results):
        assert hits[0].question == target, paraphrase
        assert hits[0].score < 0.99  # a real paraphrase, not a copy


def test_k3_returns_three_sorted_scores(flat: Retriever) -> None:
    [hits] = flat.search([PARAPHRASES[0][0]], k=3)
    assert len(hits) == 3
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True)
    assert len({hit.row for hit in hits}) == 3


def test_ties_are_broken_by_row_order(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "question": "What causes scurvy?", "response": "r-a"},
        {"id": "b", "question": "Which nerve supplies the deltoid?", "response": "r-b"},
        {"id": "c", "question": "What causes scurvy?", "response": "r-c"},
        {"id": "d", "question": "What causes scurvy?", "response": "r-d"},
    ]
    retriever = Retriever(load_corpus(_write_jsonl(tmp_path / "dup.jsonl", rows)), cache_dir=tmp_path / "cache")
    [hits] = retriever.search(["What causes scurvy?"], k=3)
    assert [hit.id for hit in hits] == ["a", "c", "d"]
    assert retriever.search(["What causes scurvy?"], k=3) == [hits]  # deterministic


def test_hnsw_matches_flat_top1(flat: Retriever, corpus: Corpus, cache_dir: Path) -> None:
    hnsw = Retriever(corpus, encoder="minilm", index="hnsw", cache_dir=cache_dir)
    assert hnsw.cache_path != flat.cache_path
    queries = [p for p, _ in PARAPHRASES] + [corpus.rows[i].question for i in (3, 100, 250)]
    flat_top = [hits[0].row for hits in flat.search(queries)]
    hnsw_top = [hits[0].row for hits in hnsw.search(queries)]
    assert hnsw_top == flat_top


# ---------------------------------------------------------------- disk cache


def test_second_retriever_loads_from_disk_without_encoding(
    flat: Retriever, corpus: Corpus, cache_dir: Path, encode_calls: list[int]
) -> None:
    assert flat.cache_path.is_file()
    start = time.perf_counter()
    again = Retriever(corpus, encoder="minilm", cache_dir=cache_dir)
    elapsed = time.perf_counter() - start
    print(f"\ncached load ({len(corpus.rows)} rows): {elapsed * 1000:.1f}ms")
    assert again.loaded_from_cache
    assert encode_calls == []  # the corpus was not re-encoded
    assert again._model is None  # not even the encoder was loaded
    assert elapsed < 1.0
    query = PARAPHRASES[1][0]
    assert again.search([query], k=3) == flat.search([query], k=3)
    assert encode_calls == [1, 1]  # only the queries


def test_changed_corpus_rebuilds(
    flat: Retriever, medmcqa_rows: list[dict[str, str]], cache_dir: Path, tmp_path: Path, encode_calls: list[int]
) -> None:
    edited = [dict(row) for row in medmcqa_rows]
    edited[10]["response"] += " (edited)"
    changed = load_corpus(_write_jsonl(tmp_path / "edited.jsonl", edited))
    assert changed.fingerprint != flat.corpus.fingerprint
    rebuilt = Retriever(changed, encoder="minilm", cache_dir=cache_dir)
    assert not rebuilt.loaded_from_cache
    assert rebuilt.cache_key != flat.cache_key
    assert encode_calls == [CORPUS_ROWS]
    assert rebuilt.cache_path.is_file() and flat.cache_path.is_file()


def test_corrupt_cache_rebuilds_with_warning(tmp_path: Path, encode_calls: list[int]) -> None:
    rows = [{"question": f"Question number {i}?", "response": f"Answer {i}."} for i in range(5)]
    small = load_corpus(_write_jsonl(tmp_path / "small.jsonl", rows))
    cache = tmp_path / "cache"
    first = Retriever(small, cache_dir=cache)
    first.cache_path.write_bytes(b"definitely not a faiss index")
    with pytest.warns(RuntimeWarning, match="unreadable"):
        again = Retriever(small, cache_dir=cache)
    assert not again.loaded_from_cache
    assert encode_calls == [5, 5]
    assert Retriever(small, cache_dir=cache).loaded_from_cache  # rewritten intact
    assert [p.name for p in cache.iterdir()] == [first.cache_path.name]  # no temp files left behind


# ---------------------------------------------------------------- argument errors


def test_unknown_encoder(corpus: Corpus, tmp_path: Path) -> None:
    with pytest.raises(RetrievalError, match=r"'no-such-encoder-xyz'.*minilm, bge-large"):
        Retriever(corpus, encoder="no-such-encoder-xyz", cache_dir=tmp_path)


def test_bad_k_and_index(flat: Retriever, corpus: Corpus, tmp_path: Path) -> None:
    for k in (0, -1, CORPUS_ROWS + 1):
        with pytest.raises(RetrievalError, match="k must be"):
            flat.search(["anything"], k=k)
    with pytest.raises(RetrievalError, match="sequence of strings"):
        flat.search("a bare string", k=1)
    with pytest.raises(RetrievalError, match="unknown index type 'ivf'"):
        Retriever(corpus, index="ivf", cache_dir=tmp_path)
