"""Synthesis pipeline overhead per record, model time excluded: our datatrove pipeline vs a sequential
one-request-at-a-time loop (the released code's shape: prompt, POST, bare json.loads, write), both
against the same real HTTP replay server on 127.0.0.1 that answers instantly with recorded outputs.

Measured stages: instruction generation -> scoring (two questions) -> Algorithm 1 -> answers, i.e.
four requests per raw text, parsing, filtering, checkpointing and JSONL I/O. Prints records/s of both
and the ratio. Usage: python benchmarks/synth_bench.py [--records 300] [--delay-ms 0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from finemed_eval.synth import prompts
from finemed_eval.synth.config import load_config
from finemed_eval.synth.pipeline import _model_stage, _pure_stage, stage_dir
from finemed_eval.synth.records import ok_records
from finemed_eval.synth.replay import ReplayServer, load_recorded
from finemed_eval.synth.stages import filter_record

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "synth"


def make_texts(n: int, folder: Path) -> Path:
    base = [json.loads(line)["text"] for line in (FIXTURES / "raw_texts.jsonl").read_text().splitlines()]
    path = folder / "texts.jsonl"
    path.write_text("".join(json.dumps({"id": f"b{i:05d}", "text": f"{base[i % len(base)]} (case {i})"}) + "\n" for i in range(n)))
    return path


def ours(url: str, texts: Path, folder: Path) -> float:
    roles = {r: {"backend": "endpoint", "endpoint_url": url, "model": "replay", "max_concurrent": 64} for r in
             ("instruction", "scoring", "answer", "longform", "classifier")}
    config_path = folder / "bench.yaml"
    config_path.write_text(yaml.safe_dump({"output": str(folder / "out"), "input": {"path": str(texts), "id_field": "id"},
                                           "retry": {"attempts": 1}, "executor": {"records_per_chunk": 1000}, **roles}))
    config = load_config(config_path)
    from finemed_eval.synth.inputs import load_texts

    out = Path(config.output)
    records = load_texts(config)
    started = time.perf_counter()
    _model_stage(config, out, "instruction", lambda: records, progress=False)
    _model_stage(config, out, "scoring", lambda: [
        {k: r[k] for k in ("id", "text", "question1", "question2")} for r in ok_records(stage_dir(out, "instruction"))
    ], progress=False)
    _pure_stage(config, out, "filter", lambda: [filter_record(r, config) for r in ok_records(stage_dir(out, "scoring"))])
    _model_stage(config, out, "answer", lambda: ok_records(stage_dir(out, "filter")), progress=False)
    return time.perf_counter() - started


def _post(url: str, prompt: str) -> str:
    body = json.dumps({"model": "replay", "messages": prompts.chat(prompt), "max_tokens": 1024, "temperature": 0}).encode()
    request = urllib.request.Request(url + "/v1/chat/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())["choices"][0]["message"]["content"]


def sequential(url: str, texts: Path, folder: Path) -> float:
    """The released notebooks' shape, over HTTP: one request at a time, bare json.loads, failures dropped."""
    rows = [json.loads(line) for line in texts.read_text().splitlines()]
    started = time.perf_counter()
    out = []
    for row in rows:
        try:
            questions = json.loads(_post(url, prompts.instruction_prompt(row["text"])))
            scores = [json.loads(_post(url, prompts.scoring_prompt(questions[k]))) for k in ("question1", "question2")]
        except (json.JSONDecodeError, KeyError):
            continue
        q1, q2 = scores
        best = "question1" if q1.get("quality", 0) + q1.get("difficulty", 0) >= q2.get("quality", 0) + q2.get("difficulty", 0) else "question2"
        try:
            answers = json.loads(_post(url, prompts.answer_prompt(questions[best], row["text"])))
        except json.JSONDecodeError:
            continue
        out.append({"id": row["id"], "instruction": questions[best], **answers})
    (folder / "sequential.jsonl").write_text("".join(json.dumps(r) + "\n" for r in out))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=300)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="replay latency per request (0 = overhead only)")
    args = parser.parse_args()
    from loguru import logger

    logger.remove()
    recorded = load_recorded(FIXTURES / "recorded_outputs.json")
    with tempfile.TemporaryDirectory() as tmp, ReplayServer(recorded, delay_s=args.delay_ms / 1000) as server:
        folder = Path(tmp)
        texts = make_texts(args.records, folder)
        t_seq = sequential(server.url, texts, folder)
        t_ours = ours(server.url, texts, folder)
    n = args.records
    print(f"records: {n}, replay latency: {args.delay_ms} ms/request, 4 requests per record")
    print(f"sequential one-request loop: {n / t_seq:8.1f} records/s ({t_seq:.2f} s)")
    print(f"finemed synth (datatrove):   {n / t_ours:8.1f} records/s ({t_ours:.2f} s)")
    print(f"ratio (ours / sequential):   {t_seq / t_ours:8.2f}x")


if __name__ == "__main__":
    main()
