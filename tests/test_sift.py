"""Neighbour selection `nn` vs `sift` (SIFT through activeft) on real MiniLM embeddings and real faiss.

The corpus holds four near-duplicate phrasings of one question (what nearest-neighbour retrieval
piles up on) next to distinct, related questions and unrelated ones."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from finemed_eval.ttt.corpus import Corpus, load_corpus
from finemed_eval.ttt.options import TTTError, TTTOptions
from finemed_eval.ttt.retrieval import Retriever
from finemed_eval.ttt.selection import Selection

ANSWER = "A thiazide diuretic, an ACE inhibitor, an ARB or a calcium-channel blocker."
DUPLICATES = {"dup-1", "dup-2", "dup-3", "dup-4"}
PHRASINGS = [  # four near-duplicates of one question
    "What is the first-line drug treatment for high blood pressure in adults?",
    "What is the first line drug treatment for high blood pressure in adults ?",
    "What is the first-line drug treatment of high blood pressure in adults?",
    "what is the first-line drug treatment for high blood pressure in adults",
]
OTHERS = [  # (id, question, response): three related but distinct questions, three unrelated ones
    ("lifestyle", "Which lifestyle changes lower blood pressure in hypertensive patients?", "Less salt, weight loss, exercise."),
    ("ace", "What are the common side effects of ACE inhibitors such as lisinopril?", "Dry cough, hyperkalaemia, angioedema."),
    ("target", "What blood pressure target should be aimed for when treating hypertension?", "Below 130/80 mmHg for most adults."),
    ("scurvy", "What causes scurvy?", "Vitamin C deficiency."),
    ("deltoid", "Which nerve supplies the deltoid muscle?", "The axillary nerve."),
    ("malaria", "Which mosquito transmits malaria?", "The female Anopheles mosquito."),
]
ROWS = [{"id": f"dup-{n}", "question": q, "response": ANSWER} for n, q in enumerate(PHRASINGS, 1)] + [
    {"id": i, "question": q, "response": r} for i, q, r in OTHERS
]
QUERY = "How should a doctor treat hypertension in an adult patient?"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _corpus(path: Path, rows: list[dict[str, str]]) -> Corpus:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return load_corpus(path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return _corpus(tmp_path_factory.mktemp("sift") / "duplicates.jsonl", ROWS)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sift-cache")


@pytest.fixture(scope="module")
def nn(corpus: Corpus, cache_dir: Path) -> Retriever:
    return Retriever(corpus, encoder="minilm", cache_dir=cache_dir)


@pytest.fixture(scope="module")
def sift(corpus: Corpus, cache_dir: Path) -> Retriever:
    return Retriever(corpus, encoder="minilm", cache_dir=cache_dir, selection="sift")


def test_nn_picks_near_duplicates_and_sift_does_not(nn: Retriever, sift: Retriever) -> None:
    [nearest] = nn.search([QUERY], k=3)
    [chosen] = sift.search([QUERY], k=3)
    assert {n.id for n in nearest} <= DUPLICATES  # three phrasings of one question
    assert len({n.id for n in chosen} & DUPLICATES) == 1  # one of them, plus two distinct related rows
    assert {n.id for n in chosen} - DUPLICATES <= {"lifestyle", "ace", "target"}
    assert chosen[0].id == nearest[0].id  # SIFT's first pick is the most relevant row
    # Scores are the same cosine similarities nn reports; the variance left falls with every pick.
    cosine = {n.id: n.score for n in nn.search([QUERY], k=len(ROWS))[0]}
    assert [n.score for n in chosen] == pytest.approx([cosine[n.id] for n in chosen], abs=1e-6)
    variances = [n.variance for n in chosen]
    assert all(0 < v < 1 for v in variances) and variances == sorted(variances, reverse=True)
    assert all(n.variance is None for n in nearest)
    assert all(ROWS[n.row]["id"] == n.id and ROWS[n.row]["question"] == n.question for n in chosen)  # rows as logged


def test_top_k_with_both_selections(nn: Retriever, sift: Retriever) -> None:
    picks = {k: sift.search([QUERY], k=k)[0] for k in (1, 2, 3, 4)}
    for k, chosen in picks.items():
        assert len(chosen) == k == len(nn.search([QUERY], k=k)[0])
        assert [n.id for n in chosen] == [n.id for n in picks[4][:k]]  # greedy: each k extends the last
    for bad in (0, len(ROWS) + 1):
        with pytest.raises(ValueError, match="k must be"):
            sift.search([QUERY], k=bad)
    # Several queries in one call: each gets its own picks, in query order.
    other = "Which insect spreads malaria?"
    both = [[n.id for n in hits] for hits in sift.search([QUERY, other], k=2)]  # batch encoding: float noise only
    assert both == [[n.id for n in sift.search([query], k=2)[0]] for query in (QUERY, other)]
    assert both[1][0] == "malaria"


def test_sift_is_deterministic_and_leaves_the_random_stream_alone(
    sift: Retriever, corpus: Corpus, cache_dir: Path, tmp_path: Path
) -> None:
    state = torch.get_rng_state()
    first = sift.search([QUERY], k=4)
    assert torch.equal(torch.get_rng_state(), state)  # activeft's randperm ran on a forked generator
    again = Retriever(corpus, encoder="minilm", cache_dir=cache_dir, selection="sift")
    assert again.loaded_from_cache
    assert again.search([QUERY], k=4) == first == sift.search([QUERY], k=4)
    # Exact copies tie: the first row wins, whatever the order faiss returns them in.
    copies = [{"id": f"copy-{i}", "question": "What causes scurvy?", "response": "Vitamin C deficiency."} for i in range(3)]
    rows = [ROWS[8], *copies, ROWS[9]]
    tied = Retriever(_corpus(tmp_path / "copies.jsonl", rows), cache_dir=tmp_path / "cache", selection="sift")
    assert tied.search(["What causes scurvy?"], k=1)[0][0].id == "copy-0"


def test_sift_over_hnsw_and_its_settings(corpus: Corpus, cache_dir: Path, sift: Retriever) -> None:
    hnsw = Retriever(corpus, encoder="minilm", index="hnsw", cache_dir=cache_dir, selection="sift")
    assert [n.id for n in hnsw.search([QUERY], k=3)[0]] == [n.id for n in sift.search([QUERY], k=3)[0]]
    # A large λ trusts no single pick: the most relevant row is worth training on again and again.
    noisy = Retriever(corpus, encoder="minilm", cache_dir=cache_dir, selection=Selection("sift", lam=100.0))
    assert [n.id for n in noisy.search([QUERY], k=3)[0]] == ["dup-1"] * 3
    # A pool of the 2 nearest rows (both duplicates) leaves SIFT nothing else to choose.
    narrow = Retriever(corpus, encoder="minilm", cache_dir=cache_dir, selection=Selection("sift", pool=2))
    assert {n.id for n in narrow.search([QUERY], k=2)[0]} <= DUPLICATES


def test_neighbour_selection_options_are_validated() -> None:
    def options(**args: object) -> TTTOptions:
        return TTTOptions.from_model_args({"ttt": "lora", **args}, embedded=True)

    assert options().neighbour_selection == "nn" and options().selection == Selection("nn")
    chosen = options(neighbour_selection="sift", top_k=4, sift_lambda=0.1, sift_pool=50)
    assert chosen.selection == Selection("sift", lam=0.1, pool=50)
    assert options(neighbour_selection="sift").selection == Selection("sift", lam=0.01, pool=200)
    for args, message in [
        ({"neighbour_selection": "sfit"}, r"neighbour_selection='sfit' must be one of nn, sift \(did you mean 'sift'\?\)"),
        ({"neighbour_selection": "nearest"}, r"neighbour_selection='nearest' must be one of nn, sift"),
        ({"sift_lambda": 0.1}, r"sift_lambda=0.1 is a neighbour_selection=sift setting"),
        ({"sift_pool": 50}, r"sift_pool=50 is a neighbour_selection=sift setting"),
        ({"neighbour_selection": "sift", "sift_lambda": 0}, r"sift_lambda=0 must be a number > 0"),
        ({"neighbour_selection": "sift", "sift_lambda": "big"}, r"sift_lambda='big' must be a number > 0"),
        ({"neighbour_selection": "sift", "top_k": 4, "sift_pool": 3}, r"sift_pool=3 must be an integer >= top_k \(4\)"),
        (
            {"ttt": "full", "ttt_preset": "reference", "neighbour_selection": "sift"},
            r"neighbour_selection='sift' needs ttt_preset=ours",
        ),
    ]:
        with pytest.raises(TTTError, match=message):
            options(**args)


def test_retriever_rejects_bad_selections(corpus: Corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"unknown neighbour selection 'sfit'; choose one of nn, sift"):
        Retriever(corpus, cache_dir=tmp_path, selection="sfit")
    with pytest.raises(ValueError, match=r"selection='sift' needs recipe 'ours'"):
        Retriever(corpus, cache_dir=tmp_path, recipe="reference", text_of=lambda row: row.question, selection="sift")
    for bad, message in [({"lam": 0.0}, "lambda must be a number > 0"), ({"pool": 0}, "pool must be an integer >= 1")]:
        with pytest.raises(ValueError, match=message):
            Selection("sift", **bad)
    monkeypatch.setitem(sys.modules, "activeft", None)  # as if it were not installed: import raises ImportError
    with pytest.raises(ValueError, match=r"'sift' needs the activeft package.*pip install activeft"):
        Retriever(corpus, cache_dir=tmp_path, selection="sift")
    Retriever(corpus, cache_dir=tmp_path)  # nn never needs it
