"""The synthesis prompts equal the paper's appendix text, word for word; the department label set is exact.

The appendix text is the paper's own (tests/fixtures/synth/paper_appendix_a_to_d.txt, lines 706-1187 of
../shared/seeds/002_2569375a49bad8fc.txt). PDF line wraps are layout, so whitespace runs compare equal;
the only other differences allowed are the PDF-extraction artefacts listed in OCR_FIXES.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from finemed_eval.synth import departments, prompts

APPENDIX = (Path(__file__).parent / "fixtures" / "synth" / "paper_appendix_a_to_d.txt").read_text(encoding="utf-8")

OCR_FIXES = [
    ("aMedClsnswer", "answer"),  # "Ensure that the aMedClsnswer provides": a PDF artefact
    ('"answerl"', '"answer1"'),  # l for 1
    ("3—4", "3-4"),  # en dash extracted as em dash in the scoring scale
    ("ehabilita- tion", "ehabilitation"),  # hyphenation at a line end (twice in Table 13)
    ("sub- department", "sub-department"),  # a hyphenated word broken at a line end
    ("*None’", "'None'"),  # mangled quotes around None
    ("’'None’", "'None'"),
    ("'None’", "'None'"),
    ("’None’", "'None'"),
]


def normalise(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    for wrong, right in OCR_FIXES:
        text = text.replace(wrong, right)
    return text


def block(start: str, end: str) -> str:
    """The appendix text between a table's heading and its caption."""
    i = APPENDIX.index(start) + len(start)
    return normalise(APPENDIX[i : APPENDIX.index(end, i)])


@pytest.mark.parametrize(
    "template, heading, caption",
    [
        (prompts.INSTRUCTION_GENERATION, "INSTRUCTION GENERATION", "Table 4:"),
        (prompts.INSTRUCTION_SCORING, "INSTRUCTION SCORE GENERATION", "Table 5:"),
        (prompts.ANSWER_GENERATION, "QWEN RESPONSE GENERATION", "QwWQ RESPONSE GENERATION"),
        (prompts.LONGFORM_GENERATION, "QwWQ RESPONSE GENERATION", "Table 6:"),
    ],
)
def test_appendix_a_prompts_are_verbatim(template, heading, caption):
    assert normalise(template) == block(heading, caption)


@pytest.mark.parametrize(
    "parent, heading, caption",
    [
        (None, "MEDICAL DATA CLASSIFICATION", "Table 7:"),
        ("Internal Medicine", "INTERNAL MEDICINE DATA CLASSIFICATION", "Table 8:"),
        ("Surgery", "SURGICAL DATA CLASSIFICATION", "Table 9:"),
        ("Obstetrics and Gynecology", "OBSTETRICS AND GYNECOLOGY DATA CLASSIFICATION", "Table 10:"),
        ("Pediatrics", "PEDIATRIC DATA CLASSIFICATION", "Table 11:"),
        ("Otorhinolaryngology (ENT)", "OTORHINOLARYNGOLOGY DATA CLASSIFICATION", "Table 12:"),
        ("Other Departments", "OTHER DEPARTMENT DATA CLASSIFICATION", "Table 13:"),
    ],
)
def test_appendix_d_prompts_are_verbatim(parent, heading, caption):
    assert normalise(departments.classification_template(parent)) == block(heading, caption)


def test_builders_fill_only_their_slots():
    text = 'A text that itself says {instruction} and {"json": 1}'
    filled = prompts.answer_prompt("Why?", text)
    assert filled.endswith("Here is the question:\nWhy?\nHere is the text:\n" + text)
    assert prompts.instruction_prompt("{text}").endswith("Here is the sample text:\n{text}")
    assert '"question1": "Generated first question"' in prompts.instruction_prompt("x")


def test_classification_prompt_dialogue_and_raw_text():
    dialogue = departments.classification_prompt(None, instruction="Q?", response="A.", text="RAW", raw_text=False)
    assert dialogue.endswith("Here is the dialogue:\nPatient: Q?\nDoctor: A.\nOutput:")
    raw = departments.classification_prompt("Surgery", instruction="Q?", response="A.", text="RAW", raw_text=True)
    assert raw.endswith("Here is the text:\nRAW\nOutput:") and "Patient:" not in raw


def test_department_label_set_is_exact():
    assert departments.FIRST_LEVEL == (
        "Internal Medicine", "Surgery", "Obstetrics and Gynecology", "Pediatrics", "Otorhinolaryngology (ENT)", "Other Departments",
    )
    assert dict(departments.TREE) == {
        "Internal Medicine": ("Respiratory and Critical Care Medicine", "Cardiology", "Endocrinology", "Gastroenterology",
                              "Hematology", "Nephrology", "Rheumatology and Immunology", "Neurology"),
        "Surgery": ("Gastrointestinal Surgery", "Hepatobiliary Surgery", "Urology", "Cardiovascular Surgery", "Thoracic Surgery",
                    "Orthopedic Surgery", "Neurosurgery", "Burns and Plastic Surgery", "Thyroid Surgery", "Breast Surgery"),
        "Obstetrics and Gynecology": ("Gynecology", "Obstetrics"),
        "Pediatrics": ("Pediatric Internal Medicine", "Pediatric Surgery"),
        "Otorhinolaryngology (ENT)": ("Otorhinolaryngology (ENT)", "Ophthalmology", "Dentistry (Oral Medicine)"),
        "Other Departments": ("Dermatology and Venereology", "Rehabilitation Medicine", "Anesthesiology",
                              "Traditional Chinese Medicine (TCM)"),
    }
    assert len(departments.SECOND_LEVEL) == 29  # "5 primary categories and 29 secondary categories"
    assert departments.allowed_labels(None) == departments.FIRST_LEVEL  # no 'None' at the first level
    for parent in departments.FIRST_LEVEL:
        assert departments.allowed_labels(parent) == (*departments.TREE[parent], "None")
        # every label the prompt offers is in the label set and vice versa
        offered = re.findall(r"^([^:\n]+): ", departments.classification_template(parent), re.M)
        offered = [o for o in offered if o not in ("Patient", "Doctor")]
        assert tuple(offered) == departments.TREE[parent]
