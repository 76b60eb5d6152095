"""Pull the chosen option letter(s) out of a generated multiple-choice answer.

Pure functions, no I/O. The response is first cut at a hallucinated next question, then split at
its last final-section header (o1-style "## Final Response", "Summarization:", "</think>", ...):
the text before it is the reasoning, the text after it the final section. Without a header the
whole response is the final section. Trust order; the first rule that finds something decides:

1. an explicit final answer in the final section - a committed answer statement ("the answer
   is (C)", "答案：B", "\\boxed{D}", "Therefore, B is correct", "答案不是A，而是C"; the LAST one
   wins), else a bold letter ("**B**"), else a response that is nothing but an option label;
2. the final section names exactly one option by its text (not negated: "warfarin is
   contraindicated; heparin is preferred" names heparin) - only with a final-section header,
   only for single-answer questions, only when the option texts are known;
3. an explicit committed answer statement in the reasoning before the final-section header
   (the last one wins);
4. nothing: None. We never guess from letters merely mentioned, never take a max over the first
   and the last match, and never fall back to another letter when the deciding rule's letters are
   out of range or hedged ("B or C").

A statement is committed unless it is tentative: hedged in its own clause ("maybe the answer is
A", "如果答案是C", "答案可能是B"), asked ("the answer is A?"), or a bare per-option verdict
("Option A is correct ...") that a discussion of another option follows (an enumeration, often
cut off). Chinese "B项正确" alone judges a statement, not the answer: it needs 故/所以/因此 or
符合题意. extract_choice_with_rule also says which rule decided (see RULES).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from typing import NamedTuple

# Full-width ASCII (Ａ, （, ：, ，) -> ASCII; ideographic space -> space; 【】 -> [].
_FULLWIDTH = str.maketrans(
    {chr(c): chr(c - 0xFEE0) for c in range(0xFF01, 0xFF5F)} | {"\u3000": " ", "【": "[", "】": "]"}
)

# Which rule decided an extraction (Extraction.rule).
RULES = (
    "answer_statement",  # 1. a committed answer statement in the final section (or the whole response)
    "bold_letter",  # 1. a bold letter group in the final section
    "bare_label",  # 1. the final section is nothing but an option label ("C", "C) Aspirin")
    "option_text",  # 2. the final section names exactly one option by its text
    "reasoning_commitment",  # 3. a committed answer statement in the reasoning before the final section
    "none",  # 4. nothing found
)


class Extraction(NamedTuple):
    """answer: sorted letters ("B", "ACD") or None. rule: the rule that decided (one of RULES).
    rejected: the raw letters the deciding rule found when they are no valid answer (out of
    range, hedged with "or", several letters on a single-answer question), else None."""

    answer: str | None
    rule: str
    rejected: str | None = None


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
    # a negated option, then the chosen one: "the answer is not A but C", "the correct option is
    # not (B); it is (D)"
    rf"(?i:\b(?:answer|option|choice)\s+is\s+not\s+(?:(?:option|choice)\s*)?){_ONE}"
    r"[ \t]*[,;—–-]?[ \t]*(?i:but|it\s+is|it's|rather)(?:[ \t]+rather)?[ \t]*:?",
    # 答案是 / 正确答案为 / 答案：/ 答案选
    r"(?:正确|最终|最佳|标准|参考)?答案(?:应该|应当|应|可能)?(?:是|为|选择|选)?\s*:?",
    r"(?:正确|最终|最佳)选项(?:应该|应当|应)?(?:是|为)?\s*:?",
    # 正确的是D / 正确的选项为B (not across a line: "下列说法正确的是\nA. ..." echoes the question)
    r"正确的(?:选项|答案)?(?:是|为|应为)[ \t]*:?[ \t]*(?=[(\[]?[A-Z])",
    # 应选 / 故选 / 选择 (but not 不应选 / 不选择)
    r"(?<!不)(?:(?:应该?|应当|故|所以|因此|因而|本题|我|则|即|可|最终)选(?:择)?|选择)",
    # 答案不是A，而是C / 不选B，选D
    rf"(?:正确|最终)?(?:答案|选项)(?:应该?)?不是[ \t]*(?:选项)?[ \t]*{_ONE}[ \t]*(?:项)?[ \t]*[,;、]?[ \t]*"
    r"(?:而)?(?:应该?)?(?:是|为|选)",
    rf"不(?:应该?)?选(?:择)?[ \t]*{_ONE}[ \t]*(?:项)?[ \t]*[,;、]?[ \t]*(?:而)?(?:应该?)?选(?:择)?",
)
_BEST = r"(?:correct|right|best|most\s+(?:likely|appropriate|accurate|suitable))"
_ASIDE = r"(?:\s*\([^()\n]{1,60}\))?"  # "Option C (aspirin) is ..."
_CONNECTIVE = r"(?:so|therefore|thus|hence|consequently|accordingly|clearly|overall|ultimately|only)"
# Letter-first statements, committed by their form.
_LETTER_FIRST = (
    # "Option C (aspirin) is the most appropriate", "(C) is the correct answer", "C is the right one"
    rf"(?:(?i:\b(?:option|choice))\s*)?(?P<g>{_ONE}){_ASIDE}\s+(?i:is|remains|would\s+be|must\s+be)\s+"
    rf"(?i:the\s+(?:only\s+)?{_BEST})(?:\s+(?i:answer|option|choice|one|response))?\b",
    # "Therefore, B is correct", "So C is right", "Hence, only (D) is correct"
    rf"(?i:\b{_CONNECTIVE}\b)[ \t,]*(?:(?i:(?:the\s+)?(?:option|choice))\s*)?(?P<g>{_ONE}){_ASIDE}\s+"
    rf"(?i:is|remains|must\s+be|would\s+be)\s+(?i:(?:the\s+)?(?:only\s+)?(?:{_BEST}|true))\b",
    # 故C项正确 / 因此B是正确的 / 综上，D项最合适
    rf"(?:故|所以|因此|因而|综上所述|综上|可见|由此可见)[ \t,、]*(?:选项)?[ \t]*(?P<g>{_ONE})[ \t]*(?:项|选项)?[ \t]*"
    r"(?:是|为)?[ \t]*(?:正确|最佳|最合适|最恰当|符合题意)",
    # C项符合题意 / B为正确答案
    rf"(?:选项)?[ \t]*(?P<g>{_ONE})[ \t]*(?:项|选项)?[ \t]*(?:最?符合题意|(?:为|是)(?:正确答案|正确选项|本题答案))",
)
# A bare per-option verdict ("Option B is correct."): committed only if no other option is
# discussed after it - otherwise it is one line of an option-by-option enumeration.
_VERDICT = re.compile(
    rf"(?i:\b(?:option|choice))\s*(?P<g>{_ONE}){_ASIDE}\s+(?i:is)\s+(?i:{_BEST}|the\s+answer)\b"
)
_STATEMENTS = [re.compile(rf"{t}{_LEAD}(?P<g>{_GROUP})") for t in _TRIGGERS] + [
    re.compile(p) for p in _LETTER_FIRST
]
# a bare capital letter subject ("so D is correct") must not be the end of a noun ("vitamin D is ...")
_NOUN_BEFORE = re.compile(rf"(?i:(?<![A-Za-z])(?!{_CONNECTIVE}\b|option\b|choice\b|and\b|that\b)[a-z]+)[ \t]+$")
_OPTION_MENTION = re.compile(
    r"(?i:\b(?:option|choice)s?)[ \t]*[(\[]?(?P<a>[A-Z])\b|(?<![A-Za-z])[(\[]?(?P<b>[A-Z])[)\]]?[ \t]*(?:项|选项)"
    r"|^[ \t]*(?:[-*][ \t]*)?(?:\*\*)?[ \t]*[(\[]?(?P<c>[A-Z])[)\].:、]",
    re.M,
)
# what a later option is discussed for when it is only being rejected
_REJECTED = re.compile(
    r"(?i:\b(?:incorrect|wrong|not|isn't|aren't|false|unlikely|inappropriate|contraindicated|ineffective|too"
    r"|less|fails?|cannot|can't|doesn't|don't|excluded|ruled\s+out|eliminated)\b)|错误|不正确|不对|不符合|排除"
)

# --- tentative statements -------------------------------------------------------------------------
_CLAUSE_END = re.compile(r"[,.;!?\n，。；！？]|\b(?:but|however|yet)\b|但是|但|然而|不过")
_HEDGE = re.compile(
    r"(?i:\b(?:maybe|perhaps|possibly|might|could|may|tentatively|initially|at\s+first|suppose|supposing"
    r"|assuming|whether|if|unsure|not\s+sure|guess)\b)|(?<!最)可能|也许|或许|如果|假如|假设|若|似乎|好像|是否|初步"
)
_CONDITION_AFTER = re.compile(
    r"[ \t]*[,，]?[ \t]*(?:(?i:\b(?:if|unless|provided|assuming|for\s+now|at\s+first\s+glance)\b)|吗|呢|的话)"
)
_SENTENCE_END = re.compile(r"[.!?\n。！？]")

_BOLD = re.compile(rf"\*\*[ \t]*(?P<g>{_GROUP})[ \t]*[.)]?[ \t]*\*\*")
# "**A**: aspirin ..." / "- **B.** heparin ..." at the start of a line labels an option being discussed
_LINE_LEAD = re.compile(r"[ \t]*(?:[-*+][ \t]+|\d{1,2}[.)][ \t]*)?")
_LABEL_TAIL = re.compile(r"[ \t]*[:.)\-–—][ \t]*\S")
_TEXT_TAIL = re.compile(r"[ \t]*[^\s*]")
_BARE = re.compile(rf"(?P<g>{_GROUP})[ \t]*[.。:]?")
_LABEL = re.compile(r"(?P<g>[(\[]?[A-Z])[)\].:、][ \t]*\S")  # "C) Aspirin", "B. Heparin"
_OR = re.compile(r"\bor\b|或")

# --- sections and hallucinated continuations ------------------------------------------------------
_FINAL_HEADER = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*)?[ \t]*"
    r"(?i:final[ \t]+response|summari[sz]ation|final[ \t]+answer|summary|conclusions?"
    r"|最终回答|最终答案|总结|结论|小结)"
    r"[ \t]*(?:\*\*)?[ \t]*:?[ \t]*(?:\*\*)?[ \t]*$|</think>",
    re.M,
)
_NEXT_QUESTION = re.compile(
    r"^[ \t]*(?:#+[ \t]*)?(?:\*\*)?[ \t]*(?i:question|q|问题|题目)[ \t]*\d*[ \t]*(?:\*\*)?[ \t]*:", re.M
)
_NUMBERED_ITEM = re.compile(r"^[ \t]*(?:\d{1,3}[ \t]*[.)、]|第[ \t]*\d+[ \t]*题)", re.M)
_OPTION_LINES = [re.compile(rf"^[ \t]*[(\[]?{c}[)\].:、]", re.M) for c in "AB"]

# --- options named by their text ------------------------------------------------------------------
_GENERIC_OPTION = re.compile(r"(?i)^(?:all|none|both|neither)\b.*\b(?:above|these|options?)$|^以上")
_NEGATION_BEFORE = re.compile(
    r"(?i:\b(?:not|no|never|avoid|avoiding|without|rather\s+than|instead\s+of|unlike|except|neither|nor"
    r"|against|rules?\s+out|ruled\s+out|excluding|excludes?)\b)|不|非|无|未|避免|禁用|禁忌|排除|而不是|并非"
)
_NEGATION_AFTER = re.compile(
    r"(?i:\b(?:not|isn't|aren't|wasn't|cannot|can't|doesn't|don't|won't|shouldn't|contraindicated|avoided"
    r"|wrong|incorrect|ineffective|inappropriate|ruled\s+out|excluded)\b)|不|错误|禁忌|禁用|无效|并非|排除"
)
_TEXT_CLAUSE_END = re.compile(r"[,.;:!?\n，。；：！？]")
_DASHES = str.maketrans({c: " " for c in "-‐‑–—_/"})


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


def extract_choice(text: str, options: Sequence[str] | int, multi: bool = False) -> str | None:
    """The chosen option letter(s) as a sorted string ("B", "ACD"), or None.

    options: the option texts in order (letters A, B, ... follow their order), or just their count."""
    return extract_choice_with_rule(text, options, multi).answer


def extract_choice_with_rule(text: str, options: Sequence[str] | int, multi: bool = False) -> Extraction:
    """extract_choice, plus which rule decided (Extraction.rule, one of RULES)."""
    texts = None if isinstance(options, int) else [str(o) for o in options]
    valid = set(letters(options if texts is None else len(texts)))
    text = _cut_next_question(text.translate(_FULLWIDTH))
    headers = list(_FINAL_HEADER.finditer(text))
    reasoning, final = (text[: headers[-1].start()], text[headers[-1].end():]) if headers else ("", text)

    plain = _unbold(final)
    group = _last_statement(plain)
    if group is not None:
        return _decide("answer_statement", group, valid, multi)
    group = _last_bold(final)
    if group is not None:
        return _decide("bold_letter", group, valid, multi)
    group = _bare_label(final)
    if group is not None:
        return _decide("bare_label", group, valid, multi)
    if not headers:
        return Extraction(None, "none")
    if texts and not multi:
        named = _named_option(final, texts)
        if named is not None:
            return Extraction(named, "option_text")
    group = _last_statement(_unbold(reasoning))
    if group is not None:
        return _decide("reasoning_commitment", group, valid, multi)
    return Extraction(None, "none")


def _decide(rule: str, group: str, valid: set[str], multi: bool) -> Extraction:
    answer = _resolve(group, valid, multi)
    return Extraction(answer, rule, None if answer else group.strip())


def _letter_set(s: str) -> frozenset[str]:
    return frozenset(c for c in s.upper() if "A" <= c <= "Z")


def _unbold(text: str) -> str:
    # "**Answer:** C" -> "  Answer:   C"; spaces, not deletion, so match positions stay valid
    return text.replace("*", " ")


def _last_statement(text: str) -> str | None:
    """The committed statement whose letters start last wins (ties: the longer group)."""
    hits = [
        (m.start("g"), len(m.group("g")), m.group("g"))
        for p in _STATEMENTS
        for m in p.finditer(text)
        if not _tentative(text, m.start(), m.start("g"), m.end()) and not _noun_subject(text, m)
    ]
    verdicts = list(_VERDICT.finditer(text))
    if verdicts:
        follows = _other_option_follows(text)
        hits += [
            (m.start("g"), len(m.group("g")), m.group("g"))
            for m in verdicts
            if not _tentative(text, m.start(), m.start("g"), m.end()) and not follows(m)
        ]
    return max(hits)[2] if hits else None


def _tentative(text: str, start: int, g_start: int, end: int) -> bool:
    """Hedged in its own clause ("so maybe the answer is A"), asked ("the answer is A?") or
    conditional ("the answer is A if ...")."""
    window = text[max(0, start - 200):g_start]
    cut = start - max(0, start - 200)  # the clause may not start inside the trigger itself
    ends = [m.end() for m in _CLAUSE_END.finditer(window, 0, cut)]
    if _HEDGE.search(window, ends[-1] if ends else 0):
        return True
    stop = _SENTENCE_END.search(text, end, end + 300)
    if stop and stop.group() in "?？":
        return True
    return bool(_CONDITION_AFTER.match(text, end))


def _noun_subject(text: str, m: re.Match) -> bool:
    # "vitamin D is the best choice": a capital letter after an ordinary word is part of a name
    g = m.group("g")
    if len(g) != 1 or m.start("g") != m.start():
        return False
    return bool(_NOUN_BEFORE.search(text, max(0, m.start() - 40), m.start()))


def _other_option_follows(text: str):
    """A test: is another option discussed after the verdict, other than to be rejected? ("Option C
    is correct. Option A is wrong because ..." concludes; "Option A is correct ... Option B is"
    enumerates.) One pass over the text."""
    mentions = []
    for m in _OPTION_MENTION.finditer(text):
        stop = _SENTENCE_END.search(text, m.end(), m.end() + 150)
        if not _REJECTED.search(text, m.end(), stop.start() if stop else m.end() + 150):
            mentions.append((m.start(), (m.group("a") or m.group("b") or m.group("c")).upper()))
    # later[i]: up to two distinct letters discussed (not rejected) from mentions[i] on
    later: list[tuple[str, ...]] = [()] * (len(mentions) + 1)
    for i in range(len(mentions) - 1, -1, -1):
        rest = later[i + 1]
        later[i] = rest if mentions[i][1] in rest or len(rest) == 2 else (mentions[i][1], *rest)[:2]
    starts = [pos for pos, _ in mentions]

    def follows(m: re.Match) -> bool:
        letters_after = later[bisect.bisect_left(starts, m.end())]
        return any(c not in _letter_set(m.group("g")) for c in letters_after)

    return follows


def _last_bold(text: str) -> str | None:
    hits = [
        m.group("g")
        for m in _BOLD.finditer(text)
        if not _bold_label(text, m) and not _tentative(text, m.start(), m.start("g"), m.end())
    ]
    return hits[-1] if hits else None


def _bold_label(text: str, m: re.Match) -> bool:
    # "**A**: aspirin inhibits ..." / "**B.** heparin" at the start of a line names the option discussed
    if not _LINE_LEAD.fullmatch(text, text.rfind("\n", 0, m.start()) + 1, m.start()):
        return False
    if _LABEL_TAIL.match(text, m.end()):
        return True
    return bool(re.search(r"[.)][ \t]*\*\*$", m.group())) and bool(_TEXT_TAIL.match(text, m.end()))


def _bare_label(text: str) -> str | None:
    lines = [ln.replace("**", "").strip() for ln in text.splitlines() if ln.strip()]
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


def _named_option(text: str, options: list[str]) -> str | None:
    """The letter of the one option the text names by its option text, not negated; else None."""
    lowered = text.translate(_DASHES).casefold()  # same length: "low molecular weight" = "low-molecular-weight"
    spans: list[tuple[int, int, int]] = []  # (start, end, option index)
    for i, option in enumerate(options):
        needle = _option_needle(option)
        if needle is None:
            continue
        ascii_word = needle.isascii()
        pattern = re.escape(needle).replace(r"\ ", r"\s+")
        if ascii_word:
            pattern = rf"(?<![a-z0-9]){pattern}(?:e?s)?(?![a-z0-9])"
        spans += [(m.start(), m.end(), i) for m in re.finditer(pattern, lowered)]
    named = set()
    for start, end, i in spans:
        # "aspirin" inside a longer option "aspirin and clopidogrel" names the longer one only
        if any(s <= start and end <= e and (e - s) > (end - start) for s, e, j in spans if j != i):
            continue
        if not _negated(lowered, start, end):
            named.add(i)
    if len(named) != 1:
        return None
    return letters(len(options))[named.pop()]


def _option_needle(option: str) -> str | None:
    needle = " ".join(option.translate(_FULLWIDTH).translate(_DASHES).casefold().split()).strip(" .。;；,，:：")
    if _GENERIC_OPTION.search(needle) or not re.search(r"[^\W\d_]", needle):
        return None
    if len(needle) < (4 if needle.isascii() else 2):  # "yes", "no", "2" are too common to count
        return None
    return needle


def _negated(text: str, start: int, end: int) -> bool:
    before = text[max(0, start - 120):start]
    clause = [m.end() for m in _TEXT_CLAUSE_END.finditer(before)]
    if _NEGATION_BEFORE.search(before, clause[-1] if clause else 0):
        return True
    after_end = _TEXT_CLAUSE_END.search(text, end, end + 160)
    return bool(_NEGATION_AFTER.search(text, end, after_end.start() if after_end else end + 160))


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
