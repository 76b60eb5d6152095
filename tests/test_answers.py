import random
import time

import pytest

from finemed_eval.answers import RULES, Extraction, extract_choice, extract_choice_with_rule, is_correct, letters

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
    # the final section commits to nothing and names no option; the thinking part only hedges
    # ("maybe the answer is A") and rules out (**A**): no committed answer anywhere
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


# --- real o1 outputs and the families around them -----------------------------------------------
# The one real FineMedLM-o1 output the authors published: MMLU-Pro health, generated in their
# notebook Rebuttal_period_file/tools.ipynb (cell 3, max_new_tokens=2048, decoded with special
# tokens kept) in github.com/hongzhouyu/FineMed at commit dc32132 - quoted verbatim, their output.
# It commits to a letter in its reasoning, then restates that option's text under "Summarization:".
FINEMED_O1_MMLU_PRO_HEALTH = (
    "First, I need to understand what polio is and how it can be eradicated. Polio is a highly "
    "infectious disease caused by the poliovirus, which can lead to paralysis and death in "
    "severe cases. It's a serious concern, especially in regions with poor sanitation and "
    "limited access to healthcare.\n\n"
    "Looking at the options, I need to see which ones directly address polio and its "
    "transmission, and which ones are more relevant to other health issues.\n\n"
    "Starting with A: Herbal remedies. I don't see any connection between herbal remedies and "
    "polio. Polio is caused by a virus, and herbal remedies are typically used for bacterial or "
    "viral infections, but not specifically for polio. So, I can rule this out.\n\n"
    "B: Antibiotics. Antibiotics are used to treat bacterial infections, not viral infections "
    "like polio. While some antiviral drugs are available, they aren't effective against "
    "poliovirus. Therefore, this isn't the answer.\n\n"
    "C: Regular intake of vitamins. Vitamins are essential for overall health, but they don't "
    "prevent or treat polio. Some vitamins have immune-boosting properties, but polio is "
    "primarily spread through fecal-oral transmission, so hygiene and vaccination are more "
    "crucial.\n\n"
    "D: Tetanus vaccine. Tetanus is caused by bacteria, not viruses, so this isn't relevant to "
    "polio.\n\n"
    "E: Attention to sewage control and hygiene. This is directly related to polio prevention. "
    "Since polio is transmitted through contaminated water and poor hygiene, maintaining clean "
    "water sources and proper sanitation is key to eradicating the virus.\n\n"
    "F: Natural immunity acquired through exposure. This is a dangerous approach because polio "
    "can cause severe paralysis and death. Therefore, inducing immunity through exposure is not "
    "recommended and is not a safe method to eradicate the disease.\n\n"
    "G: Use of antiviral drugs. As mentioned earlier, antiviral drugs aren't effective against "
    "poliovirus, so this isn't the answer.\n\n"
    "So, based on the options provided, the correct answer is E: Attention to sewage control "
    "and hygiene.\n\n"
    "Summarization:\nPolio can be eradicated through rigorous attention to sewage control and "
    "hygiene practices, as it is primarily transmitted through contaminated water and poor "
    "sanitation. This includes maintaining clean water sources, proper waste disposal, and "
    "promoting hygiene practices to prevent the spread of the virus. Vaccination programs also "
    "play a crucial role in achieving herd immunity and ultimately eradicating polio "
    "worldwide.<|eot_id|>\n"
)
FINEMED_O1_OPTIONS = [
    "Herbal remedies",
    "Use of antibiotics",
    "Regular intake of vitamins",
    "Administration of tetanus vaccine",
    "Attention to sewage control and hygiene",
    "Natural immunity acquired through exposure",
    "Use of antiviral drugs",
]  # gold: E

# Our own question for the families below: DVT in pregnancy, gold B.
OPT_EN = ["Aspirin", "Low-molecular-weight heparin", "Warfarin", "Alteplase"]
OPT_ZH = ["阿司匹林", "低分子肝素", "华法林", "阿替普酶"]

