import random
import time

import pytest

from finemed_eval.answers import extract_choice, is_correct, letters

O1_THINKING = (
    "## Thinking\n\nOption A (aspirin) looks plausible at first, so maybe the answer is A. "
    "But the patient has a bleeding history, which rules out **A**.\n\n"
)

# (text, num_options, expected) - single-answer questions
SINGLE = [
    # English explicit statements
    ("Let's think step by step. Beta blockers reduce mortality. The answer is (B).", 4, "B"),
    ("The answer is D.", 4, "D"),
    ("Answer: A", 4, "A"),
    ("answer: (c)", 4, "C"),
    ("the answer is (b)", 4, "B"),
    ("**Answer:** C", 4, "C"),
    ("**Answer: C**\n\nExplanation: aspirin irreversibly inhibits COX-1.", 4, "C"),
    ("Final answer: D", 4, "D"),
    ("The correct answer is **B**. Heparin is not indicated here.", 4, "B"),
    ("The correct answer is option (C) Aspirin.", 4, "C"),
    ("The best choice is A, a beta-blocker.", 4, "A"),
    ("The answer is A because aspirin lowers platelet aggregation.", 4, "A"),
    ("Answer:\n\n(D) Metformin", 4, "D"),
    ("Therefore, the answer is $\\boxed{C}$.", 4, "C"),
    ("$\\boxed{\\text{B}}$", 4, "B"),
    ("(C) is the correct answer since the murmur radiates to the axilla.", 4, "C"),
    ("Option C (aspirin) is the most appropriate next step.", 4, "C"),
    ("The presentation is classic for cholera, which corresponds to option B.", 4, "B"),
    ("I would choose D.", 4, "D"),
    ("Answer: I think the correct answer is C.", 4, "C"),
    ("The answer is B and I am fairly confident about it.", 10, "B"),
    ("The answer is C\nA. Aspirin is incorrect because it worsens bleeding.", 4, "C"),
    ("The answer is B, and C is incorrect because it is renally cleared.", 4, "B"),
    ("The answer is (B) Aspirin and (C) is wrong.", 4, "B"),
    ("the answer is (J)", 10, "J"),
    ("Reviewing each option for this MMLU-Pro item... the answer is (I)", 10, "I"),
    # prefer the explicit statement over letters merely discussed
    ("Option A is wrong because it causes hyperkalemia. Option B is too slow, so the answer is (C)", 4, "C"),
    ("Option A is correct for type 1 diabetes, but here option D is the best choice.", 4, "D"),
    # the LAST explicit statement wins
    ("Answer: B. Wait, let me reconsider the renal function. Actually, the answer is D.", 4, "D"),
    ("The answer is (A). Double-checking: yes, the final answer is (A).", 4, "A"),
    ("At first the answer is not A; the answer is B.", 4, "B"),
    # bold letters without a statement: the last bold group
    ("Considering the mechanism of action:\n\n**C**\n", 4, "C"),
    ("**A** is a distractor here; **D** fits the lab findings.", 4, "D"),
    # o1-style sections: only the final section counts
    (O1_THINKING + "## Final Response\n\nThe answer is B.", 4, "B"),
    (O1_THINKING + "## Final Response\n\nB. Clopidogrel", 4, "B"),
    (O1_THINKING + "## Final Response\n\nThe most appropriate drug here is **D**.", 4, "D"),
    ("**Thought**\nA seems right... no, C.\n\n**Summarization**\nThe correct option is D.", 4, "D"),
    ("<think>So the answer is A? Hmm.</think>\nThe answer is C.", 4, "C"),
    ("## Final Answer\n\nB\n\nExplanation: option A is contraindicated.", 4, "B"),
    # bare responses
    ("C", 4, "C"),
    ("(C)", 4, "C"),
    ("C.", 4, "C"),
    ("  C\n", 4, "C"),
    ("C) Aspirin", 4, "C"),
    ("B. Heparin\n\nHeparin is the first-line anticoagulant in pregnancy.", 4, "B"),
    ("A", 4, "A"),
    ("[B]", 4, "B"),
    # Chinese
    ("答案是B", 4, "B"),
    ("答案：B", 4, "B"),
    ("答案为 C。", 4, "C"),
    ("正确答案是D。", 4, "D"),
    ("正确选项为A", 4, "A"),
    ("根据患者症状，本题应选B。", 4, "B"),
    ("选择C", 4, "C"),
    ("A项错误，B项错误，C项不全面，故选D。", 4, "D"),
    ("答案：（Ｂ）", 4, "B"),
    ("答案是B，A项是干扰项。", 4, "B"),
    ("选项A错误，选项B也不对，所以答案是C。", 4, "C"),
    ("不应选A，应选C。", 4, "C"),
    ("答案是B项", 5, "B"),
    ("综上，正确答案是 B 选项。", 4, "B"),
    ("最终答案：E", 5, "E"),
]

