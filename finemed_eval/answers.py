"""Pull the chosen option letter(s) out of a generated multiple-choice answer.

Pure functions, no I/O. Policy, in order of trust:
1. an explicit answer statement ("the answer is (C)", "答案：B", "\\boxed{D}") - the LAST one wins;
2. bold letters ("**B**") - the last bold group wins;
3. a response that is nothing but an option label ("C", "(C)", "C) Aspirin").
Anything else is None: we never guess from letters merely mentioned in prose.
Before that, o1-style outputs are narrowed to their final section and a hallucinated
next question is cut off.
"""

from __future__ import annotations

import re

# Full-width ASCII (Ａ, （, ：, ，) -> ASCII; ideographic space -> space; 【】 -> [].
_FULLWIDTH = str.maketrans(
    {chr(c): chr(c - 0xFEE0) for c in range(0xFF01, 0xFF5F)} | {"\u3000": " ", "【": "[", "】": "]"}
)

# --- letter groups ------------------------------------------------------------------------------
_B = r"(?<![A-Za-z0-9])"  # a letter must not be glued to the word before it...
_E = r"(?![A-Za-z0-9'’-])"  # ...nor to the one after it ("Cholesterol", "I'm", "A-fib")
_PAREN = r"[(\[][ \t]*[A-Za-z][ \t]*[)\]]"
# "ACD"; not "ACE inhibitors" (a run followed by an ordinary word is an acronym)
_RUN = rf"{_B}[A-J]{{2,10}}{_E}(?![ \t]+(?!(?:and|are|is|because|since|as)\b)[a-z])"
_WORD = r"(?!(?:and|or)\b)[a-z]"  # a lowercase word other than a connective
# "I think ..." is a pronoun and "A 45-year-old" an article, not options
_SINGLE = rf"{_B}(?!I[ \t]+{_WORD})(?!A[ \t]+\d)[A-Z]{_E}"
_LOWER = rf"{_B}[a-z](?=[ \t]*(?:[.,;:!)\n]|$))"  # "answer: b." yes, "answer is a beta blocker" no
_CONJ = r"(?:\b(?:and|or)\b|[和及与或])"
_SEP = rf"(?:[ \t]*[,、/&;+][ \t]*(?:{_CONJ}[ \t]*)?|[ \t]*{_CONJ}[ \t]*|[ \t]+)"
# a later letter that starts a new clause ("B, and C is wrong", "B，A项错误") is not part of the answer
_NOT_CLAUSE = (
    rf"(?![AI][ \t]+{_WORD})"
    r"(?![(\[]?[A-Za-z][)\]]?[ \t]+(?:is|was|seems|does|has|can|could|would|may|might)\b)"
    r"(?![A-Za-z][ \t]*(?:项|选项)?[ \t]*(?:错|不|是|正确|为|的|说法|描述|表述))"
)
_GROUP = rf"(?:{_PAREN}|{_RUN}|{_SINGLE}|{_LOWER})(?:{_SEP}{_NOT_CLAUSE}(?:{_PAREN}|{_RUN}|{_SINGLE}))*"
_ONE = rf"(?:{_PAREN}|{_SINGLE})"
# what may sit between a trigger and its letters: "is: option (C)", "是：选项B", "$\boxed{\text{C}}$"
_LEAD = r"\s*(?:(?:(?i:option|choice)|选项|\$|\\boxed\{|\\text\{)\s*)*"

# Explicit answer statements; each is a trigger followed by the letters it commits to.
_TRIGGERS = (
    # the answer is / answers are / final answer: / answer =
    r"(?i:\b(?:(?:final|correct|best|right|most\s+(?:likely|appropriate))\s+)?answers?"
    r"(?:\s+(?:is|are|would\s+be|should\s+be|will\s+be|must\s+be)"
    r"(?:\s+(?:therefore|thus|likely|probably|clearly|definitely))?\s*:?|\s*[:=]))",
    # the correct option is / best choice:
    r"(?i:\b(?:correct|right|best|final|most\s+appropriate)\s+(?:option|choice|response|letter)s?"
    r"(?:\s+(?:is|are|would\s+be)\s*:?|\s*:))",
    # choose / go with (option) X; "is option X"; "corresponds to option X"
    r"(?i:\b(?:choose|select|pick|go\s+with)|\b(?:is|be|corresponds?\s+to)\s+(?=option|choice))",
    r"\\boxed\{",
    # 答案是 / 正确答案为 / 答案：/ 答案选
    r"(?:正确|最终|最佳|标准|参考)?答案(?:应该|应当|应|可能)?(?:是|为|选择|选)?\s*:?",
    r"(?:正确|最终|最佳)选项(?:应该|应当|应)?(?:是|为)?\s*:?",
    # 应选 / 故选 / 选择 (but not 不应选 / 不选择)
    r"(?<!不)(?:(?:应该?|应当|故|所以|因此|因而|本题|我|则|即|可|最终)选(?:择)?|选择)",
)
_BEST = r"(?:correct|right|best|most\s+(?:likely|appropriate|accurate|suitable))"
# Letter-first statements: "Option C (aspirin) is the best", "(C) is the correct answer".
_LETTER_FIRST = (
    rf"(?i:\b(?:option|choice))\s*(?P<g>{_ONE})(?:\s*\([^()\n]{{1,60}}\))?\s+is\s+(?:the\s+)?{_BEST}\b",
    rf"(?P<g>{_ONE})\s+is\s+the\s+{_BEST}\s+(?:answer|option|choice)",
)
_STATEMENTS = [re.compile(rf"{t}{_LEAD}(?P<g>{_GROUP})") for t in _TRIGGERS] + [
    re.compile(p) for p in _LETTER_FIRST
]

