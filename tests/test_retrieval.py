"""Retrieval for test-time training: real MiniLM encoder, real faiss, a small MedMCQA-derived corpus,
and rows shaped exactly like the released FineMed-SFT / FineMed-DPO ones (tests/fixtures/ttt_corpus)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from sentence_transformers import SentenceTransformer

from finemed_eval.data.schema import DataError
from finemed_eval.ttt.corpus import (
    DEFAULT_ONLINE_CORPUS,
    FINEMED_DPO,
    FINEMED_SFT_O1,
    PRESETS,
    Corpus,
    CorpusRow,
    load_corpus,
)
from finemed_eval.ttt.retrieval import Retriever, minilm_dir

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ttt_corpus"
SFT_ROWS = FIXTURES / "finemed_sft_o1.jsonl"
DPO_ROWS = FIXTURES / "finemed_dpo.jsonl"
MEDMCQA = Path(__file__).resolve().parents[2] / "shared/data/medmcqa/validation.jsonl"  # via the shared_data fixture
CORPUS_ROWS = 200  # holds every paraphrase target (rows 9, 49, 154); smaller keeps the module fast
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


def _released(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """datasets.load_dataset serving the fixture rows of the requested release; records each call."""
    import datasets

    calls: list[dict[str, object]] = []

    def load_dataset(path: str, name: str | None = None, **kwargs: object) -> list[dict]:
        calls.append(dict(path=path, name=name, **kwargs))
        return _released(DPO_ROWS if path == "hongzhouyu/FineMed-DPO" else SFT_ROWS)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_sft_o1_preset_reads_instruction_and_response(fake_hub: list[dict[str, object]]) -> None:
    corpus = load_corpus(FINEMED_SFT_O1)
    files = "hf://datasets/hongzhouyu/FineMed-SFT/SFTo1Data/*.json*"
    assert fake_hub == [{"path": "json", "name": None, "split": "train", "data_files": {"train": files}}]
    released = _released(SFT_ROWS)
    assert [r.question for r in corpus.rows] == [row["instruction"] for row in released]
    assert [r.response for r in corpus.rows] == [row["response"] for row in released]
    assert [r.id for r in corpus.rows] == [f"{FINEMED_SFT_O1}:{n}" for n in range(1, len(released) + 1)]
    assert corpus.preset == FINEMED_SFT_O1 and DEFAULT_ONLINE_CORPUS == FINEMED_SFT_O1
    assert corpus.rows[0].messages is None
    assert corpus.rows[0].conversation() == [
        {"role": "user", "content": released[0]["instruction"]},
        {"role": "assistant", "content": released[0]["response"]},
    ]


def test_dpo_preset_reads_prompt_and_chosen(fake_hub: list[dict[str, object]]) -> None:
    corpus = load_corpus(FINEMED_DPO)
    assert fake_hub == [{"path": "hongzhouyu/FineMed-DPO", "name": None, "split": "train"}]
    released = _released(DPO_ROWS)
    for row, raw in zip(corpus.rows, released, strict=True):
        assert row.question == raw["prompt"][0]["content"]
        assert row.response == raw["chosen"][0]["content"] and row.response.startswith("## Thought")
        assert row.conversation() == raw["prompt"] + raw["chosen"]  # the whole chat, for reference mode
        assert raw["rejected"][0]["content"] not in json.dumps(row.conversation(), ensure_ascii=False)
    assert load_corpus("hongzhouyu/FineMed-DPO").fingerprint == corpus.fingerprint  # the hub id names the preset


def test_dpo_rows_from_parquet_keep_their_message_lists(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(_released(DPO_ROWS)), tmp_path / "dpo.parquet")  # list<struct> columns
    from_parquet = load_corpus(tmp_path / "dpo.parquet", "prompt", "chosen")
    from_jsonl = load_corpus(DPO_ROWS, "prompt", "chosen")
    assert [(r.question, r.response, r.messages) for r in from_parquet.rows] == [
        (r.question, r.response, r.messages) for r in from_jsonl.rows
    ]


def test_explicit_fields_win_over_the_preset(fake_hub: list[dict[str, object]]) -> None:
    corpus = load_corpus(FINEMED_DPO, question_field="text")
    released = _released(DPO_ROWS)
    assert [r.question for r in corpus.rows] == [row["text"] for row in released]
    assert corpus.rows[0].response.startswith("## Thought")
    # No silent swap: fields the release does not have are an error, not replaced by the preset's.
    with pytest.raises(DataError, match=r"row 1: field 'question' is missing \(row has fields: text, instruction, "):
        load_corpus(FINEMED_SFT_O1, "question", "response")
    assert PRESETS[FINEMED_SFT_O1].question_field == "instruction"


def test_missing_or_malformed_fields_name_file_row_and_field(tmp_path: Path) -> None:
    rows = _released(SFT_ROWS)
    del rows[2]["instruction"]
    bad = _write_jsonl(tmp_path / "sft.jsonl", rows)
    columns = "text, complexity, quality, language, response, instruction_type"
    with pytest.raises(DataError, match=rf"^{re.escape(str(bad))} row 3: field 'instruction' is missing \(row has fields: {columns}\)$"):
        load_corpus(bad, "instruction", "response")

    dpo = _released(DPO_ROWS)
    dpo[1]["chosen"] = [{"content": "## Thought\n...", "role": "user"}]
    no_reply = r"dpo\.jsonl row 2: field 'chosen' has no non-empty 'assistant' message \(roles: user\)"
    with pytest.raises(DataError, match=no_reply):
        load_corpus(_write_jsonl(tmp_path / "dpo.jsonl", dpo), "prompt", "chosen")
    dpo[1]["chosen"] = ["## Thought"]
    with pytest.raises(DataError, match=r"row 2: field 'chosen' message 1 should be \{'role': str, 'content': str\}"):
        load_corpus(_write_jsonl(tmp_path / "dpo.jsonl", dpo), "prompt", "chosen")
    dpo[1]["chosen"] = 7
    with pytest.raises(DataError, match=r"row 2: field 'chosen' should be text or a list of chat messages but is int$"):
        load_corpus(_write_jsonl(tmp_path / "dpo.jsonl", dpo), "prompt", "chosen")


def test_load_corpus_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match=r"empty\.jsonl.*empty"):
        load_corpus(empty)

    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"question": "Q?", "response": "R."}, {"question": "Q2?"}])
    with pytest.raises(DataError) as excinfo:
        load_corpus(bad)
    message = str(excinfo.value)
    assert "bad.jsonl" in message and "row 2" in message and "'response'" in message

    blank = _write_jsonl(tmp_path / "blank.jsonl", [{"question": "  ", "response": "R."}])
    with pytest.raises(DataError, match=r"blank\.jsonl row 1: field 'question' is empty"):
        load_corpus(blank)

    with pytest.raises(DataError, match="not found"):
        load_corpus(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match=r"unknown corpus 'finemed-sft'.*finemed-sft-o1, finemed-dpo, demo"):
        load_corpus("finemed-sft")



def test_local_files_in_the_released_layouts_are_recognised_by_their_columns(tmp_path: Path, cache_dir: Path) -> None:
    """A local copy of FineMed-SFT (instruction/response) or FineMed-DPO (prompt/chosen message lists)
    needs no field arguments, as the presets need none; retrieval over it is real MiniLM."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sft, released_sft = load_corpus(SFT_ROWS), _released(SFT_ROWS)
    assert [(r.question, r.response) for r in sft.rows] == [(row["instruction"], row["response"]) for row in released_sft]
    assert sft.fingerprint == load_corpus(SFT_ROWS, "instruction", "response").fingerprint
    released_dpo = _released(DPO_ROWS)
    pq.write_table(pa.Table.from_pylist(released_dpo), tmp_path / "dpo.parquet")
    for dpo in (load_corpus(DPO_ROWS), load_corpus(tmp_path / "dpo.parquet")):
        assert [r.conversation() for r in dpo.rows] == [row["prompt"] + row["chosen"] for row in released_dpo]
        assert all(r.response.startswith("## Thought") for r in dpo.rows)
    retriever = Retriever(sft, encoder="minilm", cache_dir=cache_dir)
    hits = retriever.search([row["instruction"] for row in released_sft], k=1)
    assert [h[0].row for h in hits] == list(range(len(released_sft)))

    other = _write_jsonl(tmp_path / "other.jsonl", [{"q": "Why?", "a": "Because."}])
    with pytest.raises(DataError) as excinfo:
        load_corpus(other)
    message = str(excinfo.value)
    assert message.startswith(f"{other} row 1: no known corpus layout: the row has fields q, a; ")
    for needle in ("question/response", "instruction/response (FineMed-SFT)", "prompt/chosen (FineMed-DPO)",
                   "corpus_question_field=", "corpus_response_field="):
        assert needle in message
    assert load_corpus(other, "q", "a").rows[0].response == "Because."


