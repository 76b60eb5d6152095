"""Tests for finemed_eval.data on the real release files in ../shared/data (counts from their
PROVENANCE.md files), on malformed copies written to tmp_path, and on hub-shaped rows."""

from __future__ import annotations

import csv
import json
import logging
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from finemed_eval import data as D
from finemed_eval.data import BENCHMARKS, DataError, load_benchmark

DOC_KEYS = {"id", "question", "options", "answer", "multi", "subject", "explanation", "language"}

MMLU_TEST = {
    "anatomy": 135,
    "clinical_knowledge": 265,
    "college_biology": 144,
    "college_medicine": 173,
    "medical_genetics": 100,
    "professional_medicine": 272,
}
CEVAL_VAL = {"basic_medicine": 19, "clinical_medicine": 22, "physician": 49, "veterinary_medicine": 23}


@pytest.fixture()
def local(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Load from the real files through the environment variable, as users do."""
    monkeypatch.setenv("FINEMED_DATA_DIR", str(shared_data))
    return shared_data


def check_docs(docs: list[dict], language: str) -> None:
    """Every document has exactly the normalised schema and a valid answer."""
    assert docs
    ids = [doc["id"] for doc in docs]
    assert len(set(ids)) == len(ids), "ids must be unique within a split"
    for doc in docs:
        assert set(doc) == DOC_KEYS
        assert isinstance(doc["id"], str) and doc["id"]
        assert isinstance(doc["question"], str) and doc["question"].strip()
        assert isinstance(doc["options"], list) and all(isinstance(o, str) for o in doc["options"])
        assert sum(1 for o in doc["options"] if o) >= 2 and doc["options"][-1]
        assert not any(re.match(r"^\([A-J]\)", o) for o in doc["options"]), doc  # XMedBench "(A) " prefixes removed
        assert re.fullmatch(r"[A-Z]+", doc["answer"]) and doc["answer"] == "".join(sorted(set(doc["answer"])))
        assert all(ord(letter) - 65 < len(doc["options"]) and doc["options"][ord(letter) - 65] for letter in doc["answer"])
        assert isinstance(doc["multi"], bool) and (doc["multi"] or len(doc["answer"]) == 1)
        assert isinstance(doc["subject"], str) and isinstance(doc["explanation"], str)
        assert doc["language"] == language
        assert "\r" not in doc["question"] + doc["explanation"] + "".join(doc["options"])


# --------------------------------------------------------------------------------------------------
# Real release files
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("subject", sorted(MMLU_TEST))
def test_mmlu_official_counts(local: Path, subject: str) -> None:
    data = load_benchmark("mmlu", subject)
    assert len(data.eval_docs) == MMLU_TEST[subject]
    assert len(data.fewshot_docs) == 5
    assert (data.eval_split, data.fewshot_split) == ("test", "dev")
    assert data.source == f"{local}/mmlu/test/{subject}_test.csv, {local}/mmlu/dev/{subject}_dev.csv"
    check_docs(data.eval_docs, "en")
    check_docs(data.fewshot_docs, "en")
    assert all(len(doc["options"]) == 4 and doc["subject"] == subject for doc in data.eval_docs)


def test_mmlu_first_row(local: Path) -> None:
    doc = load_benchmark("mmlu", "anatomy").eval_docs[0]
    assert doc["id"] == "anatomy_test.csv:1"
    assert doc["question"].startswith("A lesion causing compression of the facial nerve at the stylomastoid foramen")
    assert doc["options"][0] == "paralysis of the facial muscles."
    assert doc["answer"] == "A" and doc["multi"] is False


@pytest.mark.parametrize("subject", sorted(CEVAL_VAL))
def test_ceval_official_counts(local: Path, subject: str) -> None:
    data = load_benchmark("ceval", subject)
    assert len(data.eval_docs) == CEVAL_VAL[subject]
    assert len(data.fewshot_docs) == 5
    assert (data.eval_split, data.fewshot_split) == ("val", "dev")
    check_docs(data.eval_docs, "zh")
    check_docs(data.fewshot_docs, "zh")
    assert all(doc["explanation"] for doc in data.fewshot_docs), "C-Eval dev rows carry explanations"
    assert not any(doc["explanation"] for doc in data.eval_docs), "C-Eval val has no explanation column"


def test_ceval_chinese_text_decoded(local: Path) -> None:
    doc = load_benchmark("ceval", "basic_medicine").eval_docs[0]
    assert doc == {
        "id": "0",
        "question": "不属于第二信使的物质是____",
        "options": ["cAMP", "cGMP", "$IP_3$", "胰岛素"],
        "answer": "D",
        "multi": False,
        "subject": "basic_medicine",
        "explanation": "",
        "language": "zh",
    }
    dev = load_benchmark("ceval", "basic_medicine").fewshot_docs[0]
    assert dev["explanation"].startswith("1. 原癌基因是正常存在的基因") and "\n2. " in dev["explanation"]


def test_medqa_test_and_dev_pool(local: Path) -> None:
    data = load_benchmark("medqa")
    assert (len(data.eval_docs), len(data.fewshot_docs)) == (1273, 1272)
    assert (data.eval_split, data.fewshot_split) == ("test", "dev"), "no train file here, so the dev split is the pool"
    check_docs(data.eval_docs, "en")
    check_docs(data.fewshot_docs, "en")
    assert Counter(doc["answer"] for doc in data.eval_docs) == {"A": 353, "B": 309, "C": 346, "D": 265}
    first = data.eval_docs[0]
    assert first["id"] == "phrases_no_exclude_test.jsonl:1"
    assert first["options"][ord(first["answer"]) - 65] == "Tell the attending that he cannot fail to disclose this mistake"


def test_medqa_prefers_train_pool(shared_data: Path, tmp_path: Path) -> None:
    medqa = tmp_path / "medqa"
    medqa.mkdir()
    shutil.copy(shared_data / "medqa" / "phrases_no_exclude_test.jsonl", medqa)
    lines = (shared_data / "medqa" / "phrases_no_exclude_dev.jsonl").read_text(encoding="utf-8").splitlines()
    (medqa / "phrases_no_exclude_train.jsonl").write_text("\n".join(lines[:7]) + "\n", encoding="utf-8")
    data = load_benchmark("medqa", data_dir=tmp_path)
    assert (data.fewshot_split, len(data.fewshot_docs)) == ("train", 7)


def test_medmcqa_validation_is_its_own_pool(local: Path) -> None:
    data = load_benchmark("medmcqa")
    assert len(data.eval_docs) == 4183
    assert (data.eval_split, data.fewshot_split) == ("validation", "validation"), "no train file: same split"
    assert data.fewshot_docs == data.eval_docs
    check_docs(data.eval_docs, "en")
    assert Counter(doc["answer"] for doc in data.eval_docs) == {"A": 1348, "B": 1085, "C": 925, "D": 825}
    assert sum(1 for doc in data.eval_docs if not doc["explanation"]) == 1977, '"nan" explanations become ""'
    assert not any(doc["multi"] for doc in data.eval_docs), 'choice_type "multi" still has one answer'
    assert len({doc["subject"] for doc in data.eval_docs}) == 21
    by_id = {doc["id"]: doc for doc in data.eval_docs}
    # opd "nan" (missing) is trailing padding; the one missing opc stays as "" to keep the letters
    assert by_id["c6365cce-507c-40f6-90a2-46b867f47b6e"]["options"] == ["Antegrade", "Retrograde", "Antegrade and retrograde"]
    assert by_id["24c02db5-49d5-434a-80ab-fc70512353b5"]["options"] == ["Centre", "Ends", "", "Both"]
    assert not any("nan" in doc["options"] for doc in data.eval_docs)


def test_medmcqa_multimedqa_json_equals_jsonl(shared_data: Path, tmp_path: Path) -> None:
    (tmp_path / "medmcqa").mkdir()
    shutil.copy(shared_data / "medmcqa" / "medmcqa_val.json", tmp_path / "medmcqa")
    from_json = load_benchmark("medmcqa", data_dir=tmp_path)
    assert from_json.source.endswith("medmcqa_val.json")
    assert from_json.eval_docs == load_benchmark("medmcqa", data_dir=shared_data).eval_docs


def test_medmcqa_one_based_original_file(tmp_path: Path) -> None:
    """The original Google-Drive files number cop 1-4 (JSON lines under a .json name)."""
    rows = [{"id": f"q{i}", "question": f"Q{i}?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": cop, "exp": None}
            for i, cop in enumerate([1, 4, 2])]
    (tmp_path / "medmcqa").mkdir()
    (tmp_path / "medmcqa" / "dev.json").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    data = load_benchmark("medmcqa", data_dir=tmp_path)
    assert [doc["answer"] for doc in data.eval_docs] == ["A", "D", "B"]


@pytest.mark.parametrize("category, count", [("biology", 717), ("health", 818)])
def test_mmlu_pro_categories(local: Path, category: str, count: int) -> None:
    data = load_benchmark("mmlu_pro", category)
    assert (len(data.eval_docs), len(data.fewshot_docs)) == (count, 5)
    assert (data.eval_split, data.fewshot_split) == ("test", "validation")
    assert data.source.endswith("validation-00000-of-00001.parquet")
    check_docs(data.eval_docs, "en")
    check_docs(data.fewshot_docs, "en")
    assert {doc["subject"] for doc in data.eval_docs + data.fewshot_docs} == {category}
    assert all(doc["explanation"].startswith("A: Let's think step by step.") for doc in data.fewshot_docs)
    assert max(len(doc["options"]) for doc in data.eval_docs) == 10
    assert min(len(doc["options"]) for doc in data.eval_docs) == 3
    assert not any("N/A" in doc["options"] for doc in data.fewshot_docs), "validation's N/A padding is dropped"


def test_mmlu_pro_all_categories(local: Path) -> None:
    data = load_benchmark("mmlu_pro")
    assert (len(data.eval_docs), len(data.fewshot_docs)) == (12032, 70)


def test_mmlu_pro_jsonl_fallback_matches_parquet(shared_data: Path, tmp_path: Path) -> None:
    (tmp_path / "mmlu_pro").mkdir()
    for name in ("test_biology_health.jsonl", "validation.jsonl"):
        shutil.copy(shared_data / "mmlu_pro" / name, tmp_path / "mmlu_pro")
    for category in ("biology", "health"):
        from_jsonl = load_benchmark("mmlu_pro", category, data_dir=tmp_path)
        from_parquet = load_benchmark("mmlu_pro", category, data_dir=shared_data)
        assert from_jsonl.eval_docs == from_parquet.eval_docs
        assert from_jsonl.fewshot_docs == from_parquet.fewshot_docs


def test_cmb_xmedbench_fallback(local: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="finemed_eval.data"):
        data = load_benchmark("cmb")
    assert "official test questions" in caplog.text and "missing" in caplog.text
    assert len(data.eval_docs) == 2000
    assert (data.eval_split, data.fewshot_split) == ("xmedbench_sample", "xmedbench_sample")
    assert data.source.endswith("cmb/xmedbench_subset/cmb-single.jsonl")
    check_docs(data.eval_docs, "zh")
    assert Counter(doc["answer"] for doc in data.eval_docs) == {"A": 358, "B": 407, "C": 435, "D": 453, "E": 347}
    assert not any(doc["multi"] for doc in data.eval_docs)
    # every row has five "(X) ..." parts, but in 122 of them (E) is empty ("(E) ."): 4-option questions
    assert Counter(len(doc["options"]) for doc in data.eval_docs) == {5: 1878, 4: 122}
    first = data.eval_docs[0]
    assert first["id"] == "cmb-single.jsonl:1"
    assert first["question"] == "患儿，1岁半。发热、流涕3天，今日外耳道流出少量脓性分泌物，考虑为中耳炎。小儿易患中耳炎的原因是"
    assert first["options"] == ["后鼻道狭窄", "鼻腔相对较小", "鼻窦口相对较大", "咽鼓管宽、短、直", "喉部较长，呈漏斗状"]
    assert first["answer"] == "D"
    # XMedBench appends "." to every option; only that one is removed
    assert data.eval_docs[1281]["options"][2] == "Inhat."


def test_cmexam_xmedbench_fallback(local: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="finemed_eval.data"):
        data = load_benchmark("cmexam")
    assert "official CSVs" in caplog.text
    assert len(data.eval_docs) == 2000
    assert (data.eval_split, data.fewshot_split) == ("xmedbench_sample", "xmedbench_sample")
    check_docs(data.eval_docs, "zh")
    # PROVENANCE.md says 68 multi-answer rows, but the file (sha256 5860c1e0…, as recorded there) has 62:
    # 1,938 answers are one letter "(X)" and 62 are several letters "(ACE)".
    multi = [doc for doc in data.eval_docs if doc["multi"]]
    assert len(multi) == 62 and all(len(doc["answer"]) > 1 for doc in multi)
    assert Counter(len(doc["options"]) for doc in data.eval_docs) == {5: 1927, 4: 73}
    assert data.eval_docs[0]["question"] == "《药品经营许可证管理办法》规定，开办药品经营企业必须具有"


def test_data_dir_argument_overrides_environment(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINEMED_DATA_DIR", str(tmp_path))  # empty: would fail
    assert len(load_benchmark("ceval", "physician", data_dir=shared_data).eval_docs) == 49
    with pytest.raises(DataError, match="physician_val.csv"):
        load_benchmark("ceval", "physician")


# --------------------------------------------------------------------------------------------------
# Official formats not present in ../shared/data (CMB question files, CMExam CSVs): written here
# --------------------------------------------------------------------------------------------------


def _cmb_question(id_: int, qtype: str = "单项选择题", answer: str = "", **option) -> dict:
    option = option or {"A": "甲", "B": "乙", "C": "丙", "D": "丁", "E": "戊"}
    return {"exam_type": "医师考试", "exam_class": "执业医师", "exam_subject": "口腔执业医师", "question": f"题目{id_}",
            "answer": answer, "question_type": qtype, "option": option, "id": id_}


def _write_json(path: Path, value) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def test_cmb_official_questions_joined_with_real_answers(shared_data: Path, tmp_path: Path) -> None:
    base = tmp_path / "cmb"
    shutil.copy(shared_data / "cmb" / "CMB-test-choice-answer.json", _write_json(base / "x", 0).parent)
    _write_json(base / "CMB-Exam" / "CMB-test" / "CMB-test-choice-question-merge.json", [
        _cmb_question(1),
        _cmb_question(5205, "多项选择题"),  # a multi-answer type whose answer is one letter
        _cmb_question(5218, "多项选择题"),  # answer "EB" in the answer file
        _cmb_question(397, "多项选择题", A="1", B="2", C="3", D="4", E="5", F="6"),  # "ABDEF"
        _cmb_question(2, A="1", B="2", C="3", D="4", E=None, F=""),  # unused option slots
    ])
    _write_json(base / "CMB-Exam" / "CMB-val" / "CMB-val-merge.json", [
        dict(_cmb_question(7, answer="C"), explanation="解析：选C。"),
    ])
    data = load_benchmark("cmb", data_dir=tmp_path)
    assert (data.eval_split, data.fewshot_split) == ("test", "val")
    assert [doc["id"] for doc in data.eval_docs] == ["1", "5205", "5218", "397", "2"]
    assert [doc["answer"] for doc in data.eval_docs] == ["D", "B", "BE", "ABDEF", "A"]
    assert [doc["multi"] for doc in data.eval_docs] == [False, True, True, True, False]
    assert data.eval_docs[4]["options"] == ["1", "2", "3", "4"]
    assert data.eval_docs[0]["subject"] == "医师考试/执业医师"
    assert data.fewshot_docs[0]["explanation"] == "解析：选C。" and data.fewshot_docs[0]["answer"] == "C"
    check_docs(data.eval_docs, "zh")


def test_cmb_without_val_uses_test_as_pool(tmp_path: Path) -> None:
    _write_json(tmp_path / "cmb" / "CMB-test-choice-question-merge.json", [_cmb_question(1), _cmb_question(2)])
    _write_json(tmp_path / "cmb" / "CMB-test-choice-answer.json", [{"id": 1, "answer": "A"}, {"id": 2, "answer": "E"}])
    data = load_benchmark("cmb", data_dir=tmp_path)
    assert (data.eval_split, data.fewshot_split) == ("test", "test")
    assert [doc["answer"] for doc in data.eval_docs] == ["A", "E"]


def test_cmb_answer_file_missing(tmp_path: Path) -> None:
    _write_json(tmp_path / "cmb" / "CMB-test-choice-question-merge.json", [_cmb_question(1)])
    with pytest.raises(DataError) as err:
        load_benchmark("cmb", data_dir=tmp_path)
    message = str(err.value)
    assert "CMB-test-choice-question-merge.json row 1: field 'answer' is empty" in message
    assert str(tmp_path / "cmb" / "CMB-test-choice-answer.json") in message


def test_cmb_bad_answer_names_the_answer_file(tmp_path: Path) -> None:
    _write_json(tmp_path / "cmb" / "CMB-test-choice-question-merge.json", [_cmb_question(1), _cmb_question(2, A="x", B="y")])
    answers = _write_json(tmp_path / "cmb" / "CMB-test-choice-answer.json", [{"id": 1, "answer": "A"}, {"id": 2, "answer": "C"}])
    with pytest.raises(DataError) as err:
        load_benchmark("cmb", data_dir=tmp_path)
    assert str(err.value) == (
        f"{tmp_path / 'cmb' / 'CMB-test-choice-question-merge.json'} row 2: field 'answer' is 'C' "
        f"(from {answers} row 2) but the question has 2 options (A-B)"
    )


def _write_cmexam(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["Question", "Options", "Answer", "Explanation", "Medical Discipline"]
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[c for c in columns if any(c in r for r in rows)])
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_cmexam_official_csv(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    options = "A 甲状腺\nB 乙状结肠\nC 丙酮\nD 丁卡因\nE 戊型肝炎"
    test = _write_cmexam(tmp_path / "cmexam" / "test_with_annotations.csv", [
        {"Question": "单选题", "Options": options, "Answer": "C", "Explanation": "解析", "Medical Discipline": "临床医学"},
        {"Question": "多选题", "Options": options, "Answer": "EAC", "Explanation": "", "Medical Discipline": "中医学"},
        {"Question": "无答案", "Options": options, "Answer": "", "Explanation": "", "Medical Discipline": ""},
        {"Question": "四个选项", "Options": "A 一\nB 二\n（续行）\nC 三\nD 四", "Answer": "B", "Explanation": "", "Medical Discipline": ""},
    ])
    _write_cmexam(tmp_path / "cmexam" / "val.csv", [{"Question": "q", "Options": "A 1\nB 2", "Answer": "A", "Explanation": "e"}])
    with caplog.at_level(logging.WARNING, logger="finemed_eval.data"):
        data = load_benchmark("cmexam", data_dir=tmp_path)
    assert f"{test}: skipped 1 row(s) without an answer (rows 3)" in caplog.text
    assert (data.eval_split, data.fewshot_split) == ("test", "val")
    assert [doc["id"] for doc in data.eval_docs] == [
        "test_with_annotations.csv:1", "test_with_annotations.csv:2", "test_with_annotations.csv:4"]
    single, multi, four = data.eval_docs
    assert single["options"] == ["甲状腺", "乙状结肠", "丙酮", "丁卡因", "戊型肝炎"]
    assert (single["answer"], single["multi"], single["subject"], single["explanation"]) == ("C", False, "临床医学", "解析")
    assert (multi["answer"], multi["multi"]) == ("ACE", True)
    assert four["options"] == ["一", "二\n（续行）", "三", "四"]
    check_docs(data.eval_docs, "zh")

    _write_cmexam(tmp_path / "cmexam" / "train.csv", [{"Question": "q", "Options": "A 1\nB 2", "Answer": "B"}])
    assert load_benchmark("cmexam", data_dir=tmp_path).fewshot_split == "train"


# --------------------------------------------------------------------------------------------------
# Malformed copies: errors name file, row and field
# --------------------------------------------------------------------------------------------------


def _edit_jsonl(src: Path, dst: Path, row: int, edit) -> Path:
    lines = src.read_text(encoding="utf-8").split("\n")
    record = json.loads(lines[row - 1])
    edit(record)
    lines[row - 1] = json.dumps(record, ensure_ascii=False)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("\n".join(lines), encoding="utf-8")
    return dst


def _medqa_copy(shared_data: Path, tmp_path: Path, row: int, edit) -> Path:
    shutil.copytree(shared_data / "medqa", tmp_path / "medqa")
    test = tmp_path / "medqa" / "phrases_no_exclude_test.jsonl"
    return _edit_jsonl(test, test, row, edit)


def test_medqa_answer_out_of_range(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _medqa_copy(shared_data, tmp_path, 17, lambda r: r.update(answer_idx="E"))
    monkeypatch.setenv("FINEMED_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError) as err:
        load_benchmark("medqa")
    assert str(err.value).endswith(
        "medqa/phrases_no_exclude_test.jsonl row 17: field 'answer_idx' is 'E' but the question has 4 options (A-D)")
    assert str(err.value).startswith(str(tmp_path))


def test_medqa_missing_answer_field(shared_data: Path, tmp_path: Path) -> None:
    _medqa_copy(shared_data, tmp_path, 5, lambda r: r.pop("answer_idx"))
    with pytest.raises(DataError, match=r"phrases_no_exclude_test\.jsonl row 5: field 'answer_idx' is missing$"):
        load_benchmark("medqa", data_dir=tmp_path)


def test_medqa_missing_option(shared_data: Path, tmp_path: Path) -> None:
    _medqa_copy(shared_data, tmp_path, 3, lambda r: r["options"].pop("C"))
    with pytest.raises(DataError, match=r"phrases_no_exclude_test\.jsonl row 3: field 'options' has no option 'C'"):
        load_benchmark("medqa", data_dir=tmp_path)


def test_medqa_empty_option(shared_data: Path, tmp_path: Path) -> None:
    _medqa_copy(shared_data, tmp_path, 8, lambda r: r["options"].update(B="  "))
    with pytest.raises(DataError, match=r"row 8: field \"options\['B'\]\" is empty"):
        load_benchmark("medqa", data_dir=tmp_path)


def test_medqa_empty_question(shared_data: Path, tmp_path: Path) -> None:
    _medqa_copy(shared_data, tmp_path, 9, lambda r: r.update(question=""))
    with pytest.raises(DataError, match=r"row 9: field 'question' is empty"):
        load_benchmark("medqa", data_dir=tmp_path)


def test_invalid_json_line(shared_data: Path, tmp_path: Path) -> None:
    shutil.copytree(shared_data / "medqa", tmp_path / "medqa")
    test = tmp_path / "medqa" / "phrases_no_exclude_test.jsonl"
    lines = test.read_text(encoding="utf-8").split("\n")
    lines[11] = lines[11][:40]
    test.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(DataError, match=r"phrases_no_exclude_test\.jsonl row 12: field '\(line\)' is not valid JSON"):
        load_benchmark("medqa", data_dir=tmp_path)


def _mmlu_copy(shared_data: Path, tmp_path: Path, row: int, cells: list[str] | None) -> Path:
    shutil.copytree(shared_data / "mmlu", tmp_path / "mmlu")
    test = tmp_path / "mmlu" / "test" / "anatomy_test.csv"
    with open(test, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    rows[row - 1] = cells if cells is not None else rows[row - 1]
    with open(test, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return test


@pytest.mark.parametrize("cells, message", [
    (["Q?", "a", "b", "c", "d", "E"], "row 4: field 'answer' is 'E' but the question has 4 options (A-D)"),
    (["Q?", "a", "b", "", "d", "A"], "row 4: field 'C' is empty"),
    (["Q?", "a", "b", "c", "d"], "row 4: field 'answer' is missing"),
    (["Q?", "a", "b", "c", "d", "A", "x"], "row 4: field 'answer' should be column 6 but the row has 7 columns"),
    (["Q?", "a", "b", "c", "d", "AB"], "row 4: field 'answer' is 'AB': several letters for a single-answer question"),
    (["Q?", "a", "b", "c", "d", "4"], "row 4: field 'answer' is '4', not option letters"),
])
def test_mmlu_bad_rows(shared_data: Path, tmp_path: Path, cells: list[str], message: str) -> None:
    test = _mmlu_copy(shared_data, tmp_path, 4, cells)
    with pytest.raises(DataError) as err:
        load_benchmark("mmlu", "anatomy", data_dir=tmp_path)
    assert str(err.value) == f"{test} {message}"


def test_ceval_missing_answer_column(shared_data: Path, tmp_path: Path) -> None:
    shutil.copytree(shared_data / "ceval", tmp_path / "ceval")
    val = tmp_path / "ceval" / "val" / "physician_val.csv"
    text = val.read_text(encoding="utf-8").replace("id,question,A,B,C,D,answer", "id,question,A,B,C,D,label", 1)
    val.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=r"ceval/val/physician_val\.csv row 1: field 'answer' is missing"):
        load_benchmark("ceval", "physician", data_dir=tmp_path)


def test_not_utf8(shared_data: Path, tmp_path: Path) -> None:
    shutil.copytree(shared_data / "ceval", tmp_path / "ceval")
    val = tmp_path / "ceval" / "val" / "physician_val.csv"
    val.write_bytes(val.read_text(encoding="utf-8").encode("gb18030"))
    with pytest.raises(DataError, match=r"physician_val\.csv: not UTF-8 text"):
        load_benchmark("ceval", "physician", data_dir=tmp_path)


def test_medmcqa_cop_out_of_range(shared_data: Path, tmp_path: Path) -> None:
    _edit_jsonl(shared_data / "medmcqa" / "validation.jsonl", tmp_path / "medmcqa" / "validation.jsonl", 10,
                lambda r: r.update(cop="4"))
    with pytest.raises(DataError) as err:
        load_benchmark("medmcqa", data_dir=tmp_path)
    assert str(err.value).endswith("medmcqa/validation.jsonl row 10: field 'cop' is '4' but the question has 4 options (A-D)")


def test_medmcqa_answer_on_missing_option(shared_data: Path, tmp_path: Path) -> None:
    _edit_jsonl(shared_data / "medmcqa" / "validation.jsonl", tmp_path / "medmcqa" / "validation.jsonl", 2993,
                lambda r: r.update(cop="2"))  # opc is "nan" in this row
    with pytest.raises(DataError, match=r"row 2993: field 'cop' is '2' but option C is empty"):
        load_benchmark("medmcqa", data_dir=tmp_path)


def test_medmcqa_too_few_options(shared_data: Path, tmp_path: Path) -> None:
    _edit_jsonl(shared_data / "medmcqa" / "validation.jsonl", tmp_path / "medmcqa" / "validation.jsonl", 6,
                lambda r: r.update(opb="nan", opc="", opd="nan", cop="0"))
    with pytest.raises(DataError, match=r"row 6: field 'opa-opd' has 1 non-empty option\(s\); a question needs at least 2"):
        load_benchmark("medmcqa", data_dir=tmp_path)


def test_mmlu_pro_answer_out_of_range(shared_data: Path, tmp_path: Path) -> None:
    (tmp_path / "mmlu_pro").mkdir()
    shutil.copy(shared_data / "mmlu_pro" / "validation.jsonl", tmp_path / "mmlu_pro")
    src = shared_data / "mmlu_pro" / "test_biology_health.jsonl"
    _edit_jsonl(src, tmp_path / "mmlu_pro" / "test_biology_health.jsonl", 1, lambda r: r.update(answer="K"))
    with pytest.raises(DataError) as err:
        load_benchmark("mmlu_pro", "biology", data_dir=tmp_path)
    assert str(err.value).endswith("test_biology_health.jsonl row 1: field 'answer' is 'K' but the question has 8 options (A-H)")


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.update(anwer="(F)"), "row 30: field 'anwer' is '(F)' but the question has 5 options (A-E)"),
    (lambda r: r.pop("anwer"), "row 30: field 'answer' is missing"),
    (lambda r: r.update(anwer="D"), None),  # bare letters are accepted
    (lambda r: r.update(anwer="(D?)"), "row 30: field 'anwer' is '(D?)', expected option letters in parentheses like '(D)'"),
    (lambda r: r.update(option=r["option"].replace("(C) ", "(X) ")), "row 30: field 'option' has option (X) where (C) was expected"),
    (lambda r: r.update(option="(A) 只有一个."), "row 30: field 'option' has 1 non-empty option(s); a question needs at least 2"),
])
def test_xmedbench_bad_rows(shared_data: Path, tmp_path: Path, edit, message: str | None) -> None:
    src = shared_data / "cmexam" / "xmedbench_subset" / "cmexam.jsonl"
    dst = _edit_jsonl(src, tmp_path / "cmexam" / "xmedbench_subset" / "cmexam.jsonl", 30, edit)
    if message is None:
        assert load_benchmark("cmexam", data_dir=tmp_path).eval_docs[29]["answer"] == "D"
        return
    with pytest.raises(DataError) as err:
        load_benchmark("cmexam", data_dir=tmp_path)
    assert str(err.value) == f"{dst} {message}"


def test_cmexam_csv_bad_options(tmp_path: Path) -> None:
    test = _write_cmexam(tmp_path / "cmexam" / "test.csv", [
        {"Question": "q", "Options": "A 1\nB 2", "Answer": "A"},
        {"Question": "q", "Options": "选项：A 1\nB 2", "Answer": "A"},
    ])
    with pytest.raises(DataError) as err:
        load_benchmark("cmexam", data_dir=tmp_path)
    assert str(err.value) == f"{test} row 2: field 'Options' should start with option A (\"A text\") but starts with '选项：A 1'"


# --------------------------------------------------------------------------------------------------
# Missing files, unknown names
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, subset, expected, hint", [
    ("mmlu", "anatomy", "mmlu/test/anatomy_test.csv", "cais/mmlu"),
    ("ceval", "physician", "ceval/val/physician_val.csv", "ceval/ceval-exam"),
    ("medqa", None, "medqa/phrases_no_exclude_test.jsonl", "GBaker/MedQA-USMLE-4-options"),
    ("medmcqa", None, "medmcqa/medmcqa_val.json", "openlifescienceai/medmcqa"),
    ("mmlu_pro", "health", "mmlu_pro/test-00000-of-00001.parquet", "TIGER-Lab/MMLU-Pro"),
    ("cmb", None, "cmb/xmedbench_subset/cmb-single.jsonl", "CMB-test-choice-question-merge.json"),
    ("cmexam", None, "cmexam/test_with_annotations.csv", "github.com/williamliujl/CMExam"),
])
def test_missing_files(tmp_path: Path, name: str, subset: str | None, expected: str, hint: str) -> None:
    with pytest.raises(DataError) as err:
        load_benchmark(name, subset, data_dir=tmp_path)
    message = str(err.value)
    assert str(tmp_path / expected) in message and hint in message


def test_missing_fewshot_file(shared_data: Path, tmp_path: Path) -> None:
    (tmp_path / "mmlu" / "test").mkdir(parents=True)
    shutil.copy(shared_data / "mmlu" / "test" / "anatomy_test.csv", tmp_path / "mmlu" / "test")
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "mmlu" / "dev" / "anatomy_dev.csv"))):
        load_benchmark("mmlu", "anatomy", data_dir=tmp_path)


@pytest.mark.parametrize("name, subset, message", [
    ("pubmedqa", None, "unknown benchmark 'pubmedqa'; valid values: mmlu, ceval, cmb, cmexam, medqa, medmcqa, mmlu_pro, demo"),
    ("mmlu", None, "mmlu needs a subset; valid values: anatomy, clinical_knowledge, college_biology"),
    ("mmlu", "virology", "unknown mmlu subset 'virology'; valid values: anatomy,"),
    ("ceval", "physics", "unknown ceval subset 'physics'; valid values: clinical_medicine, basic_medicine, physician, veterinary_medicine"),
    ("mmlu_pro", "law", "unknown mmlu_pro subset 'law'; valid values: biology, health (or None for all)"),
    ("medqa", "step1", "unknown medqa subset 'step1'; valid values: none (pass subset=None)"),
])
def test_unknown_names(tmp_path: Path, name: str, subset: str | None, message: str) -> None:
    with pytest.raises(DataError) as err:
        load_benchmark(name, subset, data_dir=tmp_path)
    assert str(err.value).startswith(message)


def test_benchmark_list() -> None:
    assert BENCHMARKS == ("mmlu", "ceval", "cmb", "cmexam", "medqa", "medmcqa", "mmlu_pro", "demo")
    assert issubclass(DataError, ValueError)


# --------------------------------------------------------------------------------------------------
# Hugging Face hub (no network here): datasets.load_dataset replaced by hub-shaped rows
# --------------------------------------------------------------------------------------------------

HUB_ROWS = {
    ("cais/mmlu", "anatomy", "test"): [
        {"question": "Which bone?", "subject": "anatomy", "choices": ["Femur", "Tibia", "Ulna", "Radius"], "answer": 2}],
    ("cais/mmlu", "anatomy", "dev"): [
        {"question": "Which organ?", "subject": "anatomy", "choices": ["Heart", "Lung", "Liver", "Brain"], "answer": 0}],
    ("ceval/ceval-exam", "physician", "val"): [
        {"id": 0, "question": "题？", "A": "甲", "B": "乙", "C": "丙", "D": "丁", "answer": "B", "explanation": ""}],
    ("ceval/ceval-exam", "physician", "dev"): [
        {"id": 0, "question": "例？", "A": "甲", "B": "乙", "C": "丙", "D": "丁", "answer": "A", "explanation": "因为"}],
    ("GBaker/MedQA-USMLE-4-options", None, "test"): [
        {"question": "Q1?", "answer": "b", "options": {"A": "a", "B": "b", "C": "c", "D": "d"}, "meta_info": "step1",
         "answer_idx": "B", "metamap_phrases": ["x"]}],
    ("GBaker/MedQA-USMLE-4-options", None, "train"): [
        {"question": "Q2?", "answer": "d", "options": {"A": "a", "B": "b", "C": "c", "D": "d"}, "meta_info": "step2&3",
         "answer_idx": "D", "metamap_phrases": []}],
    ("openlifescienceai/medmcqa", None, "validation"): [
        {"id": "u1", "question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 3, "choice_type": "multi",
         "exp": None, "subject_name": "Anatomy", "topic_name": None}],
    ("openlifescienceai/medmcqa", None, "train"): [
        {"id": "u2", "question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 0, "choice_type": "single",
         "exp": "Because.", "subject_name": "Surgery", "topic_name": "t"}],
    ("TIGER-Lab/MMLU-Pro", None, "test"): [
        {"question_id": 70, "question": "Bio?", "options": list("abcdefghij"), "answer": "J", "answer_index": 9,
         "cot_content": "", "category": "biology", "src": "s"},
        {"question_id": 71, "question": "Law?", "options": ["a", "b", "c"], "answer": "C", "answer_index": 2,
         "cot_content": "", "category": "law", "src": "s"}],
    ("TIGER-Lab/MMLU-Pro", None, "validation"): [
        {"question_id": 1, "question": "Bio ex?", "options": ["a", "b", "c", "N/A", "N/A"], "answer": "B", "answer_index": 1,
         "cot_content": "A: Let's think step by step. The answer is (B).", "category": "biology", "src": "s"}],
    ("json", D.CMB_ANSWERS_URL, "train"): [
        {"id": 1, "exam_type": "医师考试", "exam_class": "执业医师", "exam_subject": "x", "question_type": "多项选择题", "answer": "CA"}],
    ("json", D.CMB_HUB_FILES["test"], "test"): [
        dict(_cmb_question(1, "多项选择题"), option={"A": "1", "B": "2", "C": "3", "D": "4", "E": None, "F": None})],
    ("json", D.CMB_HUB_FILES["val"], "val"): [
        dict(_cmb_question(9, answer="E"), option={"A": "1", "B": "2", "C": "3", "D": "4", "E": "5", "F": None},
             explanation="解析")],
}


@pytest.fixture()
def hub(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Replace datasets.load_dataset; records the calls."""
    import datasets

    calls: list[tuple] = []

    def fake_load_dataset(path, name=None, *, split, data_files=None, **kwargs):
        key = (path, data_files[split] if data_files else name, split)
        calls.append(key)
        if key not in HUB_ROWS:
            raise ConnectionError(f"no fake rows for {key}")
        return list(HUB_ROWS[key])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.delenv("FINEMED_DATA_DIR", raising=False)
    return calls


def test_hub_mmlu(hub: list[tuple]) -> None:
    data = load_benchmark("mmlu", "anatomy")
    assert hub == [("cais/mmlu", "anatomy", "test"), ("cais/mmlu", "anatomy", "dev")]
    assert (data.eval_split, data.fewshot_split, data.source) == ("test", "dev", "cais/mmlu")
    assert data.eval_docs == [{
        "id": "cais/mmlu/anatomy/test:1", "question": "Which bone?", "options": ["Femur", "Tibia", "Ulna", "Radius"],
        "answer": "C", "multi": False, "subject": "anatomy", "explanation": "", "language": "en",
    }]
    assert data.fewshot_docs[0]["answer"] == "A"


def test_hub_ceval(hub: list[tuple]) -> None:
    data = load_benchmark("ceval", "physician")
    assert (data.eval_split, data.fewshot_split, data.source) == ("val", "dev", "ceval/ceval-exam")
    assert data.eval_docs[0]["id"] == "0" and data.eval_docs[0]["answer"] == "B"
    assert data.fewshot_docs[0]["explanation"] == "因为"


def test_hub_medqa(hub: list[tuple]) -> None:
    data = load_benchmark("medqa")
    assert (data.eval_split, data.fewshot_split) == ("test", "train")
    assert [d["answer"] for d in data.eval_docs + data.fewshot_docs] == ["B", "D"]


def test_hub_medmcqa(hub: list[tuple]) -> None:
    data = load_benchmark("medmcqa")
    assert (data.eval_split, data.fewshot_split) == ("validation", "train")
    doc = data.eval_docs[0]
    assert (doc["id"], doc["answer"], doc["multi"], doc["explanation"], doc["subject"]) == ("u1", "D", False, "", "Anatomy")
    assert data.fewshot_docs[0]["explanation"] == "Because."


def test_hub_mmlu_pro(hub: list[tuple]) -> None:
    data = load_benchmark("mmlu_pro", "biology")
    assert [d["id"] for d in data.eval_docs] == ["70"] and data.eval_docs[0]["answer"] == "J"
    assert data.fewshot_docs[0]["options"] == ["a", "b", "c"]
    assert len(load_benchmark("mmlu_pro").eval_docs) == 2


def test_hub_cmb(hub: list[tuple]) -> None:
    data = load_benchmark("cmb")
    assert (data.eval_split, data.fewshot_split, data.source) == ("test", "val", "FreedomIntelligence/CMB")
    doc = data.eval_docs[0]
    assert (doc["id"], doc["answer"], doc["multi"], doc["options"]) == ("1", "AC", True, ["1", "2", "3", "4"])
    assert data.fewshot_docs[0]["answer"] == "E" and data.fewshot_docs[0]["explanation"] == "解析"


def test_hub_cmexam_needs_local_files(hub: list[tuple]) -> None:
    with pytest.raises(DataError, match="no official Hugging Face copy.*github.com/williamliujl/CMExam"):
        load_benchmark("cmexam")
    assert hub == []


def test_hub_unreachable(hub: list[tuple], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(HUB_ROWS, ("cais/mmlu", "anatomy", "test"))  # the fake then raises ConnectionError
    with pytest.raises(DataError) as err:
        load_benchmark("mmlu", "anatomy")
    assert str(err.value).startswith("cais/mmlu (anatomy, test): cannot load from the Hugging Face hub (ConnectionError")
    assert "FINEMED_DATA_DIR" in str(err.value)


def test_hub_bad_row_names_split_and_row(hub: list[tuple], monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [dict(HUB_ROWS[("openlifescienceai/medmcqa", None, "validation")][0]) for _ in range(3)]
    rows[2]["cop"] = 7
    monkeypatch.setitem(HUB_ROWS, ("openlifescienceai/medmcqa", None, "validation"), rows)
    with pytest.raises(DataError) as err:
        load_benchmark("medmcqa")
    assert str(err.value) == "openlifescienceai/medmcqa (validation) row 3: field 'cop' is '7' but the question has 4 options (A-D)"


# --------------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------------


def test_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINEMED_DATA_DIR", str(tmp_path))  # ignored by demo
    data = load_benchmark("demo", data_dir=tmp_path)
    assert (data.eval_split, data.fewshot_split) == ("test", "validation")
    assert data.source == str(D.DEMO_DIR)
    check_docs(data.eval_docs, "en")
    check_docs(data.fewshot_docs, "en")
    with pytest.raises(DataError, match="unknown demo subset"):
        load_benchmark("demo", "biology")


def test_demo_reads_mmlu_pro_schema_and_ignores_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    demo = tmp_path / "demo"
    demo.mkdir()
    row = {"question_id": 7, "question": "Which vitamin?", "options": ["A1", "B12", "C", "D", "N/A"], "answer": "B",
           "answer_index": 1, "cot_content": "A: Let's think step by step. The answer is (B).", "category": "health",
           "src": "demo"}
    (demo / "demo_test.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    (demo / "demo_validation.jsonl").write_text(json.dumps(dict(row, question_id=8)) + "\n", encoding="utf-8")
    monkeypatch.setattr(D, "DEMO_DIR", demo)
    monkeypatch.setenv("FINEMED_DATA_DIR", str(tmp_path / "nowhere"))
    data = load_benchmark("demo", data_dir=tmp_path / "elsewhere")
    assert (data.eval_split, data.fewshot_split, data.source) == ("test", "validation", str(demo))
    assert data.eval_docs == [{"id": "7", "question": "Which vitamin?", "options": ["A1", "B12", "C", "D"], "answer": "B",
                               "multi": False, "subject": "health", "explanation": row["cot_content"], "language": "en"}]
    assert data.fewshot_docs[0]["id"] == "8"
    (demo / "demo_validation.jsonl").unlink()
    with pytest.raises(DataError, match=re.escape(str(demo / "demo_validation.jsonl"))):
        load_benchmark("demo")