# (text, options, expected, rule that decides) - the trust order, family by family
O1_FAMILIES = [
    # the real output: its final section names option E by its text (the reasoning agrees)
    (FINEMED_O1_MMLU_PRO_HEALTH, FINEMED_O1_OPTIONS, "E", "option_text"),
    # a final section that names the option only by its text
    (
        "## Thinking\nThe patient is pregnant with a DVT. Warfarin crosses the placenta and aspirin is "
        "not enough.\n\n## Final Response\n\nLow-molecular-weight heparin is the treatment of choice.",
        OPT_EN,
        "B",
        "option_text",
    ),
    (
        "**Thought**\nComparing the four drugs one by one...\n\n**Summarization**\nGiven the pregnancy, "
        "the safest effective choice is low molecular weight heparin.",
        OPT_EN,
        "B",
        "option_text",
    ),
    (
        "## 思考\n患者妊娠合并深静脉血栓，华法林可致畸。\n\n## 最终回答\n应选用低分子肝素进行抗凝治疗。",
        OPT_ZH,
        "B",
        "option_text",
    ),
    (
        "**Thought**\n逐项分析：A项阿司匹林不足以治疗静脉血栓；C项华法林有致畸性。因此正确答案是B：低分子肝素。"
        "\n\n**Summarization**\n妊娠期静脉血栓栓塞的首选治疗是低分子肝素，它不通过胎盘。",
        OPT_ZH,
        "B",
        "option_text",
    ),
    # the final section outranks the reasoning
    (
        "## Thinking\nAt first glance aspirin, so the answer is A.\n## Final Response\nLow-molecular-weight "
        "heparin is the right drug here.",
        OPT_EN,
        "B",
        "option_text",
    ),
    # a negated option, then the chosen one (by text, then by letter)
    (
        "## Thinking\n...\n## Final Response\nWarfarin is contraindicated in pregnancy; "
        "low-molecular-weight heparin is preferred.",
        OPT_EN,
        "B",
        "option_text",
    ),
    (
        "## Thinking\n...\n## Final Response\n- Avoid warfarin (teratogenic).\n- Start low-molecular-weight "
        "heparin and monitor anti-Xa levels.",
        OPT_EN,
        "B",
        "option_text",
    ),
    ("总结：\n华法林禁用于妊娠期，应使用低分子肝素。", OPT_ZH, "B", "option_text"),
    ("The answer is not C but B: warfarin is teratogenic.", OPT_EN, "B", "answer_statement"),
    ("The correct option is not (A); it is (B), given the venous clot.", OPT_EN, "B", "answer_statement"),
    ("答案不是C，而是B。", OPT_ZH, "B", "answer_statement"),
    ("不选C，选B，因为华法林可致畸。", OPT_ZH, "B", "answer_statement"),
    # a sentence that names an option by letter and declares it correct, without the word "answer"
    ("Aspirin alone does not treat a DVT and warfarin is teratogenic. Therefore, B is correct.", OPT_EN, "B",
     "answer_statement"),
    ("Alteplase is reserved for massive PE, so (B) is the right one.", OPT_EN, "B", "answer_statement"),
    ("Only B is correct here; warfarin crosses the placenta.", OPT_EN, "B", "answer_statement"),
    ("阿司匹林不能治疗静脉血栓，华法林致畸，故B项正确。", OPT_ZH, "B", "answer_statement"),
    ("所以B是正确的。", OPT_ZH, "B", "answer_statement"),
    ("综合来看，B项符合题意。", OPT_ZH, "B", "answer_statement"),
    # a bare verdict concludes when the options discussed after it are only rejected
    (
        "Option B is correct. Option A is incorrect because it is antiplatelet only, option C is teratogenic "
        "and option D is contraindicated without a massive PE.",
        OPT_EN,
        "B",
        "answer_statement",
    ),
    ("Option A is incorrect. Option B is correct. Option C is incorrect. Option D is incorrect.", OPT_EN, "B",
     "answer_statement"),
    # an answer committed to in the reasoning, then a summary (prose or bullets) with no letter
    (
        "## Thinking\nWarfarin is teratogenic and aspirin is insufficient, so the answer is B.\n\n"
        "## Final Response\n\nPregnant patients with venous thromboembolism need an anticoagulant that "
        "does not cross the placenta, dosed by weight.",
        OPT_EN,
        "B",
        "reasoning_commitment",
    ),
    (
        "**Thought**\nAlteplase is for massive PE only. Therefore, B is correct.\n\n**Summarization**\n"
        "- Anticoagulate for the whole pregnancy.\n- Monitor anti-Xa levels.\n- Switch agents before delivery.",
        OPT_EN,
        "B",
        "reasoning_commitment",
    ),
    (
        "<think>华法林致畸，阿司匹林不足以抗凝，所以答案是B。</think>\n妊娠期抗凝应选择不通过胎盘的药物，并按体重调整剂量。",
        OPT_ZH,
        "B",
        "reasoning_commitment",
    ),
    ("## 思考\n逐项排除后，故选B。\n\n## 最终回答\n- 全程抗凝\n- 监测抗Xa活性\n- 分娩前调整用药", OPT_ZH, "B",
     "reasoning_commitment"),
    # the count still works; the reasoning rule does not need option texts
    ("## Thinking\nso the answer is (C).\n## Final Response\nKeep monitoring the INR.", 4, "C",
     "reasoning_commitment"),
]