NONE_SINGLE = [
    # no explicit statement, not a bare letter: never guess
    ("A 45-year-old man presents with crushing chest pain radiating to the left arm.", 4),
    ("I think this is most consistent with a beta blocker overdose.", 4),
    ("The answer is a beta blocker.", 4),
    ("The answer is ACE inhibitors.", 5),
    ("Answer: Cholesterol embolism", 4),
    ("Answer: A 45-year-old patient with these findings needs anticoagulation.", 4),
    ("A. Aspirin - inhibits COX\nB. Heparin - potentiates antithrombin\nC. Warfarin\nD. Alteplase", 4),
    ("选项A错误，选项B正确，选项C错误。", 4),
    ("答案解析：A项描述正确。", 4),
    # out of range: None, and no fallback to an earlier or other letter
    ("The answer is E", 4),
    ("The answer is (A). On reflection, the answer is (E).", 4),
    ("答案：E", 4),
    ("the answer is (K)", 10),
    # ambiguity
    ("The answer is B or C.", 4),
    ("The answer is A, C and D.", 4),
    ("答案是：A、C", 4),
    # final section exists but commits to nothing: do not read the thinking part
    (O1_THINKING + "## Final Response\n\nAnticoagulation should be individualised.", 4),
    ("", 4),
    ("   \n", 4),
]

MULTI = [
    ("ACD", 5, "ACD"),
    ("B、D、E", 5, "BDE"),
    ("The answer is A, C and D.", 4, "ACD"),
    ("Answer: A,C,D", 4, "ACD"),
    ("Answer: A, C, and D are all correct.", 4, "ACD"),
    ("答案：ABE", 5, "ABE"),
    ("答案为A、B、D三项", 4, "ABD"),
    ("答案是：A、C", 4, "AC"),
    ("正确答案为A和C", 4, "AC"),
    ("the answers are (A) and (C)", 4, "AC"),
    ("Answer: DCA", 4, "ACD"),
    ("**A, C, D**", 4, "ACD"),
    ("The answer is B", 4, "B"),
    ("答案：(C)(C)", 4, "C"),
    ("答案：ABF", 5, None),
    ("The answer is B or C.", 4, None),
]

HALLUCINATED = [
    (
        "The answer is (B).\n\nQuestion: Which drug is first-line for absence seizures?\n"
        "A. Ethosuximide\nB. Phenytoin\nC. Carbamazepine\nD. Gabapentin\nAnswer: (A)",
        4,
        "B",
    ),
    ("C\n\nQ: What is the most common cause of CAP?\nA: The answer is A.", 4, "C"),
    ("答案：C\n\n问题：下列哪项是糖尿病的诊断标准？\nA. ...\nB. ...\n答案：A", 4, "C"),
    ("答案是D。\n题目：高血压首选药物是？\nA. 利尿剂\nB. β受体阻滞剂\n答案是A", 4, "D"),
    (
        "Answer: B\n\n2. A 30-year-old woman has microcytic anemia. What is the cause?\n"
        "A. Iron deficiency\nB. Folate\nC. B12\nD. Zinc\nAnswer: A",
        4,
        "B",
    ),
    ("故选B。\n\n第2题 下列说法正确的是\nA. 甲\nB. 乙\n答案：A", 4, "B"),
    ("C) Aspirin\n\nQuestion: Which is first-line?\nA. Ethosuximide\nB. Phenytoin\nAnswer: A", 4, "C"),
    # a second o1-style block after the hallucinated question must not override the first
    (
        O1_THINKING + "## Final Response\n\nThe answer is B.\n\nQuestion: next one\nA. x\nB. y\n"
        "## Thinking\nhmm\n## Final Response\nThe answer is D.",
        4,
        "B",
    ),
    # not hallucinations: a "Question:" line inside the thinking part, a restated question at the
    # start, a numbered reasoning list
    ("## Thinking\nSo the answer is A?\nQuestion: what is asked?\n## Final Response\nAnswer: C", 4, "C"),
    ("Question: what is being asked? The drug of choice. The answer is B.", 4, "B"),
    ("1. Evaluate the options:\n  A. too slow\n  B. contraindicated\n2. Therefore the answer is D.", 4, "D"),
]


