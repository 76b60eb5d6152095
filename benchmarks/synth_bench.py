"""Synthesis pipeline overhead per record, model time excluded: our datatrove pipeline vs a sequential
one-request-at-a-time loop (the released code's shape: prompt, POST, bare json.loads, write), both
against the same real HTTP replay server on 127.0.0.1 that answers instantly with recorded outputs.

Measured stages: instruction generation -> scoring (two questions) -> Algorithm 1 -> answers, i.e.
four requests per raw text, parsing, filtering, checkpointing and JSONL I/O. Prints records/s of both
and the ratio. Usage: python benchmarks/synth_bench.py [--records 300] [--delay-ms 0]

`--engines`: model time included. The instruction stage over the same raw texts with the embedded
SmolLM2 on the `vllm` backend (a managed vLLM server) and on the `local` backend (a managed
`transformers serve`, one request at a time as in the offline config), same prompts, same max_tokens,
no structured output (not every server supports it): records/s from the moment the server is ready
(and with its start-up), completion tokens/s, and the ratio. Usage:
python benchmarks/synth_bench.py --engines [--records 24] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
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


def _watch_ready(folder: Path, ready: list[float], stop: threading.Event) -> None:
    """The moment the stage's server log says the server accepts requests (both servers run uvicorn)."""
    while not stop.wait(0.2):
        for log in folder.glob("stages/*/logs/server/*.log"):
            if "Application startup complete" in log.read_text(encoding="utf-8", errors="replace"):
                ready.append(time.perf_counter())
                return


def engine_run(backend: str, texts: Path, folder: Path, max_tokens: int) -> dict:
    """One instruction stage on `backend`; seconds with and without the server's start-up."""
    role = {"backend": backend, "model": "embedded", "max_tokens": max_tokens, "max_concurrent": 32, "model_max_context": 4096}
    if backend == "local":
        role["continuous_batching"] = False  # as configs/offline.yaml: batching stalls on this CPU (README)
    config_path = folder / f"{backend}.yaml"
    config_path.write_text(yaml.safe_dump({"output": str(folder / backend), "input": {"path": str(texts), "id_field": "id"},
                                           "retry": {"attempts": 1}, "instruction": role}))
    config = load_config(config_path)
    from finemed_eval.synth.inputs import load_texts

    records = load_texts(config)
    ready: list[float] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_ready, args=(Path(config.output), ready, stop), daemon=True)
    watcher.start()
    started = time.perf_counter()
    summary = _model_stage(config, Path(config.output), "instruction", lambda: records, progress=False)
    ended = time.perf_counter()
    stop.set()
    return {"records": len(records), "ok": summary["ok"], "with_start": ended - started,
            "serving": ended - (ready[0] if ready else started), "completion_tokens": summary["tokens"]["completion"]}


def engines(n: int, max_tokens: int) -> None:
    print(f"instruction stage, {n} raw texts, SmolLM2-135M, max_tokens {max_tokens}, no structured output", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        texts = make_texts(n, folder)
        for backend, name in (("vllm", "vLLM (managed server)"), ("local", "transformers serve")):
            r = results[backend] = engine_run(backend, texts, folder, max_tokens)
            print(f"{name:24s} {r['records'] / r['serving']:6.3f} records/s serving ({r['serving']:.1f} s; "
                  f"{r['with_start']:.1f} s with start-up), {r['completion_tokens'] / r['serving']:6.1f} completion tokens/s, "
                  f"{r['ok']} ok", flush=True)
    v, t = results["vllm"], results["local"]
    print(f"ratio vLLM / transformers serve: {(v['records'] / v['serving']) / (t['records'] / t['serving']):.2f}x records/s serving, "
          f"{t['with_start'] / v['with_start']:.2f}x with start-up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=None, help="raw texts (default 300; 24 with --engines)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="replay latency per request (0 = overhead only)")
    parser.add_argument("--engines", action="store_true", help="vLLM vs transformers serve, model time included")
    parser.add_argument("--max-tokens", type=int, default=128, help="--engines: max_tokens per request")
    args = parser.parse_args()
    from loguru import logger

    logger.remove()
    if args.engines:
        engines(args.records or 24, args.max_tokens)
        return
    args.records = args.records or 300
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
