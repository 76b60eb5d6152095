"""lm-eval's own task definitions run with finemed_ttt, TTT on. Offline, only their data source is
redirected to the official release files in ../shared/data (the task YAML is lm-eval's own)."""

from __future__ import annotations

import json
from pathlib import Path

import lm_eval
import lm_eval.tasks
from lm_eval.api.registry import get_model
from lm_eval.tasks import TaskManager

BUILTIN = Path(lm_eval.tasks.__file__).parent


def test_lm_evals_mmlu_pro_health_runs_with_ttt(shared_data, embedded_model, tmp_path):
    mmlu_pro = shared_data / "mmlu_pro"
    (tmp_path / "mmlu_pro_health_local.yaml").write_text(
        f"include: {BUILTIN / 'mmlu_pro' / 'mmlu_pro_health.yaml'}\n"
        "task: mmlu_pro_health_local\n"
        "dataset_path: parquet\n"
        "dataset_kwargs:\n  data_files:\n"
        f"    test: {mmlu_pro / 'test-00000-of-00001.parquet'}\n"
        f"    validation: {mmlu_pro / 'validation-00000-of-00001.parquet'}\n"
        "generation_kwargs:\n  until: ['Question:']\n  max_gen_toks: 16\n  do_sample: false\n"
    )
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"id": "c1", "question": "What does the pancreas secrete?", "response": "Insulin and glucagon."}))
    lm = get_model("finemed_ttt")(
        pretrained=str(embedded_model), device="cpu", ttt="lora", lr=1e-4, corpus=str(corpus), retriever="minilm"
    )
    results = lm_eval.simple_evaluate(
        model=lm, tasks=["mmlu_pro_health_local"], limit=2, num_fewshot=1, log_samples=True,
        task_manager=TaskManager(include_path=str(tmp_path), include_defaults=False),
    )
    assert results["results"]["mmlu_pro_health_local"]["exact_match,custom-extract"] >= 0.0
    assert lm.adaptations == 1  # one per distinct neighbour set (a one-row corpus), questions read from lm-eval's `question` field
    assert len(results["samples"]["mmlu_pro_health_local"]) == 2
    # The model keeps its own log, so lm-eval's built-in tasks get TTT records too, written beside
    # lm-eval's results file as the stock CLI's --output_path writes it.
    from lm_eval.loggers import EvaluationTracker

    tracker = EvaluationTracker(output_path=str(tmp_path / "out"))
    tracker.general_config_tracker.model_name_sanitized = "smollm2"
    tracker.save_results_aggregated(results=results, samples=results["samples"])
    (log,) = (tmp_path / "out" / "smollm2").glob("finemed_ttt_*.jsonl")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    adapted = [r for r in records if "neighbours" in r]
    assert sorted(r["doc_id"] for r in adapted) == [0, 1]
    assert all(r["neighbours"][0]["id"] == "c1" and r["trained_tokens"] > 0 for r in adapted)
    generated = [r for r in records if "hit_token_limit" in r]
    assert len(generated) == 2 and all(r["max_gen_toks"] == 16 for r in generated)
