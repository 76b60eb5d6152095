"""The two-level department tree (Appendix C) and its classification prompts (Appendix D, Tables 7-13).

Six first-level departments; five of them have sub-departments (29 in all). The first-level prompt
has no 'None' (Other Departments is the catch-all); every second-level prompt allows 'None', which
keeps the first-level label with no sub-department. The Pediatrics prompt (Table 11) has no final
"Output:" line in the paper, and it is kept that way. PDF artefacts corrected here (and listed in the
prompt test): the hyphenation "Rehabilita- tion" and the mangled quotes around None.
"""

from __future__ import annotations

import re
from types import MappingProxyType

NONE_LABEL = "None"

_DESCRIPTIONS: dict[str, list[tuple[str, str]]] = {
    "Internal Medicine": [
        ("Respiratory and Critical Care Medicine", "Treats respiratory system diseases such as asthma, pneumonia, chronic obstructive pulmonary disease (COPD), and provides care for critically ill patients."),
        ("Cardiology", "Covers diseases related to the heart and blood vessels, such as hypertension, coronary artery disease, arrhythmias, etc."),
        ("Endocrinology", "Focuses on diseases related to endocrine glands, such as diabetes, thyroid disorders, metabolic disorders, etc."),
        ("Gastroenterology", "Involves diseases of the digestive system, such as gastric ulcers, hepatitis, enteritis, etc."),
        ("Hematology", "Addresses blood-related diseases, such as anemia, leukemia, lymphoma, etc."),
        ("Nephrology", "Involves kidney diseases, such as nephritis, renal failure, uremia, etc."),
        ("Rheumatology and Immunology", "Deals with rheumatic diseases and immune system disorders, such as rheumatoid arthritis, systemic lupus erythematous, etc."),
        ("Neurology", "Focuses on diseases of the nervous system, such as stroke, epilepsy, Parkinson’s disease, etc."),
    ],
    "Surgery": [
        ("Gastrointestinal Surgery", "Mainly involves surgical issues of the digestive system, such as stomach cancer, intestinal obstruction, etc."),
        ("Hepatobiliary Surgery", "Primarily involves surgical issues related to the liver, gallbladder, and pancreas, such as liver cancer, cholecystitis, pancreatic tumors, etc."),
        ("Urology", "Involves surgical issues of the urinary system, such as kidney stones, bladder tumors, benign prostatic hyperplasia, etc."),
        ("Cardiovascular Surgery", "Focuses on surgical diseases of the heart and major blood vessels, such as heart valve disease, aortic aneurysm, etc."),
        ("Thoracic Surgery", "Covers surgical procedures involving chest organs (lungs, esophagus, etc.), such as lung cancer and esophageal cancer."),
        ("Orthopedic Surgery", "Involves surgical diseases of bones, joints, and related structures, such as fractures, arthritis, herniated discs, etc."),
        ("Neurosurgery", "Handles surgical issues of the central and peripheral nervous systems, such as brain tumors, cerebral hemorrhage, spinal stenosis, etc."),
        ("Burns and Plastic Surgery", "Primarily responsible for burn treatment and plastic surgery procedures, such as burn scar repair and facial reconstruction, etc."),
        ("Thyroid Surgery", "Deals with surgical diseases of the thyroid and related glands, such as thyroid nodules and thyroid tumors, etc."),
        ("Breast Surgery", "Involves surgical treatment of breast diseases, such as breast hyperplasia and breast cancer."),
    ],
    "Obstetrics and Gynecology": [
        ("Gynecology", "Covers diseases and health issues related to the female reproductive system, such as menstrual disorders, infertility, uterine diseases, etc."),
        ("Obstetrics", "Involves pregnancy, childbirth, and postpartum care, such as pregnancy health management, delivery processes, and postpartum recovery."),
    ],
    "Pediatrics": [
        ("Pediatric Internal Medicine", "Involves the diagnosis and treatment of internal diseases in children, including respiratory diseases, digestive system diseases, endocrine disorders, etc., such as colds, asthma, gastrointestinal issues, etc."),
        ("Pediatric Surgery", "Involves the diagnosis and treatment of surgical diseases in children, including trauma, congenital deformities, urinary system issues, etc., such as fractures, hernias, etc."),
    ],
    "Otorhinolaryngology (ENT)": [
        ("Otorhinolaryngology (ENT)", "Involves diseases and issues related to the ears, nose, and throat, such as tinnitus, nasal congestion, sore throat, etc."),
        ("Ophthalmology", "Focuses on eye health issues, such as blurred vision, eye pain, dry eye, etc."),
        ("Dentistry (Oral Medicine)", "Deals with issues related to the mouth, teeth, gums, etc., such as toothaches, mouth ulcers, gum bleeding, etc."),
    ],
    "Other Departments": [
        ("Dermatology and Venereology", "Primarily deals with skin diseases, sexually transmitted diseases, and related skin issues."),
        ("Rehabilitation Medicine", "Focuses on restoring patients’ physical functions, treating sports injuries, and post-surgical rehabilitation."),
        ("Anesthesiology", "Mainly responsible for anesthesia management during surgeries, including general anesthesia and local anesthesia."),
        ("Traditional Chinese Medicine (TCM)", "Uses traditional Chinese medicine theories and methods to treat diseases, including acupuncture, herbal medicine, and massage (Tui Na)."),
    ],
}

