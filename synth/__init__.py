"""The FineMed synthesis pipeline (paper §2.1-2.3, Appendices A-D) on Hugging Face datatrove.

raw medical text -> two instructions -> scores -> Algorithm 1 -> answers / long-form responses ->
reward model -> SFT rows -> departments; exports in the released FineMed-SFT / FineMed-DPO layouts.
See synth/README.md. Imports nothing of the evaluator except finemed_eval.embedded and finemed_eval.data.
"""
