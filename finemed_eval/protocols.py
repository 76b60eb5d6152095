"""Evaluation protocols: how a model is prompted, one named preset each (one home for the o1 prompt).

`default` is lm-eval's plain few-shot text. `o1` is how the FineMedLM-o1 authors prompt their o1 model
(Rebuttal_period_file/ttt_case_study.py and ttt_prepare.ipynb in github.com/hongzhouyu/FineMed): the
model's chat template, their o1 system prompt, and up to 2048 new tokens (the CoT tasks' default).
"""

from __future__ import annotations

import difflib
import shlex
from dataclasses import dataclass

# Verbatim from the released ttt_prepare.ipynb (the prompt FineMed-DPO was rendered with for TTT and
# that the case study puts in front of every question).
O1_SYSTEM_PROMPT = """You are a helpful professional doctor. You need to generate an answer based on the given problem and thoroughly explore the problem through a systematic and long-term thinking process to provide a final and accurate solution. This requires a comprehensive cycle of analysis, summary, exploration, re-evaluation, reflection, backtracking and iteration to form a thoughtful thinking process. Use the background information provided in the text to assist in formulating the answer. Follow these answer guidelines:
1. Please structure your response into two main sections: **Thought** and **Summarization**.
2. During the **Thought** phase, think step by step based on the given text content. If the text content is used, it must be expressed.
3. During the **Summarization** phase, based on the thinking process in the thinking phase, give the final answer to the question.
Here is the question: """


@dataclass(frozen=True)
class Protocol:
    name: str
    apply_chat_template: bool = False
    system_instruction: str | None = None
    max_gen_toks: int = 2048  # generative (CoT) tasks; the authors' budget

    def evaluate_kwargs(self) -> dict:
        """Keyword arguments for lm_eval.simple_evaluate / evaluate."""
        kwargs: dict = {}
        if self.apply_chat_template:
            kwargs["apply_chat_template"] = True
        if self.system_instruction is not None:
            kwargs["system_instruction"] = self.system_instruction
        return kwargs

    def cli_flags(self) -> str:
        """The same switch for the stock `lm_eval` command line."""
        flags = []
        if self.apply_chat_template:
            flags.append("--apply_chat_template")
        if self.system_instruction is not None:
            flags += ["--system_instruction", shlex.quote(self.system_instruction)]
        return " ".join(flags)


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol("default"),
        Protocol("o1", apply_chat_template=True, system_instruction=O1_SYSTEM_PROMPT),
    )
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        close = difflib.get_close_matches(name, PROTOCOLS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown protocol {name!r}{hint}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]
