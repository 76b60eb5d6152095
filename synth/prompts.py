"""The paper's synthesis prompts (Appendix A), verbatim, and pure builders.

Text source: Yu et al. 2025, Appendix A, Tables 4-6. The appendix is a PDF; its line wraps are not part
of the prompts, so each paragraph is one line here. Three extraction artefacts of the PDF text are
corrected (tests/test_synth_prompts.py lists them and compares the rest word for word):
"aMedClsnswer" -> "answer", "answerl" -> "answer1", the en dash in "3—4" -> "3-4" (the authors' released
notebooks have "answer", "answer1" and "3-4"). The department prompts of Appendix D live in
`departments.py`.
"""

from __future__ import annotations

import re

INSTRUCTION_GENERATION = """You need to generate two questions based on the given text content. These questions can be open-ended, detail-oriented, or related to a broader discussion of the content, but avoid relying on specific case details from the text. Follow these requirements:
Requirements:
1. Make sure the questions are closely related to the main points or themes mentioned in the text.
2. Ensure the two questions are as diverse as possible, avoiding homogeneity.
3. Ensure the questions include all the information needed for the answers. If necessary, add introductory information to the questions.
4. Avoid repetitive or overly simplistic questions, ensuring diversity and depth.
5. The questions must be self-contained and should not require the provided text as background to be understood.
Please rewrite the following text into related questions, and strictly follow the format below for output:
{
"question1": "Generated first question",
"question2": "Generated second question"
}
Here is the sample text:
{text}"""

INSTRUCTION_SCORING = """You need to evaluate the given query based on the following criteria and output the results in JSON format. The output should include three parts: quality, difficulty, and whether additional necessary information is required to answer the query. Please follow the scoring standards below:
1. Quality (Score 1-10): Assess the clarity and accuracy of the query. If the query is a simple statement without any question or instruction, score it 1-2.
9-10: Very clear, accurate expression, no ambiguity.
7-8: Clear, accurate expression, but may have minimal ambiguity.
5-6: Fairly clear, generally accurate expression, but some ambiguity exists.
3-4: Not very clear, somewhat vague expression, with obvious ambiguity.
1-2: Unclear, very vague expression, difficult to understand or a simple statement.
2. Difficulty (Score 1-10): Assess the difficulty of understanding and answering the query.
9-10: Very difficult, requires specialized knowledge and complex analysis to answer.
7-8: Quite difficult, requires some specialized knowledge and analysis.
5-6: Moderate difficulty, requires general knowledge and analysis.
3-4: Fairly simple, can be answered with basic knowledge.
1-2: Very simple, no special knowledge required to answer.
3. Relevance to medicine (1-6): Assess the medical relevance of the query.
5-6: Completely related to medicine, with many medical terms appearing.
3-4: Related to medicine, the content involves medical fields.
1-2: Very weak medical relevance.
4. Mention specific details: Whether specific case details in the text are mentioned.
Please strictly follow the format below for output:
{
"quality": 1-10,
"difficulty": 1-10,
"Relevance2Medicine": 1-6,
"MentionSpecificDetails": "True"/"False"
}
Please evaluate the following query:
{instruction}"""

ANSWER_GENERATION = """You need to generate two different styles of answers based on the given question. Use the background information provided in the text to assist in formulating a relevant and detailed answer. Follow these answer guidelines:
1. Ensure the answer is closely related to the main points or themes mentioned in the question.
2. Utilize the text content to provide a comprehensive and accurate answer.
3. Ensure proper formatting and readability, including the correct rendering of any LaTeX or mathematical symbols.
4. Ensure that the answer provides a complete solution or explanation, with clear and detailed steps.
5. Please strictly follow the format below for output:
{
"answer1": "Generated first answer content",
"answer2": "Generated second answer content"
} Here is the question:
{instruction}
Here is the text:
{text}"""

LONGFORM_GENERATION = """You need to generate an answer based on the given problem and thoroughly explore the problem through a systematic and long-term thinking process to provide a final and accurate solution. This requires a comprehensive cycle of analysis, summary, exploration, re-evaluation, reflection, backtracking and iteration to form a thoughtful thinking process. Use the background information provided in the text to assist in formulating the answer. Follow these answer guidelines:
1. Please structure your response into two main sections: Thought and Summarization.
2. During the thinking phase, think step by step based on the given text content. If the text content is used, it must be expressed.
3. During the summary phase, based on the thinking process in the thinking phase, give the final answer to the question.
Here is the question:
{instruction}
Here is the text:
{text}"""


def _fill(template: str, **values: str) -> str:
    # str.format would trip over the JSON braces of the templates: replace the named slots only, in one
    # pass, so a raw text that itself contains "{instruction}" is never substituted again.
    pattern = re.compile(r"\{(" + "|".join(map(re.escape, values)) + r")\}")
    return pattern.sub(lambda match: values[match.group(1)], template)


def instruction_prompt(text: str) -> str:
    return _fill(INSTRUCTION_GENERATION, text=text)


def scoring_prompt(instruction: str) -> str:
    return _fill(INSTRUCTION_SCORING, instruction=instruction)


def answer_prompt(instruction: str, text: str) -> str:
    return _fill(ANSWER_GENERATION, instruction=instruction, text=text)


def longform_prompt(instruction: str, text: str) -> str:
    return _fill(LONGFORM_GENERATION, instruction=instruction, text=text)


def chat(prompt: str) -> list[dict[str, str]]:
    """The request's messages: the prompt as the single user turn (no system prompt in the paper)."""
    return [{"role": "user", "content": prompt}]