@pytest.mark.parametrize("spec", [FINEMED_SFT_O1, FINEMED_DPO, "someone/their-corpus"])
def test_offline_hub_corpus_error_says_what_works_offline(spec: str) -> None:
    """Real datasets, offline: the error names the model arguments that work, not FINEMED_DATA_DIR
    (a benchmark setting) nor data_dir= (no such argument)."""
    with pytest.raises(DataError) as excinfo:
        load_corpus(spec)
    message = str(excinfo.value)
    assert "cannot load from the Hugging Face hub" in message
    for needle in ("corpus=demo", "corpus=<a local .jsonl/.json/.parquet file", "retriever=minilm",
                   "FineMed-SFT instruction/response", "FineMed-DPO prompt/chosen"):
        assert needle in message
    assert "FINEMED_DATA_DIR" not in message and "data_dir=" not in message


def test_offline_hub_encoder_error_says_what_works_offline(corpus: Corpus, tmp_path: Path) -> None:
    with pytest.raises(ValueError) as excinfo:
        Retriever(corpus, encoder="bge-large", cache_dir=tmp_path)
    assert "cannot load encoder 'bge-large'" in str(excinfo.value) and "retriever=minilm" in str(excinfo.value)


# ---------------------------------------------------------------- search quality


def test_corpus_question_retrieves_itself(flat: Retriever, corpus: Corpus) -> None:
    picks = [0, 57, 149, CORPUS_ROWS - 1]
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
    queries = [p for p, _ in PARAPHRASES] + [corpus.rows[i].question for i in (3, 100, CORPUS_ROWS - 50)]
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
    assert encode_calls == [1]  # the query once: the same search by a second retriever is remembered (a sweep)


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
    with pytest.raises(ValueError, match=r"'no-such-encoder-xyz'.*minilm, bge-large"):
        Retriever(corpus, encoder="no-such-encoder-xyz", cache_dir=tmp_path)


