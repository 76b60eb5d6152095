"""The pipeline against a real `transformers serve` running the embedded SmolLM2 on 127.0.0.1.

- `local` backend: datatrove starts and stops a managed `transformers serve` for the instruction role
  (the real model answers for 10 of our raw texts; the other roles use the replay server). The run is
  killed with SIGKILL while the server is starting up: the server dies with it, and the rerun completes
  with every id exactly once at every stage.
- faults: a real HTTP proxy in front of a real `transformers serve` (the classifier role; the roles
  before it replay recorded outputs so records reach it) injects 429, 500, a timeout,
  an invalid JSON body and a truncated output; the run never crashes, never drops a record, and every
  injected transport fault is counted in the records' failure lists.

Short max_tokens keep the model time small; continuous batching is off here because on this 2-core
CPU machine `transformers serve --continuous-batching` (transformers 5.24) stalled on concurrent
~300-token prompts (see synth/README.md).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest
import yaml

from finemed_eval.synth.ask import derive_seed, payload
from finemed_eval.synth.backends import model_path, transformers_executable
from finemed_eval.synth.config import RoleConfig, load_config
from finemed_eval.synth.inputs import load_texts
from finemed_eval.synth.pipeline import STAGES, run_model_stage, stage_dir
from finemed_eval.synth.prompts import chat, instruction_prompt
from finemed_eval.synth.replay import ReplayServer, load_recorded

pytestmark = pytest.mark.file_seconds(130)  # under -n 2 on 2 cores (CI): starts before shorter files

FIXTURES = Path(__file__).parent / "fixtures" / "synth"
ROLES = ("instruction", "scoring", "answer", "longform", "classifier")
ENV = os.environ | {"OMP_NUM_THREADS": "2"}


def config_file(folder: Path, replay_url: str, role: str, real: dict, limit: int, attempts: int) -> Path:
    config = {
        "output": str(folder / "out"),
        "input": {"path": str(FIXTURES / "raw_texts.jsonl"), "id_field": "id", "limit": limit},
        **{name: {"backend": "endpoint", "endpoint_url": replay_url, "model": "replay", "max_tokens": 64} for name in ROLES},
        role: {"model": "embedded", "max_tokens": 6, "max_concurrent": 2, **real},
        "retry": {"attempts": attempts, "backoff_s": 0.05},
        "reward": {"model": "embedded", "seeded_head": True, "batch_size": 4, "max_length": 256},
    }
    path = folder / "synth.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] if path.is_file() else []


def classify_outputs(out: Path) -> tuple[list[dict], list[dict]]:
    folder = stage_dir(out, "classify")
    return records(folder / "ok" / "part-00000.jsonl"), records(folder / "rejects.jsonl")


def assert_every_stage_complete(out: Path) -> None:
    for name in STAGES:
        folder = stage_dir(out, name)
        assert (folder / "DONE").is_file(), name
        got = [r["id"] for r in records(folder / "ok" / "part-00000.jsonl") + records(folder / "rejects.jsonl")]
        assert len(got) == len(set(got)), name
        if (folder / "input").is_dir():
            assert sorted(got) == sorted(r["id"] for r in records(folder / "input" / "part-00000.jsonl")), name


@pytest.fixture(scope="module")
def replay():
    with ReplayServer(load_recorded(FIXTURES / "recorded_outputs.json")) as server:
        yield server


def _serve_children(pid: int) -> list[psutil.Process]:
    try:
        return [c for c in psutil.Process(pid).children(recursive=True) if "serve" in " ".join(c.cmdline())]
    except psutil.NoSuchProcess:
        return []


def test_local_backend_killed_during_server_start_up_then_completes(replay, tmp_path, embedded_model):
    # the real model writes the instructions of 10 raw texts; in 6 tokens it cannot finish the JSON, so
    # they end as counted `truncated` rejects and the later stages see no records (test_synth_run.py
    # runs every stage with recorded outputs)
    config = config_file(tmp_path, replay.url, "instruction", {"backend": "local", "continuous_batching": False}, limit=10, attempts=1)
    command = [sys.executable, "-m", "finemed_eval.cli", "synth", "run", str(config), "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.monotonic() + 300
    servers: list[psutil.Process] = []
    while not servers and process.poll() is None and time.monotonic() < deadline:
        servers = _serve_children(process.pid)
        time.sleep(0.2)
    assert servers, "the instruction stage should start a managed transformers serve"
    time.sleep(random.Random(11).uniform(0.5, 3.0))  # the server loads the model for several seconds
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    gone, alive = psutil.wait_procs(servers, timeout=15)
    assert not alive, "the managed server must die with the killed run (PR_SET_PDEATHSIG)"

    final = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=900)
    assert final.returncode == 0, final.stderr[-3000:]
    out = tmp_path / "out"
    assert_every_stage_complete(out)
    folder = stage_dir(out, "instruction")
    done = records(folder / "ok" / "part-00000.jsonl") + records(folder / "rejects.jsonl")
    assert sorted(r["id"] for r in done) == sorted(f"t{i:02d}" for i in range(1, 11))
    for record in done:  # real model output, parsed; a reject keeps its raw text and reason
        assert record["tokens"]["completion"] > 0 and record["attempts"] == 1
        assert record["status"] == "ok" or (record["reason"] in ("truncated", "no_json") and record["raw"])


# --- faults --------------------------------------------------------------------------------------

FAULTS = ("http_429", "http_500", "timeout", "invalid_response", "truncated")


class FaultProxy:
    """Forwards /v1 requests to `upstream`; the first five chat requests get one fault each, then
    every third request a seeded random fault (not a timeout)."""

    def __init__(self, upstream: str, hold_s: float):
        self.upstream, self.hold_s = upstream, hold_s
        self.injected = {fault: 0 for fault in FAULTS}
        self.forwarded = 0
        self.lock, self.n, self.rng = threading.Lock(), 0, random.Random(5)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status, body: bytes):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (the timeout fault)

            def do_GET(self):
                with urllib.request.urlopen(proxy.upstream + self.path, timeout=30) as response:
                    self._send(response.status, response.read())

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fault = proxy.next_fault()
                if fault == "http_429":
                    return self._send(429, b'{"error": "rate limited"}')
                if fault == "http_500":
                    return self._send(500, b'{"error": "boom"}')
                if fault == "timeout":
                    time.sleep(proxy.hold_s)
                    return self._send(200, b"{}")
                if fault == "invalid_response":
                    return self._send(200, b'{"choices": [{"message": {"content": "Sur')
                request = urllib.request.Request(proxy.upstream + self.path, body, {"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=600) as response:
                    answer = json.loads(response.read())
                with proxy.lock:
                    proxy.forwarded += 1
                if fault == "truncated":
                    choice = answer["choices"][0]
                    choice["message"]["content"] = choice["message"]["content"][:2]
                    choice["finish_reason"] = "length"
                self._send(200, json.dumps(answer).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def next_fault(self) -> str | None:
        with self.lock:
            self.n += 1
            later = [f for f in FAULTS if f != "timeout"]  # one timeout is enough: each costs hold_s
            fault = FAULTS[self.n - 1] if self.n <= len(FAULTS) else (self.rng.choice(later) if self.n % 3 == 0 else None)
            if fault:
                self.injected[fault] += 1
            return fault

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def real_server(embedded_model):
    port = free_port()
    server = subprocess.Popen(
        [transformers_executable(), "serve", str(embedded_model), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # /health: /v1/models answers 500 where ~/.cache/huggingface/hub does not exist
            try:
                urllib.request.urlopen(url + "/health", timeout=2)
                break
            except OSError:
                assert server.poll() is None, "transformers serve exited during start-up"
                time.sleep(0.5)
        else:
            pytest.fail("transformers serve did not answer /health")
        yield url
    finally:
        server.kill()
        server.wait()


def run_behind_fault_proxy(upstream: str, replay_url: str, folder: Path, real: dict) -> None:
    """The classifier role through a FaultProxy in front of `upstream`: nothing crashes or is dropped,
    every injected transport fault is counted. Shared with the vLLM test (test_synth_vllm.py)."""
    proxy = FaultProxy(upstream, hold_s=35)
    config = config_file(
        folder, replay_url, "classifier",
        {"backend": "endpoint", "endpoint_url": proxy.url, "model": "embedded", "request_timeout_s": 30, **real},
        limit=3, attempts=3,
    )
    result = subprocess.run(
        [sys.executable, "-m", "finemed_eval.cli", "synth", "run", str(config), "--no-progress"],
        capture_output=True, text=True, env=ENV, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = folder / "out"
    assert_every_stage_complete(out)
    ok, rejects = classify_outputs(out)
    inputs = records(stage_dir(out, "classify") / "input" / "part-00000.jsonl")
    assert sorted(r["id"] for r in ok + rejects) == sorted(r["id"] for r in inputs)  # nothing dropped
    failures = [f for r in ok + rejects for f in r["failures"]]
    for fault in ("http_429", "http_500", "timeout", "invalid_response"):
        assert failures.count(fault) == proxy.injected[fault] >= 1, fault  # every transport fault is counted
    # cut at 2 characters, never a label; the model's own 6-token outputs can be truncated too
    assert failures.count("truncated") >= proxy.injected["truncated"] >= 1
    assert proxy.forwarded >= 1
    assert all(r["attempts"] <= 3 * 2 for r in ok + rejects)  # bounded: 3 per question, 2 questions


def test_fault_injecting_proxy_in_front_of_the_real_server(replay, real_server, tmp_path, embedded_model):
    run_behind_fault_proxy(real_server, replay.url, tmp_path, {})


def test_re_asks_really_sample_on_transformers_serve(real_server, embedded_model):
    """`transformers serve` ignores a bare temperature (greedy unless the generation config samples):
    the `local` backend's re-asks must come back different from the greedy first answer."""
    role = RoleConfig(backend="local", max_tokens=24, temperature=0.0, retry_temperature=0.7)
    messages = chat(instruction_prompt(json.loads((FIXTURES / "raw_texts.jsonl").read_text().splitlines()[0])["text"]))

    def complete(attempt: int) -> str:
        body = payload(messages, role, attempt=attempt, seed=derive_seed("t01", attempt)) | {"model": str(embedded_model)}
        request = urllib.request.Request(
            real_server + "/v1/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=600) as response:
            return json.loads(response.read())["choices"][0]["message"]["content"]

    greedy, first_re_ask, second_re_ask = complete(0), complete(1), complete(2)
    assert first_re_ask != greedy and second_re_ask != greedy and first_re_ask != second_re_ask
    assert complete(1) == first_re_ask  # seeded: the same attempt asks the same (the request cache relies on it)


def test_request_timeout_counts_the_request_not_the_queue(tmp_path):
    """A server that answers one request at a time (as `transformers serve` without continuous
    batching): 4 documents, 1 s per answer, request_timeout_s 2.5. Counting the queue, the third and
    fourth requests would time out; bounding the request's own time, none does."""
    with ReplayServer(load_recorded(FIXTURES / "recorded_outputs.json"), delay_s=1.0, serial=True) as server:
        real = {"backend": "endpoint", "endpoint_url": server.url, "model": "replay", "max_concurrent": 4,
                "continuous_batching": False, "request_timeout_s": 2.5, "max_tokens": 64}
        config = load_config(config_file(tmp_path, server.url, "instruction", real, limit=4, attempts=1))
        folder = tmp_path / "out" / "stage"
        started = time.monotonic()
        run_model_stage(config, folder, "instruction", lambda: load_texts(config), False, root=tmp_path / "out")
        elapsed = time.monotonic() - started
    done = records(folder / "ok" / "part-00000.jsonl") + records(folder / "rejects.jsonl")
    assert len(done) == 4 and server.requests == 4
    assert [f for r in done for f in r["failures"]].count("timeout") == 0
    assert elapsed >= 4.0  # they really were answered one after another
