"""The finemed tasks on the real release files: counts, splits, the paper's seeded 3-shot protocol."""

from __future__ import annotations

import json

import pytest

from finemed_eval.data import DataError
from finemed_eval.prompts import mc_choices
from finemed_eval.task import process_cot_by_type, process_mc_by_type

OFFICIAL_COUNTS = {
    "finemed_mmlu_anatomy": 135, "finemed_mmlu_clinical_knowledge": 265, "finemed_mmlu_college_biology": 144,
    "finemed_mmlu_college_medicine": 173, "finemed_mmlu_medical_genetics": 100, "finemed_mmlu_professional_medicine": 272,
    "finemed_ceval_clinical_medicine": 22, "finemed_ceval_basic_medicine": 19, "finemed_ceval_physician": 49,
    "finemed_ceval_veterinary_medicine": 23, "finemed_medqa": 1273, "finemed_medmcqa": 4183,
    "finemed_mmlu_pro_biology": 717, "finemed_mmlu_pro_health": 818, "finemed_cmb_exam": 2000, "finemed_cmexam": 2000,
    "finemed_demo": 44,
}
EXPECTED_SPLITS = {  # (evaluated, exemplars) on ../shared/data, which lacks MedQA/MedMCQA train
    "finemed_mmlu_anatomy": ("test", "dev"), "finemed_ceval_physician": ("val", "dev"),
    "finemed_medqa": ("test", "dev"), "finemed_medmcqa": ("validation", "validation"),
    "finemed_mmlu_pro_health": ("test", "validation"), "finemed_demo": ("test", "validation"),
}


def _task(task_manager, name):
    return task_manager.load([name])["tasks"][name]


@pytest.mark.parametrize("name, count", sorted(OFFICIAL_COUNTS.items()))
def test_tasks_load_official_row_counts(task_manager, local_data, name, count):
    for variant in (name, f"{name}_cot"):
        task = _task(task_manager, variant)
        assert len(task.eval_docs) == count
        assert task.config.num_fewshot == 3


@pytest.mark.parametrize("name, splits", sorted(EXPECTED_SPLITS.items()))
def test_results_config_records_the_splits_used(task_manager, local_data, name, splits):
    config = _task(task_manager, name).dump_config()
    assert (config["test_split"], config["fewshot_split"]) == splits
    assert (config["metadata"]["eval_split"], config["metadata"]["fewshot_split"]) == splits
    expected_source = "finemed_eval/demo" if name == "finemed_demo" else str(local_data)  # demo ships with us
    assert expected_source in config["metadata"]["data_source"]


def _contexts(task, seed: int, docs: int = 6) -> list[str]:
    task.set_fewshot_seed(seed)
    return [task.fewshot_context(doc, 3) for doc in list(task.eval_docs)[:docs]]


def test_three_seeds_three_exemplar_sets_and_same_seed_same_prompts(task_manager, local_data):
    task = _task(task_manager, "finemed_medqa")
    by_seed = {seed: _contexts(task, seed) for seed in (0, 1, 2)}
    assert len({tuple(contexts) for contexts in by_seed.values()}) == 3
    assert _contexts(task, 1) == by_seed[1]
    assert all(context.count("Question:") == 4 for context in by_seed[0])  # 3 exemplars + the question


def test_exemplars_never_include_the_document_itself(task_manager, local_data):
    task = _task(task_manager, "finemed_medmcqa")  # exemplars come from the evaluated split here
    task.set_fewshot_seed(0)
    for doc in list(task.eval_docs)[:40]:
        context = task.fewshot_context(doc, 3)
        assert context.count(doc["question"]) == 1


def test_cot_exemplars_show_reasoning_then_the_answer(task_manager, local_data):
    task = _task(task_manager, "finemed_mmlu_pro_biology_cot")
    task.set_fewshot_seed(0)
    context = task.fewshot_context(list(task.eval_docs)[0], 3)
    assert context.count("The answer is (") == 3
    assert context.rstrip().endswith("Answer: Let's think step by step.")


def test_multi_answer_choices_are_every_letter_set():
    doc = {"options": list("vwxyz"), "multi": True, "answer": "ACE"}
    choices = mc_choices(doc)
    assert len(choices) == 31 and choices.index("ACE") >= 0 and "CA" not in choices


def test_multi_answer_scoring_is_exact_set_match_per_kind():
    multi = {"options": list("vwxyz"), "multi": True, "answer": "ACE"}
    single = {"options": list("vwxy"), "multi": False, "answer": "B"}
    read = {"no_answer": 0.0, "extraction_rule": "answer_statement"}
    assert process_cot_by_type(multi, ["所以答案是E、C、A。"]) == {"acc": 1.0, "acc_multi": 1.0, **read}
    assert process_cot_by_type(multi, ["答案：AC"]) == {"acc": 0.0, "acc_multi": 0.0, **read}
    assert process_cot_by_type(single, ["The answer is (B)."]) == {"acc": 1.0, "acc_single": 1.0, **read}
    scores = [(-5.0, False)] * 31
    scores[mc_choices(multi).index("ACE")] = (-1.0, True)
    assert process_mc_by_type(multi, scores) == {"acc": 1.0, "acc_multi": 1.0}


def test_cmexam_reports_single_and_multi_accuracy_through_lm_eval(task_manager, local_data, embedded_model):
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    task = _task(task_manager, "finemed_cmexam")
    docs = list(task.eval_docs)
    picks = [next(i for i, d in enumerate(docs) if d["multi"]), next(i for i, d in enumerate(docs) if not d["multi"])]
    results = lm_eval.simple_evaluate(
        model=HFLM(pretrained=str(embedded_model), device="cpu", batch_size=16), tasks=["finemed_cmexam"],
        num_fewshot=0, samples={"finemed_cmexam": picks}, task_manager=task_manager,
    )
    metrics = results["results"]["finemed_cmexam"]
    assert {"acc,none", "acc_single,none", "acc_multi,none"} <= set(metrics)


def test_malformed_release_file_fails_naming_file_row_field(task_manager, shared_data, tmp_path, monkeypatch):
    broken = tmp_path / "medqa"
    broken.mkdir()
    lines = (shared_data / "medqa" / "phrases_no_exclude_test.jsonl").read_text().splitlines()[:20]
    row = json.loads(lines[16])
    row["answer_idx"] = "E"
    lines[16] = json.dumps(row)
    (broken / "phrases_no_exclude_test.jsonl").write_text("\n".join(lines))
    (broken / "phrases_no_exclude_dev.jsonl").write_text("\n".join(lines[:5]))
    monkeypatch.setenv("FINEMED_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match=r"phrases_no_exclude_test\.jsonl row 17: field 'answer_idx'"):
        _task(task_manager, "finemed_medqa")


def test_missing_release_file_fails_naming_the_path(task_manager, tmp_path, monkeypatch):
    monkeypatch.setenv("FINEMED_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="mmlu_pro"):
        _task(task_manager, "finemed_mmlu_pro_health")