_FIRST_LEVEL_DESCRIPTIONS = [
    ("Internal Medicine", "Diseases related to internal organs, such as heart disease, stomach problems, diabetes, etc."),
    ("Surgery", "Diseases treated with surgical interventions, such as fractures, tumor removal, etc."),
    ("Obstetrics and Gynecology", "Diseases and health issues related to the female reproductive system, pregnancy, and childbirth."),
    ("Pediatrics", "Health and disease issues related to children."),
    ("Otorhinolaryngology (ENT)", "Diseases related to the ears, nose, throat, eyes, and oral cavity."),
    ("Other Departments", "Diseases or issues that do not fall under any of the above departments."),
]

FIRST_LEVEL: tuple[str, ...] = tuple(name for name, _ in _FIRST_LEVEL_DESCRIPTIONS)
TREE = MappingProxyType({dept: tuple(name for name, _ in subs) for dept, subs in _DESCRIPTIONS.items()})
SECOND_LEVEL: tuple[str, ...] = tuple(name for subs in TREE.values() for name in subs)

# Opening sentence after "You are a professional doctor who can classify a dialogue. Please read the
# following dialogue and determine which ..."; and what a second-level list calls its entries.
_OPENINGS = {
    None: ("hospital department it belongs to based on its main content", "department categories"),
    "Internal Medicine": ("specific department within Internal Medicine it belongs to based on its content", "department categories"),
    "Surgery": ("specific department within Surgery it belongs to based on its content", "department categories"),
    "Obstetrics and Gynecology": ("sub-department within Obstetrics and Gynecology it belongs to based on its content", "sub-departments"),
    "Pediatrics": ("specific department within Pediatrics it belongs to based on its content", "sub-departments"),
    "Otorhinolaryngology (ENT)": ("specific department within Otorhinolaryngology (ENT) it belongs to based on its content", "sub-departments"),
    "Other Departments": ("hospital department it belongs to based on its main content", "department categories"),
}
_NONE_TARGET = {  # what the 'None' sentence calls the list
    "Internal Medicine": "departments",
    "Surgery": "departments",
    "Obstetrics and Gynecology": "sub-departments",
    "Pediatrics": "sub-departments",
    "Otorhinolaryngology (ENT)": "sub-departments",
    "Other Departments": "departments",
}
_TAIL_DIALOGUE = "Here is the dialogue:\nPatient: {instruction}\nDoctor: {response}"
_TAIL_TEXT = "Here is the text:\n{text}"  # the released notebook classifies the raw text instead


def classification_template(parent: str | None) -> str:
    """The Appendix D prompt for the first level (`parent=None`) or for one first-level department,
    with the paper's dialogue tail ({instruction}, {response} slots)."""
    opening, entries = _OPENINGS[parent]
    items = _FIRST_LEVEL_DESCRIPTIONS if parent is None else _DESCRIPTIONS[parent]
    lines = [
        "You are a professional doctor who can classify a dialogue. Please read the following dialogue and "
        f"determine which {opening}. The available {entries} and their brief descriptions are as follows:",
        *(f"{name}: {description}" for name, description in items),
    ]
    if parent is not None:
        lines.append(
            f"If the dialogue content does not pertain to any of the above {_NONE_TARGET[parent]}, please output 'None'."
        )
    lines.append(
        "Please choose the most appropriate department from the list above and output only the department "
        "name, without any additional explanation."
    )
    lines.append(_TAIL_DIALOGUE)
    if parent != "Pediatrics":  # Table 11 ends without "Output:"
        lines.append("Output:")
    return "\n".join(lines)


def classification_prompt(parent: str | None, *, instruction: str, response: str, text: str, raw_text: bool) -> str:
    """The filled prompt. `raw_text=False` (paper): the Patient/Doctor dialogue; `raw_text=True`
    (released notebook): the raw medical text in place of the dialogue."""
    template = classification_template(parent)
    if raw_text:
        template = template.replace(_TAIL_DIALOGUE, _TAIL_TEXT)
        values = {"text": text}
    else:
        values = {"instruction": instruction, "response": response}
    pattern = re.compile(r"\{(" + "|".join(values) + r")\}")
    return pattern.sub(lambda m: values[m.group(1)], template)


def allowed_labels(parent: str | None) -> tuple[str, ...]:
    """Exact labels a classifier output may be: first level, or a department's subs plus 'None'."""
    return FIRST_LEVEL if parent is None else (*TREE[parent], NONE_LABEL)
