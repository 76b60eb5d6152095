"""The TTT log written beside lm-eval's results belongs to the model that answered those results."""

from __future__ import annotations

import json
import weakref

from finemed_eval.ttt import log as ttt_log
from finemed_eval.ttt.log import TTTLog, write_beside_results


def test_only_the_log_of_the_results_tasks_is_written_beside_them(tmp_path, monkeypatch):
    # models left alive by earlier tests on this worker must not count (CI failed on one with finemed_demo records)
    monkeypatch.setattr(ttt_log, "_LIVE", weakref.WeakSet())
    answered = TTTLog()
    answered.add([{"task": "mmlu_pro_health", "doc_id": 0, "hit_token_limit": False}])
    other = TTTLog()  # another model still alive in the process, e.g. an earlier evaluation's
    other.add([{"task": "finemed_demo", "doc_id": 0, "hit_token_limit": True}])

    (path,) = write_beside_results(tmp_path, "2026-12-07", {"mmlu_pro_health"})

    assert path.name == "finemed_ttt_2026-12-07.jsonl"
    assert [json.loads(line)["task"] for line in path.read_text().splitlines()] == ["mmlu_pro_health"]
    assert write_beside_results(tmp_path, "again", {"mmlu_pro_health"}) == []  # flushed once
    (later,) = write_beside_results(tmp_path, "later", {"finemed_demo"})  # the other keeps its records
    assert json.loads(later.read_text())["task"] == "finemed_demo"