_BOLD = re.compile(rf"\*\*[ \t]*(?P<g>{_GROUP})[ \t]*[.)]?[ \t]*\*\*")
_BARE = re.compile(rf"(?P<g>{_GROUP})[ \t]*[.。:]?")
_LABEL = re.compile(r"(?P<g>[(\[]?[A-Z])[)\].:、][ \t]*\S")  # "C) Aspirin", "B. Heparin"
_OR = re.compile(r"\bor\b|或")

# --- sections and hallucinated continuations ------------------------------------------------------
_FINAL_HEADER = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*)?[ \t]*"
    r"(?i:final[ \t]+response|summari[sz]ation|final[ \t]+answer|最终回答|最终答案)"
    r"[ \t]*(?:\*\*)?[ \t]*:?[ \t]*(?:\*\*)?[ \t]*$|</think>",
    re.M,
)
_NEXT_QUESTION = re.compile(
    r"^[ \t]*(?:#+[ \t]*)?(?:\*\*)?[ \t]*(?i:question|q|问题|题目)[ \t]*\d*[ \t]*(?:\*\*)?[ \t]*:", re.M
)
_NUMBERED_ITEM = re.compile(r"^[ \t]*(?:\d{1,3}[ \t]*[.)、]|第[ \t]*\d+[ \t]*题)", re.M)
_OPTION_LINES = [re.compile(rf"^[ \t]*[(\[]?{c}[)\].:、]", re.M) for c in "AB"]


def letters(n: int) -> list[str]:
    """Option letters for an n-option question: letters(4) == ["A", "B", "C", "D"]."""
    if not 1 <= n <= 26:
        raise ValueError(f"number of options must be 1..26, got {n}")
    return [chr(ord("A") + i) for i in range(n)]


def is_correct(predicted: str | None, gold: str) -> bool:
    """Exact set match, order-insensitive: is_correct("CA", "AC") is True; None is never correct."""
    if not predicted:
        return False
    return _letter_set(predicted) == _letter_set(gold)


def extract_choice(text: str, num_options: int, multi: bool = False) -> str | None:
    """Return the chosen option letter(s) as a sorted string ("B", "ACD"), or None."""
    valid = set(letters(num_options))
    text = _cut_next_question(text.translate(_FULLWIDTH))
    return _resolve(_find_group(text), valid, multi)


def _letter_set(s: str) -> frozenset[str]:
    return frozenset(c for c in s.upper() if "A" <= c <= "Z")


def _find_group(text: str) -> str | None:
    """The raw letter group the response commits to, by the trust order in the module docstring."""
    section = _final_section(text)
    plain = _unbold(section)
    return _last_statement(plain) or _last_bold(section) or _bare_label(plain)


def _unbold(text: str) -> str:
    # "**Answer:** C" -> "  Answer:   C"; spaces, not deletion, so match positions stay valid
    return text.replace("*", " ")


def _final_section(text: str) -> str:
    # o1-style: the answer lives after the last "## Final Response" / "**Summarization**" / </think>.
    # If that section commits to nothing the result is None: we never read the thinking part instead.
    headers = list(_FINAL_HEADER.finditer(text))
    return text[headers[-1].end():] if headers else text


def _last_statement(text: str) -> str | None:
    # the statement whose letters start last wins (ties: the longer group)
    hits = [(m.start("g"), len(m.group("g")), m.group("g")) for p in _STATEMENTS for m in p.finditer(text)]
    return max(hits)[2] if hits else None


def _last_bold(text: str) -> str | None:
    hits = [m.group("g") for m in _BOLD.finditer(text)]
    return hits[-1] if hits else None


def _bare_label(text: str) -> str | None:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return None
    bare = _BARE.fullmatch(lines[0])
    if bare:
        return bare.group("g")
    label = _LABEL.match(lines[0])
    # "C) Aspirin" counts only if it is not the first line of an echoed option list
    if label and not any(_LABEL.match(ln) for ln in lines[1:]):
        return label.group("g")
    return None


def _cut_next_question(text: str) -> str:
    """Drop a hallucinated next exam item that follows the answer (it carries its own answer)."""
    # with o1-style sections, only an answer given after the first final header counts, so a
    # "Question:" line inside the thinking part is not mistaken for a new item
    header = _FINAL_HEADER.search(text)
    start = header.end() if header else 0
    answered_at = _first_answer_end(text[start:])
    if answered_at is None:
        return text
    answered_at += start
    question = _NEXT_QUESTION.search(text, answered_at)
    if question:
        return text[: question.start()]
    # a numbered line starts a new item only if an "A." and a "B." option line follow it
    last_option = min(max((m.start() for m in p.finditer(text)), default=-1) for p in _OPTION_LINES)
    for item in _NUMBERED_ITEM.finditer(text, answered_at):
        if item.start() < last_option:
            return text[: item.start()]
    return text


def _first_answer_end(text: str) -> int | None:
    """Where the earliest answer-looking span ends (one linear pass: long outputs stay cheap)."""
    plain = _unbold(text)
    ends = [m.end("g") for p in _STATEMENTS if (m := p.search(plain))]
    if bold := _BOLD.search(text):
        ends.append(bold.end())
    first = re.match(r"\s*([^\n]*)", plain)
    line = first.group(1).strip()
    if line and (_BARE.fullmatch(line) or _LABEL.match(line)):
        ends.append(first.end())
    return min(ends, default=None)


def _resolve(group: str | None, valid: set[str], multi: bool) -> str | None:
    if group is None or _OR.search(group):  # "B or C" hedges: no answer
        return None
    chosen = _letter_set(re.sub(_CONJ, " ", group))
    if not chosen or not chosen <= valid:  # out of range: None, never another letter
        return None
    if len(chosen) > 1 and not multi:
        return None
    return "".join(sorted(chosen))
