"""Parsers never raise (hypothesis fuzzing) and parse what they should; Algorithm 1's rules, one by one."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finemed_eval.synth import departments
from finemed_eval.synth.filter import Item, compare, select
from finemed_eval.synth.parse import (
    json_object,
    parse_answers,
    parse_department,
    parse_longform,
    parse_questions,
    parse_score,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=12,
)
SCORE_KEYS = ["quality", "difficulty", "Relevance2Medicine", "MentionSpecificDetails", "relevance_to_medicine", "mention_specific_details",
              "question1", "question2", "answer1", "answer2"]


@st.composite
def model_outputs(draw):
    """Random bytes decoded, JSON fragments, wrong types, truncated JSON, fenced JSON, prose around JSON."""
    kind = draw(st.sampled_from(["bytes", "json", "truncated", "fenced", "prose", "keys"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200)).decode("utf-8", "replace")
    if kind == "keys":
        obj = draw(st.dictionaries(st.sampled_from(SCORE_KEYS), json_values, max_size=6))
    else:
        obj = draw(json_values)
    text = json.dumps(obj)
    if kind == "truncated":
        return text[: draw(st.integers(0, max(0, len(text) - 1)))]
    if kind == "fenced":
        return f"```json\n{text}\n```"
    if kind == "prose":
        return f"{draw(st.text(max_size=30))} {text} {draw(st.text(max_size=30))}"
    return text


anything = model_outputs() | json_values
finish = st.sampled_from([None, "stop", "length", "weird"])


@settings(max_examples=300, deadline=None, database=None)
@given(anything, finish, st.sampled_from(["paper", "released"]), st.sampled_from([None, *departments.FIRST_LEVEL]))
def test_parsers_never_raise(output, finish_reason, rule, parent):
    for parsed in (
        parse_questions(output, finish_reason),
        parse_score(output, finish_reason, mention_rule=rule),
        parse_answers(output, finish_reason),
        parse_longform(output, finish_reason),
        parse_department(output, parent, finish_reason),
    ):
        assert parsed.ok == (parsed.reason == "")
        assert parsed.ok or parsed.value is None


@settings(max_examples=200, deadline=None, database=None)
@given(st.integers(-5, 15), st.integers(-5, 15), st.integers(-5, 10), st.sampled_from(["True", "False", True, False, "maybe", 1]))
def test_score_ranges_and_mentions(quality, difficulty, relevance, mentions):
    text = json.dumps({"quality": quality, "difficulty": difficulty, "Relevance2Medicine": relevance, "MentionSpecificDetails": mentions})
    parsed = parse_score(text)
    in_range = 1 <= quality <= 10 and 1 <= difficulty <= 10 and 1 <= relevance <= 6
    valid_mentions = isinstance(mentions, bool) or mentions in ("True", "False")  # 1 == True, but 1 is no answer
    assert parsed.ok == (in_range and valid_mentions)
    if parsed.ok:
        assert parsed.value["mentions_details"] == (mentions == "True" or mentions is True)
        assert parsed.value["keys"] == "paper"
    # the released rule: only the exact string "True" mentions details; any other value is accepted as False
    released = parse_score(text, mention_rule="released")
    assert released.ok == in_range
    if released.ok:
        assert released.value["mentions_details"] == (mentions == "True")


def test_score_key_variants_and_reasons():
    released = parse_score('{"quality": 8, "difficulty": "9", "relevance_to_medicine": 6, "mention_specific_details": "False"}')
    assert released.ok and released.value["keys"] == "released" and released.value["difficulty"] == 9
    assert parse_score('{"quality": 8, "difficulty": 9, "Relevance2Medicine": 6}').reason == "missing_key:MentionSpecificDetails"
    assert parse_score('{"quality": 8, "difficulty": 11, "Relevance2Medicine": 6, "MentionSpecificDetails": "True"}').reason == "out_of_range:difficulty"
    assert parse_score('{"quality": 8, "diffic', "length").reason == "truncated"
    assert parse_score("no json here").reason == "no_json"
    assert parse_score('{"quality": 7.5, "difficulty": 9, "Relevance2Medicine": 6, "MentionSpecificDetails": "True"}').reason == "not_a_number:quality"


def test_json_object_finds_fenced_and_embedded():
    assert json_object('Sure!\n```json\n{"a": 1}\n```\nDone') == {"a": 1}
    assert json_object('prefix {"a": {"b": 2}} suffix') == {"a": {"b": 2}}
    assert json_object('[1, 2] then {"x": "y"}') == {"x": "y"}
    assert json_object("{not json}") is None and json_object(None) is None


def test_questions_answers_longform_departments():
    ok = parse_questions('{"question1": " A? ", "question2": "B?"}')
    assert ok.value == {"question1": "A?", "question2": "B?"}
    assert parse_questions('{"question1": "A?", "question2": "A?"}').reason == "identical_questions"
    assert parse_questions('{"question1": "A?", "question2": 3}').reason == "not_text:question2"
    assert parse_answers('{"answer1": "x"}').reason == "missing_key:answer2"
    long = parse_longform("**Thought**\nstep 1\nstep 2\n**Summarization**\nfinal")
    assert long.ok and long.value["thought"] == "step 1\nstep 2" and long.value["summarization"] == "final"
    assert parse_longform("**Summarization**\nx\n**Thought**\ny").reason == "missing_section:Summarization"
    assert parse_longform("**Thought**\nhalf a thought", "length").reason == "truncated"
    assert parse_department(" **Cardiology**. ", "Internal Medicine").value == "Cardiology"
    assert parse_department("Output: Surgery", None).value == "Surgery"
    assert parse_department("None", "Pediatrics").value == "None"
    assert parse_department("None", None).reason == "not_a_label"  # the first level has no None
    assert parse_department("Cardiology", None).reason == "not_a_label"  # a second-level name at the first level
    assert parse_department("cardiology", "Internal Medicine").reason == "not_a_label"  # exact labels only


# --- Algorithm 1 --------------------------------------------------------------------------------

items = st.builds(
    Item, key=st.sampled_from(["question1", "question2"]), quality=st.integers(1, 10), complexity=st.integers(1, 10),
    relevance=st.integers(1, 6), mentions_details=st.booleans(),
)


@settings(max_examples=500, deadline=None, database=None)
@given(items, items, st.integers(0, 3), st.text(max_size=8))
def test_algorithm_1(a, b, seed, doc_id):
    decision = compare(a, b, seed=seed, doc_id=doc_id)
    if a.mentions_details != b.mentions_details:  # XOR: keep the one that does not mention details
        assert decision.chosen is (b if a.mentions_details else a) and decision.rule == "mentions_details_xor"
        return
    if a.mentions_details and b.mentions_details:  # both mention: drop both
        assert decision.chosen is None and decision.rule == "both_mention_details"
        return
    total = lambda i: i.quality + i.complexity + i.relevance  # noqa: E731
    if total(a) != total(b):
        assert decision.chosen is max(a, b, key=total) and decision.rule == "quality+complexity+relevance"
    elif a.quality + a.complexity != b.quality + b.complexity:
        assert decision.chosen is max(a, b, key=lambda i: i.quality + i.complexity) and decision.rule == "quality+complexity"
    elif a.quality != b.quality:
        assert decision.chosen is max(a, b, key=lambda i: i.quality) and decision.rule == "quality"
    else:
        assert decision.chosen in (a, b) and decision.rule == "random_choice"
        # reproducible: the same seed and document always choose the same item
        assert all(compare(a, b, seed=seed, doc_id=doc_id).chosen is decision.chosen for _ in range(3))


def test_random_choice_is_seeded_and_uses_both_sides():
    a = Item("question1", 5, 5, 3, False)
    b = Item("question2", 5, 5, 3, False)
    picks = {compare(a, b, seed=0, doc_id=f"doc{i}").chosen.key for i in range(40)}
    assert picks == {"question1", "question2"}
    assert [compare(a, b, seed=1, doc_id=f"d{i}").chosen.key for i in range(20)] == [
        compare(a, b, seed=1, doc_id=f"d{i}").chosen.key for i in range(20)
    ]


def test_missing_scores_paper_vs_released():
    a = Item("question1", 5, 5, 3, False)
    assert select(a, None, seed=0, doc_id="x").chosen is None  # paper: no rule -> drop
    assert select(a, None, seed=0, doc_id="x").rule == "one_score_missing"
    assert select(None, a, seed=0, doc_id="x", missing="keep_other").chosen is a  # released notebook
    assert select(None, None, seed=0, doc_id="x", missing="keep_other").rule == "no_scores"


# --- structured output -----------------------------------------------------------------------------


def test_placeholders_copied_from_the_prompt_are_rejected():
    copied = json.dumps({"question1": "Generated first question", "question2": "Generated second question"})
    assert parse_questions(copied).reason == "placeholder:question1"
    copied = json.dumps({"answer1": "A real answer about iron.", "answer2": "Generated second answer content."})
    assert parse_answers(copied).reason == "placeholder:answer2"
    same = json.dumps({"answer1": "Oral iron is first-line.", "answer2": "Oral iron is first-line."})
    assert parse_answers(same).reason == "identical_answers"
    # the reason names the copied text, which the re-ask then bans (ask.py, test_synth_placeholder_ban.py)
    from finemed_eval.synth.parse import copied_placeholder

    assert copied_placeholder("placeholder:answer2") == "Generated second answer content"
    assert copied_placeholder("placeholder:question1") == "Generated first question"
    assert copied_placeholder("identical_answers") is None
    # a copy inside a longer string is a copy (SmolLM2 wrote this one with the first token banned)
    wrapped = json.dumps({"answer1": "Bronchiolitis is a viral infection of the small airways.",
                          "answer2": "The answer is: Generated second answer content"})
    assert parse_answers(wrapped).reason == "placeholder:answer2"
    assert parse_answers(json.dumps({"answer1": "Generated  FIRST answer\ncontent here", "answer2": "x" * 30})).reason == "placeholder:answer1"
    assert parse_answers(json.dumps({"answer1": "Doctors generated first a list of causes.", "answer2": "y" * 30})).ok


def test_what_the_schemas_allow_the_parsers_accept():
    import re

    import jsonschema

    from finemed_eval.synth.parse import ANSWERS_SCHEMA, LONGFORM_REGEX, QUESTIONS_SCHEMA, SCORE_SCHEMA

    questions = {"question1": "What causes iron deficiency anemia?", "question2": "How is it treated in adults?"}
    score = {"quality": 7, "difficulty": 8, "Relevance2Medicine": 6, "MentionSpecificDetails": "False"}
    answers = {"answer1": "Blood loss and poor intake, mostly.", "answer2": "Oral iron first; intravenous iron if needed."}
    for schema, value, parser in ((QUESTIONS_SCHEMA, questions, parse_questions), (SCORE_SCHEMA, score, parse_score),
                                  (ANSWERS_SCHEMA, answers, parse_answers)):
        jsonschema.Draft202012Validator.check_schema(schema)
        jsonschema.validate(value, schema)
        assert parser(json.dumps(value)).ok
    with pytest.raises(jsonschema.ValidationError):  # a placeholder copy is outside the questions' schema
        jsonschema.validate({"question1": "Generated first question", "question2": "x"}, QUESTIONS_SCHEMA)
    longform = "**Thought**\n" + "The text says iron losses exceed intake over months. " * 2 + "\n**Summarization**\nIron losses exceed intake."
    assert re.fullmatch(LONGFORM_REGEX, longform) and parse_longform(longform).ok


def test_payload_sends_each_stage_format_to_servers_that_understand_it():
    from finemed_eval.synth.ask import payload
    from finemed_eval.synth.config import RoleConfig
    from finemed_eval.synth.stages import LONGFORM, QUESTIONS, department_format

    messages = [{"role": "user", "content": "q"}]
    body = payload(messages, RoleConfig(backend="endpoint", structured_output=True), attempt=0, seed=1, output_format=QUESTIONS)
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["question1", "question2"]
    assert "response_format" not in payload(messages, RoleConfig(backend="endpoint"), attempt=0, seed=1, output_format=QUESTIONS)
    # regex / label choice are vLLM's own fields: only to the vllm backend
    assert "structured_outputs" not in payload(messages, RoleConfig(backend="endpoint", structured_output=True), attempt=0, seed=1, output_format=LONGFORM)
    vllm = RoleConfig(backend="vllm", structured_output=True)
    assert payload(messages, vllm, attempt=0, seed=1, output_format=LONGFORM)["structured_outputs"] == {"regex": LONGFORM.regex}
    labels = payload(messages, vllm, attempt=0, seed=1, output_format=department_format(None))["structured_outputs"]["choice"]
    assert labels == list(departments.FIRST_LEVEL)
    # `transformers serve` samples only when the generation config says so: re-asks of the local backend
    local = RoleConfig(backend="local", temperature=0.0, retry_temperature=0.7)
    assert "generation_config" not in payload(messages, local, attempt=0, seed=1)
    assert json.loads(payload(messages, local, attempt=1, seed=2)["generation_config"]) == {"do_sample": True}
