"""Secrets stay secret (issue 18 §1-2): a real `finemed synth run` + `export` with a fake API key against
real HTTP servers on loopback addresses — 127.0.0.1 (datatrove's raw local path) and 127.0.0.2 (its
openai-client path, as for a hosted API):

- the key is sent (every server sees it), yet no file under the output folder (datatrove's
  executor.json and logs, manifest, request caches, checkpoints, shards, rejects, exports) contains it;
- without `api_key_env` the placeholder key is sent on both paths, never the user's $OPENAI_API_KEY;
- a plain http:// endpoint on a host that is not local gives a warning when the config is loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from finemed_eval.synth.backends import PLACEHOLDER_KEY
from finemed_eval.synth.config import load_config
from finemed_eval.synth.replay import ReplayServer, load_recorded

FIXTURES = Path(__file__).parent / "fixtures" / "synth"
KEY = "sk-finemed-FAKE-0d5c9e2b7a41"
USER_KEY = "sk-users-own-key-never-sent-3b8e"


@pytest.fixture()
def servers():
    recorded = load_recorded(FIXTURES / "recorded_outputs.json")
    with ReplayServer(recorded) as local, ReplayServer(recorded, host="127.0.0.2") as client_path:
        yield local, client_path


def run_synth(tmp_path: Path, local: ReplayServer, other: ReplayServer, env: dict, api_key_env: str | None) -> Path:
    def role(url: str) -> dict:
        return {"backend": "endpoint", "endpoint_url": url, "model": "replay", "max_tokens": 64} | (
            {"api_key_env": api_key_env} if api_key_env else {}
        )

    config = {
        "output": str(tmp_path / "out"),
        "input": {"path": str(FIXTURES / "raw_texts.jsonl"), "id_field": "id", "limit": 4},
        "instruction": role(local.url), "scoring": role(other.url), "answer": role(local.url),
        "longform": role(other.url), "classifier": role(local.url),
        "retry": {"attempts": 2, "backoff_s": 0.01},
        "reward": {"model": "embedded", "seeded_head": True, "batch_size": 4, "max_length": 128},
    }
    path = tmp_path / "synth.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    for command in ("run", "export"):
        result = subprocess.run(
            [sys.executable, "-m", "finemed_eval.cli", "synth", command, str(path), *(["--no-progress"] if command == "run" else [])],
            capture_output=True, text=True, env=env, timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path / "out"


def test_api_key_is_sent_but_never_written(servers, tmp_path, embedded_model):
    local, other = servers
    out = run_synth(tmp_path, local, other, os.environ | {"FINEMED_TEST_KEY": KEY}, "FINEMED_TEST_KEY")
    assert local.authorizations.keys() == {f"Bearer {KEY}"}  # raw local path
    assert other.authorizations.keys() == {f"Bearer {KEY}"}  # openai-client path
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "executor.json" for p in files) and any(p.parent.name == "export" or "export" in p.parts for p in files)
    leaks = [str(p.relative_to(out)) for p in files if KEY.encode() in p.read_bytes()]
    assert not leaks, f"the API key was written to {leaks}"
    executor = next(p for p in files if p.name == "executor.json").read_text(encoding="utf-8")
    assert "FINEMED_TEST_KEY" in executor  # only the variable's name


def test_no_api_key_env_sends_a_placeholder_never_openai_api_key(servers, tmp_path, embedded_model):
    local, other = servers
    run_synth(tmp_path, local, other, os.environ | {"OPENAI_API_KEY": USER_KEY}, None)
    assert local.authorizations.keys() == {f"Bearer {PLACEHOLDER_KEY}"}
    assert other.authorizations.keys() == {f"Bearer {PLACEHOLDER_KEY}"}


def test_plain_http_to_a_remote_host_warns(tmp_path):
    def load(url: str):
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump({
            "input": {"path": str(FIXTURES / "raw_texts.jsonl")},
            "instruction": {"backend": "endpoint", "endpoint_url": url},
        }), encoding="utf-8")
        return load_config(path)

    with pytest.warns(UserWarning, match="plain http:// to a host that is not local"):
        load("http://llm.example.org:8000/v1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for url in ("https://llm.example.org/v1", "http://127.0.0.1:8000/v1", "http://127.0.0.2:1", "http://localhost:1", "http://[::1]:1"):
            load(url)
