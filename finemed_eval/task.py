"""The lm-eval task class behind every finemed task, and its per-document scoring.

The YAML files only name a benchmark (and subset); FineMedTask loads it through
finemed_eval.data (hub by default, FINEMED_DATA_DIR for local official files) and takes the
evaluated and few-shot split names from the data actually loaded, so results record them truthfully.

Few-shot exemplars are a function of (task, few-shot seed, document) alone: lm-eval's sampler draws
from ONE random stream per task, in the order a process builds its documents' contexts, so the
exemplars of a document would change with the number of data-parallel processes, --limit, --samples
or any other order. FineMedTask re-seeds the sampler for every document instead.
"""

from __future__ import annotations

import hashlib
import json

import datasets
from lm_eval.api.task import ConfigurableTask

from finemed_eval.answers import Extraction, extract_choice_with_rule, is_correct
from finemed_eval.data import load_benchmark
from finemed_eval.prompts import mc_target


class FineMedTask(ConfigurableTask):
    def __init__(self, config: dict | None = None, **kwargs) -> None:
        config = dict(config or {})
        config.pop("class", None)  # the YAML key that routed lm-eval here, not a TaskConfig field
        # The name the task was loaded as: the leaderboard later renames its per-seed copies.
        self._exemplar_task = str(config.get("task"))
        self._fewshot_seed: int | None = None
        super().__init__(config=config, **kwargs)

    def set_fewshot_seed(self, seed: int | None = None) -> None:
        super().set_fewshot_seed(seed)
        self._fewshot_seed = seed

    def fewshot_context(self, doc: dict, num_fewshot: int, *args, **kwargs):
        # seed None keeps lm-eval's meaning (an unseeded, irreproducible draw)
        if num_fewshot > 0 and self._fewshot_seed is not None and hasattr(self, "sampler"):
            self.sampler.set_rnd(exemplar_seed(self._exemplar_task, self._fewshot_seed, doc))
        return super().fewshot_context(doc, num_fewshot, *args, **kwargs)

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


def exemplar_seed(task: str, seed: int, doc: dict) -> int:
    """The sampler's seed for one document: a stable hash (never Python's per-process hash()) of the
    task, the few-shot seed and what identifies the document (its question and options), so ids that
    differ between a hub and a local copy of a release do not change the exemplars."""
    identity = [task, seed, doc["question"], list(doc["options"])]
    digest = hashlib.sha256(json.dumps(identity, ensure_ascii=False).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


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