@pytest.mark.parametrize(("text", "n", "expected"), SINGLE)
def test_single_answer(text, n, expected):
    assert extract_choice(text, n) == expected


@pytest.mark.parametrize(("text", "n"), NONE_SINGLE)
def test_no_answer(text, n):
    assert extract_choice(text, n) is None


@pytest.mark.parametrize(("text", "n", "expected"), MULTI)
def test_multi_answer(text, n, expected):
    assert extract_choice(text, n, multi=True) == expected


@pytest.mark.parametrize(("text", "n", "expected"), HALLUCINATED)
def test_hallucinated_next_question_is_ignored(text, n, expected):
    assert extract_choice(text, n) == expected


def test_long_output_stays_linear():
    # many numbered reasoning lines followed by an option list once triggered quadratic re-scans
    steps = "".join(f"{i}. Finding {i} is relevant to options A and B.\n" for i in range(1, 900))
    text = steps + "A. x\nB. y\n" + "Option A is wrong. " * 2000 + "So the answer is (C)."
    start = time.perf_counter()
    assert extract_choice(text, 4) == "C"
    assert time.perf_counter() - start < 2.0


def test_output_is_uppercase_sorted_deduplicated():
    assert extract_choice("the answers are (d), (a) and (a)", 4, multi=True) == "AD"


EN_TEMPLATES = [
    "Let's think step by step. {noise}The answer is ({x}).",
    "{noise}the answer is {x}.",
    "{noise}Answer: {x}",
    "{noise}\n**Answer:** {x}",
    "{noise}Final answer: ({x})",
    "## Thinking\n{noise}\n\n## Final Response\n\nThe answer is {x}.",
    "{x}",
    "({x})",
    "答案是{x}",
    "{noise}答案：（{x}）",
    "{noise}故选{x}。",
]
MULTI_TEMPLATES = ["答案：{x}", "The answers are {x}.", "Answer: {x}", "{x}"]


def _noise(rng, n, exclude):
    """Realistic distractor prose mentioning other options, which must not be picked."""
    others = [c for c in letters(n) if c != exclude]
    picks = rng.sample(others, k=min(2, len(others)))
    return "".join(f"Option {c} is wrong because it does not fit. " for c in picks)


def test_round_trip_random_single_letters():
    rng = random.Random(1234)
    for _ in range(500):
        n = rng.choice([2, 4, 5, 10])
        x = rng.choice(letters(n))
        template = rng.choice(EN_TEMPLATES)
        text = template.format(x=x, noise=_noise(rng, n, x))
        assert extract_choice(text, n) == x, text


def test_round_trip_random_letter_sets():
    rng = random.Random(99)
    seps = ["", ", ", "、", ",", " and "]
    for _ in range(300):
        n = rng.choice([4, 5])
        chosen = sorted(rng.sample(letters(n), k=rng.randint(1, n)))
        shown = chosen[:]
        rng.shuffle(shown)
        text = rng.choice(MULTI_TEMPLATES).format(x=rng.choice(seps).join(shown))
        assert extract_choice(text, n, multi=True) == "".join(chosen), text


def test_round_trip_out_of_range_is_none():
    rng = random.Random(7)
    for _ in range(200):
        n = rng.choice([2, 3, 4, 5])
        x = rng.choice("ABCDEFGHIJ"[n:])
        text = rng.choice(EN_TEMPLATES).format(x=x, noise="")
        assert extract_choice(text, n) is None, text


def test_letters():
    assert letters(4) == ["A", "B", "C", "D"]
    assert letters(10)[-1] == "J"
    assert len(letters(26)) == 26


@pytest.mark.parametrize("n", [0, 27, -1])
def test_letters_rejects_bad_counts(n):
    with pytest.raises(ValueError):
        letters(n)


@pytest.mark.parametrize(
    ("predicted", "gold", "expected"),
    [
        ("B", "B", True),
        ("CA", "AC", True),
        ("ACD", "A, C, D", True),
        ("b", "B", True),
        ("A", "AC", False),
        ("ACD", "AC", False),
        ("B", "C", False),
        (None, "A", False),
        ("", "A", False),
    ],
)
def test_is_correct(predicted, gold, expected):
    assert is_correct(predicted, gold) is expected
