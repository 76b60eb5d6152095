"""Compare answer extractors on the same generated outputs.

    python benchmarks/extractor_compare.py [-v]

Runs four extractors over every single-answer case of the behaviour table in
tests/test_answers.py (which includes the one real FineMedLM-o1 output the authors published)
and prints, per extractor, how many cases with a known right answer it gets right, wrong or reads
no answer from, its accuracy on them, and on the cases whose right reading is "no answer" how
often it abstains or answers anyway. -v also lists every case where an extractor is not right.

The extractors, each re-implemented from its published source (pure functions, no I/O):
- ours: finemed_eval.answers.extract_choice (with the option texts where the case has them);
- HuatuoGPT-o1: match_choice + score in evaluation/scorer.py of FreedomIntelligence/HuatuoGPT-o1
  (commit 2c8d7fc); it reports, per data source, the better of the first-match and the
  last-match accuracy, and it always answers (its last fallback picks the option text most
  similar to the output);
- MMLU-Pro official: extract_answer / extract_again / extract_final in evaluate_from_local.py of
  TIGER-AI-Lab/MMLU-Pro (commit f418b11; compute_accuracy.py's level-2 regex is the same chain);
  its scoring then replaces a None by a random letter, which is not done here: None is counted as
  no answer;
- lm-eval mmlu_pro: the "custom-extract" filter of lm_eval/tasks/mmlu_pro/_default_template_yaml
  in EleutherAI/lm-evaluation-harness (as installed, lm-eval 0.4.13): regex
  'answer is \\(?([ABCDEFGHIJ])\\)?' then take_first; no match gives "[invalid]" (no answer).

Caveat: the behaviour table is our extractor's specification, so ours is right on all of it by
construction; the table measures how the others read the same families, not an unbiased sample.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from finemed_eval.answers import extract_choice, letters  # noqa: E402


@dataclass(frozen=True)
class Case:
    family: str
    text: str
    options: Sequence[str] | int
    gold: str | None  # None: the right reading is "no answer"

    @property
    def n(self) -> int:
        return self.options if isinstance(self.options, int) else len(self.options)


def load_cases() -> list[Case]:
    spec = importlib.util.spec_from_file_location("behaviour_table", ROOT / "tests" / "test_answers.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    cases = [Case("explicit answers", t, n, g) for t, n, g in table.SINGLE]
    cases += [Case("no answer (incl. out of range)", t, n, None) for t, n in table.NONE_SINGLE]
    cases += [Case("hallucinated next question", t, n, g) for t, n, g in table.HALLUCINATED]
    cases += [
        Case("real FineMedLM-o1 output" if t is table.FINEMED_O1_MMLU_PRO_HEALTH else "o1 families", t, o, g)
        for t, o, g, _ in table.O1_FAMILIES
    ]
    cases += [Case("truncated, tentative/enumerated", t, o, None) for t, o in table.TRUNCATED]
    return cases


# --- ours ------------------------------------------------------------------------------------------
def ours(case: Case) -> str | None:
    return extract_choice(case.text, case.options)


# --- HuatuoGPT-o1: evaluation/scorer.py (FreedomIntelligence/HuatuoGPT-o1) --------------------------
def _str_similarity(str1: str, str2: str) -> float:
    return difflib.SequenceMatcher(None, str1, str2).ratio()


def _find_most_similar_index(str_list: list[str], target_str: str) -> int:
    most_similar_index, highest_similarity = None, 0
    for i, s in enumerate(str_list):
        similarity = _str_similarity(s, target_str)
        if similarity >= highest_similarity:  # ">=": the last of equally similar options wins
            most_similar_index, highest_similarity = i, similarity
    return most_similar_index


def huatuo_match_choice(text: str, options: dict[str, str]) -> tuple[list[str], int]:
    """Their match_choice: ([first, last], type); type 1 letter regex, 2 option text, 3 similarity."""
    if "## Final Response\n\n" in text:
        text = text.split("## Final Response\n\n")[-1]
    matches = list(re.finditer(r"(answer is\s*?)([A-N])", text, re.S))
    if matches:
        return [matches[0].group(2), matches[-1].group(2)], 1
    match_options = "ABCDEFGHIJKLMN"[: len(options)]
    matches = list(
        re.finditer(
            r"([\u4e00-\u9fff]|is |是|项|\*|\W|\ |\(|为|^|'|\"|#)(?![aA] )([" + match_options + r"])(\W|[\u4e00-\u9fff]|$)",
            text,
            re.S,
        )
    )
    if matches:
        return [matches[0].group(2), matches[-1].group(2)], 1
    text = text.lower()
    opsindex = [(opt, text.rindex(options[opt].lower())) for opt in options if options[opt].lower() in text]
    if len(opsindex) > 0:
        ans_last = sorted(opsindex, key=lambda x: x[1], reverse=True)[0][0]
        opsindex = [(opt, text.index(options[opt].lower())) for opt in options if options[opt].lower() in text]
        ans_first = sorted(opsindex, key=lambda x: x[1], reverse=True)[0][0]  # sic: also the latest first hit
        return [ans_first, ans_last], 2
    oplabels = list(options)
    opans = [options[x].lower() for x in options]
    ansindex = _find_most_similar_index(opans, text.lower())
    return [oplabels[ansindex], oplabels[ansindex]], 3


def huatuo_options(case: Case) -> dict[str, str]:
    if isinstance(case.options, int):  # the case gives only a count: texts that never occur in outputs
        return {c: f"<option {c} text>" for c in letters(case.n)}
    return dict(zip(letters(case.n), case.options))


def huatuo_first(case: Case) -> str | None:
    return huatuo_match_choice(case.text, huatuo_options(case))[0][0]


def huatuo_last(case: Case) -> str | None:
    return huatuo_match_choice(case.text, huatuo_options(case))[0][1]


# --- MMLU-Pro official: evaluate_from_local.py (TIGER-AI-Lab/MMLU-Pro) ------------------------------
def mmlu_pro_extract_answer(text: str) -> str | None:
    match = re.search(r"answer is \(?([A-J])\)?", text)
    if match:
        return match.group(1)
    return _mmlu_pro_extract_again(text)


def _mmlu_pro_extract_again(text: str) -> str | None:
    match = re.search(r".*[aA]nswer:\s*([A-J])", text)
    if match:
        return match.group(1)
    return _mmlu_pro_extract_final(text)


def _mmlu_pro_extract_final(text: str) -> str | None:
    match = re.search(r"\b[A-J]\b(?!.*\b[A-J]\b)", text, re.DOTALL)
    return match.group(0) if match else None


def mmlu_pro(case: Case) -> str | None:
    return mmlu_pro_extract_answer(case.text)


# --- lm-eval mmlu_pro: _default_template_yaml "custom-extract" (EleutherAI/lm-evaluation-harness) ----
_LM_EVAL_MMLU_PRO = re.compile(r"answer is \(?([ABCDEFGHIJ])\)?")


def lm_eval_mmlu_pro(case: Case) -> str | None:
    found = _LM_EVAL_MMLU_PRO.findall(case.text)  # RegexFilter: findall, group_select 0, else "[invalid]"
    return found[0].strip() if found else None


# --- scoring ---------------------------------------------------------------------------------------
@dataclass
class Score:
    name: str
    correct: int = 0
    wrong: int = 0
    no_answer: int = 0
    abstained: int = 0
    answered_anyway: int = 0

    @property
    def known(self) -> int:
        return self.correct + self.wrong + self.no_answer

    @property
    def accuracy(self) -> float:
        return self.correct / self.known if self.known else 0.0


def right(pred: str | None, gold: str | None) -> bool:
    return pred == gold


def score(name: str, fn: Callable[[Case], str | None], cases: list[Case]) -> tuple[Score, list[str | None]]:
    s = Score(name)
    preds = [fn(c) for c in cases]
    for c, p in zip(cases, preds):
        if c.gold is None:
            if p is None:
                s.abstained += 1
            else:
                s.answered_anyway += 1
        elif p is None:
            s.no_answer += 1
        elif p == c.gold:
            s.correct += 1
        else:
            s.wrong += 1
    return s, preds


def huatuo_reported(cases: list[Case]) -> tuple[Score, list[str | None], str]:
    """Their score(): the better of first-match and last-match accuracy (over one data source)."""
    first, first_preds = score("", huatuo_first, cases)
    last, last_preds = score("", huatuo_last, cases)
    chosen, preds, which = (first, first_preds, "first") if first.accuracy > last.accuracy else (last, last_preds, "last")
    chosen.name = f"HuatuoGPT-o1 scorer (reports max(first, last) = {which})"
    return chosen, preds, which


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="list the cases an extractor gets wrong")
    args = parser.parse_args()
    cases = load_cases()
    results = [score("ours (finemed_eval.answers)", ours, cases)]
    huatuo, huatuo_preds, _ = huatuo_reported(cases)
    results.append((huatuo, huatuo_preds))
    results.append(score("MMLU-Pro official (evaluate_from_local.py)", mmlu_pro, cases))
    results.append(score("lm-eval mmlu_pro regex (take_first)", lm_eval_mmlu_pro, cases))

    known = sum(c.gold is not None for c in cases)
    print(f"{len(cases)} single-answer outputs: {known} with a known right answer, {len(cases) - known} whose right "
          "reading is no answer\n")
    print("| extractor | correct | wrong | no answer | accuracy (known answer) | no-answer cases: abstained | answered anyway |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for s, _ in results:
        print(f"| {s.name} | {s.correct} | {s.wrong} | {s.no_answer} | {100 * s.accuracy:.1f} % ({s.correct}/{s.known}) "
              f"| {s.abstained} | {s.answered_anyway} |")

    families = list(dict.fromkeys(c.family for c in cases))
    print("\nRight readings per family (the answer, or no answer where none is right):\n")
    print("| family | cases | " + " | ".join(s.name.split(" (")[0] for s, _ in results) + " |")
    print("|---|---:|" + "---:|" * len(results))
    for fam in families:
        idx = [i for i, c in enumerate(cases) if c.family == fam]
        cells = [sum(right(preds[i], cases[i].gold) for i in idx) for _, preds in results]
        print(f"| {fam} | {len(idx)} | " + " | ".join(str(x) for x in cells) + " |")

    real = next(i for i, c in enumerate(cases) if c.family == "real FineMedLM-o1 output")
    print("\nThe real FineMedLM-o1 output (gold E): " + ", ".join(
        f"{s.name.split(' (')[0]} -> {preds[real]}" for s, preds in results))

    if args.verbose:
        for s, preds in results:
            print(f"\n## {s.name}: not right")
            for c, p in zip(cases, preds):
                if not right(p, c.gold):
                    print(f"- [{c.family}] gold {c.gold} got {p}: {c.text[:100]!r}")


if __name__ == "__main__":
    main()