def test_bad_k_and_index(flat: Retriever, corpus: Corpus, tmp_path: Path) -> None:
    for k in (0, -1, CORPUS_ROWS + 1):
        with pytest.raises(ValueError, match="k must be"):
            flat.search(["anything"], k=k)
    with pytest.raises(ValueError, match="sequence of strings"):
        flat.search("a bare string", k=1)
    with pytest.raises(ValueError, match="unknown index type 'ivf'"):
        Retriever(corpus, index="ivf", cache_dir=tmp_path)


# ---------------------------------------------------------------- the released TTT.py recipe

# The authors' o1 system prompt (Rebuttal_period_file/ttt_prepare.ipynb), as the lead's renderer prepends it.
O1_SYSTEM = (
    "You are a helpful professional doctor. You need to generate an answer based on the given problem and thoroughly "
    "explore the problem through a systematic and long-term thinking process to provide a final and accurate solution. "
    "This requires a comprehensive cycle of analysis, summary, exploration, re-evaluation, reflection, backtracking and "
    "iteration to form a thoughtful thinking process. Use the background information provided in the text to assist in "
    "formulating the answer. Follow these answer guidelines:\n"
    "1. Please structure your response into two main sections: **Thought** and **Summarization**.\n"
    "2. During the **Thought** phase, think step by step based on the given text content. If the text content is used, "
    "it must be expressed.\n"
    "3. During the **Summarization** phase, based on the thinking process in the thinking phase, give the final answer "
    "to the question.\nHere is the question: "
)
REFERENCE_QUERIES = [
    "My INR went up after I was given an antifungal while on warfarin. What should be done?",
    "Which blood pressure drug protects the kidneys in a diabetic with protein in the urine?",
    "A 60-year-old man has iron deficiency anaemia. What should be investigated?",
]


def render(row: CorpusRow) -> str:
    """Stand-in for the main model's chat template over system + prompt + chosen."""
    turns = [{"role": "system", "content": O1_SYSTEM}] + row.conversation()
    return "".join(f"<|{t['role']}|>\n{t['content']}<|end|>\n" for t in turns) + "\n"


@pytest.fixture(scope="module")
def dpo_corpus() -> Corpus:
    return load_corpus(DPO_ROWS, "prompt", "chosen")


