"""The lm-eval task class behind every finemed task, and its per-document scoring.

The YAML files only name a benchmark (and subset); FineMedTask loads it through
finemed_eval.data (hub by default, FINEMED_DATA_DIR for local official files) and takes the
evaluated and few-shot split names from the data actually loaded, so results record them truthfully.
"""

from __future__ import annotations

import datasets
from lm_eval.api.task import ConfigurableTask

from finemed_eval.answers import Extraction, extract_choice_with_rule, is_correct
from finemed_eval.data import load_benchmark
from finemed_eval.prompts import mc_target


class FineMedTask(ConfigurableTask):
    def __init__(self, config: dict | None = None, **kwargs) -> None:
        config = dict(config or {})
        config.pop("class", None)  # the YAML key that routed lm-eval here, not a TaskConfig field
        super().__init__(config=config, **kwargs)

    def download(self, dataset_kwargs: dict | None = None, **kwargs) -> None:
        options = dict(dataset_kwargs or {})
        data = load_benchmark(options["benchmark"], options.get("subset"))
        splits = {data.eval_split: datasets.Dataset.from_list(data.eval_docs)}
        if data.fewshot_split != data.eval_split:
            splits[data.fewshot_split] = datasets.Dataset.from_list(data.fewshot_docs)
        self.dataset = datasets.DatasetDict(splits)
        # Same split name for both => lm-eval's sampler never shows a document as its own exemplar.
        self.config.test_split = data.eval_split
        self.config.fewshot_split = data.fewshot_split
        self.fewshot_cfg.split = data.fewshot_split
        self.config.metadata = {
            **(self.config.metadata or {}),
            "data_source": data.source,
            "eval_split": data.eval_split,
            "fewshot_split": data.fewshot_split,
        }


def _by_type(doc: dict, correct: bool) -> dict[str, float]:
    """acc over all documents, plus acc_single / acc_multi over their own kind only."""
    score = float(correct)
    return {"acc": score, ("acc_multi" if doc["multi"] else "acc_single"): score}


def _mc_correct(doc: dict, results: list) -> bool:
    loglikelihoods = [ll for ll, _ in results]
    best = max(range(len(loglikelihoods)), key=loglikelihoods.__getitem__)
    return best == mc_target(doc)


def _cot_extract(doc: dict, results: list) -> tuple[bool, dict[str, float | str]]:
    """Whether the generation's answer is right, plus the extraction report every CoT task logs:
    no_answer (1.0 when no answer could be read; its mean is the task's no-answer rate) and
    extraction_rule (which rule of finemed_eval.answers decided, per sample in --log_samples)."""
    got = extract_choice_with_rule(results[0], doc["options"], multi=doc["multi"])
    report = {"no_answer": float(got.answer is None), "extraction_rule": _rule_label(got)}
    return is_correct(got.answer, doc["answer"]), report


def _rule_label(got: Extraction) -> str:
    # a deciding rule whose letters were no valid answer (out of range, "B or C") is marked as such
    return f"{got.rule}:rejected" if got.rejected is not None else got.rule


def count_rules(labels: list[str]) -> dict[str, int]:
    """extraction_rule's aggregation: how many documents each rule decided, most frequent first."""
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def process_mc(doc: dict, results: list) -> dict[str, float]:
    return {"acc": float(_mc_correct(doc, results))}


def process_mc_by_type(doc: dict, results: list) -> dict[str, float]:
    return _by_type(doc, _mc_correct(doc, results))


def process_cot(doc: dict, results: list) -> dict[str, float | str]:
    correct, report = _cot_extract(doc, results)
    return {"acc": float(correct), **report}


def process_cot_by_type(doc: dict, results: list) -> dict[str, float | str]:
    correct, report = _cot_extract(doc, results)
    return {**_by_type(doc, correct), **report}
