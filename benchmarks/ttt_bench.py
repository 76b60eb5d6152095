"""Test-time training cost per document, one run, real SmolLM2 and real MedQA questions.

(a) finemed_ttt ttt=full   (b) finemed_ttt ttt=lora   (d) ttt=off
(c) a faithful re-implementation of the paper's released procedure (FineMed TTT/TTT.py): per document
    copy.deepcopy(state_dict), fresh Adam over all parameters, one step on the neighbour padded to
    max_length=2048 with pad = eos (so real eos tokens are masked out of the loss too), answer,
    load_state_dict back.
All four use the same retriever and neighbours, so the comparison isolates adaptation and restore.
Prints per-document wall time, ratios c/a, c/b, a/d, answer agreement c vs a, and the overhead of (a)
over its floor (one training step on the real tokens + plain scoring).

Usage: FINEMED_DATA_DIR=../shared/data python benchmarks/ttt_bench.py [--docs 12]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from lm_eval.api.registry import get_model
from lm_eval.tasks import TaskManager

from finemed_eval.embedded import embedded_model_dir
from finemed_eval.ttt.adapt import collate
from finemed_eval.ttt.lm import query_of
from finemed_eval.ttt.render import Format

REFERENCE_MAX_LENGTH = 2048
LR = 1e-5


def medqa_requests(docs: int):
    task = TaskManager(include_defaults=False).load(["finemed_medqa"])["tasks"]["finemed_medqa"]
    task.set_fewshot_seed(0)
    task.build_all_requests(limit=docs, rank=0, world_size=1)
    return task.instances


def corpus_file(data_dir: Path) -> Path:
    """MedMCQA questions with their explanations: long-form-ish medical reasoning from the real data."""
    rows = []
    for line in (data_dir / "medmcqa" / "validation.jsonl").read_text().splitlines():
        doc = json.loads(line)
        if doc["exp"] != "nan" and len(doc["exp"]) > 300:
            rows.append({"id": doc["id"], "question": doc["question"], "response": doc["exp"]})
    path = Path(tempfile.mkdtemp()) / "medmcqa_explanations.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def group_by_document(requests) -> list[list[tuple[int, object]]]:
    groups: dict[tuple, list] = {}
    for position, request in enumerate(requests):
        groups.setdefault((request.task_name, request.doc_id), []).append((position, request))
    return list(groups.values())


def answers(scores, groups) -> list[int]:
    """The chosen option of each document: argmax log-likelihood over its requests."""
    return [max(range(len(g)), key=lambda i: scores[g[i][0]][0]) for g in groups]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def reference_procedure(lm, requests, neighbours, groups):
    """The released code's per-sample loop, on our HFLM for scoring."""
    model, tokenizer = lm._model, lm.tokenizer
    results = [None] * len(requests)
    for group, found in zip(groups, neighbours):
        state = copy.deepcopy(model.state_dict())
        optimizer = torch.optim.Adam(model.parameters(), lr=LR)
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": found[0].question}, {"role": "assistant", "content": found[0].response}],
            tokenize=False,
        )
        batch = tokenizer(text, padding="max_length", max_length=REFERENCE_MAX_LENGTH, truncation=True, return_tensors="pt")
        labels = batch["input_ids"].clone()
        labels[labels == tokenizer.eos_token_id] = -100  # pad = eos: real eos tokens lose their loss too
        model.train()
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        model.eval()
        for (position, _), value in zip(group, lm.loglikelihood([r for _, r in group], disable_tqdm=True)):
            results[position] = value
        model.load_state_dict(state)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=12)
    args = parser.parse_args()
    data_dir = Path(os.environ.get("FINEMED_DATA_DIR", Path(__file__).parents[2] / "shared" / "data"))
    os.environ["FINEMED_DATA_DIR"] = str(data_dir)
    torch.manual_seed(0)
    path, corpus = str(embedded_model_dir()), str(corpus_file(data_dir))
    requests = medqa_requests(args.docs)
    groups = group_by_document(requests)
    make = get_model("finemed_ttt")
    common = dict(pretrained=path, device="cpu", batch_size=8, corpus=corpus, retriever="minilm", cache=False)

    full = make(ttt="full", lr=LR, **common)
    neighbours = full._retriever.search([query_of(g[0][1]) for g in groups], k=1)
    full.loglikelihood(requests[:4], disable_tqdm=True)  # warm-up: allocator, index load
    scores_a, time_a = timed(lambda: full.loglikelihood(requests, disable_tqdm=True))

    # Floor of (a): one training step on the real tokens of each neighbour, plus plain scoring (d).
    # The finemed tasks answer on plain text, so ttt_format=auto trains on plain text too.
    examples = [full._adapter.encode(n[0].question, n[0].response, Format("plain")) for n in neighbours]
    _, time_train = timed(lambda: [full._adapter._train(collate([e], full._adapter._pad_id())) for e in examples])
    full._adapter._restore()
    del full

    off = make(ttt="off", **common)
    scores_d, time_d = timed(lambda: off.loglikelihood(requests, disable_tqdm=True))
    scores_c, time_c = timed(lambda: reference_procedure(off, requests, neighbours, groups))
    del off

    lora = make(ttt="lora", lr=1e-4, **common)
    _, time_b = timed(lambda: lora.loglikelihood(requests, disable_tqdm=True))

    n = len(groups)
    same = sum(a == c for a, c in zip(answers(scores_a, groups), answers(scores_c, groups)))
    floor = time_train + time_d
    print(f"MedQA test, {n} documents ({len(requests)} requests), SmolLM2-135M-Instruct, CPU threads={torch.get_num_threads()}")
    for label, seconds in [("(a) ttt=full", time_a), ("(b) ttt=lora", time_b), ("(c) reference @2048", time_c), ("(d) ttt=off", time_d)]:
        print(f"  {label:22} {seconds / n * 1000:9.1f} ms/doc")
    print(f"  c/a = {time_c / time_a:.2f}   c/b = {time_c / time_b:.2f}   a/d = {time_a / time_d:.2f}")
    print(f"  same answers (a) vs (c): {same}/{n} = {same / n:.0%}")
    print(f"  floor of (a) = one step on real tokens + plain scoring = {floor / n * 1000:.1f} ms/doc; overhead of (a) {time_a / floor - 1:+.1%}")


if __name__ == "__main__":
    main()