@pytest.fixture(scope="module")
def reference(dpo_corpus: Corpus, cache_dir: Path) -> Retriever:
    return Retriever(dpo_corpus, encoder="minilm", recipe="reference", text_of=render, cache_dir=cache_dir)


def test_reference_recipe_equals_the_released_computation(reference: Retriever, dpo_corpus: Corpus) -> None:
    """TTT.py's get_embedding, one text at a time, and IndexFlatL2.search, computed here directly."""
    import faiss
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))
    model = AutoModel.from_pretrained(str(minilm_dir()))

    def get_embedding(text: str) -> torch.Tensor:  # verbatim from the released TTT.py
        inputs = tokenizer(text, return_tensors="pt", padding=True, truncation=True)
        with torch.no_grad():
            output = model(**inputs).last_hidden_state.mean(dim=1)
        return output.squeeze(0)

    texts = [render(row).strip() for row in dpo_corpus.rows]  # ttt_prepare.ipynb strips each line
    lengths = [len(tokenizer(text).input_ids) for text in texts]
    assert max(lengths) > 256  # so truncation at 512 (not sentence-transformers' 256) is exercised
    embeddings = torch.stack([get_embedding(text) for text in texts]).numpy()
    assert not np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-2)  # unnormalised
    stored = reference.index.reconstruct_n(0, reference.index.ntotal)
    np.testing.assert_allclose(stored, embeddings, rtol=1e-4, atol=1e-4)  # padding masked: batch == one by one

    index = faiss.IndexFlatL2(embeddings.shape[1])
    index.add(embeddings)
    n = len(dpo_corpus)
    queries = REFERENCE_QUERIES + [dpo_corpus.rows[0].question]
    distances, rows = index.search(torch.stack([get_embedding(q) for q in queries]).numpy(), n)
    results = reference.search(queries, k=n)
    for hits, want_rows, want_distances in zip(results, rows, distances):
        assert [hit.row for hit in hits] == list(want_rows)
        assert [hit.score for hit in hits] == pytest.approx(list(want_distances), rel=1e-4, abs=1e-4)
        assert [hit.score for hit in hits] == sorted(hit.score for hit in hits)  # smallest distance first


def test_reference_ties_are_ordered_by_row(tmp_path: Path) -> None:
    rows = _released(DPO_ROWS)
    corpus = load_corpus(_write_jsonl(tmp_path / "dup.jsonl", [rows[1], rows[0], rows[1], rows[1]]), "prompt", "chosen")
    retriever = Retriever(corpus, recipe="reference", text_of=render, cache_dir=tmp_path / "cache")
    [hits] = retriever.search([render(corpus.rows[0]).strip()], k=3)
    assert [hit.row for hit in hits] == [0, 2, 3]
    assert hits[0].score == pytest.approx(0.0, abs=1e-3)


def test_cache_keys_differ_between_recipes(reference: Retriever, dpo_corpus: Corpus, cache_dir: Path) -> None:
    ours = Retriever(dpo_corpus, encoder="minilm", cache_dir=cache_dir)
    assert ours.cache_key != reference.cache_key
    other_rendering = Retriever(dpo_corpus, recipe="reference", text_of=lambda row: row.question, cache_dir=cache_dir)
    assert other_rendering.cache_key not in (reference.cache_key, ours.cache_key)
    again = Retriever(dpo_corpus, encoder="minilm", recipe="reference", text_of=render, cache_dir=cache_dir)
    assert again.loaded_from_cache and again.cache_key == reference.cache_key
    assert again.search(REFERENCE_QUERIES, k=2) == reference.search(REFERENCE_QUERIES, k=2)


def test_recipe_argument_errors(dpo_corpus: Corpus, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown retrieval recipe 'paper'"):
        Retriever(dpo_corpus, recipe="paper", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="pass a callable text_of"):
        Retriever(dpo_corpus, recipe="reference", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="IndexFlatL2"):
        Retriever(dpo_corpus, recipe="reference", text_of=render, index="hnsw", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="only used by recipe 'reference'"):
        Retriever(dpo_corpus, text_of=render, cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"text_of\(row 0, id 'finemed_dpo.jsonl:1'\) returned ''"):
        Retriever(dpo_corpus, recipe="reference", text_of=lambda row: "", cache_dir=tmp_path)