# Truncated outputs whose only candidates are tentative or merely enumerated: no answer.
# (text, options) - each gave an answer before the trust order was made explicit.
TRUNCATED = [
    (
        "Let's look at each option.\n\n**A**: Aspirin inhibits platelets but does little for venous clots.\n"
        "**B**: Low-molecular-weight heparin does not cross the placenta and\n**C**: Warfarin is",
        OPT_EN,
    ),
    (
        "Maybe the answer is B, since heparin does not cross the placenta. Let me check the remaining options "
        "first.\nC. Warfarin is",
        OPT_EN,
    ),
    ("If the answer is C, the INR would need close monitoring, which is impractical. Let's consider option D", OPT_EN),
    ("Option A is correct only for arterial thrombosis. Option B is", OPT_EN),
    ("Option A is incorrect. Option B is correct because heparin does not cross the placenta. Option C is", OPT_EN),
    ("So the answer is B? Before deciding, compare option C:", OPT_EN),
    ("## Thinking\nOption A seems fine, so perhaps the answer is A. Checking B: heparin", OPT_EN),
    ("逐项分析：\n**A**：阿司匹林主要抗血小板。\n**B**：低分子肝素不通过胎盘，\n**C**：华法林", OPT_ZH),
    ("答案可能是B，但还需要排除C项：华法林", OPT_ZH),
    ("如果答案是C，则需要监测INR，D项", OPT_ZH),
    ("答案是B吗？再看C项：", OPT_ZH),
    # a final section exists, but neither it nor the reasoning commits
    ("## Thinking\nMaybe A? Or B.\n## Final Response\nAspirin or low-molecular-weight heparin, depending on risk.",
     OPT_EN),
    # a capital letter ending a name is not an option ("vitamin D")
    ("Vitamin D is the best choice for bone health in this patient.", 4),
]


@pytest.mark.parametrize(("text", "options", "expected", "rule"), O1_FAMILIES)
def test_trust_order_families(text, options, expected, rule):
    assert extract_choice_with_rule(text, options) == Extraction(expected, rule)
    assert extract_choice(text, options) == expected


@pytest.mark.parametrize(("text", "options"), TRUNCATED)
def test_truncated_tentative_or_enumerated_is_no_answer(text, options):
    assert extract_choice_with_rule(text, options) == Extraction(None, "none")


@pytest.mark.parametrize(
    ("text", "n", "expected"),
    [
        ("The answer is (B).", 4, Extraction("B", "answer_statement")),
        ("Considering the mechanism of action:\n\n**C**\n", 4, Extraction("C", "bold_letter")),
        ("C) Aspirin", 4, Extraction("C", "bare_label")),
        ("", 4, Extraction(None, "none")),
        # the deciding rule's letters are invalid: no answer, and the rule still says who decided
        ("The answer is E", 4, Extraction(None, "answer_statement", "E")),
        ("The answer is B or C.", 4, Extraction(None, "answer_statement", "B or C")),
        ("## Thinking\nthe answer is (F)\n## Final Response\nMonitor.", 4, Extraction(None, "reasoning_commitment", "(F)")),
    ],
)
def test_reports_the_deciding_rule(text, n, expected):
    got = extract_choice_with_rule(text, n)
    assert got == expected and got.rule in RULES


def test_option_text_only_for_single_answer_questions():
    text = "## Thinking\n...\n## Final Response\nLow-molecular-weight heparin."
    assert extract_choice(text, OPT_EN) == "B"
    assert extract_choice_with_rule(text, OPT_EN, multi=True) == Extraction(None, "none")


def test_option_text_needs_exactly_one_option():
    two = "## Thinking\n...\n## Final Response\nAspirin and warfarin both have a role."
    nested = "## Thinking\n...\n## Final Response\nAspirin plus clopidogrel is standard after a stent."
    assert extract_choice(two, OPT_EN) is None
    assert extract_choice(nested, ["Aspirin", "Aspirin plus clopidogrel", "Heparin", "Warfarin"]) == "B"


def test_real_o1_output_reasoning_commitment_agrees():
    # without its Summarization section the published output still decides by its reasoning statement
    thinking = FINEMED_O1_MMLU_PRO_HEALTH.split("Summarization:")[0]
    assert extract_choice_with_rule(thinking, FINEMED_O1_OPTIONS) == Extraction("E", "answer_statement")


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
